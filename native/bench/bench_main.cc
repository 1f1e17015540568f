// switch_bench_native: the matmul benchmarks without Node, for profiling (perf, valgrind).
//   switch_bench_native [--threads 1,2] [--compare blas] [--grouped] [--portable] [--shape MxKxN] [--repeats n]
// Prints one line per measurement: name, shape, threads, median ms, GFLOP/s.
#include <cstdio>
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

void line(const char* name, int M, int K, int N, int threads, const st::bench::Timing& t, double baseline = 0) {
  const double g = st::bench::gflops(M, K, N, t.median_seconds);
  std::printf("%-22s %5dx%5dx%5d  threads=%d  %9.3f ms  %7.1f GFLOP/s", name, M, K, N, threads, t.median_seconds * 1e3, g);
  if (baseline > 0) std::printf("  ratio=%.3f", g / baseline);
  std::printf("\n");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> threads{1, 2};
  bool blas = false, grouped = false, portable = false;
  std::vector<st::bench::Shape> shapes = st::bench::expert_shapes();
  st::bench::RunSettings settings;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--threads" && i + 1 < argc) threads = parse_list(argv[++i]);
    else if (arg == "--compare" && i + 1 < argc) blas = std::string(argv[++i]) == "blas";
    else if (arg == "--grouped") grouped = true;
    else if (arg == "--portable") portable = true;
    else if (arg == "--repeats" && i + 1 < argc) settings.repeats = std::atoi(argv[++i]);
    else if (arg == "--shape" && i + 1 < argc) {
      st::bench::Shape s{};
      std::sscanf(argv[++i], "%dx%dx%d", &s.M, &s.K, &s.N);
      shapes = {s};
    } else {
      std::fprintf(stderr, "usage: %s [--threads 1,2] [--compare blas] [--grouped] [--portable] [--shape MxKxN] [--repeats n]\n", argv[0]);
      return 2;
    }
  }
  std::printf("isa=%s\n", st::isa_name(st::active_isa()));
  if (portable) {
    // The portable path against the scalar definition, one thread, on the smallest shapes.
    const st::Isa best = st::active_isa();
    st::set_active_isa(st::Isa::portable);
    for (const auto& s : {st::bench::Shape{64, 256, 1024}, st::bench::Shape{256, 512, 256}}) {
      const auto ref = st::bench::bench_matmul_reference(s.M, s.K, s.N);
      line("reference", s.M, s.K, s.N, 1, ref);
      line("portable", s.M, s.K, s.N, 1, st::bench::bench_matmul(s.M, s.K, s.N, 1, settings),
           st::bench::gflops(s.M, s.K, s.N, ref.median_seconds));
    }
    st::set_active_isa(best);
  }
  for (const auto& s : grouped ? st::bench::grouped_shapes() : shapes) {
    for (int t : threads) {
      const auto plain = st::bench::bench_matmul(s.M, s.K, s.N, t, settings);
      line("matmul", s.M, s.K, s.N, t, plain);
      const double plain_g = st::bench::gflops(s.M, s.K, s.N, plain.median_seconds);
      if (blas)
        for (const auto& b : st::bench::system_blas())
          line(b.name.c_str(), s.M, s.K, s.N, t, st::bench::bench_blas_sgemm(b, s.M, s.K, s.N, t, settings), plain_g);
      if (grouped)
        for (int E : {8, 64}) {
          char name[64];
          using V = st::bench::GroupedVariant;
          const struct { V v; const char* n; } variants[] = {
              {V::folded, "grouped"}, {V::folded_scatter, "grouped+scatter"}, {V::gather_then_matmul, "gather-then-matmul"}};
          for (const auto& v : variants) {
            std::snprintf(name, sizeof name, "%s E=%d", v.n, E);
            line(name, s.M, s.K, s.N, t, st::bench::bench_grouped(s.M, s.K, s.N, E, t, v.v, settings), plain_g);
          }
        }
    }
  }
  return 0;
}
