// The small-group path of the grouped expert matmuls (gemm_grouped.h). M = rows of a group,
// K = depth, N = columns, E = groups (experts).
//
// Two walks: products with W_e as stored, and weight gradients. Products with a transposed weight
// (the backward's dh = dy · W_outᵀ and dx = dh · W_inᵀ) take the general driver: since it packs
// transposed panels 4 × 4 with SSE and shares B blocks across threads, the walk this file had for
// them measured slower at every shape (general/small on 2 threads 0.81–0.96: dh 0.84, dx 0.85 at
// T = 1024, D = 256, F = 1024, E = 64, 32 rows per group; bench/RESULTS.md, layer).
//
// Products with W_e as stored, y_e = x_e · W_e (the forward's x·W_in and h·W_out), M ≤ 128: the
// general driver packs each 16-column panel of W_e just before its use (one line of each of kc
// stored rows) and prefetches the next panel meanwhile; W's rows are usually a multiple of 4 KB
// apart, so a whole panel's lines fall into a few cache sets and the prefetched panel evicts
// itself before it is packed: with 64 rows per group the packing ran at memory speed, serially
// with the arithmetic (~9 % of the time). Here a task walks W_e in blocks of one depth block ×
// 64 columns (a run of lines of each row), double-buffered: while one block is multiplied (every
// row tile of the group, panel by panel), the next block is packed into the other buffer a slice
// of rows per micro-kernel call, its following slice prefetched one call ahead, so only about a
// hundred lines are in flight at once. Full 6-row A panels are packed four depths at a time.
// (Tried and measured slower or no faster: larger blocks prefetched whole, a micro-kernel reading
// B straight from W's rows while writing the packed panel, and a micro-kernel prefetching the
// next slice a line per four k steps.)
//
// On AVX-512 (active_isa() >= avx512) the same walk runs the wide tile of gemm_avx512.cc: 16 rows
// × 16 columns in 16 zmm accumulators, so a 64-row group is four tiles instead of eleven and each
// packed line of W is read four times instead of eleven. Its calls are 16/6 as long, and packing a
// slice of the next block between calls then cost more than on AVX2 (coarser bursts of copies and
// prefetches): the wide kernel does the packing itself, one row of the slice copied (and one row of
// the following slice prefetched) after every kc / rows of its k steps, in registers it has to
// spare. Blocks of 32 columns; for products that go straight to y (not scattered) with several
// depth blocks, the group's steps run depth block by depth block, so only that depth block's A
// panels are packed and in use. Measured (1 thread, E = 64, 64-row groups, in-process A/B against
// the AVX2 walk): the small path at 0.92-0.94 of the plain matmul against 0.85-0.89
// (bench/RESULTS.md, gemm). Tried on the wide tile and dropped: packing between calls as on AVX2
// (0.96× the AVX2 walk), reading W in place with no packing (0.73×), prefetching the next group's
// A rows a share per call (no faster).
//
// Weight gradients dW_e (K, N) = x_eᵀ · dy_e with M ≤ kGroupedSmallGradRows: the depth is the
// group's few rows and the output is the large E·K·N array, so what costs is writing dW. Both
// operands are packed once per task and every dW row is written once, streamed past the caches
// when it is overwritten (no read for ownership of the old values): by the non-temporal kernel
// straight from its registers when dW's rows are whole cache lines (64-byte aligned, N a
// multiple of 16; the layers align their gradient buffers), else through a scratch strip.
//
// Determinism: the depth blocks depend on K alone (a weight gradient is one block of M); each
// tile is summed from zero in k order by the micro-kernel and then added to (or stored into) its
// output; edge tiles run the same kernel into a scratch tile (or, wide, through an opmask). So the
// task grid may follow the thread count while the bits do not; and since the wide tile sums as the
// AVX2 tiles do, avx512 gives avx2's bits (the tests check both). Scattered write-backs run every group in order inside one
// task per column range: each output element receives its rows' additions in row order.
#include "gemm_grouped.h"

#include <emmintrin.h>
#include <xmmintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cpu.h"
#include "gemm_kernels.h"
#include "gemm_pack.h"
#include "threadpool.h"

namespace st {

namespace {

using gemm::active_kernels;
using gemm::Buffers;
using gemm::finish_rows;
using gemm::Kernels;
using gemm::MR;
using gemm::MR_WIDE;
using gemm::NR;
using gemm::run_tile;
using gemm::thread_buffers;

constexpr int kGradWidth = 1024;  // column block of a weight gradient
// A block of a W as stored: one depth block of at most kStoredDepth stored rows (its B panels
// 32 KB, as the general driver's) × kStoredWidth columns (a run of four or five lines of each
// row; measured against 16, 32, 128 and 256 columns and depths of 128 and 256).
constexpr int kStoredDepth = 512;
constexpr int kStoredWidth = 64;
// On the AVX-512 wide tile: 32 columns (measured against 48, 64 and 128: 1-3 % faster at
// 4096×512×2048 and 4096×2048×512, E = 64).
constexpr int kWideStoredWidth = 32;

std::atomic<bool> small_path_enabled{true};

// Rows of a row-major operand, optionally through an index list (a gather).
struct Rows {
  const float* p;
  int64_t ld;
  const int32_t* index;
  const float* row(int64_t i) const { return p + (index ? static_cast<int64_t>(index[i]) : i) * ld; }
};

// A prefetch into L2 (a prefetch into L1 would evict the panels in use). Written as asm because
// GCC treats a function made only of __builtin_prefetch as pure and drops its calls.
inline void prefetch_l2(const float* p) { asm volatile("prefetcht1 %0" : : "m"(*p)); }

// Depth blocks: K split into equal blocks of at most `most`, every block non-empty.
struct DepthBlocks {
  int count, size;
  DepthBlocks(int K, int most) {
    const int pieces = std::max(1, (K + most - 1) / most);
    size = std::max(1, (K + pieces - 1) / pieces);
    count = std::max(1, (K + size - 1) / size);
  }
};

int round_up(int n, int unit) { return (n + unit - 1) / unit * unit; }

// Splits [0, n) into `parts` ranges on multiples of `unit`.
int split_point(int n, int unit, int parts, int index) {
  const int64_t units = (n + unit - 1) / unit;
  return static_cast<int>(std::min<int64_t>(n, units * index / parts * unit));
}

// A panels (MR rows × kc, a[k·MR + r]) of rows [0, m) of X, depth [k0, k0 + kc); rows past m are
// zeros. Panel p at out + p·MR·kc.
void pack_a_rows(float* out, const Rows& X, int m, int k0, int kc) {
  for (int p = 0; p < m; p += MR, out += MR * kc) {
    const int mr = std::min(MR, m - p);
    if (mr == MR) {
      const float* src[MR];
      for (int r = 0; r < MR; ++r) src[r] = X.row(p + r) + k0;
      gemm::pack_panel_rows(out, src, kc);
      continue;
    }
    for (int r = 0; r < MR; ++r) {
      if (r < mr) {
        const float* src = X.row(p + r) + k0;
        for (int k = 0; k < kc; ++k) out[k * MR + r] = src[k];
      } else {
        for (int k = 0; k < kc; ++k) out[k * MR + r] = 0.0f;
      }
    }
  }
}

// The same for the AVX-512 wide tile: panels of MR_WIDE rows (a[k·MR_WIDE + r]), the layout of a
// transposed B panel (row r of X is column r of the panel, contiguous in depth), so they are packed
// by the same routine; rows past m are zeros.
void pack_a_rows_wide(float* out, const Rows& X, int m, int k0, int kc) {
  static_assert(MR_WIDE == NR, "a wide A panel has the layout of a transposed B panel");
  for (int p = 0; p < m; p += MR_WIDE, out += MR_WIDE * kc) {
    const int mr = std::min(MR_WIDE, m - p);
    const float* src[MR_WIDE];
    for (int r = 0; r < MR_WIDE; ++r) src[r] = X.row(p + std::min(r, mr - 1)) + k0;
    gemm::pack_panel_transposed(out, src, mr, kc);
  }
}

// A panels of Xᵀ: tile rows are columns [c0, c0 + cols) of X, the depth its rows [0, depth).
void pack_a_columns(float* out, const Rows& X, int depth, int c0, int cols) {
  for (int p = 0; p < cols; p += MR, out += MR * depth) {
    const int mr = std::min(MR, cols - p);
    for (int d = 0; d < depth; ++d) {
      const float* src = X.row(d) + c0 + p;
      for (int r = 0; r < MR; ++r) out[d * MR + r] = r < mr ? src[r] : 0.0f;
    }
  }
}

// B panels (kc × NR, b[k·NR + c]) of rows [k0, k0 + kc), columns [j0, j0 + nc) of a row-major B:
// row by row, each row a contiguous run. Panel q at out + q·NR·kc; columns past nc are zeros.
void pack_b_rows(float* out, const Rows& B, int k0, int kc, int j0, int nc) {
  const int full = nc / NR * NR;
  for (int k = 0; k < kc; ++k) {
    const float* src = B.row(k0 + k) + j0;
    float* dst = out + k * NR;
    for (int q = 0; q < full; q += NR, dst += static_cast<int64_t>(NR) * kc) std::memcpy(dst, src + q, NR * sizeof(float));
    if (full < nc)
      for (int c = 0; c < NR; ++c) dst[c] = full + c < nc ? src[full + c] : 0.0f;
  }
}

// One B block of a W as stored, depth [k0, k0 + kc) × columns [j0, j0 + nc): kc stored rows of nc
// floats, packed whole (the first block of a task) or a slice of rows at a time (pack_b_rows_slice).
struct BlockSource {
  Rows W;
  int k0, kc, j0, nc;
  const float* row_start(int r) const { return W.row(k0 + r) + j0; }
  void pack(float* out) const { pack_b_rows(out, W, k0, kc, j0, nc); }
};

// The blocking of one call, from its shape alone (the same for every task and thread count).
struct Geometry {
  DepthBlocks depth;
  int width;
};
// The width only orders the work (the depth blocks fix the sums), so each tile has its own.
Geometry geometry(const GroupedMatmul& g, bool wide) {
  return {DepthBlocks(g.K, kStoredDepth), wide ? kWideStoredWidth : kStoredWidth};
}

// One block of a task: group e, columns [jb, jb + width), depth block kb.
struct Step {
  int e, jb, kb;
};

// Where a step's output goes: {pointer to its first row and column, row stride, add}.
struct Output {
  float* c;
  int64_t ldc;
  bool add;
};

// Rows [r0, r1) of the B block (kc × nc) of a W as stored, source rows from k0 and columns from
// j0, into its packed panels (panel q at out + q·NR·kc, b[k·NR + c]); columns past nc are zeros.
void pack_b_rows_slice(float* out, const Rows& W, int k0, int kc, int r0, int r1, int j0, int nc) {
  const int full = nc / NR * NR;
  for (int k = r0; k < r1; ++k) {
    const float* src = W.row(k0 + k) + j0;
    float* dst = out + static_cast<int64_t>(k) * NR;
    for (int q = 0; q < full; q += NR, dst += static_cast<int64_t>(NR) * kc) std::memcpy(dst, src + q, NR * sizeof(float));
    if (full < nc)
      for (int c = 0; c < NR; ++c) dst[c] = full + c < nc ? src[full + c] : 0.0f;
  }
}

// The walk over W as stored (y_e = x_e · W_e): groups [e0, e1) (empty ones skipped), each over
// columns [c0, c1) in blocks of `width` columns × one depth block (a step), every block used by all
// the group's row tiles. The blocks are double-buffered: while step s is multiplied from one
// buffer, step s + 1 is packed into the other a slice of rows per micro-kernel call, its next
// slice prefetched one call ahead (on the wide tile, by the kernel itself between its FMAs). So
// the stream of W from memory overlaps the arithmetic, and few lines are in flight at a time: W's
// rows are often a multiple of 4 KB apart, so the lines of one block fall into few cache sets, and
// a whole block prefetched ahead would evict itself before it is packed.
template <class Out, class Done>
void run_groups_stored(const GroupedMatmul& g, const Kernels& kernel, bool wide, const Geometry& G, int e0, int e1,
                       int c0, int c1, Out&& out, Done&& done) {
  // The row tile: the AVX-512 wide tile (MR_WIDE rows, its own A panels) or the shared MR rows.
  const int tile_rows = wide ? MR_WIDE : MR;
  auto rows = [&](int e) { return g.offsets[e + 1] - g.offsets[e]; };
  auto first_group = [&](int e) {
    while (e < e1 && rows(e) <= 0) ++e;
    return e;
  };
  // The order of a group's steps: column blocks, each over its depth blocks (the output block
  // finished in one go, as the scattered write-back needs); or, on the wide tile when the output
  // goes straight to y, depth blocks, each over the column blocks: then only one depth block of the
  // group's A panels is in use at a time (at K = 2048 all four took half of L2), and y's rows are
  // added to once per depth block. Either order adds each element's depth blocks in k order.
  const bool depth_outer = wide && !g.scatter && G.depth.count > 1;
  auto advance = [&](Step& s) {
    if (depth_outer) {
      if ((s.jb += G.width) < c1) return true;
      s.jb = c0;
      if (++s.kb < G.depth.count) return true;
      s.kb = 0;
    } else {
      if (++s.kb < G.depth.count) return true;
      s.kb = 0;
      if ((s.jb += G.width) < c1) return true;
      s.jb = c0;
    }
    s.e = first_group(s.e + 1);
    return s.e < e1;
  };
  auto source = [&](const Step& s) {
    const int pc = s.kb * G.depth.size;
    return BlockSource{{g.w + static_cast<int64_t>(s.e) * g.K * g.N, g.N, nullptr},
                       pc, std::min(G.depth.size, g.K - pc), s.jb, std::min(G.width, c1 - s.jb)};
  };
  Step s{first_group(e0), c0, 0};
  if (s.e >= e1 || c1 <= c0) return;
  Buffers& buf = thread_buffers();
  const size_t b_floats = static_cast<size_t>(G.depth.size) * round_up(G.width, NR);
  float* b_both = buf.b.get(2 * b_floats);
  float* b_now = b_both;
  float* b_next = b_both + b_floats;
  int most_rows = 0;
  for (int e = s.e; e < e1; ++e) most_rows = std::max(most_rows, rows(e));
  const int a_block = round_up(most_rows, tile_rows) * G.depth.size;
  float* a = buf.a.get(static_cast<size_t>(a_block) * (depth_outer ? 1 : G.depth.count));
  int packed = -1, packed_kb = -1;
  {
    const BlockSource first = source(s);
    first.pack(b_now);
  }
  for (;;) {
    const int m = rows(s.e);
    // The group's A panels: every depth block when a group starts, or (depth_outer) the depth
    // block of the step when it starts.
    if (s.e != packed || (depth_outer && s.kb != packed_kb)) {
      const int begin = g.offsets[s.e];
      const Rows X = g.gather ? Rows{g.x, g.ldx, g.gather + begin}
                              : Rows{g.x + static_cast<int64_t>(begin) * g.ldx, g.ldx, nullptr};
      for (int kb = depth_outer ? s.kb : 0; kb < (depth_outer ? s.kb + 1 : G.depth.count); ++kb) {
        const int pc = kb * G.depth.size;
        float* a_kb = a + static_cast<int64_t>(depth_outer ? 0 : kb) * a_block;
        const int kc = std::min(G.depth.size, g.K - pc);
        wide ? pack_a_rows_wide(a_kb, X, m, pc, kc) : pack_a_rows(a_kb, X, m, pc, kc);
      }
      packed = s.e;
      packed_kb = s.kb;
    }
    const BlockSource here = source(s);
    Step n = s;
    const bool has_next = advance(n);
    const BlockSource next = has_next ? source(n) : here;
    const auto [c, ldc, add_first] = out(s.e, s.jb);
    const bool add = add_first || s.kb > 0;
    const float* a_kb = a + static_cast<int64_t>(depth_outer ? 0 : s.kb) * a_block;
    const int tiles = (m + tile_rows - 1) / tile_rows, panels = (here.nc + NR - 1) / NR, calls = tiles * panels;
    // Slice i of the next block: its source rows [kc·i / calls, kc·(i + 1) / calls).
    auto slice = [&](int i) { return static_cast<int>(static_cast<int64_t>(next.kc) * i / calls); };
    // The next step's output columns, when it is the first to write them (a fresh column block of
    // y, not in cache): a share of its rows per call too, so the micro-kernel's stores find them.
    const bool next_fresh = has_next && n.kb == 0 && !g.scatter;
    const Output next_out = next_fresh ? out(n.e, n.jb) : Output{nullptr, 0, false};
    const int next_m = next_fresh ? rows(n.e) : 0;
    auto prefetch_slice = [&](int i, bool w_too) {
      for (int k = slice(i), end = w_too ? slice(i + 1) : k; k < end; ++k) {
        const float* p = next.row_start(k);
        for (int j = 0; j < next.nc; j += 16) prefetch_l2(p + j);
        prefetch_l2(p + next.nc - 1);
      }
      for (int r = next_m * i / calls, end = next_m * (i + 1) / calls; r < end; ++r) {
        const float* p = next_out.c + static_cast<int64_t>(r) * next_out.ldc;
        for (int j = 0; j < next.nc; j += 16) prefetch_l2(p + j);
        prefetch_l2(p + next.nc - 1);
      }
    };
    if (has_next) prefetch_slice(0, true);
    int call = 0;
    for (int q = 0; q < panels; ++q) {
      const int nr = std::min(NR, here.nc - q * NR);
      const float* b_panel = b_now + static_cast<int64_t>(q) * NR * here.kc;
      for (int t = 0; t < tiles; ++t, ++call) {
        const int mr = std::min(tile_rows, m - t * tile_rows);
        const float* a_panel = a_kb + static_cast<int64_t>(t) * tile_rows * here.kc;
        float* ct = c + static_cast<int64_t>(t) * tile_rows * ldc + q * NR;
        if (wide) {
          // The wide kernel copies this call's slice of the next block and prefetches the
          // following slice itself, spread between its FMAs (gemm_kernels.h).
          gemm::WidePackJob job;
          if (has_next) {
            if (call + 1 < calls) prefetch_slice(call + 1, false);
            const int r0 = slice(call), next_panels = (next.nc + NR - 1) / NR;
            job.src = next.row_start(r0);
            job.ld = g.N;
            job.dst = b_next + static_cast<int64_t>(r0) * NR;
            job.panel_stride = static_cast<int64_t>(NR) * next.kc;
            job.rows = slice(call + 1) - r0;
            job.panels = next_panels;
            job.last_columns = static_cast<uint16_t>((1u << (next.nc - (next_panels - 1) * NR)) - 1u);
            if (call + 1 < calls) {
              job.prefetch = next.row_start(slice(call + 1));
              job.prefetch_rows = slice(call + 2) - slice(call + 1);
              job.prefetch_columns = next.nc;
            }
          }
          gemm::micro_kernel_wide_avx512(here.kc, a_panel, b_panel, ct, ldc, add, mr, nr, job);
          continue;
        }
        if (has_next) {
          if (call + 1 < calls) prefetch_slice(call + 1, true);
          pack_b_rows_slice(b_next, next.W, next.k0, next.kc, slice(call), slice(call + 1), next.j0, next.nc);
        }
        run_tile(kernel, here.kc, a_panel, b_panel, ct, ldc, add, mr, nr);
      }
    }
    if (s.kb == G.depth.count - 1) done(s.e, s.jb, here.nc);
    if (!has_next) return;
    std::swap(b_now, b_next);
    s = n;
  }
}


// A task: groups [e0, e1), columns [c0, c1).
struct Task {
  int e0, e1, c0, c1;
};

}  // namespace

void set_grouped_small_path(bool enabled) { small_path_enabled.store(enabled); }
bool grouped_small_path() { return small_path_enabled.load(); }

bool grouped_matmul_small_applies(const GroupedMatmul& g) {
  // A transposed weight goes to the general driver (see the top of this file).
  if (!grouped_small_path() || g.trans_w || g.E <= 0 || g.N <= 0 || g.K < 0) return false;
  for (int e = 0; e < g.E; ++e)
    if (g.offsets[e + 1] - g.offsets[e] > kGroupedStoredMaxRows) return false;
  return true;
}

void grouped_matmul_small(const GroupedMatmul& g) {
  const int64_t R = g.offsets[g.E];
  if (R <= 0 || g.N <= 0) return;
  if (g.K == 0) {
    // An empty sum: zeros written, or nothing added (times scale, as the general path does).
    for (int64_t i = 0; i < R; ++i) {
      float* y = g.y + (g.scatter ? static_cast<int64_t>(g.scatter[i]) : i) * g.ldy;
      if (g.scatter) {
        const float s = g.scale ? g.scale[i] : 1.0f;
        for (int j = 0; j < g.N; ++j) y[j] += s * 0.0f;
      } else if (!g.accumulate) {
        std::memset(y, 0, sizeof(float) * g.N);
      } else if (g.epilogue != Epilogue::none) {
        finish_rows(g.epilogue, y, g.ldy, 1, g.N);
      }
    }
    return;
  }
  const Kernels kernel = active_kernels();
  const bool wide = active_isa() >= Isa::avx512;
  const Geometry G = geometry(g, wide);
  auto walk = [&](int e0, int e1, int c0, int c1, auto&& out, auto&& done) {
    run_groups_stored(g, kernel, wide, G, e0, e1, c0, c1, out, done);
  };
  const int threads = num_threads();
  auto no_done = [](int, int, int) {};
  if (!g.scatter) {
    // Up to four tasks per thread, so a thread that is descheduled for a while leaves its share to
    // the others: runs of consecutive groups of about equal rows (one stream of weights each), or,
    // with fewer groups than that, each group's columns split.
    const int target = threads == 1 ? 1 : 4 * threads;
    std::vector<Task> tasks;
    int nonempty = 0;
    for (int e = 0; e < g.E; ++e) nonempty += g.offsets[e + 1] > g.offsets[e];
    if (nonempty >= target) {
      for (int e = 0, t = 0; e < g.E; ++t) {
        const int64_t end_rows = R * (t + 1) / target;
        int e1 = e + 1;
        while (e1 < g.E && g.offsets[e1 + 1] <= end_rows) ++e1;
        tasks.push_back({e, e1, 0, g.N});
        e = e1;
      }
    } else {
      const int max_pieces = (g.N + NR - 1) / NR;
      for (int e = 0; e < g.E; ++e) {
        const int rows = g.offsets[e + 1] - g.offsets[e];
        if (rows <= 0) continue;
        const int pieces = std::clamp(static_cast<int>((target * int64_t{rows} + R - 1) / R), 1, max_pieces);
        for (int i = 0; i < pieces; ++i)
          tasks.push_back({e, e + 1, split_point(g.N, NR, pieces, i), split_point(g.N, NR, pieces, i + 1)});
      }
    }
    parallel_for(static_cast<int64_t>(tasks.size()), [&](int64_t t, int) {
      const Task& T = tasks[t];
      auto out = [&](int e, int jb) {
        return Output{g.y + static_cast<int64_t>(g.offsets[e]) * g.ldy + jb, g.ldy, g.accumulate};
      };
      if (g.epilogue == Epilogue::none) return walk(T.e0, T.e1, T.c0, T.c1, out, no_done);
      // The epilogue over a group's finished column block (at most 128 rows × 64 columns, in cache).
      walk(T.e0, T.e1, T.c0, T.c1, out, [&](int e, int jb, int nc) {
        const int64_t begin = g.offsets[e];
        finish_rows(g.epilogue, g.y + begin * g.ldy + jb, g.ldy, g.offsets[e + 1] - g.offsets[e], nc);
      });
    });
    return;
  }
  // Scattered: two rows may add into one output row, so a task owns a column range and runs every
  // group in order, each column block into a scratch (rows × width, in L2) that is then added,
  // times scale, into y[scatter[i]] in row order.
  const int parts = std::max(1, std::min(threads, (g.N + NR - 1) / NR));
  parallel_for(parts, [&](int64_t part, int) {
    const int c0 = split_point(g.N, NR, parts, static_cast<int>(part));
    const int c1 = split_point(g.N, NR, parts, static_cast<int>(part) + 1);
    int most_rows = 0;
    for (int e = 0; e < g.E; ++e) most_rows = std::max(most_rows, g.offsets[e + 1] - g.offsets[e]);
    float* scratch = thread_buffers().scratch.get(static_cast<size_t>(most_rows) * G.width);
    walk(0, g.E, c0, c1, [&](int, int) { return Output{scratch, G.width, false}; },
               [&](int e, int jb, int nc) {
                 for (int i = g.offsets[e]; i < g.offsets[e + 1]; ++i) {
                   // The scattered rows are far apart (token order): fetch the next one meanwhile.
                   if (i + 1 < g.offsets[e + 1]) {
                     const float* next = g.y + static_cast<int64_t>(g.scatter[i + 1]) * g.ldy + jb;
                     for (int j = 0; j < nc; j += 16) prefetch_l2(next + j);
                     prefetch_l2(next + nc - 1);
                   }
                   float* y = g.y + static_cast<int64_t>(g.scatter[i]) * g.ldy + jb;
                   const float* t = scratch + static_cast<int64_t>(i - g.offsets[e]) * G.width;
                   const float s = g.scale ? g.scale[i] : 1.0f;
                   for (int j = 0; j < nc; ++j) y[j] += s * t[j];
                 }
               });
  });
}

bool grouped_matmul_weight_grad_small_applies(const GroupedMatmulWeightGrad& g) {
  if (!grouped_small_path() || g.E <= 0 || g.N <= 0 || g.K <= 0) return false;
  for (int e = 0; e < g.E; ++e)
    if (g.offsets[e + 1] - g.offsets[e] > kGroupedSmallGradRows) return false;
  return true;
}

namespace {

// dst[0, n) = src[0, n), the whole cache lines inside with non-temporal stores: the gradient is
// written once and not read again in this call, so it bypasses the caches and is not read for
// ownership first. Partial lines at the ends take ordinary stores.
void store_streaming(float* dst, const float* src, int n) {
  int head = static_cast<int>(((64 - (reinterpret_cast<uintptr_t>(dst) & 63)) & 63) / sizeof(float));
  if ((reinterpret_cast<uintptr_t>(dst) & 3) != 0 || head > n) head = n;
  std::memcpy(dst, src, sizeof(float) * head);
  int j = head;
  for (; j + 16 <= n; j += 16) {
    _mm_stream_ps(dst + j, _mm_loadu_ps(src + j));
    _mm_stream_ps(dst + j + 4, _mm_loadu_ps(src + j + 4));
    _mm_stream_ps(dst + j + 8, _mm_loadu_ps(src + j + 8));
    _mm_stream_ps(dst + j + 12, _mm_loadu_ps(src + j + 12));
  }
  std::memcpy(dst + j, src + j, sizeof(float) * (n - j));
}

// Rows [r0, r1) of dW_e (K, N) = [dW_e +] x_eᵀ · dy_e, the group's m rows the depth of one block.
// Overwritten, each strip of MR rows is finished in a scratch strip and then streamed out row by
// row (whole cache lines in sequence); accumulated, the kernel adds into dW_e in place.
void group_weight_grad(const GroupedMatmulWeightGrad& g, const Kernels& kernel, int e, int r0, int r1) {
  const int begin = g.offsets[e], m = std::max(0, g.offsets[e + 1] - begin);
  float* dw = g.dw + static_cast<int64_t>(e) * g.K * g.N;
  if (m == 0) {
    // No rows: the gradient is zero (or unchanged when accumulating).
    if (!g.accumulate) std::memset(dw + static_cast<int64_t>(r0) * g.N, 0, sizeof(float) * (r1 - r0) * g.N);
    return;
  }
  Buffers& buf = thread_buffers();
  const Rows X = g.gather_x ? Rows{g.x, g.ldx, g.gather_x + begin} : Rows{g.x + static_cast<int64_t>(begin) * g.ldx, g.ldx, nullptr};
  const Rows DY = g.gather_dy ? Rows{g.dy, g.lddy, g.gather_dy + begin}
                              : Rows{g.dy + static_cast<int64_t>(begin) * g.lddy, g.lddy, nullptr};
  float* a = buf.a.get(static_cast<size_t>(round_up(r1 - r0, MR)) * m);
  pack_a_columns(a, X, m, r0, r1 - r0);
  const int width = std::min(round_up(g.N, NR), kGradWidth);
  float* b = buf.b.get(static_cast<size_t>(width) * m);
  float* strip = buf.scratch.get(static_cast<size_t>(MR) * width);
  // Rows of whole cache lines (dW 64-byte aligned, N a multiple of 16): the full tiles go straight
  // to memory with the non-temporal kernel, no scratch strip to copy out.
  const bool stream_tiles = !g.accumulate && kernel.stream && g.N % NR == 0 &&
                            reinterpret_cast<uintptr_t>(g.dw) % 64 == 0;
  for (int jb = 0; jb < g.N; jb += width) {
    const int nc = std::min(width, g.N - jb);
    pack_b_rows(b, DY, 0, m, jb, nc);
    for (int s = r0; s < r1; s += MR) {
      const int mr = std::min(MR, r1 - s);
      const float* a_panel = a + static_cast<int64_t>(s - r0) * m;
      float* c = dw + static_cast<int64_t>(s) * g.N + jb;
      if (stream_tiles) {
        for (int q = 0; q < nc; q += NR) {
          const float* b_panel = b + static_cast<int64_t>(q) * m;
          if (mr == MR) {
            kernel.stream(m, a_panel, b_panel, c + q, g.N);
          } else {
            run_tile(kernel, m, a_panel, b_panel, c + q, g.N, false, mr, NR);
          }
        }
        continue;
      }
      for (int q = 0; q < nc; q += NR) {
        const int nr = std::min(NR, nc - q);
        const float* b_panel = b + static_cast<int64_t>(q) * m;
        if (g.accumulate) {
          if (mr == MR && nr == NR) {
            kernel.full(m, a_panel, b_panel, c + q, g.N, true);
          } else {
            alignas(64) float tile[MR * NR];
            kernel.full(m, a_panel, b_panel, tile, NR, false);
            for (int r = 0; r < mr; ++r)
              for (int j = 0; j < nr; ++j) c[static_cast<int64_t>(r) * g.N + q + j] += tile[r * NR + j];
          }
        } else if (nr == NR) {
          kernel.full(m, a_panel, b_panel, strip + q, width, false);
        } else {
          alignas(64) float tile[MR * NR];
          kernel.full(m, a_panel, b_panel, tile, NR, false);
          for (int r = 0; r < MR; ++r) std::memcpy(strip + r * width + q, tile + r * NR, sizeof(float) * nr);
        }
      }
      if (!g.accumulate)
        for (int r = 0; r < mr; ++r) store_streaming(c + static_cast<int64_t>(r) * g.N, strip + r * width, nc);
    }
  }
  _mm_sfence();  // the streamed stores are ordered before the task is reported done
}

}  // namespace

void grouped_matmul_weight_grad_small(const GroupedMatmulWeightGrad& g) {
  const Kernels kernel = active_kernels();
  const int threads = num_threads();
  // One task per group (an empty group still writes its zeros), its rows of dW split only when
  // there are too few groups to give every thread four tasks.
  const int pieces = threads == 1 ? 1 : std::clamp((4 * threads + g.E - 1) / g.E, 1, (g.K + MR - 1) / MR);
  parallel_for(static_cast<int64_t>(g.E) * pieces, [&](int64_t t, int) {
    const int e = static_cast<int>(t / pieces), i = static_cast<int>(t % pieces);
    group_weight_grad(g, kernel, e, split_point(g.K, MR, pieces, i), split_point(g.K, MR, pieces, i + 1));
  });
}

}  // namespace st
