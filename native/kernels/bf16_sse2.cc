// bfloat16 conversion, portable path: SSE2, the x86-64 baseline (bf16.h). n = elements.
#include <emmintrin.h>

#include "bf16.h"

namespace st {

namespace {

// Four float32 bit patterns in, their bfloat16 in the top 16 bits of each lane out: round to
// nearest even by adding 0x7fff plus the lowest kept bit (a carry out of the mantissa moves into
// the exponent, which is what turns the largest values into ±Inf). Valid for every non-NaN.
inline __m128i round_to_top_half(__m128i u) {
  const __m128i lowest_kept = _mm_and_si128(_mm_srli_epi32(u, 16), _mm_set1_epi32(1));
  return _mm_add_epi32(u, _mm_add_epi32(lowest_kept, _mm_set1_epi32(0x7fff)));
}

// The same where `nan` marks NaN lanes: those add nothing (a carry could turn a NaN into Inf or
// flip its sign) and get the quiet bit instead.
inline __m128i round_to_top_half(__m128i u, __m128i nan) {
  const __m128i lowest_kept = _mm_and_si128(_mm_srli_epi32(u, 16), _mm_set1_epi32(1));
  const __m128i addend = _mm_andnot_si128(nan, _mm_add_epi32(lowest_kept, _mm_set1_epi32(0x7fff)));
  const __m128i quiet = _mm_and_si128(nan, _mm_set1_epi32(0x00400000));
  return _mm_or_si128(_mm_add_epi32(u, addend), quiet);
}

inline __m128i nan_lanes(__m128i u) {
  return _mm_castps_si128(_mm_cmpunord_ps(_mm_castsi128_ps(u), _mm_castsi128_ps(u)));
}

// Eight float32 → eight bf16. The loop is bound by instruction count in cache, so eight lanes
// without a NaN (the common case, one predictable branch) skip the NaN blend. SSE2 packs only with
// signed saturation, so shift arithmetically: the 16-bit results come out sign-extended and pack
// back to exactly themselves.
inline __m128i from_f32_x8(const float* src) {
  const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
  const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 4));
  const __m128i nan_lo = nan_lanes(lo), nan_hi = nan_lanes(hi);
  __m128i a, b;
  if (_mm_movemask_epi8(_mm_or_si128(nan_lo, nan_hi)) == 0) {
    a = round_to_top_half(lo);
    b = round_to_top_half(hi);
  } else {
    a = round_to_top_half(lo, nan_lo);
    b = round_to_top_half(hi, nan_hi);
  }
  return _mm_packs_epi32(_mm_srai_epi32(a, 16), _mm_srai_epi32(b, 16));
}

inline void store(__m128i* p, __m128i v, bool stream) {
  if (stream) _mm_stream_si128(p, v);
  else _mm_storeu_si128(p, v);
}

// Elements to do one at a time before dst reaches a 16-byte boundary (aligned stores for streaming).
template <class T>
int64_t head_to_align(const T* dst, int64_t n, bool stream) {
  if (!stream) return 0;
  const auto misaligned = reinterpret_cast<uintptr_t>(dst) & 15;
  if (misaligned % sizeof(T) != 0) return n;  // cannot align: all scalar (never from the dispatcher)
  const int64_t head = misaligned == 0 ? 0 : static_cast<int64_t>((16 - misaligned) / sizeof(T));
  return head < n ? head : n;
}

}  // namespace

void bf16_from_f32_sse2(uint16_t* dst, const float* src, int64_t n, bool stream) {
  int64_t i = head_to_align(dst, n, stream);
  for (int64_t j = 0; j < i; ++j) dst[j] = bf16_from_f32_scalar(src[j]);
  for (; i + 16 <= n; i += 16) {
    const __m128i a = from_f32_x8(src + i), b = from_f32_x8(src + i + 8);
    store(reinterpret_cast<__m128i*>(dst + i), a, stream);
    store(reinterpret_cast<__m128i*>(dst + i + 8), b, stream);
  }
  for (; i + 8 <= n; i += 8) store(reinterpret_cast<__m128i*>(dst + i), from_f32_x8(src + i), stream);
  for (; i < n; ++i) dst[i] = bf16_from_f32_scalar(src[i]);
  if (stream) _mm_sfence();  // non-temporal stores are weakly ordered: publish before the task ends
}

void bf16_to_f32_sse2(float* dst, const uint16_t* src, int64_t n, bool stream) {
  int64_t i = head_to_align(dst, n, stream);
  for (int64_t j = 0; j < i; ++j) dst[j] = bf16_to_f32_scalar(src[j]);
  const __m128i zero = _mm_setzero_si128();
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    // Interleaving zeros below each bf16 is the shift left by 16.
    store(reinterpret_cast<__m128i*>(dst + i), _mm_unpacklo_epi16(zero, h), stream);
    store(reinterpret_cast<__m128i*>(dst + i + 4), _mm_unpackhi_epi16(zero, h), stream);
  }
  for (; i < n; ++i) dst[i] = bf16_to_f32_scalar(src[i]);
  if (stream) _mm_sfence();
}

void bf16_round_sse2(float* dst, const float* src, int64_t n, bool stream) {
  int64_t i = head_to_align(dst, n, stream);
  for (int64_t j = 0; j < i; ++j) dst[j] = bf16_to_f32_scalar(bf16_from_f32_scalar(src[j]));
  const __m128i top_half = _mm_set1_epi32(static_cast<int>(0xffff0000u));
  for (; i + 8 <= n; i += 8) {
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 4));
    const __m128i a = round_to_top_half(lo, nan_lanes(lo)), b = round_to_top_half(hi, nan_lanes(hi));
    store(reinterpret_cast<__m128i*>(dst + i), _mm_and_si128(a, top_half), stream);
    store(reinterpret_cast<__m128i*>(dst + i + 4), _mm_and_si128(b, top_half), stream);
  }
  for (; i < n; ++i) dst[i] = bf16_to_f32_scalar(bf16_from_f32_scalar(src[i]));
  if (stream) _mm_sfence();
}

}  // namespace st
