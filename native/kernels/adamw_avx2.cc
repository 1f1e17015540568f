// AdamW update and sum of squares, AVX2 (adamw.h); compiled with -mavx2 -mfma and called only after
// the run-time check. n = elements of one block. The update follows the portable path's order of
// operations; the compiler may fuse its multiply-adds here, so the paths can differ by an ulp.
#include <immintrin.h>

#include <cmath>

#include "adamw.h"

namespace st {

void adamw_range_avx2(float* w, float* m, float* v, const float* g, int64_t n, const AdamWConstants& c) {
  const __m256 b1 = _mm256_set1_ps(c.beta1), b2 = _mm256_set1_ps(c.beta2);
  const __m256 ob1 = _mm256_set1_ps(c.one_minus_beta1), ob2 = _mm256_set1_ps(c.one_minus_beta2);
  const __m256 eps = _mm256_set1_ps(c.eps), step = _mm256_set1_ps(c.step_size);
  const __m256 sbc2 = _mm256_set1_ps(c.sqrt_bias_correction2), decay = _mm256_set1_ps(c.decay);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gi = _mm256_loadu_ps(g + i);
    const __m256 mi = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(ob1, gi));
    const __m256 vi = _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(v + i)), _mm256_mul_ps(ob2, _mm256_mul_ps(gi, gi)));
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), sbc2), eps);
    const __m256 wi = _mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(w + i), decay), _mm256_mul_ps(step, _mm256_div_ps(mi, denom)));
    _mm256_storeu_ps(w + i, wi);
  }
  for (; i < n; ++i) {
    const float gi = g[i];
    const float mi = c.beta1 * m[i] + c.one_minus_beta1 * gi;
    const float vi = c.beta2 * v[i] + c.one_minus_beta2 * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / c.sqrt_bias_correction2 + c.eps;
    w[i] = w[i] * c.decay - c.step_size * (mi / denom);
  }
}

double sum_squares_avx2(const float* g, int64_t n) {
  __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256d x0 = _mm256_cvtps_pd(_mm_loadu_ps(g + i)), x1 = _mm256_cvtps_pd(_mm_loadu_ps(g + i + 4));
    const __m256d x2 = _mm256_cvtps_pd(_mm_loadu_ps(g + i + 8)), x3 = _mm256_cvtps_pd(_mm_loadu_ps(g + i + 12));
    a0 = _mm256_fmadd_pd(x0, x0, a0);
    a1 = _mm256_fmadd_pd(x1, x1, a1);
    a2 = _mm256_fmadd_pd(x2, x2, a2);
    a3 = _mm256_fmadd_pd(x3, x3, a3);
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3)));
  double s = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; i < n; ++i) s += static_cast<double>(g[i]) * g[i];
  return s;
}

}  // namespace st
