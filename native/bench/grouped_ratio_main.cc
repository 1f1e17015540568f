// The grouped expert matmul against the plain matmul on the same total work (the gemm suite's
// `grouped E=..` rows and their ratioToMatmul), with the grouped call timed on its small-group
// path (gemm_grouped.cc) and on the general driver in the same interleaved rounds: a before/after
// of the small path in one process. M = rows, K = depth, N = columns, E = groups (M / E rows each,
// gathered from x in a random order as a dispatch does; --scatter adds each row, times a gate,
// into y in that order instead). Built as switch_bench_grouped_ratio:
//   switch_bench_grouped_ratio M K N E [threads] [rounds] [--scatter]
//   e.g. ST_BENCH_CPU_TIME=1 switch_bench_grouped_ratio 4096 512 2048 64 1 9
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "../kernels/cpu.h"
#include "../kernels/gemm.h"
#include "../kernels/gemm_grouped.h"
#include "../kernels/threadpool.h"
#include "timing.h"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<const char*> args;
  bool scatter = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--scatter") == 0) scatter = true;
    else args.push_back(argv[i]);
  }
  if (args.size() < 4) {
    std::fprintf(stderr, "usage: %s M K N E [threads] [rounds] [--scatter]\n", argv[0]);
    return 2;
  }
  const int M = std::atoi(args[0]), K = std::atoi(args[1]), N = std::atoi(args[2]), E = std::atoi(args[3]);
  const int threads = args.size() > 4 ? std::atoi(args[4]) : st::hardware_threads();
  const int rounds = args.size() > 5 ? std::atoi(args[5]) : 7;
  if (M <= 0 || K <= 0 || N <= 0 || E <= 0 || threads <= 0 || rounds <= 0) {
    std::fprintf(stderr, "M, K, N, E, threads and rounds must be positive\n");
    return 2;
  }
  st::set_num_threads(threads);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(M) * K), w(static_cast<size_t>(E) * K * N), w1(static_cast<size_t>(K) * N);
  std::vector<float> y(static_cast<size_t>(M) * N), gate(M);
  for (float& v : x) v = u(rng);
  for (float& v : w) v = u(rng);
  for (float& v : w1) v = u(rng);
  for (float& v : gate) v = u(rng);
  std::vector<int32_t> order(M), offsets(E + 1);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  for (int e = 0; e <= E; ++e) offsets[e] = static_cast<int32_t>(static_cast<int64_t>(M) * e / E);
  st::GroupedMatmul g{};
  g.y = y.data(), g.x = x.data(), g.w = w.data(), g.offsets = offsets.data(), g.gather = order.data();
  if (scatter) g.scatter = order.data(), g.scale = gate.data();
  g.E = E, g.K = K, g.N = N, g.ldx = K, g.ldy = N;
  auto plain = [&] { st::matmul(y.data(), x.data(), w1.data(), M, N, K, K, N, N, false, false, false); };
  auto grouped = [&] { st::grouped_matmul(g); };
  // The small path on the best ISA and, when that is avx512, on avx2 too (its wide tile against
  // the AVX2 tile, in the same rounds); the per-round ratio of the two as well.
  const st::Isa best = st::active_isa();
  const bool ab = best == st::Isa::avx512;
  std::vector<double> t_plain, t_small, t_small_avx2, t_general, isa_ratio;
  for (int r = 0; r < rounds; ++r) {
    t_plain.push_back(st::bench::time_median(plain, 1, 3, 0.0).median_seconds);
    st::set_grouped_small_path(true);
    t_small.push_back(st::bench::time_median(grouped, 1, 3, 0.0).median_seconds);
    if (ab) {
      st::set_active_isa(st::Isa::avx2);
      t_small_avx2.push_back(st::bench::time_median(grouped, 1, 3, 0.0).median_seconds);
      st::set_active_isa(best);
      isa_ratio.push_back(t_small_avx2.back() / t_small.back());
    }
    st::set_grouped_small_path(false);
    t_general.push_back(st::bench::time_median(grouped, 1, 3, 0.0).median_seconds);
  }
  st::set_grouped_small_path(true);
  const double flop = 2.0 * M * K * N, p = median(t_plain), s = median(t_small), gn = median(t_general);
  std::printf("%dx%dx%d E=%d%s threads=%d, medians of %d interleaved rounds (%s)\n", M, K, N, E, scatter ? " scatter" : "",
              threads, rounds, std::getenv("ST_BENCH_CPU_TIME") ? "CPU time" : "wall clock");
  std::printf("matmul %.1f GFLOP/s | small path %.1f GFLOP/s, %.3f of matmul | general %.1f GFLOP/s, %.3f of matmul\n",
              flop / p * 1e-9, flop / s * 1e-9, p / s, flop / gn * 1e-9, p / gn);
  std::printf("isa %s\n", st::isa_name(best));
  if (ab) {
    const double s2 = median(t_small_avx2);
    std::printf("small path on avx2 %.1f GFLOP/s, %.3f of matmul | avx512/avx2 speed-up, median of per-round ratios %.3f\n",
                flop / s2 * 1e-9, p / s2, median(isa_ratio));
  }
  return 0;
}
