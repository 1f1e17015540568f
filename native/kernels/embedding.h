// Token embedding plus learned positions: x[b, s] = wte[tokens[b, s]] + wpe[s].
// B = batch, S = sequence length, T = B·S tokens, D = d_model, V = vocabulary size, P = positions (S ≤ P).
// The token embedding is tied with the output projection (cross_entropy.h), so its gradient is added
// to, never overwritten, when accumulate is set.
#pragma once

#include <cstdint>

namespace st {

// x: (T, D)  tokens: (T) in [0, V)  wte: (V, D)  wpe: (P, D), rows 0 ... S-1 used
void embedding_forward(float* x, const int32_t* tokens, const float* wte, const float* wpe, int B, int S, int D);
// dwte: (V, D)  dwpe: (P, D), rows 0 ... S-1 written or added to  dx: (T, D)  tokens: (T)
void embedding_backward(float* dwte, float* dwpe, const float* dx, const int32_t* tokens, int B, int S, int D,
                        int V, bool accumulate);

void embedding_forward_reference(float* x, const int32_t* tokens, const float* wte, const float* wpe, int B, int S,
                                 int D);
void embedding_backward_reference(float* dwte, float* dwpe, const float* dx, const int32_t* tokens, int B, int S,
                                  int D, int V, bool accumulate);

}  // namespace st
