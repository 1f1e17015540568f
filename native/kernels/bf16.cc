// bfloat16 conversion: scalar references and the dispatching entry points (bf16.h).
#include "bf16.h"

namespace st {

void bf16_from_f32_reference(uint16_t* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_from_f32_scalar(src[i]);
}

void bf16_to_f32_reference(float* dst, const uint16_t* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32_scalar(src[i]);
}

void bf16_round_reference(float* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32_scalar(bf16_from_f32_scalar(src[i]));
}

// The SIMD paths replace these bodies.
void bf16_from_f32(uint16_t* dst, const float* src, int64_t n) { bf16_from_f32_reference(dst, src, n); }
void bf16_to_f32(float* dst, const uint16_t* src, int64_t n) { bf16_to_f32_reference(dst, src, n); }
void bf16_round(float* dst, const float* src, int64_t n) { bf16_round_reference(dst, src, n); }

}  // namespace st
