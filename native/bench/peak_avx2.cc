// The FMA peak loop for AVX2 + FMA (compiled with -mavx2 -mfma; run only after the cpuid check).
#include <immintrin.h>

#include "bench.h"

namespace st::bench {

namespace {
volatile float g_sink;
}

// Two FMA pipes with a latency of 4 cycles (Zen 4; 4-5 on recent Intel) need at least 8-10
// independent chains in flight; 12 cover both with 2 of the 16 ymm registers left for the operands.
double fma_loop_avx2(int64_t iterations) {
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);  // acc → 1: no overflow, no subnormals
  __m256 c0 = _mm256_set1_ps(0.f), c1 = _mm256_set1_ps(0.1f), c2 = _mm256_set1_ps(0.2f),
         c3 = _mm256_set1_ps(0.3f), c4 = _mm256_set1_ps(0.4f), c5 = _mm256_set1_ps(0.5f),
         c6 = _mm256_set1_ps(0.6f), c7 = _mm256_set1_ps(0.7f), c8 = _mm256_set1_ps(0.8f),
         c9 = _mm256_set1_ps(0.9f), c10 = _mm256_set1_ps(1.1f), c11 = _mm256_set1_ps(1.2f);
  for (int64_t i = 0; i < iterations; ++i) {
    c0 = _mm256_fmadd_ps(c0, a, b); c1 = _mm256_fmadd_ps(c1, a, b); c2 = _mm256_fmadd_ps(c2, a, b);
    c3 = _mm256_fmadd_ps(c3, a, b); c4 = _mm256_fmadd_ps(c4, a, b); c5 = _mm256_fmadd_ps(c5, a, b);
    c6 = _mm256_fmadd_ps(c6, a, b); c7 = _mm256_fmadd_ps(c7, a, b); c8 = _mm256_fmadd_ps(c8, a, b);
    c9 = _mm256_fmadd_ps(c9, a, b); c10 = _mm256_fmadd_ps(c10, a, b); c11 = _mm256_fmadd_ps(c11, a, b);
  }
  const __m256 s = _mm256_add_ps(
      _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                    _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7))),
      _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
  g_sink = _mm256_cvtss_f32(s);
  return static_cast<double>(iterations) * 12 * 8 * 2;
}

void stream_copy_avx2(void* dst, const void* src, size_t bytes) {
  auto* d = static_cast<__m256i*>(dst);
  const auto* s = static_cast<const __m256i*>(src);
  for (size_t i = 0; i < bytes / 32; i += 2) {
    const __m256i a = _mm256_load_si256(s + i), b = _mm256_load_si256(s + i + 1);
    _mm256_stream_si256(d + i, a);
    _mm256_stream_si256(d + i + 1, b);
  }
  _mm_sfence();
}

}  // namespace st::bench
