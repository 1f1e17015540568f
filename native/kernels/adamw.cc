// AdamW update and gradient-norm kernels (adamw.h). N = elements.
// Elementwise work in fixed blocks over the thread pool; every element's update is independent.
#include "adamw.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "threadpool.h"

namespace st {

namespace {
constexpr int64_t kBlock = 16384;
int64_t blocks(int64_t n) { return (n + kBlock - 1) / kBlock; }

inline void adamw_range(float* w, float* m, float* v, const float* g, int64_t begin, int64_t end, const AdamWStep& s) {
  const double step_size = s.lr / s.bias_correction1;
  const double sqrt_bc2 = std::sqrt(s.bias_correction2);
  const double decay = 1.0 - static_cast<double>(s.lr) * s.weight_decay;
  const float b1 = s.beta1, b2 = s.beta2, one_b1 = 1.0f - s.beta1, one_b2 = 1.0f - s.beta2;
  for (int64_t i = begin; i < end; ++i) {
    const float gi = g[i];
    m[i] = b1 * m[i] + one_b1 * gi;
    v[i] = b2 * v[i] + one_b2 * gi * gi;
    w[i] = static_cast<float>(w[i] * decay - step_size * m[i] / (std::sqrt(static_cast<double>(v[i])) / sqrt_bc2 + s.eps));
  }
}
}  // namespace

void adamw_forward(float* w, float* m, float* v, const float* g, int64_t N, const AdamWStep& s) {
  parallel_for(blocks(N), [&](int64_t b, int) { adamw_range(w, m, v, g, b * kBlock, std::min(N, (b + 1) * kBlock), s); });
}

void adamw_forward_reference(float* w, float* m, float* v, const float* g, int64_t N, const AdamWStep& s) {
  for (int64_t i = 0; i < N; ++i) {
    m[i] = s.beta1 * m[i] + (1.0f - s.beta1) * g[i];
    v[i] = s.beta2 * v[i] + (1.0f - s.beta2) * g[i] * g[i];
    const double m_hat = m[i] / s.bias_correction1, v_hat = v[i] / s.bias_correction2;
    w[i] = static_cast<float>(w[i] * (1.0 - static_cast<double>(s.lr) * s.weight_decay) - s.lr * m_hat / (std::sqrt(v_hat) + s.eps));
  }
}

double sum_squares(const float* g, int64_t N) {
  std::vector<double> partial(static_cast<size_t>(blocks(N)), 0.0);
  parallel_for(blocks(N), [&](int64_t b, int) {
    double s = 0.0;
    for (int64_t i = b * kBlock, end = std::min(N, (b + 1) * kBlock); i < end; ++i) s += static_cast<double>(g[i]) * g[i];
    partial[b] = s;
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

void scale_in_place(float* g, float scale, int64_t N) {
  parallel_for(blocks(N), [&](int64_t b, int) {
    for (int64_t i = b * kBlock, end = std::min(N, (b + 1) * kBlock); i < end; ++i) g[i] *= scale;
  });
}

}  // namespace st
