// The machine's limits (FMA peak, memcpy bandwidth) and the bf16 conversion benchmarks (bench.h).
#include <emmintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "bench.h"
#include "../kernels/bf16.h"
#include "../kernels/threadpool.h"

namespace st::bench {

namespace {

volatile float g_sink;

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<uint8_t, FreeDeleter>;

// 64-byte aligned and touched (so page faults fall outside the timed runs).
Buffer allocate(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0x5a, rounded == 0 ? 64 : rounded);
  return Buffer(static_cast<uint8_t*>(p));
}

// Sets the pool's thread count for one measurement and restores it after.
struct ThreadScope {
  int saved;
  explicit ThreadScope(int threads) : saved(num_threads()) { set_num_threads(threads); }
  ~ThreadScope() { set_num_threads(saved); }
};

struct IsaScope {
  Isa saved;
  explicit IsaScope(Isa isa) : saved(active_isa()) { set_active_isa(isa); }
  ~IsaScope() { set_active_isa(saved); }
};

// Tasks per thread: small enough that a thread woken late still gets its share.
constexpr int kTasksPerThread = 8;

}  // namespace

// Without FMA the chain is a multiply then an add (latency 3 + 3 on Zen 4, 4 + 4 on Intel), on two
// multiply and two add pipes: 12 chains of 4 floats keep them busy with 2 xmm registers to spare.
double fma_loop_sse2(int64_t iterations) {
  const __m128 a = _mm_set1_ps(0.999f), b = _mm_set1_ps(0.001f);
  __m128 c0 = _mm_set1_ps(0.f), c1 = _mm_set1_ps(0.1f), c2 = _mm_set1_ps(0.2f), c3 = _mm_set1_ps(0.3f),
         c4 = _mm_set1_ps(0.4f), c5 = _mm_set1_ps(0.5f), c6 = _mm_set1_ps(0.6f), c7 = _mm_set1_ps(0.7f),
         c8 = _mm_set1_ps(0.8f), c9 = _mm_set1_ps(0.9f), c10 = _mm_set1_ps(1.1f), c11 = _mm_set1_ps(1.2f);
  for (int64_t i = 0; i < iterations; ++i) {
    c0 = _mm_add_ps(_mm_mul_ps(c0, a), b); c1 = _mm_add_ps(_mm_mul_ps(c1, a), b);
    c2 = _mm_add_ps(_mm_mul_ps(c2, a), b); c3 = _mm_add_ps(_mm_mul_ps(c3, a), b);
    c4 = _mm_add_ps(_mm_mul_ps(c4, a), b); c5 = _mm_add_ps(_mm_mul_ps(c5, a), b);
    c6 = _mm_add_ps(_mm_mul_ps(c6, a), b); c7 = _mm_add_ps(_mm_mul_ps(c7, a), b);
    c8 = _mm_add_ps(_mm_mul_ps(c8, a), b); c9 = _mm_add_ps(_mm_mul_ps(c9, a), b);
    c10 = _mm_add_ps(_mm_mul_ps(c10, a), b); c11 = _mm_add_ps(_mm_mul_ps(c11, a), b);
  }
  const __m128 s = _mm_add_ps(_mm_add_ps(_mm_add_ps(_mm_add_ps(c0, c1), _mm_add_ps(c2, c3)),
                                         _mm_add_ps(_mm_add_ps(c4, c5), _mm_add_ps(c6, c7))),
                              _mm_add_ps(_mm_add_ps(c8, c9), _mm_add_ps(c10, c11)));
  g_sink = _mm_cvtss_f32(s);
  return static_cast<double>(iterations) * 12 * 4 * 2;
}

Rate fma_peak(Isa isa, int threads, int repeats, double min_seconds) {
  ThreadScope scope(threads);
  const bool avx2 = isa >= Isa::avx2 && isa_supported(Isa::avx2);
  constexpr int64_t kIterations = int64_t{1} << 19;  // ~1 ms per task
  const int64_t tasks = int64_t{threads} * kTasksPerThread;
  double flops = 0;
  const Timing t = time_median(
      [&] {
        parallel_for(tasks, [&](int64_t, int) { avx2 ? fma_loop_avx2(kIterations) : fma_loop_sse2(kIterations); });
      },
      2, repeats, min_seconds);
  flops = static_cast<double>(tasks) * kIterations * 12 * (avx2 ? 8 : 4) * 2;
  return {t, flops / t.median_seconds * 1e-9};
}

Rate memcpy_bandwidth(size_t bytes, int threads, int repeats, double min_seconds) {
  ThreadScope scope(threads);
  Buffer src = allocate(bytes), dst = allocate(bytes);
  const int64_t parts = int64_t{threads} * kTasksPerThread;
  const size_t part = (bytes / parts + 63) / 64 * 64;
  const Timing t = time_median(
      [&] {
        parallel_for(parts, [&](int64_t p, int) {
          const size_t begin = std::min(bytes, static_cast<size_t>(p) * part);
          const size_t end = std::min(bytes, begin + part);
          std::memcpy(dst.get() + begin, src.get() + begin, end - begin);
        });
      },
      2, repeats, min_seconds);
  g_sink = static_cast<float>(dst.get()[bytes / 2]);
  return {t, static_cast<double>(bytes) / t.median_seconds * 1e-9};
}

void stream_copy_sse2(void* dst, const void* src, size_t bytes) {
  auto* d = static_cast<__m128i*>(dst);
  const auto* s = static_cast<const __m128i*>(src);
  for (size_t i = 0; i < bytes / 16; i += 4) {
    const __m128i a = _mm_load_si128(s + i), b = _mm_load_si128(s + i + 1);
    const __m128i c = _mm_load_si128(s + i + 2), e = _mm_load_si128(s + i + 3);
    _mm_stream_si128(d + i, a);
    _mm_stream_si128(d + i + 1, b);
    _mm_stream_si128(d + i + 2, c);
    _mm_stream_si128(d + i + 3, e);
  }
  _mm_sfence();
}

Rate stream_copy_bandwidth(size_t bytes, int threads, int repeats, double min_seconds) {
  ThreadScope scope(threads);
  bytes = bytes / 64 * 64;
  Buffer src = allocate(bytes), dst = allocate(bytes);
  const bool avx2 = active_isa() >= Isa::avx2;
  const int64_t parts = int64_t{threads} * kTasksPerThread;
  const size_t part = (bytes / parts + 63) / 64 * 64;
  const Timing t = time_median(
      [&] {
        parallel_for(parts, [&](int64_t p, int) {
          const size_t begin = std::min(bytes, static_cast<size_t>(p) * part);
          const size_t end = std::min(bytes, begin + part);
          if (avx2) stream_copy_avx2(dst.get() + begin, src.get() + begin, end - begin);
          else stream_copy_sse2(dst.get() + begin, src.get() + begin, end - begin);
        });
      },
      2, repeats, min_seconds);
  g_sink = static_cast<float>(dst.get()[bytes / 2]);
  return {t, static_cast<double>(bytes) / t.median_seconds * 1e-9};
}

Rate bf16_conversion(Bf16Direction direction, int64_t n, Bf16Impl impl, int threads, int repeats, double min_seconds) {
  ThreadScope threads_scope(threads);
  IsaScope isa_scope(impl == Bf16Impl::avx512 ? Isa::avx512 : impl == Bf16Impl::avx2 ? Isa::avx2 : Isa::portable);
  Buffer wide = allocate(static_cast<size_t>(n) * 4), narrow = allocate(static_cast<size_t>(n) * 2);
  auto* f32 = reinterpret_cast<float*>(wide.get());
  auto* b16 = reinterpret_cast<uint16_t*>(narrow.get());
  // Random values of every magnitude in [2^-64, 2^64) and both signs (a quick generator: filling
  // 16 Mi values with a normal distribution took longer than the measurement).
  uint64_t state = 0x9e3779b97f4a7c15ull;
  for (int64_t i = 0; i < n; ++i) {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    const auto r = static_cast<uint32_t>(state >> 32);
    const uint32_t bits = (r & 0x807fffffu) | ((63u + (r >> 24) % 128u) << 23);
    std::memcpy(f32 + i, &bits, 4);
  }
  bf16_from_f32_reference(b16, f32, n);

  // The reference is single-threaded by nature; run it in the dispatcher's kind of chunks.
  constexpr int64_t kChunk = int64_t{1} << 16;
  auto chunked = [&](auto body) {
    parallel_for((n + kChunk - 1) / kChunk, [&](int64_t task, int) {
      const int64_t begin = task * kChunk;
      body(begin, std::min(kChunk, n - begin));
    });
  };
  const Timing t = time_median(
      [&] {
        if (direction == Bf16Direction::to_bf16) {
          if (impl == Bf16Impl::reference)
            chunked([&](int64_t b, int64_t c) { bf16_from_f32_reference(b16 + b, f32 + b, c); });
          else
            bf16_from_f32(b16, f32, n);
        } else {
          if (impl == Bf16Impl::reference)
            chunked([&](int64_t b, int64_t c) { bf16_to_f32_reference(f32 + b, b16 + b, c); });
          else
            bf16_to_f32(f32, b16, n);
        }
      },
      2, repeats, min_seconds);
  g_sink = f32[n / 2];
  return {t, static_cast<double>(n) * 6 / 2 / t.median_seconds * 1e-9};
}

}  // namespace st::bench
