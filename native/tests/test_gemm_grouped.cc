// The grouped expert matmuls (gemm.h) on both of their paths — the small-group path
// (gemm_grouped.cc: products with W as stored and weight gradients, few rows per group) and the
// general driver — against the scalar definitions: groups of 0, 1 and odd row counts, groups at
// the size limits and past them, gathers, scatter with and without scale, transposed weights
// (never on the small path: checked on the general driver), accumulate, strided rows,
// depths and widths past the small path's blocks, unaligned weight gradients, both ISAs, and
// bit-identical results for 1, 2 and 3 threads. E = groups, K = depth, N = columns.
//
// Tolerance as in test_gemm.cc: each element within a few roundings of its magnitude Σ|x||w|
// (the reference run on absolute values); outputs that must be written are poisoned with NaN.
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
#include "kernels/gemm_grouped.h"
#include "kernels/threadpool.h"

namespace {

using st::test::absolute;
using st::test::random_floats;
using st::test::random_int;
using st::test::rng;

std::vector<int32_t> random_indices(int n, int range) {
  std::vector<int32_t> v(n);
  for (int32_t& x : v) x = random_int(0, range - 1);
  return v;
}

const float kNaN = std::nanf("");
const std::vector<st::Isa>& kIsas = st::test::all_isas();

using st::test::compare;

// A case: the rows of each group, and the product's depth and width.
struct Case {
  std::vector<int> rows;
  int K, N;
};

std::vector<int32_t> offsets_of(const std::vector<int>& rows) {
  std::vector<int32_t> offsets{0};
  for (int r : rows) offsets.push_back(offsets.back() + r);
  return offsets;
}

// Every group has at most `most` rows.
bool groups_within(const std::vector<int>& rows, int most) {
  return std::all_of(rows.begin(), rows.end(), [&](int r) { return r <= most; });
}

void check_grouped(const Case& c, bool gather, bool scatter, bool scale, bool trans_w, bool acc) {
  const int E = static_cast<int>(c.rows.size()), K = c.K, N = c.N;
  const std::vector<int32_t> offsets = offsets_of(c.rows);
  const int rows = offsets.back();
  const int x_rows = gather ? rows + 3 : std::max(rows, 1), y_rows = scatter ? std::max(1, rows / 2 + 1) : std::max(rows, 1);
  const int ldx = K + 2, ldy = N + 1;
  const std::vector<int32_t> gather_idx = random_indices(rows, x_rows), scatter_idx = random_indices(rows, y_rows);
  const std::vector<float> x = random_floats(static_cast<size_t>(x_rows) * ldx), w = random_floats(static_cast<size_t>(E) * K * N);
  const std::vector<float> s = random_floats(rows), y0 = random_floats(static_cast<size_t>(y_rows) * ldy);
  const std::vector<float> x_abs = absolute(x), w_abs = absolute(w), s_abs = absolute(s);
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
  for (bool small : {true, false}) {
    st::set_grouped_small_path(small);
    // A transposed weight never takes the small path: its products run on the general driver
    // whichever setting, and are checked here all the same.
    const bool applies = small && !trans_w && groups_within(c.rows, st::kGroupedStoredMaxRows);
    ST_CHECK(st::grouped_matmul_small_applies(g) == applies,
             "grouped E=%d K=%d N=%d tw=%d: the small path applies where it should", E, K, N, trans_w);
    // The SIMD ISAs sum every element in the same order (the AVX-512 wide tile included), so
    // avx512 gives avx2's bits.
    std::vector<float> simd;
    for (st::Isa isa : kIsas) {
      if (!st::set_active_isa(isa)) continue;
      std::vector<float> first;
      for (int threads : {1, 2, 3}) {
        st::set_num_threads(threads);
        std::vector<float> got = y0;
        if (writes_all)
          for (int i = 0; i < rows; ++i)
            for (int j = 0; j < N; ++j) got[static_cast<size_t>(i) * ldy + j] = kNaN;
        g.y = got.data();
        st::grouped_matmul(g);
        const int bad = compare(got.data(), want.data(), magnitude.data(), y_rows, ldy, ldy, K * 2, "grouped");
        ST_CHECK(bad == 0,
                 "grouped small=%d %s threads=%d E=%d rows=%d K=%d N=%d gather=%d scatter=%d scale=%d tw=%d acc=%d: %d wrong",
                 small, st::isa_name(isa), threads, E, rows, K, N, gather, scatter, scale, trans_w, acc, bad);
        if (first.empty()) first = got;
        else
          ST_CHECK(std::memcmp(first.data(), got.data(), got.size() * sizeof(float)) == 0,
                   "grouped small=%d %s E=%d rows=%d K=%d N=%d scatter=%d tw=%d: %d threads differ from 1", small,
                   st::isa_name(isa), E, rows, K, N, scatter, trans_w, threads);
      }
      if (isa == st::Isa::portable) continue;
      if (simd.empty()) simd = first;
      else
        ST_CHECK(std::memcmp(simd.data(), first.data(), first.size() * sizeof(float)) == 0,
                 "grouped small=%d E=%d rows=%d K=%d N=%d gather=%d scatter=%d tw=%d acc=%d: %s differs from avx2", small,
                 E, rows, K, N, gather, scatter, trans_w, acc, st::isa_name(isa));
    }
  }
  st::set_grouped_small_path(true);
}

// shift: dW starts `shift` floats past an aligned allocation, so the streamed rows start mid-line.
void check_weight_grad(const Case& c, bool gather_x, bool gather_dy, bool acc, int shift) {
  const int E = static_cast<int>(c.rows.size()), K = c.K, N = c.N;
  const std::vector<int32_t> offsets = offsets_of(c.rows);
  const int rows = offsets.back();
  const int x_rows = rows + 2, dy_rows = rows + 1, ldx = K + 3, lddy = N + 2;
  const std::vector<int32_t> gx = random_indices(rows, x_rows), gy = random_indices(rows, dy_rows);
  const std::vector<float> x = random_floats(static_cast<size_t>(x_rows) * ldx), dy = random_floats(static_cast<size_t>(dy_rows) * lddy);
  const std::vector<float> x_abs = absolute(x), dy_abs = absolute(dy);
  const size_t size = static_cast<size_t>(E) * K * N;
  const std::vector<float> dw0 = random_floats(size);
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
  // A sentinel after the gradient must survive (the streamed stores stay inside their rows).
  std::vector<float> storage(size + 16 + 4);
  float* base = storage.data() + ((16 - (reinterpret_cast<uintptr_t>(storage.data()) / 4) % 16) % 16) + shift;
  for (bool small : {true, false}) {
    st::set_grouped_small_path(small);
    ST_CHECK(st::grouped_matmul_weight_grad_small_applies(g) == (small && groups_within(c.rows, st::kGroupedSmallGradRows)),
             "weight_grad E=%d K=%d N=%d: the small path applies where it should", E, K, N);
    for (st::Isa isa : kIsas) {
      if (!st::set_active_isa(isa)) continue;
      std::vector<float> first;
      for (int threads : {1, 2, 3}) {
        st::set_num_threads(threads);
        if (acc) std::copy(dw0.begin(), dw0.end(), base);
        else std::fill(base, base + size, kNaN);
        base[size] = 1234.5f;
        g.dw = base;
        st::grouped_matmul_weight_grad(g);
        const int bad = compare(base, want.data(), magnitude.data(), E * K, N, N, rows, "weight_grad");
        ST_CHECK(bad == 0, "weight_grad small=%d %s threads=%d E=%d rows=%d K=%d N=%d gx=%d gy=%d acc=%d shift=%d: %d wrong",
                 small, st::isa_name(isa), threads, E, rows, K, N, gather_x, gather_dy, acc, shift, bad);
        ST_CHECK(base[size] == 1234.5f, "weight_grad small=%d: wrote past the gradient", small);
        std::vector<float> got(base, base + size);
        if (first.empty()) first = got;
        else
          ST_CHECK(std::memcmp(first.data(), got.data(), size * sizeof(float)) == 0,
                   "weight_grad small=%d %s E=%d rows=%d K=%d N=%d: %d threads differ from 1", small, st::isa_name(isa),
                   E, rows, K, N, threads);
      }
    }
  }
  st::set_grouped_small_path(true);
}

// The relu epilogue against the same call without it followed by the separate pass (bit for bit:
// it finishes the same sums), on every path (the small path for W as stored, the general driver,
// the shared packed B of one large group), every ISA, 1-3 threads; a NaN in x takes the select's
// edge (relu gives 0), and so do the zeros and negative sums.
void check_epilogue(const Case& c, bool gather, bool trans_w, bool acc) {
  const int E = static_cast<int>(c.rows.size()), K = c.K, N = c.N;
  const std::vector<int32_t> offsets = offsets_of(c.rows);
  const int rows = offsets.back();
  const int x_rows = gather ? rows + 3 : std::max(rows, 1), ldx = K + 1, ldy = N + 3;
  const std::vector<int32_t> gather_idx = random_indices(rows, x_rows);
  std::vector<float> x = random_floats(static_cast<size_t>(x_rows) * ldx);
  if (K > 0) x[static_cast<size_t>(random_int(0, x_rows - 1)) * ldx + random_int(0, K - 1)] = kNaN;
  const std::vector<float> w = random_floats(static_cast<size_t>(E) * K * N);
  const std::vector<float> y0 = random_floats(static_cast<size_t>(std::max(rows, 1)) * ldy);
  st::GroupedMatmul g{};
  g.x = x.data(), g.w = w.data(), g.offsets = offsets.data(), g.gather = gather ? gather_idx.data() : nullptr;
  g.E = E, g.K = K, g.N = N, g.ldx = ldx, g.ldy = ldy, g.trans_w = trans_w, g.accumulate = acc;
  auto fresh = [&] {
    std::vector<float> y = y0;
    if (!acc)
      for (int i = 0; i < rows; ++i)
        for (int j = 0; j < N; ++j) y[static_cast<size_t>(i) * ldy + j] = kNaN;
    return y;
  };
  // The separate pass over the rows the call writes.
  auto relu_rows = [&](std::vector<float>& y) {
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < N; ++j) {
        float& v = y[static_cast<size_t>(i) * ldy + j];
        v = v > 0.0f ? v : 0.0f;
      }
  };
  for (bool small : {true, false}) {
    st::set_grouped_small_path(small);
    for (st::Isa isa : kIsas) {
      if (!st::set_active_isa(isa)) continue;
      for (int threads : {1, 2, 3}) {
        st::set_num_threads(threads);
        std::vector<float> want = fresh(), got = fresh();
        g.epilogue = st::Epilogue::none;
        g.y = want.data();
        st::grouped_matmul(g);
        relu_rows(want);
        g.epilogue = st::Epilogue::relu;
        g.y = got.data();
        st::grouped_matmul(g);
        ST_CHECK(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)) == 0,
                 "relu epilogue small=%d %s threads=%d E=%d rows=%d K=%d N=%d gather=%d tw=%d acc=%d: differs from the "
                 "product and the separate pass", small, st::isa_name(isa), threads, E, rows, K, N, gather, trans_w, acc);
        // The general driver without its tiles' side jobs (B packed and prefetched apart): the same bits.
        std::vector<float> separate = fresh();
        st::gemm_test_separate_packing(true);
        g.y = separate.data();
        st::grouped_matmul(g);
        st::gemm_test_separate_packing(false);
        ST_CHECK(std::memcmp(separate.data(), got.data(), got.size() * sizeof(float)) == 0,
                 "relu epilogue small=%d %s threads=%d E=%d rows=%d K=%d N=%d gather=%d tw=%d acc=%d: other bits with "
                 "separate packing", small, st::isa_name(isa), threads, E, rows, K, N, gather, trans_w, acc);
      }
    }
  }
  // The scalar definition finishes its own sums the same way.
  std::vector<float> ref = fresh(), ref_plain = fresh();
  g.y = ref.data();
  st::grouped_matmul_reference(g);
  g.epilogue = st::Epilogue::none;
  g.y = ref_plain.data();
  st::grouped_matmul_reference(g);
  relu_rows(ref_plain);
  ST_CHECK(std::memcmp(ref.data(), ref_plain.data(), ref.size() * sizeof(float)) == 0,
           "relu epilogue reference E=%d K=%d N=%d: not the separate pass", E, K, N);
  st::set_grouped_small_path(true);
}

std::vector<int> random_rows(int E, int most) {
  std::vector<int> rows(E);
  for (int& r : rows) r = random_int(0, most);
  return rows;
}

}  // namespace

int main() {
  const bool quick = st::test::quick();
  const st::Isa best = st::active_isa();
  const int saved_threads = st::num_threads();

  // Rows per group: single rows, empty groups (first, last, all), odd counts around the 6-row tile
  // and its 4-row kernel, the size limits (48 for weight gradients, 128 for products) and one past
  // them (the general path), many experts. Depths and widths: 1, odd, past the weight gradient's
  // column block (1024), past 2048 (the general driver's blocks for transposed products).
  std::vector<Case> cases{
      {{1}, 1, 1},
      {{0}, 3, 5},
      {{0, 0, 0}, 4, 16},
      {{1, 0, 1}, 5, 17},
      {{0, 7, 13, 1, 6, 4, 0}, 9, 33},
      {{2, 3, 5, 11}, 37, 48},
      {{128, 5}, 20, 24},
      {{129, 3}, 20, 24},
      {{48, 0, 47}, 20, 24},
      {{49, 2}, 20, 24},
      {random_rows(64, 9), 12, 20},
      {{10, 16, 3}, 300, 1030},
      {{5, 9}, 2100, 20},
      {{17, 0, 4}, 70, 2100},
      // W as stored: several depth blocks (512) and column blocks (64) per group and many groups,
      // so the double-buffered packing crosses groups, column blocks and depths.
      {{31, 0, 6, 1, 40}, 1030, 77},
      {random_rows(20, 70), 41, 150},
      // Groups whose last row tile has each count of rows from 1 to 6 (the 2-, 4- and 6-row
      // kernels, in place or into a scratch tile), on every path.
      {{1, 2, 3, 4, 5, 6, 8, 9, 15, 16, 17}, 33, 40},
      // The AVX-512 wide tile (16 rows): a last tile of every other count from 1 to 16 rows, whole
      // tiles (32, 64), and columns past the last whole panel (an opmask) in blocks and depths
      // that cross the double buffer.
      {{7, 10, 11, 12, 13, 14, 18, 32, 63, 64, 0, 47}, 35, 70},
      {{64, 64, 1}, 600, 83},
  };
  if (!quick) {
    cases.push_back({random_rows(32, 40), 64, 96});
    cases.push_back({{64, 63, 65, 1}, 130, 256});
  }
  for (const Case& c : cases) {
    for (int combo = 0; combo < 8; ++combo) {
      const bool gather = combo & 1, scatter = combo & 2, trans_w = combo & 4;
      check_grouped(c, gather, scatter, random_int(0, 1), trans_w, random_int(0, 1));
    }
    for (int combo = 0; combo < 4; ++combo) check_weight_grad(c, combo & 1, combo & 2, random_int(0, 1), random_int(0, 3));
  }
  // Both accumulate settings on one case, every transpose.
  for (bool acc : {false, true})
    for (bool trans_w : {false, true}) check_grouped({{3, 0, 8, 1}, 19, 40}, true, false, false, trans_w, acc);
  for (bool acc : {false, true}) check_weight_grad({{3, 0, 8, 1}, 19, 40}, true, false, acc, 1);
  // The weight gradient's non-temporal kernel takes dW rows of whole cache lines (N a multiple of
  // 16 and dW 64-byte aligned: shift 0); one to three floats off the line, or N not a multiple of
  // 16, the scratch strip; N past the 1024-column block; K leaving a last strip of 1-5 rows.
  for (int shift : {0, 1, 3}) {
    check_weight_grad({{5, 16, 0, 9, 48}, 37, 48}, true, false, false, shift);
    check_weight_grad({{12, 1}, 13, 1040}, false, true, false, shift);
    check_weight_grad({{7, 3}, 20, 40}, false, false, false, shift);
    check_weight_grad({{2, 30}, 6, 16}, true, true, false, shift);
  }

  // Epilogues: small groups (the small path for W as stored), groups past 128 rows (the general
  // driver for every product), one large group (the shared packed B on 2+ threads), an empty
  // depth, several depth blocks.
  const std::vector<Case> epilogue_cases{
      {{1, 0, 7, 13, 6}, 9, 33}, {{130, 4}, 600, 40}, {{200, 1}, 1030, 24}, {{600}, 64, 512}, {{3, 2}, 0, 20},
      {{40, 5}, 1030, 70}, {{250, 140}, 37, 50}};
  for (const Case& c : epilogue_cases)
    for (int combo = 0; combo < 4; ++combo) check_epilogue(c, combo & 1, combo & 2, random_int(0, 1));
  // Groups past 128 rows at depths of two and three depth blocks, against the scalar definition.
  for (bool trans_w : {false, true}) {
    check_grouped({{130, 4}, 600, 40}, true, false, false, trans_w, false);
    check_grouped({{200, 0, 129}, 1030, 24}, false, false, false, trans_w, true);
  }

  st::set_active_isa(best);
  st::set_num_threads(saved_threads);
  return st::test::summary("gemm_grouped");
}
