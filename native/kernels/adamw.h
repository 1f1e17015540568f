// Optimizer kernels over one parameter tensor: the AdamW update and the sum of squares used by
// global-norm gradient clipping. N = elements of the tensor.
#pragma once

#include <cstdint>

namespace st {

struct AdamWStep {
  float lr;
  float beta1, beta2, eps;
  float weight_decay;   // decoupled: w ← w · (1 − lr · weight_decay) before the Adam step
  double bias_correction1, bias_correction2;  // 1 − β1^t, 1 − β2^t
};

// The step's constants in float, as the per-element update uses them.
struct AdamWConstants {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, eps;
  float step_size;               // lr / (1 − β1^t)
  float sqrt_bias_correction2;   // sqrt(1 − β2^t)
  float decay;                   // 1 − lr · weight_decay
};
AdamWConstants adamw_constants(const AdamWStep& s);

// w, m, v: (N) updated in place  g: (N)
void adamw_forward(float* w, float* m, float* v, const float* g, int64_t N, const AdamWStep& s);
void adamw_forward_reference(float* w, float* m, float* v, const float* g, int64_t N, const AdamWStep& s);

// Σ g², summed in double over fixed blocks whose partials are added in block order (the same
// number for any thread count).  g: (N)
double sum_squares(const float* g, int64_t N);
// AVX2 paths (adamw_avx2.cc; only after the run-time check), over one block of n elements.
void adamw_range_avx2(float* w, float* m, float* v, const float* g, int64_t n, const AdamWConstants& c);
double sum_squares_avx2(const float* g, int64_t n);

// g ← g · scale  g: (N)
void scale_in_place(float* g, float scale, int64_t N);

}  // namespace st
