// bfloat16 <-> float32 (SPEC §2). n = elements.
// f32 → bf16: round to nearest, ties to even, on the top 16 bits; NaN stays a quiet NaN with its
// sign; ±Inf and ±0 stay themselves; subnormals round like any other value; overflow gives ±Inf.
// bf16 → f32: exact (shift left by 16).
#pragma once

#include <cstdint>
#include <cstring>

namespace st {

// One value, the definition every vector path must agree with.
inline uint16_t bf16_from_f32_scalar(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

inline float bf16_to_f32_scalar(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Dispatching kernels (active_isa()), dst and src may not overlap.
void bf16_from_f32(uint16_t* dst, const float* src, int64_t n);   // dst: (n)  src: (n)
void bf16_to_f32(float* dst, const uint16_t* src, int64_t n);
// Rounds float32 values to the nearest bfloat16, in float32 (what crossing a bf16 wire does).
void bf16_round(float* dst, const float* src, int64_t n);        // dst may equal src

// Scalar references.
void bf16_from_f32_reference(uint16_t* dst, const float* src, int64_t n);
void bf16_to_f32_reference(float* dst, const uint16_t* src, int64_t n);
void bf16_round_reference(float* dst, const float* src, int64_t n);

}  // namespace st
