// Softmax cross-entropy over the vocabulary, with the logits computed against the tied token
// embedding: logits = h · wteᵀ, loss_t = logsumexp(logits_t) − logits_t[target_t].
// T = tokens, D = d_model, V = vocabulary size.
#pragma once

#include <cstdint>

namespace st {

// losses: (T)  probs: (T, V) softmax saved for backward  h: (T, D)  wte: (V, D)  targets: (T) in [0, V)
void cross_entropy_forward(float* losses, float* probs, const float* h, const float* wte, const int32_t* targets,
                           int T, int D, int V);
// dh: (T, D) written  dwte: (V, D) written, or added to when accumulate  dlosses: (T) the gradient of each loss_t
// probs: (T, V) the forward's softmax, overwritten with dlogits (the (T, V) buffer is reused rather
// than a second one allocated)  h: (T, D)  wte: (V, D)  targets: (T)
void cross_entropy_backward(float* dh, float* dwte, const float* dlosses, float* probs, const float* h,
                            const float* wte, const int32_t* targets, int T, int D, int V, bool accumulate);

// Training path: the loss and its gradient in one pass over blocks of tokens, so a block's logits
// stay in cache and no (T, V) buffer is ever allocated. dwte sums the blocks in order.
// losses: (T)  dh: (T, D) written  dwte: (V, D) written, or added to when accumulate
// h: (T, D)  wte: (V, D)  targets: (T)  dlosses: (T) the gradient of each loss_t, known before the pass
void cross_entropy_forward_backward(float* losses, float* dh, float* dwte, const float* h, const float* wte,
                                    const int32_t* targets, const float* dlosses, int T, int D, int V, bool accumulate);

// Evaluation path: the losses alone, in blocks of tokens (no (T, V) buffer).
// losses: (T)  h: (T, D)  wte: (V, D)  targets: (T)
void cross_entropy_loss(float* losses, const float* h, const float* wte, const int32_t* targets, int T, int D, int V);

// One row of the fused pass, AVX2 (cross_entropy_avx2.cc; only after the run-time check): returns
// logsumexp(row) − row[target]; with gradient, row becomes dloss · (softmax(row) − onehot(target)).
// row: (V)
float cross_entropy_row_avx2(float* row, int target, float dloss, int V, bool gradient);

void cross_entropy_forward_reference(float* losses, float* probs, const float* h, const float* wte,
                                     const int32_t* targets, int T, int D, int V);
void cross_entropy_backward_reference(float* dh, float* dwte, const float* dlosses, const float* probs,
                                      const float* h, const float* wte, const int32_t* targets, int T, int D, int V,
                                      bool accumulate);

}  // namespace st
