// The six expert matmuls of a Switch layer training step (2 forward, 4 backward) on the grouped
// matmul, each timed on its small-group path (gemm_grouped.cc) and on the general driver in
// interleaved rounds: where an E = 64 or 128 step spends its matmul time, and what the small path
// changes (dh and dx, with transposed weights, never take it: their two columns time the same
// general driver, a reading of the noise). Built as switch_bench_grouped (CMake builds native/bench/<name>_main.cc into
// switch_bench_<name>). T = tokens, D = d_model, F = d_ff, E = experts, C = capacity, R = rows.
//   switch_bench_grouped T D F E capacity_factor [threads] [rounds]
//   e.g. switch_bench_grouped 1024 256 1024 64 2 2     (the layer suite's E = 64 shape)
// Routing: each token to a uniformly random expert, kept while the expert has fewer than C rows.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "../kernels/gemm.h"
#include "../kernels/gemm_grouped.h"
#include "../kernels/threadpool.h"
#include "timing.h"

namespace {

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: %s T D F E capacity_factor [threads] [rounds]\n", argv[0]);
    return 2;
  }
  const int T = std::atoi(argv[1]), D = std::atoi(argv[2]), F = std::atoi(argv[3]), E = std::atoi(argv[4]);
  const double cf = std::atof(argv[5]);
  const int threads = argc > 6 ? std::atoi(argv[6]) : st::hardware_threads();
  const int rounds = argc > 7 ? std::atoi(argv[7]) : 7;
  if (T <= 0 || D <= 0 || F <= 0 || E <= 0 || cf <= 0 || threads <= 0 || rounds <= 0) {
    std::fprintf(stderr, "T, D, F, E, capacity_factor, threads and rounds must be positive\n");
    return 2;
  }
  st::set_num_threads(threads);
  const int C = std::max(4, std::min(T, static_cast<int>(T * cf / E)));
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> pick(0, E - 1);
  std::vector<std::vector<int32_t>> rows(E);
  for (int t = 0; t < T; ++t) {
    const int e = pick(rng);
    if (static_cast<int>(rows[e].size()) < C) rows[e].push_back(t);
  }
  std::vector<int32_t> offsets{0}, row_token;
  for (const auto& r : rows) {
    row_token.insert(row_token.end(), r.begin(), r.end());
    offsets.push_back(static_cast<int32_t>(row_token.size()));
  }
  const int R = offsets.back();
  const std::vector<float> x = random_floats(static_cast<size_t>(T) * D, 2);
  const std::vector<float> w_in = random_floats(static_cast<size_t>(E) * D * F, 3), w_out = random_floats(static_cast<size_t>(E) * F * D, 4);
  const std::vector<float> h = random_floats(static_cast<size_t>(R) * F, 5), dout = random_floats(static_cast<size_t>(R) * D, 6);
  std::vector<float> dh = random_floats(static_cast<size_t>(R) * F, 7);
  std::vector<float> h_pre(static_cast<size_t>(R) * F), out(static_cast<size_t>(R) * D), dx(static_cast<size_t>(R) * D);
  // The gradients 64-byte aligned, as the layers' reused buffers are (Workspace): rows of whole
  // cache lines, which the weight gradients' non-temporal kernel needs.
  struct Aligned {
    float* p;
    explicit Aligned(size_t n) : p(static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64))) {
      std::fill(p, p + n, 0.0f);
    }
    ~Aligned() { std::free(p); }
    float* data() const { return p; }
  };
  const Aligned dw_in(static_cast<size_t>(E) * D * F), dw_out(static_cast<size_t>(E) * F * D);

  auto product = [&](float* y, const float* xs, const float* w, const int32_t* gather, int K, int N, bool trans_w) {
    st::GroupedMatmul g{};
    g.y = y, g.x = xs, g.w = w, g.offsets = offsets.data(), g.gather = gather;
    g.E = E, g.K = K, g.N = N, g.ldx = K, g.ldy = N, g.trans_w = trans_w;
    st::grouped_matmul(g);
  };
  auto weight_grad = [&](float* dw, const float* xs, const float* dy, const int32_t* gather_x, int K, int N) {
    st::GroupedMatmulWeightGrad g{};
    g.dw = dw, g.x = xs, g.dy = dy, g.offsets = offsets.data(), g.gather_x = gather_x;
    g.E = E, g.K = K, g.N = N, g.ldx = K, g.lddy = N;
    st::grouped_matmul_weight_grad(g);
  };
  const std::vector<std::pair<std::string, std::function<void()>>> matmuls{
      {"up      h_pre = x[rows] W_in", [&] { product(h_pre.data(), x.data(), w_in.data(), row_token.data(), D, F, false); }},
      {"down    out = h W_out", [&] { product(out.data(), h.data(), w_out.data(), nullptr, F, D, false); }},
      {"dh      dout W_out^T", [&] { product(dh.data(), dout.data(), w_out.data(), nullptr, D, F, true); }},
      {"dW_out  h^T dout", [&] { weight_grad(dw_out.data(), h.data(), dout.data(), nullptr, F, D); }},
      {"dW_in   x[rows]^T dh", [&] { weight_grad(dw_in.data(), x.data(), dh.data(), row_token.data(), D, F); }},
      {"dx      dh W_in^T", [&] { product(dx.data(), dh.data(), w_in.data(), nullptr, F, D, true); }},
  };
  const double flop = 2.0 * R * D * F, weight_bytes = 4.0 * E * D * F;
  std::printf("T=%d D=%d F=%d E=%d C=%d R=%d threads=%d, each weight %.0f MB; medians over %d interleaved rounds\n", T, D,
              F, E, C, R, threads, weight_bytes / 1e6, rounds);
  std::printf("%-28s %10s %9s %10s %9s %11s %8s\n", "matmul", "general ms", "GFLOP/s", "small ms", "GFLOP/s",
              "weight GB/s", "speedup");
  double total_general = 0, total_small = 0;
  for (const auto& [name, fn] : matmuls) {
    std::vector<double> general, small, ratio;
    for (int r = 0; r < rounds; ++r) {
      st::set_grouped_small_path(false);
      const double g = st::bench::time_median(fn, 1, 3, 0.0).median_seconds;
      st::set_grouped_small_path(true);
      const double s = st::bench::time_median(fn, 1, 3, 0.0).median_seconds;
      general.push_back(g), small.push_back(s), ratio.push_back(g / s);
    }
    const double g = median(general), s = median(small);
    total_general += g, total_small += s;
    std::printf("%-28s %10.3f %9.1f %10.3f %9.1f %11.1f %8.2f\n", name.c_str(), g * 1e3, flop / g * 1e-9, s * 1e3,
                flop / s * 1e-9, weight_bytes / s * 1e-9, median(ratio));
  }
  std::printf("%-28s %10.3f %9.1f %10.3f %9.1f\n", "all six", total_general * 1e3, 6 * flop / total_general * 1e-9,
              total_small * 1e3, 6 * flop / total_small * 1e-9);
  return 0;
}
