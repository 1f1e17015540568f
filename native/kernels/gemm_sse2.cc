// Portable (SSE2, baseline x86-64) micro-kernel of the matmul (gemm_kernels.h). SSE2 has 16
// xmm registers and no FMA: the 6 × 16 tile is computed as two 6 × 8 halves (12 accumulators
// each), multiply then add, over the same packed panels as the AVX2 kernel.
#include <emmintrin.h>

#include "gemm_kernels.h"

namespace st::gemm {

namespace {

// c (6, 8) at column offset `half` of the 16-wide panel.
inline void half_tile(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add) {
  __m128 c00 = _mm_setzero_ps(), c01 = _mm_setzero_ps();
  __m128 c10 = _mm_setzero_ps(), c11 = _mm_setzero_ps();
  __m128 c20 = _mm_setzero_ps(), c21 = _mm_setzero_ps();
  __m128 c30 = _mm_setzero_ps(), c31 = _mm_setzero_ps();
  __m128 c40 = _mm_setzero_ps(), c41 = _mm_setzero_ps();
  __m128 c50 = _mm_setzero_ps(), c51 = _mm_setzero_ps();
  for (int k = 0; k < kc; ++k) {
    const __m128 b0 = _mm_loadu_ps(b);
    const __m128 b1 = _mm_loadu_ps(b + 4);
    __m128 av = _mm_set1_ps(a[0]);
    c00 = _mm_add_ps(c00, _mm_mul_ps(av, b0));
    c01 = _mm_add_ps(c01, _mm_mul_ps(av, b1));
    av = _mm_set1_ps(a[1]);
    c10 = _mm_add_ps(c10, _mm_mul_ps(av, b0));
    c11 = _mm_add_ps(c11, _mm_mul_ps(av, b1));
    av = _mm_set1_ps(a[2]);
    c20 = _mm_add_ps(c20, _mm_mul_ps(av, b0));
    c21 = _mm_add_ps(c21, _mm_mul_ps(av, b1));
    av = _mm_set1_ps(a[3]);
    c30 = _mm_add_ps(c30, _mm_mul_ps(av, b0));
    c31 = _mm_add_ps(c31, _mm_mul_ps(av, b1));
    av = _mm_set1_ps(a[4]);
    c40 = _mm_add_ps(c40, _mm_mul_ps(av, b0));
    c41 = _mm_add_ps(c41, _mm_mul_ps(av, b1));
    av = _mm_set1_ps(a[5]);
    c50 = _mm_add_ps(c50, _mm_mul_ps(av, b0));
    c51 = _mm_add_ps(c51, _mm_mul_ps(av, b1));
    a += MR;
    b += NR;
  }
  const __m128 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int r = 0; r < MR; ++r) {
    float* cr = c + r * ldc;
    __m128 lo = acc[r][0], hi = acc[r][1];
    if (add) {
      lo = _mm_add_ps(_mm_loadu_ps(cr), lo);
      hi = _mm_add_ps(_mm_loadu_ps(cr + 4), hi);
    }
    _mm_storeu_ps(cr, lo);
    _mm_storeu_ps(cr + 4, hi);
  }
}

}  // namespace

void micro_kernel_sse2(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add) {
  half_tile(kc, a, b, c, ldc, add);
  half_tile(kc, a, b + 8, c + 8, ldc, add);
}

}  // namespace st::gemm
