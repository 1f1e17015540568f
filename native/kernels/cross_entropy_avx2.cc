// One row of softmax cross-entropy, AVX2 + FMA (cross_entropy.h); compiled with -mavx2 -mfma and
// called only after the run-time check. V = vocabulary.
//
// exp is the polynomial of cross_entropy.cc (x = n·ln2 + f·ln2, 2^f by a degree-6 Taylor polynomial,
// 2^n through the exponent bits), eight lanes at a time; the sums run in eight fixed lanes, so a row
// gives the same number on every run.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cross_entropy.h"

namespace st {

namespace {

// The coefficients of 2^f on [−1/2, 1/2], highest degree first.
constexpr float kC6 = 1.540353039e-4f, kC5 = 1.333355815e-3f, kC4 = 9.618129108e-3f, kC3 = 5.550410866e-2f,
                kC2 = 2.402265070e-1f, kC1 = 6.931471806e-1f;
constexpr float kLog2e = 1.44269504088896341f;

inline float exp_nonpositive_scalar(float x) {
  x = std::max(x, -87.0f);
  const float t = x * kLog2e;
  const float n = std::nearbyint(t);
  const float f = t - n;
  float p = kC6;
  p = p * f + kC5;
  p = p * f + kC4;
  p = p * f + kC3;
  p = p * f + kC2;
  p = p * f + kC1;
  p = p * f + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// exp(x) for x <= 0 (a NaN stays a NaN: max keeps its second operand when either is NaN).
inline __m256 exp_nonpositive(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x);
  const __m256 t = _mm256_mul_ps(x, _mm256_set1_ps(kLog2e));
  const __m256 n = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_sub_ps(t, n);
  __m256 p = _mm256_set1_ps(kC6);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kC5));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kC4));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kC3));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kC2));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kC1));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

inline float horizontal_max(__m256 v) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, v);
  float m = lanes[0];
  for (int l = 1; l < 8; ++l) m = std::max(m, lanes[l]);
  return m;
}

inline float horizontal_sum(__m256 v) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, v);
  float s = 0.0f;
  for (int l = 0; l < 8; ++l) s += lanes[l];
  return s;
}

}  // namespace

float cross_entropy_row_avx2(float* row, int target, float dloss, int V, bool gradient) {
  const int V8 = V - V % 8;
  // Pass 1: the max, in two accumulators (NaN-propagating order as in exp above).
  __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
  int v = 0;
  for (; v + 16 <= V8; v += 16) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(row + v));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(row + v + 8));
  }
  for (; v < V8; v += 8) m0 = _mm256_max_ps(m0, _mm256_loadu_ps(row + v));
  float max = horizontal_max(_mm256_max_ps(m0, m1));
  for (v = V8; v < V; ++v) max = std::max(max, row[v]);
  const float target_logit = row[target];
  // Pass 2: e = exp(logit − max), stored in place, and its sum.
  const __m256 vmax = _mm256_set1_ps(max);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0;
  for (v = 0; v + 16 <= V8; v += 16) {
    const __m256 e0 = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(row + v), vmax));
    const __m256 e1 = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(row + v + 8), vmax));
    _mm256_storeu_ps(row + v, e0);
    _mm256_storeu_ps(row + v + 8, e1);
    s0 = _mm256_add_ps(s0, e0);
    s1 = _mm256_add_ps(s1, e1);
  }
  for (; v < V8; v += 8) {
    const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(row + v), vmax));
    _mm256_storeu_ps(row + v, e);
    s0 = _mm256_add_ps(s0, e);
  }
  float sum = horizontal_sum(_mm256_add_ps(s0, s1));
  for (v = V8; v < V; ++v) {
    row[v] = exp_nonpositive_scalar(row[v] - max);
    sum += row[v];
  }
  // Pass 3: dlogits = dloss · e / sum − dloss · onehot(target).
  if (gradient) {
    const float scale = dloss / sum;
    const __m256 vscale = _mm256_set1_ps(scale);
    for (v = 0; v < V8; v += 8) _mm256_storeu_ps(row + v, _mm256_mul_ps(_mm256_loadu_ps(row + v), vscale));
    for (v = V8; v < V; ++v) row[v] *= scale;
    row[target] -= dloss;
  }
  return std::log(sum) + max - target_logit;
}

}  // namespace st
