// The fast matmuls (gemm.h) against their scalar definitions: every transpose, accumulate, strided
// rows, shapes that are not multiples of the register tile, every ISA path, bit-identical results
// for 1, 2 and 3 threads, and the avx512 level's results bit-identical to the avx2 level's. M, N, K = product sizes; E = groups.
//
// Tolerance: the fast paths sum in another order (blocked, FMA), so each element may differ from
// the reference by a few roundings of its magnitude Σ|a||b|; the magnitude is computed by running
// the reference on absolute values. A wrong index or an unwritten element (outputs are poisoned
// with NaN) is off by the magnitude itself and fails.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "check.h"
#include "gemm_check.h"
#include "kernels/cpu.h"
#include "kernels/gemm.h"
#include "kernels/threadpool.h"

namespace {

using st::test::absolute;
using st::test::random_floats;
using st::test::random_int;
using st::test::rng;

const float kNaN = std::nanf("");

using st::test::compare;

const std::vector<st::Isa>& kIsas = st::test::all_isas();

// `got` (from a call with the driver's side jobs: a B panel packed by its first tile as it sums, the
// next panel's source prefetched between the FMAs) against the same call run again from `start`
// with them turned off (gemm_test_separate_packing): the same packed values in the same order, so
// the same bits. `call(out)` runs the product into out.
template <class Call>
bool same_without_side_jobs(const std::vector<float>& got, std::vector<float> start, Call&& call) {
  st::gemm_test_separate_packing(true);
  call(start);
  st::gemm_test_separate_packing(false);
  return got.empty() || std::memcmp(got.data(), start.data(), got.size() * sizeof(float)) == 0;  // (no null to memcmp)
}

// The avx512 level runs the AVX2 tiles' arithmetic on zmm registers (and the small-group tile in
// the same order): its results must be the avx2 level's bits. Called with each ISA's result in
// kIsas order; keeps avx2's and compares avx512's with it.
bool same_as_avx2(st::Isa isa, const std::vector<float>& got, std::vector<float>& avx2_bits) {
  if (isa == st::Isa::avx2) avx2_bits = got;
  if (isa != st::Isa::avx512 || avx2_bits.empty()) return true;
  return std::memcmp(got.data(), avx2_bits.data(), got.size() * sizeof(float)) == 0;
}

struct MatmulCase {
  int M, N, K;
};

// One matmul call on both paths; pad > 0 makes every leading dimension longer than the row, the
// padding holding NaN (read by mistake, it poisons the result) or, in c, a sentinel that must stay.
void check_matmul(int M, int N, int K, bool ta, bool tb, bool acc, int pad) {
  const int a_rows = ta ? K : M, a_cols = ta ? M : K;
  const int b_rows = tb ? N : K, b_cols = tb ? K : N;
  const int lda = a_cols + pad, ldb = b_cols + pad, ldc = N + pad;
  std::vector<float> a(static_cast<size_t>(std::max(a_rows, 1)) * lda, kNaN), b(static_cast<size_t>(std::max(b_rows, 1)) * ldb, kNaN);
  std::vector<float> a_abs(a.size(), 0.0f), b_abs(b.size(), 0.0f);
  const std::vector<float> av = random_floats(static_cast<size_t>(a_rows) * a_cols), bv = random_floats(static_cast<size_t>(b_rows) * b_cols);
  for (int i = 0; i < a_rows; ++i)
    for (int j = 0; j < a_cols; ++j) a[i * lda + j] = av[i * a_cols + j], a_abs[i * lda + j] = std::fabs(av[i * a_cols + j]);
  for (int i = 0; i < b_rows; ++i)
    for (int j = 0; j < b_cols; ++j) b[i * ldb + j] = bv[i * b_cols + j], b_abs[i * ldb + j] = std::fabs(bv[i * b_cols + j]);
  const size_t c_size = static_cast<size_t>(M) * ldc;
  std::vector<float> c0 = random_floats(c_size);
  const float sentinel = 12345.0f;
  for (int i = 0; i < M; ++i)
    for (int j = N; j < ldc; ++j) c0[i * ldc + j] = sentinel;
  std::vector<float> want = c0, magnitude = absolute(c0);
  st::matmul_reference(want.data(), a.data(), b.data(), M, N, K, lda, ldb, ldc, ta, tb, acc);
  st::matmul_reference(magnitude.data(), a_abs.data(), b_abs.data(), M, N, K, lda, ldb, ldc, ta, tb, acc);
  std::vector<float> avx2_bits;
  for (st::Isa isa : kIsas) {
    if (!st::set_active_isa(isa)) continue;
    std::vector<float> got = c0;
    if (!acc)
      for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) got[i * ldc + j] = kNaN;
    const std::vector<float> start = got;
    auto call = [&](std::vector<float>& out) {
      st::matmul(out.data(), a.data(), b.data(), M, N, K, lda, ldb, ldc, ta, tb, acc);
    };
    call(got);
    ST_CHECK(same_without_side_jobs(got, start, call), "matmul %s M=%d N=%d K=%d ta=%d tb=%d acc=%d pad=%d: other bits "
             "than with separate packing", st::isa_name(isa), M, N, K, ta, tb, acc, pad);
    ST_CHECK(same_as_avx2(isa, got, avx2_bits), "matmul avx512 M=%d N=%d K=%d ta=%d tb=%d acc=%d pad=%d: other bits "
             "than avx2", M, N, K, ta, tb, acc, pad);
    const int bad = compare(got.data(), want.data(), magnitude.data(), M, N, ldc, K, "matmul");
    ST_CHECK(bad == 0, "matmul %s M=%d N=%d K=%d ta=%d tb=%d acc=%d pad=%d: %d elements wrong", st::isa_name(isa), M, N, K,
             ta, tb, acc, pad, bad);
    bool padding_kept = true;
    for (int i = 0; i < M; ++i)
      for (int j = N; j < ldc; ++j) padding_kept &= got[i * ldc + j] == sentinel;
    ST_CHECK(padding_kept, "matmul %s M=%d N=%d K=%d wrote past N in a strided c", st::isa_name(isa), M, N, K);
  }
}

// Results are bit-identical for 1, 2 and 3 threads on each ISA.
void check_matmul_threads(int M, int N, int K, bool ta, bool tb) {
  const std::vector<float> a = random_floats(static_cast<size_t>(M) * K), b = random_floats(static_cast<size_t>(K) * N);
  const std::vector<float> c0 = random_floats(static_cast<size_t>(M) * N);
  for (st::Isa isa : kIsas) {
    if (!st::set_active_isa(isa)) continue;
    std::vector<float> first;
    for (int threads : {1, 2, 3}) {
      st::set_num_threads(threads);
      std::vector<float> c = c0;
      st::matmul(c.data(), a.data(), b.data(), M, N, K, ta ? M : K, tb ? K : N, N, ta, tb, true);
      if (first.empty()) first = c;
      else
        ST_CHECK(std::memcmp(first.data(), c.data(), c.size() * sizeof(float)) == 0,
                 "matmul %s M=%d N=%d K=%d: %d threads differ from 1 thread", st::isa_name(isa), M, N, K, threads);
    }
  }
}

// Offsets of E groups over `rows` rows, with some groups empty when `empties`.
std::vector<int32_t> random_offsets(int E, int rows, bool empties) {
  std::vector<int32_t> cuts(E - 1);
  for (int32_t& c : cuts) c = random_int(0, rows);
  std::sort(cuts.begin(), cuts.end());
  std::vector<int32_t> offsets{0};
  for (int32_t c : cuts) offsets.push_back(c);
  offsets.push_back(rows);
  if (!empties) {  // spread evenly instead
    for (int e = 0; e <= E; ++e) offsets[e] = static_cast<int32_t>(static_cast<int64_t>(rows) * e / E);
  }
  return offsets;
}

std::vector<int32_t> random_indices(int n, int range) {
  std::vector<int32_t> v(n);
  for (int32_t& x : v) x = random_int(0, range - 1);
  return v;
}

struct GroupedCase {
  int E, rows, K, N;
  bool empties;
};

void check_grouped(const GroupedCase& gc, bool gather, bool scatter, bool scale, bool trans_w, bool acc) {
  const int E = gc.E, rows = gc.rows, K = gc.K, N = gc.N;
  const int x_rows = gather ? rows + 3 : rows, y_rows = scatter ? std::max(1, rows / 2 + 1) : rows;
  const int ldx = K + 2, ldy = N + 1;
  std::vector<int32_t> offsets = random_offsets(E, rows, gc.empties);
  std::vector<int32_t> gather_idx = random_indices(rows, x_rows), scatter_idx = random_indices(rows, y_rows);
  std::vector<float> x = random_floats(static_cast<size_t>(x_rows) * ldx), w = random_floats(static_cast<size_t>(E) * K * N);
  std::vector<float> s = random_floats(rows), y0 = random_floats(static_cast<size_t>(y_rows) * ldy);
  std::vector<float> x_abs = absolute(x), w_abs = absolute(w), s_abs = absolute(s);
  st::GroupedMatmul g{};
  g.x = x.data();
  g.w = w.data();
  g.offsets = offsets.data();
  g.gather = gather ? gather_idx.data() : nullptr;
  g.scatter = scatter ? scatter_idx.data() : nullptr;
  g.scale = scatter && scale ? s.data() : nullptr;
  g.E = E, g.K = K, g.N = N, g.ldx = ldx, g.ldy = ldy, g.trans_w = trans_w, g.accumulate = acc;
  std::vector<float> want = y0, magnitude = absolute(y0);
  g.y = want.data();
  st::grouped_matmul_reference(g);
  st::GroupedMatmul ga = g;
  ga.x = x_abs.data(), ga.w = w_abs.data(), ga.scale = g.scale ? s_abs.data() : nullptr, ga.y = magnitude.data();
  st::grouped_matmul_reference(ga);
  const bool writes_all = !scatter && !acc;
  std::vector<float> avx2_bits;
  for (st::Isa isa : kIsas) {
    if (!st::set_active_isa(isa)) continue;
    std::vector<float> first;
    for (int threads : {1, 2, 3}) {
      st::set_num_threads(threads);
      std::vector<float> got = y0;
      if (writes_all)
        for (int i = 0; i < y_rows; ++i)
          for (int j = 0; j < N; ++j) got[i * ldy + j] = kNaN;
      const std::vector<float> start = got;
      auto call = [&](std::vector<float>& out) {
        g.y = out.data();
        st::grouped_matmul(g);
      };
      call(got);
      ST_CHECK(same_without_side_jobs(got, start, call), "grouped %s threads=%d E=%d rows=%d K=%d N=%d gather=%d "
               "scatter=%d tw=%d acc=%d: other bits than with separate packing", st::isa_name(isa), threads, E, rows, K, N,
               gather, scatter, trans_w, acc);
      const int bad = compare(got.data(), want.data(), magnitude.data(), y_rows, ldy, ldy, K * 2, "grouped");
      ST_CHECK(bad == 0, "grouped %s threads=%d E=%d rows=%d K=%d N=%d gather=%d scatter=%d scale=%d tw=%d acc=%d: %d wrong",
               st::isa_name(isa), threads, E, rows, K, N, gather, scatter, scale, trans_w, acc, bad);
      if (first.empty()) {
        first = got;
        ST_CHECK(same_as_avx2(isa, got, avx2_bits), "grouped avx512 E=%d rows=%d K=%d N=%d gather=%d scatter=%d tw=%d "
                 "acc=%d: other bits than avx2", E, rows, K, N, gather, scatter, trans_w, acc);
      } else
        ST_CHECK(std::memcmp(first.data(), got.data(), got.size() * sizeof(float)) == 0,
                 "grouped %s E=%d rows=%d K=%d N=%d scatter=%d: %d threads differ from 1", st::isa_name(isa), E, rows, K,
                 N, scatter, threads);
    }
  }
}

void check_weight_grad(const GroupedCase& gc, bool gather_x, bool gather_dy, bool acc) {
  const int E = gc.E, rows = gc.rows, K = gc.K, N = gc.N;
  const int x_rows = rows + 2, dy_rows = rows + 1, ldx = K + 3, lddy = N + 2;
  std::vector<int32_t> offsets = random_offsets(E, rows, gc.empties);
  std::vector<int32_t> gx = random_indices(rows, x_rows), gy = random_indices(rows, dy_rows);
  std::vector<float> x = random_floats(static_cast<size_t>(x_rows) * ldx), dy = random_floats(static_cast<size_t>(dy_rows) * lddy);
  std::vector<float> x_abs = absolute(x), dy_abs = absolute(dy);
  std::vector<float> dw0 = random_floats(static_cast<size_t>(E) * K * N);
  st::GroupedMatmulWeightGrad g{};
  g.x = x.data(), g.dy = dy.data(), g.offsets = offsets.data();
  g.gather_x = gather_x ? gx.data() : nullptr;
  g.gather_dy = gather_dy ? gy.data() : nullptr;
  g.E = E, g.K = K, g.N = N, g.ldx = ldx, g.lddy = lddy, g.accumulate = acc;
  std::vector<float> want = dw0, magnitude = absolute(dw0);
  g.dw = want.data();
  st::grouped_matmul_weight_grad_reference(g);
  st::GroupedMatmulWeightGrad ga = g;
  ga.x = x_abs.data(), ga.dy = dy_abs.data(), ga.dw = magnitude.data();
  st::grouped_matmul_weight_grad_reference(ga);
  std::vector<float> avx2_bits;
  for (st::Isa isa : kIsas) {
    if (!st::set_active_isa(isa)) continue;
    std::vector<float> first;
    for (int threads : {1, 2, 3}) {
      st::set_num_threads(threads);
      std::vector<float> got = dw0;
      if (!acc) std::fill(got.begin(), got.end(), kNaN);
      const std::vector<float> start = got;
      auto call = [&](std::vector<float>& out) {
        g.dw = out.data();
        st::grouped_matmul_weight_grad(g);
      };
      call(got);
      ST_CHECK(same_without_side_jobs(got, start, call), "weight_grad %s threads=%d E=%d rows=%d K=%d N=%d gx=%d gy=%d "
               "acc=%d: other bits than with separate packing", st::isa_name(isa), threads, E, rows, K, N, gather_x,
               gather_dy, acc);
      const int bad = compare(got.data(), want.data(), magnitude.data(), E * K, N, N, rows, "weight_grad");
      ST_CHECK(bad == 0, "weight_grad %s threads=%d E=%d rows=%d K=%d N=%d gx=%d gy=%d acc=%d: %d wrong",
               st::isa_name(isa), threads, E, rows, K, N, gather_x, gather_dy, acc, bad);
      if (first.empty()) {
        first = got;
        ST_CHECK(same_as_avx2(isa, got, avx2_bits), "weight_grad avx512 E=%d rows=%d K=%d N=%d gx=%d gy=%d acc=%d: "
                 "other bits than avx2", E, rows, K, N, gather_x, gather_dy, acc);
      } else
        ST_CHECK(std::memcmp(first.data(), got.data(), got.size() * sizeof(float)) == 0,
                 "weight_grad %s E=%d rows=%d: %d threads differ from 1", st::isa_name(isa), E, rows, threads);
    }
  }
}

}  // namespace

int main() {
  const bool quick = st::test::quick();
  const st::Isa best = st::active_isa();
  const int saved_threads = st::num_threads();

  // 1×1×1, below / at / past the 6 × 16 tile, K = 1, K = 0, tall/skinny, wide, M ≡ 4 mod 6 (the
  // 4-row kernel), past the depth block (512), the row block (288) and the column block (4096);
  // {500, 300, 120} and {500, 4100, 9} are large enough for the threads to share one packed B
  // (run_shared_b), {490, 70, 1100} with three depth blocks (the panels packed ahead cross into
  // the next block) and a last panel of 6 columns, {1300, 70, 600} with 5 row blocks (rounded up
  // to 6 pieces on 2 and 3 threads) and two depth blocks; {300, 90, 700} and {500, 80, 700} take
  // 700 deep in one depth block (a lone product up to 768), the second with a shared packed B.
  std::vector<MatmulCase> shapes{{1, 1, 1},   {1, 1, 7},   {7, 1, 1},     {1, 17, 1},  {5, 15, 3},    {6, 16, 1},
                                 {6, 16, 8},  {7, 17, 9},  {12, 32, 4},   {4, 5, 0},   {200, 3, 40},  {3, 300, 20},
                                 {1, 64, 300}, {64, 1, 300}, {10, 32, 300}, {64, 48, 513}, {13, 33, 257}, {150, 70, 520},
                                 {37, 4100, 5}, {500, 300, 120}, {500, 4100, 9}, {490, 70, 1100}, {70, 600, 110},
                                 {20, 400, 600}, {300, 90, 700}, {500, 80, 700}};
  if (!quick) shapes.push_back({1300, 70, 600});
  if (!quick) shapes.push_back({300, 200, 1100});
  for (int threads : {1, 2}) {
    st::set_num_threads(threads);
    for (const MatmulCase& s : shapes)
      for (int t = 0; t < 4; ++t)
        for (bool acc : {false, true}) check_matmul(s.M, s.N, s.K, t & 1, t & 2, acc, 0);
    for (const MatmulCase& s : shapes) check_matmul(s.M, s.N, s.K, random_int(0, 1), random_int(0, 1), random_int(0, 1), 3);
  }
  const std::vector<MatmulCase> thread_shapes{{150, 70, 520}, {37, 4100, 5},   {7, 200, 33},     {301, 97, 300},
                                              {64, 70, 90},   {500, 300, 120}, {500, 4100, 9},   {490, 70, 1100},
                                              {1300, 70, 600}, {70, 600, 110}, {20, 400, 600}, {300, 90, 700},
                                              {500, 80, 700}};
  for (const MatmulCase& s : thread_shapes)
    for (int t = 0; t < 4; ++t) check_matmul_threads(s.M, s.N, s.K, t & 1, t & 2);
  // The shared packed B's own-buffer panels (taken when the thread packing a panel is
  // descheduled): forced on every odd panel, the values and the bits must not change.
  st::gemm_test_pack_private_panels(true);
  st::set_num_threads(2);
  for (const MatmulCase& s : std::vector<MatmulCase>{{500, 300, 120}, {490, 70, 1100}, {500, 4100, 9}, {500, 80, 700}})
    for (int t = 0; t < 4; ++t) check_matmul(s.M, s.N, s.K, t & 1, t & 2, t == 3, 0);
  for (int t = 0; t < 4; ++t) check_matmul_threads(490, 70, 1100, t & 1, t & 2);
  st::gemm_test_pack_private_panels(false);

  // Grouped: one group, empty groups, E = 64, gather / scatter / scale, transposed weights.
  std::vector<GroupedCase> groups{{1, 1, 1, 1},    {1, 9, 5, 17},    {3, 20, 7, 33},  {4, 30, 13, 5},
                                  {8, 100, 40, 70}, {64, 300, 19, 21}, {64, 40, 8, 16}, {5, 0, 4, 4}};
  if (!quick) groups.push_back({6, 400, 300, 50});
  for (const GroupedCase& base : groups)
    for (bool empties : {false, true}) {
      GroupedCase gc = base;
      gc.empties = empties;
      for (int combo = 0; combo < 8; ++combo) {
        const bool gather = combo & 1, scatter = combo & 2, trans_w = combo & 4;
        check_grouped(gc, gather, scatter, random_int(0, 1), trans_w, random_int(0, 1));
      }
      for (int combo = 0; combo < 4; ++combo) check_weight_grad(gc, combo & 1, combo & 2, random_int(0, 1));
    }

  // The side jobs of the general driver's tiles (a full B panel of a B stored by rows packed by the
  // panel's first tile, strided or gathered; the next panel's source prefetched by the full tiles,
  // in rows or, for a transposed B, in lines that may cross into the next stored row), each case
  // also run without them (above): one row block (≤ 288 rows) or several (the first packs), fewer
  // rows than a tile (no tile packs), a last panel of fewer than 16 columns (packed separately), N
  // below 16, K below 4 and K ≢ 0 mod 4 (the kernel's single steps), two depth blocks, thin
  // transposed panels whose slices of lines cross stored rows (K = 20: two lines a row), padded
  // (NaN) leading dimensions, and grouped products past 128 rows a group (the general driver) and
  // weight gradients past 48, gathered or not.
  const std::vector<MatmulCase> side_job_shapes{{6, 16, 1},    {6, 16, 3},    {6, 32, 5},    {5, 48, 40},
                                                {6, 15, 40},   {12, 33, 7},   {250, 100, 37}, {290, 40, 90},
                                                {600, 35, 20}, {100, 64, 1100}, {64, 200, 9}, {7, 33, 800}};
  for (int threads : {1, 2}) {
    st::set_num_threads(threads);
    for (const MatmulCase& s : side_job_shapes)
      for (int t = 0; t < 4; ++t) {
        check_matmul(s.M, s.N, s.K, t & 1, t & 2, t == 1 || t == 2, 0);
        check_matmul(s.M, s.N, s.K, t & 1, t & 2, t == 0 || t == 3, 3);
      }
  }
  std::vector<GroupedCase> large_groups{{2, 520, 37, 50}, {3, 700, 20, 33}, {2, 600, 70, 17}, {1, 300, 5, 16}};
  if (!quick) large_groups.push_back({2, 700, 600, 40});
  for (const GroupedCase& gc : large_groups) {
    for (int combo = 0; combo < 8; ++combo) check_grouped(gc, combo & 1, combo & 2, combo & 1, combo & 4, combo == 3 || combo == 4);
    for (int combo = 0; combo < 4; ++combo) check_weight_grad(gc, combo & 1, combo & 2, combo == 1);
  }

  st::set_active_isa(best);
  st::set_num_threads(saved_threads);
  return st::test::summary("gemm");
}
