// bfloat16 conversion, AVX-512 path (bf16.h), compiled with -mavx512f/bw/vl/dq; called only after
// the run-time check (active_isa() >= Isa::avx512). n = elements. The arithmetic is bf16_avx2.cc's
// on sixteen lanes, with an opmask for the NaN lanes, a two-source permute to gather the top halves
// of 32 lanes into one store, and masked loads and stores for the head and tail instead of scalar
// loops. float32 → bfloat16 only: the widening is a shift that AVX2 already does at the speed of
// the memory (bf16_to_f32_avx2).
#include <immintrin.h>

#include "bf16.h"

namespace st {

namespace {

// Sixteen float32 bit patterns in, their bfloat16 in the top 16 bits of each lane out (the rule of
// bf16_sse2.cc: add 0x7fff plus the lowest kept bit; a NaN adds nothing and gets the quiet bit).
inline __m512i round_to_top_half(__m512i u) {
  const __mmask16 nan = _mm512_cmp_ps_mask(_mm512_castsi512_ps(u), _mm512_castsi512_ps(u), _CMP_UNORD_Q);
  const __mmask16 lowest_kept = _mm512_test_epi32_mask(u, _mm512_set1_epi32(0x10000));
  const __m512i biased = _mm512_add_epi32(u, _mm512_set1_epi32(0x7fff));
  const __m512i rounded = _mm512_mask_add_epi32(biased, lowest_kept, biased, _mm512_set1_epi32(1));
  return _mm512_mask_or_epi32(rounded, nan, u, _mm512_set1_epi32(0x00400000));
}

// The top 16-bit halves of a's sixteen lanes, then of b's: 32 bfloat16 in order.
inline __m512i top_halves(__m512i a, __m512i b) {
  const __m512i odd_words = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33,
                                             31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  return _mm512_permutex2var_epi16(a, odd_words, b);
}

// Lanes [0, count) of a 16-lane (count ≤ 16) or 32-lane (count ≤ 32) mask.
inline __mmask16 first16(int64_t count) { return static_cast<__mmask16>(count >= 16 ? 0xffffu : (1u << count) - 1); }
inline __mmask32 first32(int64_t count) { return count >= 32 ? 0xffffffffu : (1u << count) - 1; }

// Up to 32 elements with masks (no access outside [0, count)).
inline void from_f32_masked(uint16_t* dst, const float* src, int64_t count) {
  const __m512i a = round_to_top_half(_mm512_maskz_loadu_epi32(first16(count), src));
  const __m512i b = round_to_top_half(_mm512_maskz_loadu_epi32(first16(count > 16 ? count - 16 : 0), src + 16));
  _mm512_mask_storeu_epi16(dst, first32(count), top_halves(a, b));
}

// Up to 16 elements with masks.
inline void round_masked(float* dst, const float* src, int64_t count) {
  const __mmask16 m = first16(count);
  const __m512i r = round_to_top_half(_mm512_maskz_loadu_epi32(m, src));
  _mm512_mask_storeu_epi32(dst, m, _mm512_and_si512(r, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
}

// Elements before dst reaches a 64-byte boundary (aligned non-temporal stores), at most n.
template <class T>
int64_t head_to_align(const T* dst, int64_t n, bool stream) {
  if (!stream) return 0;
  const auto misaligned = reinterpret_cast<uintptr_t>(dst) & 63;
  if (misaligned % sizeof(T) != 0) return n;  // cannot align: all masked (never from the dispatcher)
  const int64_t head = misaligned == 0 ? 0 : static_cast<int64_t>((64 - misaligned) / sizeof(T));
  return head < n ? head : n;
}

}  // namespace

void bf16_from_f32_avx512(uint16_t* dst, const float* src, int64_t n, bool stream) {
  int64_t i = head_to_align(dst, n, stream);
  for (int64_t j = 0; j < i; j += 32) from_f32_masked(dst + j, src + j, i - j < 32 ? i - j : 32);
  for (; i + 32 <= n; i += 32) {
    const __m512i v = top_halves(round_to_top_half(_mm512_loadu_si512(src + i)),
                                 round_to_top_half(_mm512_loadu_si512(src + i + 16)));
    if (stream) _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i), v);
    else _mm512_storeu_si512(dst + i, v);
  }
  if (i < n) from_f32_masked(dst + i, src + i, n - i);
  if (stream) _mm_sfence();  // non-temporal stores are weakly ordered: publish before the task ends
}

void bf16_round_avx512(float* dst, const float* src, int64_t n, bool stream) {
  int64_t i = head_to_align(dst, n, stream);
  for (int64_t j = 0; j < i; j += 16) round_masked(dst + j, src + j, i - j < 16 ? i - j : 16);
  const __m512i top_half = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  for (; i + 32 <= n; i += 32) {
    const __m512i a = _mm512_and_si512(round_to_top_half(_mm512_loadu_si512(src + i)), top_half);
    const __m512i b = _mm512_and_si512(round_to_top_half(_mm512_loadu_si512(src + i + 16)), top_half);
    if (stream) {
      _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i), a);
      _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i + 16), b);
    } else {
      _mm512_storeu_si512(dst + i, a);
      _mm512_storeu_si512(dst + i + 16, b);
    }
  }
  for (; i < n; i += 16) round_masked(dst + i, src + i, n - i < 16 ? n - i : 16);
  if (stream) _mm_sfence();
}

}  // namespace st
