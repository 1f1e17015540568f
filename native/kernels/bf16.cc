// bfloat16 conversion: scalar references and the dispatching entry points (bf16.h). n = elements.
#include "bf16.h"

#include <algorithm>

#include "cpu.h"
#include "threadpool.h"

// The references stay one element at a time: GCC at -O3 would otherwise vectorize them, and they
// are the yardstick the SIMD paths are measured against.
#if defined(__GNUC__) && !defined(__clang__)
#define ST_SCALAR_LOOP __attribute__((optimize("no-tree-vectorize")))
#else
#define ST_SCALAR_LOOP
#endif

namespace st {

ST_SCALAR_LOOP void bf16_from_f32_reference(uint16_t* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_from_f32_scalar(src[i]);
}

ST_SCALAR_LOOP void bf16_to_f32_reference(float* dst, const uint16_t* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32_scalar(src[i]);
}

ST_SCALAR_LOOP void bf16_round_reference(float* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32_scalar(bf16_from_f32_scalar(src[i]));
}

namespace {

// Fixed chunks: the split never depends on the thread count. 64 Ki elements (256 KiB of float32)
// amortise a task hand-off many times over; below two chunks one thread is faster than waking another.
constexpr int64_t kChunk = int64_t{1} << 16;
// Non-temporal stores pay off only when source plus destination overflow the last-level cache
// share of a core; below that the caller probably reads the result back from cache.
constexpr int64_t kStreamBytes = int64_t{16} << 20;

template <class Body>
void run_chunks(int64_t n, const Body& body) {
  if (n < 2 * kChunk) {
    body(int64_t{0}, n);
    return;
  }
  parallel_for((n + kChunk - 1) / kChunk, [&](int64_t task, int) {
    const int64_t begin = task * kChunk;
    body(begin, std::min(kChunk, n - begin));
  });
}

// The active ISA's single-threaded bodies.
using FromF32 = void (*)(uint16_t*, const float*, int64_t, bool);
using ToF32 = void (*)(float*, const uint16_t*, int64_t, bool);
using Round = void (*)(float*, const float*, int64_t, bool);

FromF32 from_f32_body() {
  const Isa isa = active_isa();
  return isa >= Isa::avx512 ? bf16_from_f32_avx512 : isa >= Isa::avx2 ? bf16_from_f32_avx2 : bf16_from_f32_sse2;
}

ToF32 to_f32_body() { return active_isa() >= Isa::avx2 ? bf16_to_f32_avx2 : bf16_to_f32_sse2; }

Round round_body() {
  const Isa isa = active_isa();
  return isa >= Isa::avx512 ? bf16_round_avx512 : isa >= Isa::avx2 ? bf16_round_avx2 : bf16_round_sse2;
}

}  // namespace

void bf16_from_f32(uint16_t* dst, const float* src, int64_t n) {
  const bool stream = n * 6 >= kStreamBytes;
  const FromF32 body = from_f32_body();
  run_chunks(n, [&](int64_t begin, int64_t count) { body(dst + begin, src + begin, count, stream); });
}

void bf16_to_f32(float* dst, const uint16_t* src, int64_t n) {
  const bool stream = n * 6 >= kStreamBytes;
  const ToF32 body = to_f32_body();
  run_chunks(n, [&](int64_t begin, int64_t count) { body(dst + begin, src + begin, count, stream); });
}

void bf16_round(float* dst, const float* src, int64_t n) {
  // In place (dst == src) the destination lines are already cached: stream only to a separate buffer.
  const bool stream = dst != src && n * 8 >= kStreamBytes;
  const Round body = round_body();
  run_chunks(n, [&](int64_t begin, int64_t count) { body(dst + begin, src + begin, count, stream); });
}

void bf16_round_serial(float* dst, const float* src, int64_t n, bool stream) { round_body()(dst, src, n, stream); }

}  // namespace st
