// The matmul benchmarks without Node, for profiling (perf, valgrind): built as switch_bench_native
// here (CMake builds native/bench/*.cc into it; this is the only main of the folder on this branch).
//   switch_bench_native [--threads 1,2] [--compare blas] [--grouped] [--experts 8,64] [--portable] [--peak]
//                       [--shape MxKxN] [--repeats n] [--rounds n]
// Prints one line per contender: median GFLOP/s over rounds, and the ratio to our matmul.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gemm_bench.h"

namespace {

std::vector<int> parse_list(const char* s) {
  std::vector<int> out;
  for (const char* p = s; *p;) {
    out.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return out;
}

// ratio: for a BLAS line, our matmul's rate over the BLAS's; for a grouped line, its rate over the plain matmul's.
double line(const char* name, int M, int K, int N, int threads, const st::bench::Timing& t, double ours = 0,
            bool ours_over_this = false) {
  const double g = st::bench::gflops(M, K, N, t.median_seconds);
  std::printf("%-26s %5dx%5dx%5d  threads=%d  %9.3f ms  %7.1f GFLOP/s  (best %.1f)", name, M, K, N, threads,
              t.median_seconds * 1e3, g, st::bench::gflops(M, K, N, t.min_seconds));
  if (ours > 0) std::printf("  %s=%.3f", ours_over_this ? "ours/this" : "this/plain", ours_over_this ? ours / g : g / ours);
  std::printf("\n");
  std::fflush(stdout);
  return g;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> threads{1, 2};
  bool blas = false, grouped = false, portable = false, peak = false, layer = false;
  std::vector<st::bench::Shape> shapes;
  std::vector<int> experts{8, 64};
  int rounds = 3;
  st::bench::RunSettings settings;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--threads" && i + 1 < argc) threads = parse_list(argv[++i]);
    else if (arg == "--compare" && i + 1 < argc) blas = std::string(argv[++i]) == "blas";
    else if (arg == "--grouped") grouped = true;
    else if (arg == "--layer") layer = true;
    else if (arg == "--experts" && i + 1 < argc) experts = parse_list(argv[++i]);
    else if (arg == "--portable") portable = true;
    else if (arg == "--peak") peak = true;
    else if (arg == "--repeats" && i + 1 < argc) settings.repeats = std::atoi(argv[++i]);
    else if (arg == "--rounds" && i + 1 < argc) rounds = std::atoi(argv[++i]);
    else if (arg == "--shape" && i + 1 < argc) {
      st::bench::Shape s{};
      std::sscanf(argv[++i], "%dx%dx%d", &s.M, &s.K, &s.N);
      shapes = {s};
    } else {
      std::fprintf(stderr, "usage: %s [--threads 1,2] [--compare blas] [--grouped] [--portable] [--peak] [--experts 8,64] [--shape MxKxN] [--layer] [--repeats n] [--rounds n]\n", argv[0]);
      return 2;
    }
  }
  std::printf("isa=%s\n", st::isa_name(st::active_isa()));
  if (peak)
    for (int t : threads)
      std::printf("micro-kernel in L1 (ceiling)  threads=%d  %7.1f GFLOP/s\n", t, st::bench::bench_kernel_ceiling(t, settings));
  if (portable) {
    // The portable path against the scalar definition, one thread, on the smallest shapes.
    const st::Isa best = st::active_isa();
    st::set_active_isa(st::Isa::portable);
    for (const auto& s : {st::bench::Shape{64, 256, 1024}, st::bench::Shape{256, 512, 256}}) {
      const auto ref = st::bench::bench_matmul_reference(s.M, s.K, s.N);
      line("reference", s.M, s.K, s.N, 1, ref);
      const double ref_g = st::bench::gflops(s.M, s.K, s.N, ref.median_seconds);
      const double g = line("portable", s.M, s.K, s.N, 1, st::bench::bench_matmul(s.M, s.K, s.N, 1, settings));
      std::printf("  portable / reference = %.1fx\n", g / ref_g);
    }
    st::set_active_isa(best);
  }
  if (layer) {
    // The Switch layer's six expert matmuls at T=4096 D=768 F=3072 E=16, each alone, rounds interleaved.
    st::bench::LayerMatmuls L(4096, 768, 3072, 16);
    for (int t : threads) {
      st::bench::ThreadsGuard guard(t);
      std::vector<std::vector<double>> rates(6);
      for (int round = 0; round < rounds; ++round)
        for (int step = 0; step < 6; ++step)
          rates[step].push_back(L.flops() / st::bench::time_median([&] { L.run(step); }, settings.warmup, settings.repeats,
                                                                   settings.min_seconds).median_seconds * 1e-9);
      double total = 0;
      for (int step = 0; step < 6; ++step) {
        const double g = median(rates[step]);
        total += L.flops() / g * 1e-9;
        std::printf("layer E=16 %-14s R=%d  threads=%d  %7.1f GFLOP/s (median of %d rounds, best %.1f)\n", st::bench::LayerMatmuls::name(step),
                    L.rows(), t, g, rounds, *std::max_element(rates[step].begin(), rates[step].end()));
      }
      std::printf("layer E=16 six matmuls      threads=%d  %7.1f GFLOP/s  %.2f ms\n", t, 6 * L.flops() / total * 1e-9, total * 1e3);
      std::fflush(stdout);
    }
    return 0;
  }
  if (shapes.empty()) shapes = grouped ? st::bench::grouped_shapes() : st::bench::expert_shapes();
  // Each round runs every contender once (a median of repeats); rounds interleave the contenders
  // so that a slow spell of the shared machine hits them alike. Reported: the median over rounds
  // of each rate and of each per-round ratio.
  using V = st::bench::GroupedVariant;
  for (const auto& s : shapes) {
    for (int t : threads) {
      struct Contender {
        std::string name;
        std::function<st::bench::Timing()> run;
        int kind;  // 0 = our matmul, 1 = a BLAS (ratio ours / this), 2 = grouped (ratio this / ours)
        std::vector<double> rates, ratios;
      };
      std::vector<Contender> contenders;
      contenders.push_back({"matmul", [&] { return st::bench::bench_matmul(s.M, s.K, s.N, t, settings); }, 0, {}, {}});
      if (blas)
        for (const auto& b : st::bench::system_blas())
          contenders.push_back({b.name, [&, bp = &b] { return st::bench::bench_blas_sgemm(*bp, s.M, s.K, s.N, t, settings); }, 1, {}, {}});
      if (grouped)
        for (int E : experts) {
          const struct { V v; const char* n; } variants[] = {
              {V::folded, "grouped"}, {V::folded_scatter, "grouped+scatter"}, {V::gather_then_matmul, "gather-then-matmul"}};
          for (const auto& v : variants)
            contenders.push_back({std::string(v.n) + " E=" + std::to_string(E),
                                  [&, E, which = v.v] { return st::bench::bench_grouped(s.M, s.K, s.N, E, t, which, settings); }, 2, {}, {}});
        }
      for (int round = 0; round < rounds; ++round) {
        double ours = 0;
        for (Contender& c : contenders) {
          const double g = st::bench::gflops(s.M, s.K, s.N, c.run().median_seconds);
          c.rates.push_back(g);
          if (c.kind == 0) ours = g;
          else c.ratios.push_back(c.kind == 1 ? ours / g : g / ours);
        }
      }
      for (Contender& c : contenders) {
        std::printf("%-26s %5dx%5dx%5d  threads=%d  %7.1f GFLOP/s (median of %d rounds, best %.1f)", c.name.c_str(), s.M,
                    s.K, s.N, t, median(c.rates), rounds, *std::max_element(c.rates.begin(), c.rates.end()));
        if (c.kind == 1) std::printf("  ours/this=%.3f", median(c.ratios));
        if (c.kind == 2) std::printf("  this/matmul=%.3f", median(c.ratios));
        std::printf("\n");
      }
      std::fflush(stdout);
    }
  }
  return 0;
}
