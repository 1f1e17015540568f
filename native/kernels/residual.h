// The residual connection around a block's branch: out = x + mask ⊙ y (mask: the branch's dropout
// scale, 0 or 1/(1−p), or none). N = elements (T·D). Its backward is the identity on x and
// mask ⊙ dout on y, which the model folds into the norms' backward (rmsnorm.h, residual).
#pragma once

#include <cstdint>

namespace st {

// out, x, y: (N)  mask: (N) or null
void residual_forward(float* out, const float* x, const float* y, const float* mask, int64_t N);
void residual_forward_reference(float* out, const float* x, const float* y, const float* mask, int64_t N);

}  // namespace st
