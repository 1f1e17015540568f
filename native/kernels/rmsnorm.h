// RMSNorm (T5's layer norm: no mean subtraction, no bias): y = x / rms(x) · weight.
// T = tokens, D = d_model.
#pragma once

namespace st {

// y: (T, D)  rstd: (T) saved for backward  x: (T, D)  weight: (D)
void rmsnorm_forward(float* y, float* rstd, const float* x, const float* weight, int T, int D, float eps);
// dx: (T, D) written  dweight: (D) written, or added to when accumulate  dy, x: (T, D)  weight: (D)  rstd: (T)
// residual: (T, D) or null, added to dx (the gradient that reaches the norm's input around it through
// a residual connection: one pass instead of a second one over dx).
void rmsnorm_backward(float* dx, float* dweight, const float* dy, const float* x, const float* weight,
                      const float* rstd, int T, int D, bool accumulate, const float* residual = nullptr);

void rmsnorm_forward_reference(float* y, float* rstd, const float* x, const float* weight, int T, int D, float eps);
void rmsnorm_backward_reference(float* dx, float* dweight, const float* dy, const float* x, const float* weight,
                                const float* rstd, int T, int D, bool accumulate, const float* residual = nullptr);

}  // namespace st
