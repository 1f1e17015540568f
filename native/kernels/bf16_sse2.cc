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

// Packs the bf16 in the top halves of a (lanes 0-3) and b (lanes 4-7) into eight uint16. SSE2
// packs only with signed saturation, so shift arithmetically: the 16-bit results come out
// sign-extended and pack back to exactly themselves.
inline __m128i pack_top_halves(__m128i a, __m128i b) {
  return _mm_packs_epi32(_mm_srai_epi32(a, 16), _mm_srai_epi32(b, 16));
}

// Eight float32 → eight bf16, NaNs included (the slow path of the loops below).
inline __m128i from_f32_x8(__m128i lo, __m128i hi) {
  return pack_top_halves(round_to_top_half(lo, nan_lanes(lo)), round_to_top_half(hi, nan_lanes(hi)));
}

// Any NaN among two vectors' eight lanes: one unordered compare tests a lane of each.
inline __m128 nan_pairs(__m128i a, __m128i b) {
  return _mm_cmpunord_ps(_mm_castsi128_ps(a), _mm_castsi128_ps(b));
}

// The store kind is a template argument so that the loops carry no per-store branch.
template <bool kStream>
inline void store(__m128i* p, __m128i v) {
  if (kStream) _mm_stream_si128(p, v);
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

// The loop is bound by instruction count (in cache; on large buffers it must still outrun memory),
// so 32 values share one NaN test: four unordered compares over pairs of vectors, one movemask
// and one predictable branch (the per-8 test of before took five operations per 8 values).
// Without a NaN the rounding is four integer operations per vector.
template <bool stream>
void from_f32_body(uint16_t* dst, const float* src, int64_t n) {
  int64_t i = head_to_align(dst, n, stream);
  for (int64_t j = 0; j < i; ++j) dst[j] = bf16_from_f32_scalar(src[j]);
  for (; i + 32 <= n; i += 32) {
    const __m128i* s = reinterpret_cast<const __m128i*>(src + i);
    const __m128i v0 = _mm_loadu_si128(s), v1 = _mm_loadu_si128(s + 1), v2 = _mm_loadu_si128(s + 2);
    const __m128i v3 = _mm_loadu_si128(s + 3), v4 = _mm_loadu_si128(s + 4), v5 = _mm_loadu_si128(s + 5);
    const __m128i v6 = _mm_loadu_si128(s + 6), v7 = _mm_loadu_si128(s + 7);
    const __m128 nan = _mm_or_ps(_mm_or_ps(nan_pairs(v0, v1), nan_pairs(v2, v3)), _mm_or_ps(nan_pairs(v4, v5), nan_pairs(v6, v7)));
    __m128i* d = reinterpret_cast<__m128i*>(dst + i);
    if (_mm_movemask_ps(nan) == 0) {
      store<stream>(d, pack_top_halves(round_to_top_half(v0), round_to_top_half(v1)));
      store<stream>(d + 1, pack_top_halves(round_to_top_half(v2), round_to_top_half(v3)));
      store<stream>(d + 2, pack_top_halves(round_to_top_half(v4), round_to_top_half(v5)));
      store<stream>(d + 3, pack_top_halves(round_to_top_half(v6), round_to_top_half(v7)));
    } else {
      store<stream>(d, from_f32_x8(v0, v1));
      store<stream>(d + 1, from_f32_x8(v2, v3));
      store<stream>(d + 2, from_f32_x8(v4, v5));
      store<stream>(d + 3, from_f32_x8(v6, v7));
    }
  }
  for (; i + 8 <= n; i += 8) {
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 4));
    store<stream>(reinterpret_cast<__m128i*>(dst + i), from_f32_x8(lo, hi));
  }
  for (; i < n; ++i) dst[i] = bf16_from_f32_scalar(src[i]);
  if (stream) _mm_sfence();  // non-temporal stores are weakly ordered: publish before the task ends
}

template <bool stream>
void to_f32_body(float* dst, const uint16_t* src, int64_t n) {
  int64_t i = head_to_align(dst, n, stream);
  for (int64_t j = 0; j < i; ++j) dst[j] = bf16_to_f32_scalar(src[j]);
  const __m128i zero = _mm_setzero_si128();
  // Interleaving zeros below each bf16 is the shift left by 16. Thirty-two values a step: the
  // loop is bound by its stores, and the loads of the next step issue ahead of them.
  for (; i + 32 <= n; i += 32) {
    const __m128i* s = reinterpret_cast<const __m128i*>(src + i);
    const __m128i h0 = _mm_loadu_si128(s), h1 = _mm_loadu_si128(s + 1);
    const __m128i h2 = _mm_loadu_si128(s + 2), h3 = _mm_loadu_si128(s + 3);
    __m128i* d = reinterpret_cast<__m128i*>(dst + i);
    store<stream>(d, _mm_unpacklo_epi16(zero, h0));
    store<stream>(d + 1, _mm_unpackhi_epi16(zero, h0));
    store<stream>(d + 2, _mm_unpacklo_epi16(zero, h1));
    store<stream>(d + 3, _mm_unpackhi_epi16(zero, h1));
    store<stream>(d + 4, _mm_unpacklo_epi16(zero, h2));
    store<stream>(d + 5, _mm_unpackhi_epi16(zero, h2));
    store<stream>(d + 6, _mm_unpacklo_epi16(zero, h3));
    store<stream>(d + 7, _mm_unpackhi_epi16(zero, h3));
  }
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    store<stream>(reinterpret_cast<__m128i*>(dst + i), _mm_unpacklo_epi16(zero, h));
    store<stream>(reinterpret_cast<__m128i*>(dst + i + 4), _mm_unpackhi_epi16(zero, h));
  }
  for (; i < n; ++i) dst[i] = bf16_to_f32_scalar(src[i]);
  if (stream) _mm_sfence();
}

template <bool stream>
void round_body(float* dst, const float* src, int64_t n) {
  int64_t i = head_to_align(dst, n, stream);
  for (int64_t j = 0; j < i; ++j) dst[j] = bf16_to_f32_scalar(bf16_from_f32_scalar(src[j]));
  const __m128i top_half = _mm_set1_epi32(static_cast<int>(0xffff0000u));
  for (; i + 8 <= n; i += 8) {
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 4));
    __m128i a, b;
    if (_mm_movemask_ps(nan_pairs(lo, hi)) == 0) {  // the NaN-free common case skips the blend
      a = round_to_top_half(lo);
      b = round_to_top_half(hi);
    } else {
      a = round_to_top_half(lo, nan_lanes(lo));
      b = round_to_top_half(hi, nan_lanes(hi));
    }
    store<stream>(reinterpret_cast<__m128i*>(dst + i), _mm_and_si128(a, top_half));
    store<stream>(reinterpret_cast<__m128i*>(dst + i + 4), _mm_and_si128(b, top_half));
  }
  for (; i < n; ++i) dst[i] = bf16_to_f32_scalar(bf16_from_f32_scalar(src[i]));
  if (stream) _mm_sfence();
}

}  // namespace

void bf16_from_f32_sse2(uint16_t* dst, const float* src, int64_t n, bool stream) {
  if (stream) from_f32_body<true>(dst, src, n);
  else from_f32_body<false>(dst, src, n);
}

void bf16_to_f32_sse2(float* dst, const uint16_t* src, int64_t n, bool stream) {
  if (stream) to_f32_body<true>(dst, src, n);
  else to_f32_body<false>(dst, src, n);
}

void bf16_round_sse2(float* dst, const float* src, int64_t n, bool stream) {
  if (stream) round_body<true>(dst, src, n);
  else round_body<false>(dst, src, n);
}

}  // namespace st
