// switch_bench_limits: the measurements of bench.h (FMA peak, memcpy, bf16) without Node, for perf.
//   build-native/switch_bench_limits [threads]
#include <cstdio>
#include <cstdlib>

#include "bench.h"
#include "../kernels/threadpool.h"

int main(int argc, char** argv) {
  using namespace st;
  using namespace st::bench;
  const int threads = argc > 1 ? std::atoi(argv[1]) : hardware_threads();
  const Isa isa = best_isa();
  std::printf("isa %s, %d threads\n", isa_name(isa), threads);
  std::printf("fma peak        %8.1f GFLOP/s\n", fma_peak(isa, threads, 7).rate);
  std::printf("memcpy 64 MiB   %8.1f GB/s (bytes copied)\n", memcpy_bandwidth(size_t{64} << 20, threads, 7).rate);
  const int64_t n = int64_t{16} << 20;  // 64 MiB of float32
  for (Bf16Direction d : {Bf16Direction::to_bf16, Bf16Direction::from_bf16})
    for (Bf16Impl impl : {Bf16Impl::reference, Bf16Impl::portable, Bf16Impl::avx2, Bf16Impl::avx512}) {
      if (impl == Bf16Impl::avx2 && !isa_supported(Isa::avx2)) continue;
      if (impl == Bf16Impl::avx512 && !isa_supported(Isa::avx512)) continue;
      const Rate r = bf16_conversion(d, n, impl, threads, 7);
      std::printf("%s %-9s %8.1f GB/s ((read + written) / 2)\n", d == Bf16Direction::to_bf16 ? "f32->bf16" : "bf16->f32",
                  impl == Bf16Impl::reference ? "reference" : impl == Bf16Impl::portable ? "portable" : impl == Bf16Impl::avx2 ? "avx2" : "avx512",
                  r.rate);
    }
  return 0;
}
