// Matmul benchmark routines, timed in C++ (timing.h): the plain matmul, the grouped expert matmul
// with its gather folded into the packing, gather-then-matmul (an explicit copy, then one matmul
// per group) for comparison, and the system BLAS's cblas_sgemm loaded at run time with dlopen.
// Shared by the addon (benchMatmul, benchGroupedMatmul, benchBlasSgemm) and switch_bench_native.
// M, K, N = product sizes (C (M, N) = A (M, K) · B (K, N)); E = groups.
#pragma once

#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "../kernels/cpu.h"
#include "../kernels/gemm.h"
#include "../kernels/gemm_kernels.h"
#include "../kernels/threadpool.h"
#include "timing.h"

namespace st::bench {

inline std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// Sets the pool's thread count for the lifetime of the guard.
struct ThreadsGuard {
  int saved;
  explicit ThreadsGuard(int n) : saved(num_threads()) { set_num_threads(n); }
  ~ThreadsGuard() { set_num_threads(saved); }
};

struct RunSettings {
  int warmup = 2;
  int repeats = 7;
  double min_seconds = 0.3;
};

// st::matmul on fresh random operands.
inline Timing bench_matmul(int M, int K, int N, int threads, const RunSettings& s = {}) {
  ThreadsGuard guard(threads);
  const std::vector<float> a = random_floats(static_cast<size_t>(M) * K, 1), b = random_floats(static_cast<size_t>(K) * N, 2);
  std::vector<float> c(static_cast<size_t>(M) * N);
  return time_median([&] { matmul(c.data(), a.data(), b.data(), M, N, K, K, N, N, false, false, false); }, s.warmup,
                     s.repeats, s.min_seconds);
}

// The scalar definition (one thread), for the portable path's speed-up.
inline Timing bench_matmul_reference(int M, int K, int N, const RunSettings& s = {}) {
  const std::vector<float> a = random_floats(static_cast<size_t>(M) * K, 1), b = random_floats(static_cast<size_t>(K) * N, 2);
  std::vector<float> c(static_cast<size_t>(M) * N);
  return time_median([&] { matmul_reference(c.data(), a.data(), b.data(), M, N, K, K, N, N, false, false, false); },
                     1, 3, 0.0);
}

enum class GroupedVariant { folded, folded_scatter, gather_then_matmul };

// M rows of X routed to E groups of M / E rows each through a random permutation (the index list
// of a dispatch), each group times its own W[e] (K, N). `folded`: grouped_matmul with the gather in
// the packing; `folded_scatter`: the same with the rows also scattered back, times a gate, into
// token order (the combine); `gather_then_matmul`: copy the gathered rows, then one matmul per group.
inline Timing bench_grouped(int M, int K, int N, int E, int threads, GroupedVariant variant, const RunSettings& s = {}) {
  ThreadsGuard guard(threads);
  const std::vector<float> x = random_floats(static_cast<size_t>(M) * K, 3);
  const std::vector<float> w = random_floats(static_cast<size_t>(E) * K * N, 4);
  const std::vector<float> gate = random_floats(static_cast<size_t>(M), 5);
  std::vector<float> y(static_cast<size_t>(M) * N);
  std::vector<int32_t> order(M), offsets(E + 1);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(6));
  for (int e = 0; e <= E; ++e) offsets[e] = static_cast<int32_t>(static_cast<int64_t>(M) * e / E);
  if (variant == GroupedVariant::gather_then_matmul) {
    std::vector<float> gathered(static_cast<size_t>(M) * K);
    return time_median([&] {
      for (int i = 0; i < M; ++i)
        std::copy_n(x.data() + static_cast<int64_t>(order[i]) * K, K, gathered.data() + static_cast<int64_t>(i) * K);
      for (int e = 0; e < E; ++e) {
        const int rows = offsets[e + 1] - offsets[e];
        matmul(y.data() + static_cast<int64_t>(offsets[e]) * N, gathered.data() + static_cast<int64_t>(offsets[e]) * K,
               w.data() + static_cast<int64_t>(e) * K * N, rows, N, K, K, N, N, false, false, false);
      }
    }, s.warmup, s.repeats, s.min_seconds);
  }
  GroupedMatmul g{};
  g.y = y.data();
  g.x = x.data();
  g.w = w.data();
  g.offsets = offsets.data();
  g.gather = order.data();
  g.E = E;
  g.K = K;
  g.N = N;
  g.ldx = K;
  g.ldy = N;
  if (variant == GroupedVariant::folded_scatter) {
    // The combine: rows come back to token order, x is already in dispatched order.
    g.gather = nullptr;
    g.scatter = order.data();
    g.scale = gate.data();
  }
  return time_median([&] { grouped_matmul(g); }, s.warmup, s.repeats, s.min_seconds);
}

// The six expert matmuls of a Switch layer's training step (switch_experts.cc), each alone:
// T tokens dispatched to E experts of up to `capacity` rows (the counts below), D = d_model,
// F = d_ff. Step s: 0 up x·W_in (gathered), 1 down h·W_out, 2 dW_out = hᵀ·dy, 3 dh = dy·W_outᵀ,
// 4 dW_in = xᵀ·dh (gathered), 5 dx = dh·W_inᵀ. Every step is 2·R·D·F flops.
struct LayerMatmuls {
  int T, D, F, E;
  std::vector<int32_t> offsets, row_token;
  std::vector<float> x, w_in, w_out, h, dy, dh, out, dw_in, dw_out, dx;
  LayerMatmuls(int T_, int D_, int F_, int E_) : T(T_), D(D_), F(F_), E(E_) {
    // Up to T / E rows per expert, a few short of it as a capacity-limited routing leaves them.
    offsets.assign(E + 1, 0);
    for (int e = 0; e < E; ++e) offsets[e + 1] = offsets[e] + T / E - (e * 7) % 17;
    const int R = offsets[E];
    row_token.resize(R);
    std::vector<int32_t> order(T);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937(9));
    std::copy_n(order.begin(), R, row_token.begin());
    x = random_floats(static_cast<size_t>(T) * D, 10);
    w_in = random_floats(static_cast<size_t>(E) * D * F, 11);
    w_out = random_floats(static_cast<size_t>(E) * F * D, 12);
    h = random_floats(static_cast<size_t>(R) * F, 13);
    dy = random_floats(static_cast<size_t>(R) * D, 14);
    dh = random_floats(static_cast<size_t>(R) * F, 15);
    out.resize(static_cast<size_t>(R) * F);
    dx.resize(static_cast<size_t>(R) * D);
    dw_in.resize(w_in.size());
    dw_out.resize(w_out.size());
  }
  int rows() const { return offsets[E]; }
  double flops() const { return 2.0 * rows() * D * F; }
  static const char* name(int step) {
    static const char* names[] = {"up x*W_in", "down h*W_out", "dW_out h'*dy", "dh dy*W_out'", "dW_in x'*dh", "dx dh*W_in'"};
    return names[step];
  }
  void run(int step) {
    if (step == 2 || step == 4) {
      GroupedMatmulWeightGrad g{};
      g.offsets = offsets.data();
      g.E = E;
      if (step == 2) g.dw = dw_out.data(), g.x = h.data(), g.dy = dy.data(), g.K = F, g.N = D, g.ldx = F, g.lddy = D;
      else g.dw = dw_in.data(), g.x = x.data(), g.dy = dh.data(), g.gather_x = row_token.data(), g.K = D, g.N = F, g.ldx = D, g.lddy = F;
      grouped_matmul_weight_grad(g);
      return;
    }
    GroupedMatmul g{};
    g.offsets = offsets.data();
    g.E = E;
    switch (step) {
      case 0: g.y = out.data(), g.x = x.data(), g.w = w_in.data(), g.gather = row_token.data(), g.K = D, g.N = F; break;
      case 1: g.y = dx.data(), g.x = h.data(), g.w = w_out.data(), g.K = F, g.N = D; break;
      case 3: g.y = out.data(), g.x = dy.data(), g.w = w_out.data(), g.K = D, g.N = F, g.trans_w = true; break;
      default: g.y = dx.data(), g.x = dh.data(), g.w = w_in.data(), g.K = F, g.N = D, g.trans_w = true; break;
    }
    g.ldx = g.K;
    g.ldy = g.N;
    grouped_matmul(g);
  }
};

// The micro-kernel alone on panels that stay in L1, on every thread: the arithmetic ceiling of
// the tile (12 FMA chains per k step), i.e. the FMA peak as the matmul can use it. GFLOP/s.
inline double bench_kernel_ceiling(int threads, const RunSettings& s = {}) {
  ThreadsGuard guard(threads);
  const gemm::MicroKernel kernel = active_isa() >= Isa::avx2 ? gemm::micro_kernel_avx2 : gemm::micro_kernel_sse2;
  constexpr int kc = 256, calls = 2000;
  const std::vector<float> a = random_floats(gemm::MR * kc, 7), b = random_floats(gemm::NR * kc, 8);
  std::vector<std::vector<float>> c(threads, std::vector<float>(gemm::MR * gemm::NR));
  const Timing t = time_median([&] {
    parallel_for(threads, [&](int64_t task, int) {
      for (int i = 0; i < calls; ++i) kernel(kc, a.data(), b.data(), c[task].data(), gemm::NR, false);
    });
  }, s.warmup, s.repeats, s.min_seconds);
  return 2.0 * gemm::MR * gemm::NR * kc * calls * threads / t.median_seconds * 1e-9;
}

// ---- the system BLAS, loaded at run time ----

enum CblasOrder { CblasRowMajor = 101 };
enum CblasTranspose { CblasNoTrans = 111 };
using CblasSgemm = void (*)(int order, int trans_a, int trans_b, int M, int N, int K, float alpha, const float* a,
                            int lda, const float* b, int ldb, float beta, float* c, int ldc);

struct Blas {
  std::string name;     // "openblas" | "blis"
  std::string library;  // the soname loaded
  CblasSgemm sgemm = nullptr;
  void (*set_threads)(int) = nullptr;
};

// The BLAS libraries present on this machine (Debian's libopenblas0 and libblis4), each loaded
// once and kept; RTLD_DEEPBIND keeps each library's cblas_sgemm calling into its own internals.
inline const std::vector<Blas>& system_blas() {
  static const std::vector<Blas> found = [] {
    std::vector<Blas> out;
    struct Candidate {
      const char* name;
      const char* soname;
      const char* set_threads;
    };
    const Candidate candidates[] = {{"openblas", "libopenblas.so.0", "openblas_set_num_threads"},
                                    {"blis", "libblis.so.4", "bli_thread_set_num_threads"}};
    for (const Candidate& c : candidates) {
      void* handle = dlopen(c.soname, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (!handle) continue;
      Blas blas;
      blas.name = c.name;
      blas.library = c.soname;
      blas.sgemm = reinterpret_cast<CblasSgemm>(dlsym(handle, "cblas_sgemm"));
      if (std::string(c.name) == "blis") {
        auto* set = reinterpret_cast<void (*)(long)>(dlsym(handle, c.set_threads));  // BLIS takes a dim_t
        static void (*blis_set)(long) = nullptr;
        blis_set = set;
        blas.set_threads = set ? +[](int n) { blis_set(n); } : nullptr;
      } else {
        blas.set_threads = reinterpret_cast<void (*)(int)>(dlsym(handle, c.set_threads));
      }
      if (blas.sgemm && blas.set_threads) out.push_back(blas);
    }
    return out;
  }();
  return found;
}

inline Timing bench_blas_sgemm(const Blas& blas, int M, int K, int N, int threads, const RunSettings& s = {}) {
  blas.set_threads(threads);
  const std::vector<float> a = random_floats(static_cast<size_t>(M) * K, 1), b = random_floats(static_cast<size_t>(K) * N, 2);
  std::vector<float> c(static_cast<size_t>(M) * N);
  return time_median([&] {
    blas.sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a.data(), K, b.data(), N, 0.0f, c.data(), N);
  }, s.warmup, s.repeats, s.min_seconds);
}

// The expert shapes of the benchmark (M × K × N).
struct Shape {
  int M, K, N;
};
inline const std::vector<Shape>& expert_shapes() {
  static const std::vector<Shape> shapes{{64, 256, 1024},  {256, 512, 2048},  {256, 2048, 512},
                                         {1024, 768, 3072}, {1024, 3072, 768}, {4096, 1024, 4096}};
  return shapes;
}
// Grouped shapes: M routed rows in total, every group with its own (K, N) weight; all E groups'
// weights must fit in memory (E = 64 at 4096 × 1024 × 4096 would need 4 GB), so the grouped
// table uses the Switch layer's two products at T = 4096 tokens, D = 512, F = 2048.
inline const std::vector<Shape>& grouped_shapes() {
  static const std::vector<Shape> shapes{{4096, 512, 2048}, {4096, 2048, 512}};
  return shapes;
}

inline double gflops(int M, int K, int N, double seconds) { return 2.0 * M * K * N / seconds * 1e-9; }

}  // namespace st::bench
