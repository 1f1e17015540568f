// The Switch router (SPEC §1.2-1.3, 1.8-1.10; paper §2.1-2.2): logits, softmax, top-k choice,
// the load-balancing and z losses, and their gradients.
// T = tokens, D = d_model, E = experts, k = choices per token (1 or 2), G = tokens per group.
//
// The router always runs in float32 ("selective precision", §2.4). Work is cut into fixed token
// blocks and every reduction runs in a fixed order, so results do not depend on the thread count.
#pragma once

#include <cstdint>

namespace st {

enum class SecondExpertPolicy : int { all = 0, none = 1, threshold = 2, random = 3 };

// Training-time multiplicative jitter: u ~ Uniform(1-ε, 1+ε), x_router = x ⊙ u; element (t, d) draws
// index (token_offset + t)·D + d.
void router_jitter_forward(float* x_router,   // (T, D)
                           float* u,          // (T, D) the noise, kept for the backward
                           const float* x,    // (T, D)
                           uint64_t key, float epsilon, int T, int D, int64_t token_offset = 0);

// logits = x_router · w_router, probs = softmax(logits), lse = logsumexp(logits) per token.
void router_forward(float* logits,            // (T, E)
                    float* probs,             // (T, E)
                    float* lse,               // (T)
                    const float* x_router,    // (T, D)
                    const float* w_router,    // (D, E)
                    int T, int D, int E);

// Top-k choice. k = 1: argmax (ties: lowest index), gate = p (not renormalised).
// k = 2: the two largest, gates p / (p1 + p2 + 1e-9); want[t·2+1] applies the second-expert policy
// (random: kept where uniform(key, token_offset + t) < g2 / threshold). want[t·k] is always 1.
// token_offset: the global index of token 0 (a mesh device's first token), so that random draws
// do not depend on how tokens are split over devices.
void router_choose_forward(int32_t* expert_index,  // (T, k)
                           float* gate,            // (T, k)
                           uint8_t* want,          // (T, k) whether the choice asks for a slot
                           const float* probs,     // (T, E)
                           int T, int E, int k, SecondExpertPolicy policy, float threshold,
                           uint64_t random_key, int64_t token_offset = 0);

// Eq. 4-6 per group and the z-loss. f: fraction of each group's tokens whose FIRST choice is i,
// before capacity drops (first_choice is expert_index with stride k, before any rerouting).
// lb = mean over groups of E · Σ_i f_i · P_i;  z = mean over tokens of lse²;  entropy = mean over
// tokens of -Σ_i p_i log p_i (a routing statistic, in nats).
void router_losses_forward(double* load_balance_loss, double* z_loss, double* entropy,
                           float* f,                     // (T/G, E)
                           const float* probs,           // (T, E)
                           const float* lse,             // (T)
                           const int32_t* first_choice,  // (T, k), column 0 used
                           int T, int E, int k, int G);

// The gradient at the logits of Σ dgate·gate + lb_coef·lb + z_coef·z, then
// dw_router = x_routerᵀ · dlogits and dx = (dlogits · w_routerᵀ) [⊙ u] (overwritten).
// gate_mode 0: gate = p[expert_index] (k = 1, also the rerouted No-Token-Left-Behind choice);
// gate_mode 1: the normalised top-2 gates.
void router_backward(float* dlogits,            // (T, E)
                     float* dw_router,          // (D, E)
                     float* dx,                 // (T, D) or null
                     const float* dgate,        // (T, k)
                     const float* probs,        // (T, E)
                     const float* lse,          // (T)
                     const float* f,            // (T/G, E)
                     const int32_t* expert_index,  // (T, k)
                     const float* x_router,     // (T, D)
                     const float* w_router,     // (D, E)
                     const float* u,            // (T, D) jitter noise or null
                     int T, int D, int E, int k, int G, float load_balance_coef, float z_loss_coef);

// Scalar references of the token-wise parts (softmax+lse, choice) for the tests.
void router_softmax_reference(float* probs, float* lse, const float* logits, int T, int E);

}  // namespace st
