// AdamW update and gradient-norm kernels (adamw.h). N = elements.
// Elementwise work in fixed blocks over the thread pool; every element's update is independent.
// The update is memory-bound (w, m, v read and written, g read): it runs in float, in PyTorch's order
// of operations, eight lanes at a time on AVX2 (adamw_avx2.cc).
#include "adamw.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu.h"
#include "threadpool.h"

namespace st {

namespace {
constexpr int64_t kBlock = 16384;
int64_t blocks(int64_t n) { return (n + kBlock - 1) / kBlock; }

// w ← w·decay − step_size · m / (sqrt(v) / sqrt_bc2 + ε), as torch.optim.AdamW (decay first, then addcdiv).
void adamw_range_portable(float* w, float* m, float* v, const float* g, int64_t n, const AdamWConstants& c) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = c.beta1 * m[i] + c.one_minus_beta1 * gi;
    const float vi = c.beta2 * v[i] + c.one_minus_beta2 * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / c.sqrt_bias_correction2 + c.eps;
    w[i] = w[i] * c.decay - c.step_size * (mi / denom);
  }
}

// Σ g² over one block in four double accumulators (a fixed order: the same number every run).
double sum_squares_portable(const float* g, int64_t n) {
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  const int64_t n4 = n - n % 4;
  for (int64_t i = 0; i < n4; i += 4)
    for (int l = 0; l < 4; ++l) acc[l] += static_cast<double>(g[i + l]) * g[i + l];
  for (int64_t i = n4; i < n; ++i) acc[0] += static_cast<double>(g[i]) * g[i];
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}
}  // namespace

AdamWConstants adamw_constants(const AdamWStep& s) {
  AdamWConstants c;
  c.beta1 = s.beta1;
  c.beta2 = s.beta2;
  c.one_minus_beta1 = 1.0f - s.beta1;
  c.one_minus_beta2 = 1.0f - s.beta2;
  c.eps = s.eps;
  c.step_size = static_cast<float>(s.lr / s.bias_correction1);
  c.sqrt_bias_correction2 = static_cast<float>(std::sqrt(s.bias_correction2));
  c.decay = static_cast<float>(1.0 - static_cast<double>(s.lr) * s.weight_decay);
  return c;
}

void adamw_forward(float* w, float* m, float* v, const float* g, int64_t N, const AdamWStep& s) {
  const AdamWConstants c = adamw_constants(s);
  const bool avx2 = active_isa() >= Isa::avx2;
  parallel_for(blocks(N), [&](int64_t b, int) {
    const int64_t begin = b * kBlock, n = std::min(N, (b + 1) * kBlock) - begin;
    if (avx2) adamw_range_avx2(w + begin, m + begin, v + begin, g + begin, n, c);
    else adamw_range_portable(w + begin, m + begin, v + begin, g + begin, n, c);
  });
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
  const bool avx2 = active_isa() >= Isa::avx2;
  parallel_for(blocks(N), [&](int64_t b, int) {
    const int64_t begin = b * kBlock, n = std::min(N, (b + 1) * kBlock) - begin;
    partial[b] = avx2 ? sum_squares_avx2(g + begin, n) : sum_squares_portable(g + begin, n);
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
