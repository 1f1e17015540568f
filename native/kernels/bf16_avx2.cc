// bfloat16 conversion, AVX2 path (bf16.h), compiled with -mavx2; called only after the run-time
// check. n = elements. F16C converts IEEE half precision, not bfloat16, so it plays no part here.
#include <immintrin.h>

#include "bf16.h"

namespace st {

namespace {

// Eight float32 bit patterns in, their bfloat16 in the top 16 bits of each lane out (the rule of
// bf16_sse2.cc: add 0x7fff plus the lowest kept bit; a NaN adds nothing and gets the quiet bit).
inline __m256i round_to_top_half(__m256i u) {
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(_mm256_castsi256_ps(u), _mm256_castsi256_ps(u), _CMP_UNORD_Q));
  const __m256i lowest_kept = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i addend = _mm256_andnot_si256(nan, _mm256_add_epi32(lowest_kept, _mm256_set1_epi32(0x7fff)));
  const __m256i quiet = _mm256_and_si256(nan, _mm256_set1_epi32(0x00400000));
  return _mm256_or_si256(_mm256_add_epi32(u, addend), quiet);
}

// Sixteen float32 → sixteen bf16. The pack works within 128-bit lanes ([a0-3 b0-3 | a4-7 b4-7]);
// the permute puts the quarters back in order. The arithmetic shift keeps the signed pack exact.
inline __m256i from_f32_x16(const float* src) {
  const __m256i a = round_to_top_half(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)));
  const __m256i b = round_to_top_half(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 8)));
  const __m256i packed = _mm256_packs_epi32(_mm256_srai_epi32(a, 16), _mm256_srai_epi32(b, 16));
  return _mm256_permute4x64_epi64(packed, 0xd8);
}

inline void store(__m256i* p, __m256i v, bool stream) {
  if (stream) _mm256_stream_si256(p, v);
  else _mm256_storeu_si256(p, v);
}

// Elements to do one at a time before dst reaches a 32-byte boundary (aligned stores for streaming).
template <class T>
int64_t head_to_align(const T* dst, int64_t n, bool stream) {
  if (!stream) return 0;
  const auto misaligned = reinterpret_cast<uintptr_t>(dst) & 31;
  if (misaligned % sizeof(T) != 0) return n;  // cannot align: all scalar (never from the dispatcher)
  const int64_t head = misaligned == 0 ? 0 : static_cast<int64_t>((32 - misaligned) / sizeof(T));
  return head < n ? head : n;
}

}  // namespace

void bf16_from_f32_avx2(uint16_t* dst, const float* src, int64_t n, bool stream) {
  int64_t i = head_to_align(dst, n, stream);
  for (int64_t j = 0; j < i; ++j) dst[j] = bf16_from_f32_scalar(src[j]);
  for (; i + 32 <= n; i += 32) {
    const __m256i a = from_f32_x16(src + i), b = from_f32_x16(src + i + 16);
    store(reinterpret_cast<__m256i*>(dst + i), a, stream);
    store(reinterpret_cast<__m256i*>(dst + i + 16), b, stream);
  }
  for (; i + 16 <= n; i += 16) store(reinterpret_cast<__m256i*>(dst + i), from_f32_x16(src + i), stream);
  for (; i < n; ++i) dst[i] = bf16_from_f32_scalar(src[i]);
  if (stream) _mm_sfence();  // non-temporal stores are weakly ordered: publish before the task ends
}

void bf16_to_f32_avx2(float* dst, const uint16_t* src, int64_t n, bool stream) {
  int64_t i = head_to_align(dst, n, stream);
  for (int64_t j = 0; j < i; ++j) dst[j] = bf16_to_f32_scalar(src[j]);
  for (; i + 16 <= n; i += 16) {
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 8));
    store(reinterpret_cast<__m256i*>(dst + i), _mm256_slli_epi32(_mm256_cvtepu16_epi32(lo), 16), stream);
    store(reinterpret_cast<__m256i*>(dst + i + 8), _mm256_slli_epi32(_mm256_cvtepu16_epi32(hi), 16), stream);
  }
  for (; i < n; ++i) dst[i] = bf16_to_f32_scalar(src[i]);
  if (stream) _mm_sfence();
}

void bf16_round_avx2(float* dst, const float* src, int64_t n, bool stream) {
  int64_t i = head_to_align(dst, n, stream);
  for (int64_t j = 0; j < i; ++j) dst[j] = bf16_to_f32_scalar(bf16_from_f32_scalar(src[j]));
  const __m256i top_half = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  for (; i + 16 <= n; i += 16) {
    const __m256i a = round_to_top_half(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    const __m256i b = round_to_top_half(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 8)));
    store(reinterpret_cast<__m256i*>(dst + i), _mm256_and_si256(a, top_half), stream);
    store(reinterpret_cast<__m256i*>(dst + i + 8), _mm256_and_si256(b, top_half), stream);
  }
  for (; i + 8 <= n; i += 8) {
    const __m256i a = round_to_top_half(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    store(reinterpret_cast<__m256i*>(dst + i), _mm256_and_si256(a, top_half), stream);
  }
  for (; i < n; ++i) dst[i] = bf16_to_f32_scalar(bf16_from_f32_scalar(src[i]));
  if (stream) _mm_sfence();
}

}  // namespace st
