// The experts of the Switch layer (SPEC §1.6, paper §2.1): f_e(x) = act(x · W_in[e]) · W_out[e],
// with inverted expert dropout on the hidden activation (Table 4), forward and backward, over the
// expert-major rows of the dispatch plan. The dense feed-forward layer is the case E = 1.
// R = rows, T = tokens, D = d_model, F = d_ff, E = experts.
//
// Both matmuls go through the grouped matmul of gemm.h, with dispatch's gather folded into the
// first one and, in the backward, the scatter back to the tokens folded into the last one.
#pragma once

#include <cstdint>

namespace st {

enum class Activation : int { relu = 0, gelu = 1 };  // gelu: the tanh approximation

// h = act(h_pre) ⊙ keep / (1 - rate). keep is drawn per (choice, hidden unit): element
// (row_choice[i], or i when row_choice is null or -1, f) keeps with probability 1 - rate; it is only
// written (and read by the backward) when rate > 0.
void switch_activation_forward(float* h,                  // (R, F)
                               uint8_t* keep,             // (R, F) or null when rate = 0
                               const float* h_pre,        // (R, F)
                               const int32_t* row_choice,  // (R) or null
                               int64_t R, int F, Activation act, float rate, uint64_t key);
void switch_activation_backward(float* dh_pre,            // (R, F), may equal dh
                                const float* dh,          // (R, F)
                                const float* h_pre,       // (R, F)
                                const uint8_t* keep,      // (R, F) or null
                                int64_t R, int F, Activation act, float rate);
// relu without dropout: the activation is folded into the up product (its epilogue) and h_pre is not
// needed (the backward reads relu's derivative off h).
bool relu_folds(Activation act, float dropout_rate);
// One element of the activation and its derivative: the scalar definitions.
float activation_value(Activation act, float v);
float activation_derivative(Activation act, float v);

struct SwitchExpertsForward {
  float* expert_out;           // (R, D) f_e of each row
  float* h_pre;                // (R, F) x · W_in[e]; may be null when relu_folds (then not computed)
  float* h;                    // (R, F) act(h_pre) after dropout
  uint8_t* keep;               // (R, F) dropout mask, or null when dropout_rate = 0
  const float* x;              // (T, D) with row_token, else (R, D) the dispatched buffer
  const int32_t* row_token;    // (R) or null
  const int32_t* row_choice;   // (R) or null (dropout keys by row then)
  const float* w_in;           // (E, D, F)
  const float* w_out;          // (E, F, D)
  const int32_t* offsets;      // (E + 1)
  int E, D, F;
  Activation act;
  float dropout_rate;
  uint64_t dropout_key;
};
void switch_experts_forward(const SwitchExpertsForward& a);

struct SwitchExpertsBackward {
  float* dx;                   // (T, D) accumulated through row_token when scatter_dx, else (R, D) written
  float* dw_in;                // (E, D, F) overwritten
  float* dw_out;               // (E, F, D) overwritten
  float* dh;                   // (R, F) scratch
  const float* dexpert_out;    // (R, D)
  const float* h_pre;          // (R, F); may be null when relu_folds (relu's derivative read off h)
  const float* h;              // (R, F)
  const uint8_t* keep;         // (R, F) or null
  const float* x;              // as in the forward
  const int32_t* row_token;    // (R) or null
  const float* w_in;           // (E, D, F)
  const float* w_out;          // (E, F, D)
  const int32_t* offsets;      // (E + 1)
  int E, D, F;
  Activation act;
  float dropout_rate;
  bool scatter_dx;             // needs row_token
};
void switch_experts_backward(const SwitchExpertsBackward& a);

}  // namespace st
