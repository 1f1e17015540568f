// The residual connection (residual.h). N = elements. Fixed blocks over the thread pool; every
// element is independent, so the result does not depend on the thread count.
#include "residual.h"

#include <algorithm>

#include "threadpool.h"

namespace st {

namespace {
constexpr int64_t kBlock = 32768;
}  // namespace

void residual_forward(float* out, const float* x, const float* y, const float* mask, int64_t N) {
  parallel_for((N + kBlock - 1) / kBlock, [&](int64_t b, int) {
    const int64_t begin = b * kBlock, end = std::min(N, begin + kBlock);
    if (mask)
      for (int64_t i = begin; i < end; ++i) out[i] = x[i] + y[i] * mask[i];
    else
      for (int64_t i = begin; i < end; ++i) out[i] = x[i] + y[i];
  });
}

void residual_forward_reference(float* out, const float* x, const float* y, const float* mask, int64_t N) {
  for (int64_t i = 0; i < N; ++i) out[i] = x[i] + (mask ? y[i] * mask[i] : y[i]);
}

}  // namespace st
