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

// Dispatching kernels (active_isa()), multi-threaded in fixed chunks for large n (elementwise, so
// the result never depends on the thread count). dst and src may not overlap.
void bf16_from_f32(uint16_t* dst, const float* src, int64_t n);   // dst: (n)  src: (n)
void bf16_to_f32(float* dst, const uint16_t* src, int64_t n);     // dst: (n)  src: (n)
// Rounds float32 values to the nearest bfloat16, in float32 (what crossing a bf16 wire does).
void bf16_round(float* dst, const float* src, int64_t n);        // dst: (n)  src: (n); dst may equal src

// Scalar references (one element at a time; kept out of the compiler's auto-vectorizer).
void bf16_from_f32_reference(uint16_t* dst, const float* src, int64_t n);
void bf16_to_f32_reference(float* dst, const uint16_t* src, int64_t n);
void bf16_round_reference(float* dst, const float* src, int64_t n);

// The per-ISA bodies behind the dispatcher, single-threaded, for the dispatcher, the tests and the
// benchmarks. `stream` writes dst with non-temporal stores (for buffers far larger than the caches,
// so the output does not evict the input and costs no read-for-ownership).
// bf16_sse2.cc: baseline x86-64.
void bf16_from_f32_sse2(uint16_t* dst, const float* src, int64_t n, bool stream);
void bf16_to_f32_sse2(float* dst, const uint16_t* src, int64_t n, bool stream);
void bf16_round_sse2(float* dst, const float* src, int64_t n, bool stream);
// bf16_avx2.cc: call only when active_isa() >= Isa::avx2 (or isa_supported(Isa::avx2)).
void bf16_from_f32_avx2(uint16_t* dst, const float* src, int64_t n, bool stream);
void bf16_to_f32_avx2(float* dst, const uint16_t* src, int64_t n, bool stream);
void bf16_round_avx2(float* dst, const float* src, int64_t n, bool stream);
// bf16_avx512.cc: call only when active_isa() >= Isa::avx512 (or isa_supported(Isa::avx512)). The
// widening stays bf16_to_f32_avx2 at that level (a shift, at the speed of the memory already).
void bf16_from_f32_avx512(uint16_t* dst, const float* src, int64_t n, bool stream);
void bf16_round_avx512(float* dst, const float* src, int64_t n, bool stream);
// bf16_round on the calling thread alone, the active ISA's body (for callers that split the work
// themselves, like the mesh's collectives).
void bf16_round_serial(float* dst, const float* src, int64_t n, bool stream);

}  // namespace st
