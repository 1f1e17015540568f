// The measurements behind `switch-bench` (and the standalone switch_bench_limits): the machine's
// limits (FMA peak, memcpy bandwidth) and the bf16 conversions, each timed in C++ as the median of
// repeats after warm-up (timing.h). Rates count what the caller reads from each function's comment.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../kernels/cpu.h"
#include "timing.h"

namespace st::bench {

// Every measurement: 2 warm-up runs, then at least `repeats` timed runs and `min_seconds` in total.
struct Rate {
  Timing timing;  // of one run
  double rate;    // GFLOP/s or GB/s (1e9 units) at the median time
};

// Independent multiply-add chains, enough to hide the latency on both FMA pipes: peak GFLOP/s on
// `threads` threads (each thread its own chains; one FMA counts 2 flops). The portable path has no
// FMA, so its loop is a multiply then an add (also 2 flops).
Rate fma_peak(Isa isa, int threads, int repeats, double min_seconds = 0.2);

// memcpy of `bytes` between two buffers, the work split into equal parts over `threads` threads;
// GB/s of bytes copied (each byte read once and written once).
Rate memcpy_bandwidth(size_t bytes, int threads, int repeats, double min_seconds = 0.2);

// The same copy with non-temporal stores (no read-for-ownership of the destination), the way the
// bf16 kernels write large outputs: what memory can do when a copy streams. Same count as memcpy.
Rate stream_copy_bandwidth(size_t bytes, int threads, int repeats, double min_seconds = 0.2);

enum class Bf16Direction { to_bf16, from_bf16 };
enum class Bf16Impl { reference, portable, avx2, avx512 };
// One conversion of n elements with the given implementation on `threads` threads; GB/s of
// (bytes read + bytes written) / 2, the same count as memcpy's bytes copied, so the two compare.
Rate bf16_conversion(Bf16Direction direction, int64_t n, Bf16Impl impl, int threads, int repeats,
                     double min_seconds = 0.2);

// The loops themselves: `iterations` rounds of every chain; return the flops done (and fold the
// accumulators into a sink so the work cannot be dropped).
double fma_loop_sse2(int64_t iterations);   // peak.cc
double fma_loop_avx2(int64_t iterations);   // peak_avx2.cc: AVX2 + FMA only
// Copies `bytes` (a multiple of 64) between 64-byte aligned buffers with non-temporal stores.
void stream_copy_sse2(void* dst, const void* src, size_t bytes);   // peak.cc
void stream_copy_avx2(void* dst, const void* src, size_t bytes);   // peak_avx2.cc

}  // namespace st::bench
