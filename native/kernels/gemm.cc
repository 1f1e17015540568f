// The fast matmul (gemm.h): cache blocking, packing, a register-tiled micro-kernel per ISA, and the
// grouped expert matmuls built on the same driver. M, N, K = product sizes; E = groups (experts).
//
// Loop nest per task (the classic five loops around the micro-kernel):
//   jc over columns by NC   — the packed B block (kc × NC) stays in L3
//   pc over depth by KC     — B(pc, jc) packed once (by the first row block), reused by the others
//   ic over rows by MC      — pack A(ic, pc) once (MC × kc stays in L2)
//   jr over NR, ir over MR  — the micro-kernel; one B panel (kc × NR) stays in L1
// A large single product on several threads runs a variant (run_shared_b): B is packed once by
// all threads together, then the rows are split, so that no two threads pack the same weights.
// The gathers of the grouped matmuls are folded into the packing (a row index per stored row), so
// no gathered copy of X is ever made; the scatter-with-scale is folded into the write-back.
//
// Determinism: every output element is the same chain of operations whichever task computes it:
// the depth blocks depend on K only, each block's dot product is summed from zero in k order by the
// micro-kernel and then added to the output, and edge tiles run the same kernel into a scratch tile.
// So the task grid is free to follow the thread count for load balance while the bits do not.
// Scattered write-backs, where two product rows may add into one output row, run inside one task
// per column range in row order: no races, and the order of the additions is fixed.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include <emmintrin.h>

#include "cpu.h"
#include "gemm.h"
#include "gemm_grouped.h"
#include "gemm_kernels.h"
#include "gemm_pack.h"
#include "threadpool.h"

namespace st {

namespace gemm {
namespace {

// Measured on Zen 4 (32 KB L1d, 1 MB L2): a deeper block halves the passes over C and still keeps
// one B panel (kc × 16) in L1 while the A block stays in L2.
constexpr int KC = 512;    // depth of a packed block: B panel 32 KB, A panel 12 KB
constexpr int MC = 288;    // rows of a packed A block (288 × 512 × 4 = 576 KB, in L2)
constexpr int NC = 4096;   // columns of a packed B block (512 × 4096 × 4 = 8 MB, in L3)
// A lone product (matmul) up to this depth is one depth block: 1024×768×3072 as one pass of 768
// over C instead of two of 384 ran 2-5 % faster on 1 thread and 3-7 % on 2 (timed call by call
// against the two-block build), although its B panel (48 KB) no longer fits L1 — it streams from
// L2 — and its A block (288 × 768 × 4 = 864 KB) barely fits L2. The grouped matmuls keep KC: their
// groups of a few rows rely on the B panel staying in L1, and at E = 16 (~250 rows per expert) and
// in the dense layer (4,096 rows) one block of 768 ran 1-1.6 % slower on 2 threads.
constexpr int kLoneProductDepth = 768;

// One operand op(X) as the packers read it: logical element (r, c) is stored at row
// (trans ? c : r) and column (trans ? r : c) of p; `rows`, when set, remaps stored rows (a gather).
struct Operand {
  const float* p;
  int64_t ld;
  bool trans;
  const int32_t* rows;
  const float* row(int64_t stored_row) const { return p + (rows ? static_cast<int64_t>(rows[stored_row]) : stored_row) * ld; }
};

// One product c (M, N) = [c +] op(a) (M, K) · op(b) (K, N). With scatter, row i of the product is
// added, times scale[i], into row scatter[i] of c.
struct Problem {
  Operand a, b;
  float* c;
  int64_t ldc;
  const int32_t* scatter;
  const float* scale;
  int M, N, K;
  bool accumulate;
  int single_block_depth = KC;  // K up to this is one depth block (DepthBlocks)
  Epilogue epilogue = Epilogue::none;  // unscattered only
};


// A block (mc × kc) of op(A) from (i0, k0) into MR-row panels.
void pack_a(float* out, const Operand& A, int i0, int mc, int k0, int kc) {
  for (int p = 0; p < mc; p += MR, out += MR * kc) {
    const int mr = std::min(MR, mc - p);
    if (!A.trans) {
      const float* src[MR];
      for (int r = 0; r < MR; ++r) src[r] = A.row(i0 + p + std::min(r, mr - 1)) + k0;
      if (mr == MR) {
        gemm::pack_panel_rows(out, src, kc);
      } else {
        for (int k = 0; k < kc; ++k)
          for (int r = 0; r < MR; ++r) out[k * MR + r] = r < mr ? src[r][k] : 0.0f;
      }
    } else if (mr == MR) {
      // Transposed (the weight gradients' xᵀ): the tile's six values of depth k are adjacent in
      // stored row k.
      for (int k = 0; k < kc; ++k) {
        const float* src = A.row(k0 + k) + i0 + p;
        _mm_storeu_ps(out + k * MR, _mm_loadu_ps(src));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(out + k * MR + 4), _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + 4)));
      }
    } else {
      for (int k = 0; k < kc; ++k) {
        const float* src = A.row(k0 + k) + i0 + p;
        for (int r = 0; r < MR; ++r) out[k * MR + r] = r < mr ? src[r] : 0.0f;
      }
    }
  }
}

// B block (kc × nc) of op(B) from (k0, j0) into NR-column panels.
void pack_b(float* out, const Operand& B, int k0, int kc, int j0, int nc) {
  const int full = nc / NR * NR;
  if (!B.trans) {
    // Row by row: each source row is read once, front to back (what the prefetchers follow),
    // its 16-float pieces going to the panels.
    for (int k = 0; k < kc; ++k) {
      const float* src = B.row(k0 + k) + j0;
      float* dst = out + k * NR;
      for (int q = 0; q < full; q += NR, dst += static_cast<int64_t>(NR) * kc) std::memcpy(dst, src + q, NR * sizeof(float));
      if (full < nc)
        for (int c = 0; c < NR; ++c) dst[c] = full + c < nc ? src[full + c] : 0.0f;
    }
    return;
  }
  // Transposed (the weights of a backward product): stored row j + c holds column c of the panel,
  // contiguous in depth.
  for (int q = 0; q < nc; q += NR, out += NR * kc) {
    const int nr = std::min(NR, nc - q);
    const float* src[NR];
    for (int c = 0; c < NR; ++c) src[c] = B.row(j0 + q + std::min(c, nr - 1)) + k0;
    pack_panel_transposed(out, src, nr, kc);
  }
}

// Depth blocks: K split into equal blocks of at most KC (one block up to single_block_depth),
// depending on K and the kind of product alone, never on the task grid.
struct DepthBlocks {
  int count, size;
  DepthBlocks(int K, int single_block_depth)
      : count(K <= single_block_depth ? 1 : std::max(1, (K + KC - 1) / KC)), size((K + count - 1) / count) {}
};

// A prefetch into L2 (the next panel must not evict the current one from L1). Written as asm
// because GCC treats a function made only of __builtin_prefetch as pure and drops its calls.
inline void prefetch_l2(const float* p) { asm volatile("prefetcht1 %0" : : "m"(*p)); }

// Prefetches part `part` of `parts` of the source of one B panel (depth [k0, k0 + kc), columns
// [j, j + nr)), so that packing it later finds it in cache.
void prefetch_b_panel(const Operand& B, int k0, int kc, int j, int nr, int part, int parts) {
  if (!B.trans) {
    for (int k = kc * part / parts, end = kc * (part + 1) / parts; k < end; ++k) {
      const float* p = B.row(k0 + k) + j;
      prefetch_l2(p);
      prefetch_l2(p + nr - 1);
    }
    return;
  }
  const int lines = (kc + 15) / 16, total = nr * lines;  // nr stored rows of kc floats
  for (int l = total * part / parts, end = total * (part + 1) / parts; l < end; ++l)
    prefetch_l2(B.row(j + l / lines) + k0 + (l % lines) * 16);
}

// Prefetches part `part` of `parts` of the source of an A block (rows [i0, i0 + mc), depth
// [k0, k0 + kc)): the next block's rows (gathered rows of X, often far apart in memory) arrive
// while the current block is being multiplied.
void prefetch_a_block(const Operand& A, int i0, int mc, int k0, int kc, int part, int parts) {
  const int stored_rows = A.trans ? kc : mc, row_floats = A.trans ? mc : kc;
  const int lines = (row_floats + 15) / 16, total = stored_rows * lines;
  const int first_row = A.trans ? k0 : i0, col = A.trans ? i0 : k0;
  const int begin = static_cast<int>(int64_t{total} * part / parts), end = static_cast<int>(int64_t{total} * (part + 1) / parts);
  if (begin >= end) return;
  // One division for the slice, then row by row (a division per line cost as much as the prefetch).
  int r = begin / lines, l = begin % lines;
  const float* row = A.row(first_row + r) + col;
  for (int i = begin; i < end; ++i) {
    prefetch_l2(row + l * 16);
    if (++l == lines && i + 1 < end) l = 0, row = A.row(first_row + ++r) + col;
  }
}

std::atomic<bool> test_separate_packing{false};  // gemm_test_separate_packing

// dest (r1 - r0, c1 - c0) with row stride ldd = [dest +] rows [r0, r1) × columns [c0, c1) of the
// product (add_first: add on the first depth block, i.e. accumulate).
//
// B panels are packed lazily, each just before the first row block uses it, while the source of
// the next panel is prefetched a slice per micro-kernel call: the stream of B from memory (the
// expert weights of a grouped matmul are read once per call) overlaps the arithmetic instead of
// stalling a separate packing pass.
void compute_block(const Problem& P, const Kernels& kernel, int r0, int r1, int c0, int c1, float* dest,
                   int64_t ldd, bool add_first) {
  if (r1 <= r0 || c1 <= c0) return;
  if (P.K == 0) {
    if (!add_first)
      for (int i = 0; i < r1 - r0; ++i) std::memset(dest + i * ldd, 0, sizeof(float) * (c1 - c0));
    else if (P.epilogue != Epilogue::none)  // relu(0) is 0: only kept values to finish
      finish_rows(P.epilogue, dest, ldd, r1 - r0, c1 - c0);
    return;
  }
  Buffers& buf = thread_buffers();
  const DepthBlocks depth(P.K, P.single_block_depth);
  float* a_pack = buf.a.get(static_cast<size_t>(MC) * depth.size);
  const bool side_jobs = !test_separate_packing.load(std::memory_order_relaxed);
  for (int jc = c0; jc < c1; jc += NC) {
    const int nc = std::min(NC, c1 - jc);
    const int nc_padded = (nc + NR - 1) / NR * NR;
    const bool single_row_block = r1 - r0 <= MC;
    // With a single row block and a B stored by rows, the panels are copied one ahead by the tiles
    // of the panel before (copy_ahead): two panel slots, used in turn.
    const bool copy_ahead = single_row_block && r1 - r0 >= MR && !P.b.trans && !P.b.rows && kernel.copying && side_jobs;
    float* b_pack = buf.b.get(static_cast<size_t>(single_row_block ? 2 * NR : nc_padded) * depth.size);
    for (int blk = 0; blk < depth.count; ++blk) {
      const int pc = blk * depth.size;
      const int kc = std::min(depth.size, P.K - pc);
      if (kc <= 0) break;
      const bool add = add_first || blk > 0;
      const bool last = blk + 1 == depth.count;
      for (int ic = r0; ic < r1; ic += MC) {
        const int mc = std::min(MC, r1 - ic);
        const bool first_rows = ic == r0;
        const int calls = (mc + MR - 1) / MR;
        pack_a(a_pack, P.a, ic, mc, pc, kc);
        // The A block after this one in this task: the next row block, else the next depth block.
        int next_i = -1, next_mc = 0, next_k = 0, next_kc = 0;
        if (ic + MC < r1) {
          next_i = ic + MC, next_mc = std::min(MC, r1 - next_i), next_k = pc, next_kc = kc;
        } else if (blk + 1 < depth.count && pc + depth.size < P.K) {
          next_i = r0, next_mc = std::min(MC, r1 - r0), next_k = pc + depth.size;
          next_kc = std::min(depth.size, P.K - next_k);
        }
        // Only small blocks (the few rows of one expert): a large next block would push the
        // current one out of L2.
        if (static_cast<int64_t>(next_mc) * next_kc > 64 * 1024) next_i = -1;
        const int panels = (nc + NR - 1) / NR;
        if (copy_ahead) {
          // Each full tile of panel q copies a slice of the rows of panel q + 1 from its source into
          // the other slot, and prefetches the same slice of panel q + 2's source: every panel
          // arrives packed (the first, and one after a narrow panel, are packed here), and its
          // source was in cache a panel earlier, so the copies do not wait on memory.
          bool packed = false;  // the current panel's slot already holds it
          for (int jr = 0; jr < nc; jr += NR) {
            if (next_i >= 0) prefetch_a_block(P.a, next_i, next_mc, next_k, next_kc, jr / NR, panels);
            const int nr = std::min(NR, nc - jr);
            float* b_panel = b_pack + static_cast<int64_t>((jr / NR) & 1) * NR * kc;
            float* next_slot = b_pack + static_cast<int64_t>(((jr / NR) + 1) & 1) * NR * kc;
            if (!packed) pack_b(b_panel, P.b, pc, kc, jc + jr, nr);
            // Only a full next panel is copied (a narrow one is packed with its zeros when it comes).
            const int next_j = jr + NR < nc && nc - jr - NR >= NR ? jc + jr + NR : -1;
            const int after_j = jr + 2 * NR < nc ? jc + jr + 2 * NR : -1;
            const int after_nr = after_j < 0 ? 0 : std::min(NR, nc - jr - 2 * NR);
            for (int ir = 0, call = 0; ir < mc; ir += MR, ++call) {
              const int mr = std::min(MR, mc - ir);
              const int k_begin = kc * call / calls, k_end = kc * (call + 1) / calls;
              const float* a_panel = a_pack + static_cast<int64_t>(ir) * kc;
              float* c = dest + static_cast<int64_t>(ic - r0 + ir) * ldd + (jc - c0 + jr);
              if (mr == MR && nr == NR) {
                kernel.copying(kc, a_panel, b_panel, c, ldd, add, next_j < 0 ? nullptr : P.b.row(pc + k_begin) + next_j,
                               P.b.ld, next_slot + static_cast<int64_t>(k_begin) * NR, next_j < 0 ? 0 : k_end - k_begin,
                               after_j < 0 ? nullptr : P.b.row(pc + k_begin) + after_j, after_j < 0 ? 0 : k_end - k_begin);
              } else {
                if (next_j >= 0)
                  for (int k = k_begin; k < k_end; ++k)
                    std::memcpy(next_slot + static_cast<int64_t>(k) * NR, P.b.row(pc + k) + next_j, NR * sizeof(float));
                if (after_j >= 0) prefetch_b_panel(P.b, pc, kc, after_j, after_nr, call, calls);
                run_tile(kernel, kc, a_panel, b_panel, c, ldd, add, mr, nr);
              }
              if (last && P.epilogue != Epilogue::none)
                finish_rows(P.epilogue, c, ldd, mr, nr);
            }
            packed = next_j >= 0;
          }
          continue;
        }
        for (int jr = 0; jr < nc; jr += NR) {
          if (next_i >= 0) prefetch_a_block(P.a, next_i, next_mc, next_k, next_kc, jr / NR, panels);
          const int nr = std::min(NR, nc - jr);
          // With a single row block a panel is used only right after it is packed: one panel slot,
          // always warm in L1, instead of writing the whole block out to L3 and reading it back.
          float* b_panel = single_row_block ? b_pack : b_pack + static_cast<int64_t>(jr) * kc;
          // A full panel of a B stored by rows is packed by the panel's first (full) tile as it
          // sums, from the source rows the prefetches below brought in; other panels separately.
          const bool pack_in_kernel = first_rows && nr == NR && mc >= MR && !P.b.trans && kernel.pack_b && side_jobs;
          if (first_rows && !pack_in_kernel) pack_b(b_panel, P.b, pc, kc, jc + jr, nr);
          const int next_j = jr + NR < nc ? jc + jr + NR : -1;
          const int next_nr = next_j < 0 ? 0 : std::min(NR, nc - jr - NR);
          // The next panel's source, a slice per call: for a B not gathered by the full tiles
          // themselves, spread between their FMAs (rows, or for a transposed B lines of its stored
          // rows); otherwise before the call.
          const bool prefetch_in_kernel = first_rows && next_j >= 0 && !P.b.rows && kernel.prefetching && side_jobs;
          for (int ir = 0, call = 0; ir < mc; ir += MR, ++call) {
            const int mr = std::min(MR, mc - ir);
            const bool prefetching = prefetch_in_kernel && mr == MR && nr == NR && !(pack_in_kernel && ir == 0);
            if (first_rows && next_j >= 0 && !prefetching)
              prefetch_b_panel(P.b, pc, kc, next_j, next_nr, call, calls);
            const float* a_panel = a_pack + static_cast<int64_t>(ir) * kc;
            float* c = dest + static_cast<int64_t>(ic - r0 + ir) * ldd + (jc - c0 + jr);
            if (prefetching && !P.b.trans) {
              // Rows [k_begin, k_end) of the next panel's source, 16 floats each.
              const int k_begin = kc * call / calls, k_end = kc * (call + 1) / calls;
              kernel.prefetching(kc, a_panel, b_panel, c, ldd, add, P.b.row(pc + k_begin) + next_j, P.b.ld,
                                 k_end - k_begin);
            } else if (prefetching) {
              // Lines [l_begin, l_end) of the next panel's next_nr stored rows (lines_per_row lines of
              // kc floats each): those in the slice's first stored row by the kernel, one every 16
              // floats, the rest (a slice crossing into the next row) here.
              const int lines_per_row = (kc + 15) / 16, total = next_nr * lines_per_row;
              const int l_begin = total * call / calls, l_end = total * (call + 1) / calls;
              const int row = l_begin / lines_per_row, first = l_begin - row * lines_per_row;
              const int in_row = std::min(l_end - l_begin, lines_per_row - first);
              for (int l = l_begin + in_row; l < l_end; ++l)
                prefetch_l2(P.b.row(next_j + l / lines_per_row) + pc + (l % lines_per_row) * 16);
              kernel.prefetching(kc, a_panel, b_panel, c, ldd, add, P.b.row(next_j + row) + pc + first * 16, 16,
                                 in_row);
            } else if (pack_in_kernel && ir == 0) {
              const Operand& B = P.b;
              kernel.pack_b(kc, a_panel, B.rows ? B.p + jc + jr : B.row(pc) + jc + jr, B.ld, B.rows ? B.rows + pc : nullptr,
                            b_panel, c, ldd, add);
            } else {
              run_tile(kernel, kc, a_panel, b_panel, c, ldd, add, mr, nr);
            }
            if (last && P.epilogue != Epilogue::none)
              finish_rows(P.epilogue, c, ldd, mr, nr);
          }
        }
      }
    }
  }
}

// Columns [c0, c1) of every row of P, the rows added in order into c[scatter[i]] · scale[i].
// The finished rows wait in a scratch of up to 1024 rows × 512 columns (2 MB): wide enough that
// a group's weight block is packed once for up to 1024 of its rows, small enough to stay in cache
// for the write-back.
void compute_scattered(const Problem& P, const Kernels& kernel, int c0, int c1) {
  constexpr int kRows = 1024, kCols = 512;
  float* scratch = thread_buffers().scratch.get(static_cast<size_t>(kRows) * kCols);
  for (int cs = c0; cs < c1; cs += kCols) {
    const int ce = std::min(c1, cs + kCols), width = ce - cs;
    for (int r0 = 0; r0 < P.M; r0 += kRows) {
      const int r1 = std::min(P.M, r0 + kRows);
      compute_block(P, kernel, r0, r1, cs, ce, scratch, width, false);
      for (int i = r0; i < r1; ++i) {
        // The scattered rows are far apart (token order): fetch the next one while adding this one.
        if (i + 1 < r1) {
          const float* next = P.c + static_cast<int64_t>(P.scatter[i + 1]) * P.ldc + cs;
          for (int j = 0; j < width; j += 16) prefetch_l2(next + j);
        }
        float* y = P.c + static_cast<int64_t>(P.scatter[i]) * P.ldc + cs;
        const float* t = scratch + static_cast<int64_t>(i - r0) * width;
        const float s = P.scale ? P.scale[i] : 1.0f;
        for (int j = 0; j < width; ++j) y[j] += s * t[j];
      }
    }
  }
}

struct Task {
  int problem;
  int r0, r1, c0, c1;
};

// Splits [0, n) into `parts` ranges on multiples of `unit`.
int split_point(int n, int unit, int parts, int index) {
  const int64_t units = (n + unit - 1) / unit;
  return static_cast<int>(std::min<int64_t>(n, units * index / parts * unit));
}

// Splits each problem into a grid of tasks, more pieces for more work, choosing the grid shape
// that packs the least twice: a row split repacks B, a column split repacks A (a strided gather,
// the dearer of the two).
std::vector<Task> plan(const std::vector<Problem>& problems, int threads) {
  std::vector<Task> tasks;
  double total = 0;
  for (const Problem& P : problems) total += static_cast<double>(P.M) * P.N * std::max(P.K, 1);
  for (int p = 0; p < static_cast<int>(problems.size()); ++p) {
    const Problem& P = problems[p];
    if (P.M == 0 || P.N == 0) continue;
    const double work = static_cast<double>(P.M) * P.N * std::max(P.K, 1);
    // Up to four pieces per thread: on a shared machine a thread that is descheduled for a while
    // then leaves its remaining pieces to the others instead of holding up the whole call. (Up to
    // sixteen, for the uneven groups of E = 16, ran no faster on 2 threads: 0.999.) Each
    // piece packs its own operands, so more pieces are taken only while the repacking stays
    // cheap: about 15 · ((gn - 1) / N + (gm - 1) / M) of the time (a packed element costs some
    // 30 flops; a grid gm × gn packs A gn times and B gm times).
    const int max_rows = (P.M + MR - 1) / MR, max_cols = (P.N + NR - 1) / NR;
    const int fewest = threads == 1 ? 1 : static_cast<int>(std::ceil(threads * work / total - 1e-9));
    const int most = threads == 1 ? 1 : static_cast<int>(std::ceil(4.0 * threads * work / total - 1e-9));
    int best_gm = 1, best_gn = 1;
    for (int pieces = std::max(1, std::min(most, max_rows * max_cols)); pieces >= 1; --pieces) {
      // A lone product is split evenly over the threads: 7 pieces on 2 threads leave one thread
      // idle for a seventh of the call.
      if (problems.size() == 1 && pieces > threads && pieces % threads != 0) continue;
      int gm_found = 0, gn_found = 0;
      double best_cost = -1;
      for (int gm = 1; gm <= pieces; ++gm) {
        if (pieces % gm) continue;
        const int gn = pieces / gm;
        if (gm > max_rows || gn > max_cols) continue;
        const double cost = static_cast<double>(gm) * P.N + 1.5 * static_cast<double>(gn) * P.M;
        if (best_cost < 0 || cost < best_cost) best_cost = cost, gm_found = gm, gn_found = gn;
      }
      if (best_cost < 0) continue;
      best_gm = gm_found, best_gn = gn_found;
      const double repacking = 15.0 * ((gn_found - 1.0) / P.N + (gm_found - 1.0) / P.M);
      if (pieces <= fewest || repacking <= 0.05) break;
    }
    for (int i = 0; i < best_gm; ++i)
      for (int j = 0; j < best_gn; ++j)
        tasks.push_back({p, split_point(P.M, MR, best_gm, i), split_point(P.M, MR, best_gm, i + 1),
                         split_point(P.N, NR, best_gn, j), split_point(P.N, NR, best_gn, j + 1)});
  }
  return tasks;
}

// One large product on several threads, the way the threads share one packed B: the whole of
// op(B) for a column block is packed once, each panel by whichever thread gets to it first (see
// SharedB), and the rows are split over the threads, each packing only its own rows of A. The task grid of plan() would
// instead pack B once per row piece (both threads streaming the same weights from memory) or A
// once per column piece. Every tile is still the same kernel call on the same packed values, so
// the bits are those of any other grid.
constexpr int kSharedBRowsPerPiece = 120;  // 20 micro-kernel calls per packed panel and row piece

bool use_shared_b(const std::vector<Problem>& problems, int threads) {
  if (threads <= 1 || problems.size() != 1) return false;
  const Problem& P = problems[0];
  // Small products: the two hand-offs (pack, then multiply) would cost more than the repacking.
  // Few rows: each row piece reads every packed panel from L3 for only a few micro-kernel calls,
  // where plan()'s column split packs each panel just before its calls, hot in L1.
  // Very deep products: the packed block (K × NC) is kept by the calling thread; past 64 MB the
  // memory is not worth it.
  return P.K > 0 && P.M >= kSharedBRowsPerPiece * 2 * threads && P.N >= 4 * NR &&
         static_cast<double>(P.M) * P.N * P.K >= static_cast<double>(1 << 24) &&
         static_cast<double>(P.K) * std::min(P.N, NC) <= static_cast<double>(16 << 20);
}

// The tile loop of run_shared_b for one row block and one depth block: every panel of the packed
// B block against the packed A block. `between(jr, call)` runs before each micro-kernel call and
// `after_panel(jr)` after each panel's calls (the packing of the next depth block rides on them).
template <class PanelOf, class Between, class AfterPanel>
void multiply_block(const Problem& P, const Kernels& kernel, const float* a_pack, PanelOf&& panel_of, int ic, int mc,
                    int jc, int nc, int kc, bool add, bool last, Between&& between, AfterPanel&& after_panel) {
  for (int jr = 0; jr < nc; jr += NR) {
    const int nr = std::min(NR, nc - jr);
    const float* b_panel = panel_of(jr / NR);
    for (int ir = 0, call = 0; ir < mc; ir += MR, ++call) {
      between(jr / NR, call);
      const int mr = std::min(MR, mc - ir);
      const float* a_panel = a_pack + static_cast<int64_t>(ir) * kc;
      float* c = P.c + static_cast<int64_t>(ic + ir) * P.ldc + jc + jr;
      run_tile(kernel, kc, a_panel, b_panel, c, P.ldc, add, mr, nr);
      if (last && P.epilogue != Epilogue::none)
        finish_rows(P.epilogue, c, P.ldc, mr, nr);
    }
    after_panel(jr / NR);
  }
}

std::atomic<bool> test_private_panels{false};  // gemm_test_pack_private_panels

// The packed B of run_shared_b: every depth block of one column block, packed panel by panel by
// whichever thread claims the panel first. Claims go in panel order (one cursor per depth block),
// and a panel is marked ready once written, so a thread that needs a panel either claims and
// packs it or waits only for a thread that is packing it at that moment: no waiting on work that
// has not started, whatever the number of threads that actually run (the pool may run every task
// on the calling thread).
class SharedB {
 public:
  SharedB(const Problem& P, const DepthBlocks& depth, int jc, int nc, float* pack)
      : P_(P), depth_(depth), jc_(jc), nc_(nc), panels_((nc + NR - 1) / NR),
        block_floats_(static_cast<int64_t>(panels_) * NR * depth.size), pack_(pack),
        cursor_(new std::atomic<int>[depth.count]), ready_(new std::atomic<int>[static_cast<size_t>(depth.count) * panels_]) {
    for (int b = 0; b < depth.count; ++b) cursor_[b].store(0, std::memory_order_relaxed);
    for (int64_t i = 0; i < static_cast<int64_t>(depth.count) * panels_; ++i) ready_[i].store(0, std::memory_order_relaxed);
  }
  int panels() const { return panels_; }
  int kc(int blk) const { return std::min(depth_.size, P_.K - blk * depth_.size); }

  int claimed(int blk) const { return cursor_[blk].load(std::memory_order_relaxed); }
  // The next unclaimed panel of depth block blk, or -1.
  int claim(int blk) {
    if (cursor_[blk].load(std::memory_order_relaxed) >= panels_) return -1;
    const int q = cursor_[blk].fetch_add(1, std::memory_order_relaxed);
    return q < panels_ ? q : -1;
  }
  // The next unclaimed panel of the first depth block from blk on that has one: {block, panel},
  // or a block of -1.
  std::pair<int, int> claim_from(int blk) {
    for (int b = blk; b < depth_.count; ++b) {
      const int q = claim(b);
      if (q >= 0) return {b, q};
    }
    return {-1, -1};
  }
  void prefetch(int blk, int q, int part, int parts) const {
    prefetch_b_panel(P_.b, blk * depth_.size, kc(blk), jc_ + q * NR, std::min(NR, nc_ - q * NR), part, parts);
  }
  const float* pack_own(int blk, int q, float* own) const {
    pack_b(own, P_.b, blk * depth_.size, kc(blk), jc_ + q * NR, std::min(NR, nc_ - q * NR));
    return own;
  }
  void pack(int blk, int q) {
    const int k = kc(blk);
    pack_b(pack_ + blk * block_floats_ + static_cast<int64_t>(q) * NR * k, P_.b, blk * depth_.size, k, jc_ + q * NR,
           std::min(NR, nc_ - q * NR));
    ready_[static_cast<int64_t>(blk) * panels_ + q].store(1, std::memory_order_release);
  }
  // Panel q of depth block blk, packed: claims and packs the panels up to it that nobody has
  // claimed yet. A panel that another thread claimed but has not finished (that thread may have
  // been descheduled by the machine, for milliseconds) is not waited for beyond a moment: it is
  // packed again into `own` (NR · kc floats of this thread), the same values.
  const float* panel(int blk, int q, float* own) {
    std::atomic<int>& ready = ready_[static_cast<int64_t>(blk) * panels_ + q];
    const float* shared = pack_ + blk * block_floats_ + static_cast<int64_t>(q) * NR * kc(blk);
    if (test_private_panels.load(std::memory_order_relaxed) && (q & 1)) return pack_own(blk, q, own);
    if (ready.load(std::memory_order_acquire)) return shared;
    while (cursor_[blk].load(std::memory_order_relaxed) <= q) {
      const int p = claim(blk);
      if (p < 0) break;
      pack(blk, p);
    }
    for (int spin = 0; spin < 64; ++spin) {
      if (ready.load(std::memory_order_acquire)) return shared;
      cpu_pause();
    }
    if (ready.load(std::memory_order_acquire)) return shared;
    return pack_own(blk, q, own);
  }

 private:
  static void cpu_pause() { _mm_pause(); }
  const Problem& P_;
  const DepthBlocks& depth_;
  const int jc_, nc_, panels_;
  const int64_t block_floats_;
  float* const pack_;
  std::unique_ptr<std::atomic<int>[]> cursor_, ready_;
};

// The packing of B is spread over the multiplication: the first few panels are packed before the
// first tile, and from then on each thread, every `threads` panels it multiplies, claims the next
// unpacked panel (of this depth block or the next), prefetches its source a slice per micro-kernel
// call and packs it after the panel: the stream of B from memory overlaps the arithmetic (a
// separate packing pass held both threads for 3-4 % of the call at 1024×3072×768, the two
// threads sharing the memory bandwidth).
void run_shared_b(const Problem& P, const Kernels& kernel, int threads) {
  const DepthBlocks depth(P.K, P.single_block_depth);
  // Row pieces of at most MC rows (one A block per depth block), at least two per thread so that
  // a thread the machine descheduled leaves its second piece to the others, and a multiple of the
  // threads: 4096 rows in 15 pieces kept one of two threads idle for the last fifteenth.
  const int max_rows = (P.M + MR - 1) / MR;
  int pieces = std::min(max_rows, std::max(2 * threads, (P.M + MC - 1) / MC));
  if (pieces % threads) pieces = std::min(max_rows, (pieces + threads - 1) / threads * threads);
  for (int jc = 0; jc < P.N; jc += NC) {
    const int nc = std::min(NC, P.N - jc);
    const int panels = (nc + NR - 1) / NR;
    const int64_t block_floats = static_cast<int64_t>(panels) * NR * depth.size;
    SharedB B(P, depth, jc, nc, thread_buffers().shared_b.get(static_cast<size_t>(block_floats) * depth.count));
    parallel_for(pieces, [&](int64_t piece, int) {
      const int r0 = split_point(P.M, MR, pieces, static_cast<int>(piece));
      const int r1 = split_point(P.M, MR, pieces, static_cast<int>(piece) + 1);
      if (r1 <= r0) return;
      float* a_pack = thread_buffers().a.get(static_cast<size_t>(MC) * depth.size);
      float* own_panel = thread_buffers().b.get(static_cast<size_t>(NR) * depth.size);
      // A lead of a few panels packed before the first tile; from then on each thread packs one
      // panel in `threads` of its own, which keeps the lead.
      for (const int lead = std::min(B.panels(), 2 * threads); B.claimed(0) < lead;) {
        const int q = B.claim(0);
        if (q < 0) break;
        B.pack(0, q);
      }
      for (int ic = r0; ic < r1; ic += MC) {
        const int mc = std::min(MC, r1 - ic);
        const int calls = (mc + MR - 1) / MR;
        for (int blk = 0; blk < depth.count; ++blk) {
          const int kc = B.kc(blk);
          if (kc <= 0) break;
          pack_a(a_pack, P.a, ic, mc, blk * depth.size, kc);
          std::pair<int, int> claimed{-1, -1};  // the panel this thread packs after the current one
          multiply_block(
              P, kernel, a_pack, [&](int q) { return B.panel(blk, q, own_panel); }, ic, mc, jc, nc, kc,
              P.accumulate || blk > 0, blk + 1 == depth.count,
              [&](int q, int call) {
                if (call == 0) {
                  if (q % threads) return;
                  claimed = B.claim_from(blk);
                }
                if (claimed.first >= 0) B.prefetch(claimed.first, claimed.second, call, calls);
              },
              [&](int) {
                if (claimed.first >= 0) B.pack(claimed.first, claimed.second);
                claimed = {-1, -1};
              });
        }
      }
    });
  }
}

// Runs the problems over the thread pool. Unscattered problems are split into row × column tasks;
// scattered ones (which may add into the same output rows) into column ranges only, each range
// running every problem in order.
void run(const std::vector<Problem>& problems, bool scattered) {
  const Kernels kernel = active_kernels();
  const int threads = num_threads();
  if (!scattered && use_shared_b(problems, threads)) {
    run_shared_b(problems[0], kernel, threads);
    return;
  }
  if (!scattered) {
    const std::vector<Task> tasks = plan(problems, threads);
    parallel_for(static_cast<int64_t>(tasks.size()), [&](int64_t t, int) {
      const Task& T = tasks[t];
      const Problem& P = problems[T.problem];
      compute_block(P, kernel, T.r0, T.r1, T.c0, T.c1, P.c + static_cast<int64_t>(T.r0) * P.ldc + T.c0, P.ldc,
                    P.accumulate);
    });
    return;
  }
  int N = 0;
  for (const Problem& P : problems) N = std::max(N, P.N);
  const int parts = std::max(1, std::min(threads, (N + NR - 1) / NR));
  parallel_for(parts, [&](int64_t part, int) {
    const int c0 = split_point(N, NR, parts, static_cast<int>(part));
    const int c1 = split_point(N, NR, parts, static_cast<int>(part) + 1);
    for (const Problem& P : problems)
      if (P.M > 0) compute_scattered(P, kernel, c0, c1);
  });
}

}  // namespace

Buffers& thread_buffers() {
  thread_local Buffers buffers;
  return buffers;
}

}  // namespace gemm

void gemm_test_pack_private_panels(bool on) { gemm::test_private_panels.store(on, std::memory_order_relaxed); }
void gemm_test_separate_packing(bool on) { gemm::test_separate_packing.store(on, std::memory_order_relaxed); }

void matmul(float* c, const float* a, const float* b, int M, int N, int K, int lda, int ldb, int ldc,
            bool trans_a, bool trans_b, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  std::vector<gemm::Problem> problems{{{a, lda, trans_a, nullptr}, {b, ldb, trans_b, nullptr}, c, ldc, nullptr,
                                       nullptr, M, N, K, accumulate, gemm::kLoneProductDepth}};
  gemm::run(problems, false);
}

void grouped_matmul(const GroupedMatmul& g) {
  if (grouped_matmul_small_applies(g)) {  // few rows per group: gemm_grouped.cc
    grouped_matmul_small(g);
    return;
  }
  std::vector<gemm::Problem> problems;
  problems.reserve(g.E);
  const int64_t w_stride = static_cast<int64_t>(g.K) * g.N;
  for (int e = 0; e < g.E; ++e) {
    const int begin = g.offsets[e], rows = g.offsets[e + 1] - g.offsets[e];
    if (rows <= 0) continue;
    gemm::Problem P;
    P.a = g.gather ? gemm::Operand{g.x, g.ldx, false, g.gather + begin}
                   : gemm::Operand{g.x + static_cast<int64_t>(begin) * g.ldx, g.ldx, false, nullptr};
    P.b = {g.w + e * w_stride, g.trans_w ? g.K : g.N, g.trans_w, nullptr};
    if (g.scatter) {
      P.c = g.y;
      P.scatter = g.scatter + begin;
      P.scale = g.scale ? g.scale + begin : nullptr;
    } else {
      P.c = g.y + static_cast<int64_t>(begin) * g.ldy;
      P.scatter = nullptr;
      P.scale = nullptr;
      P.epilogue = g.epilogue;
    }
    P.ldc = g.ldy;
    P.M = rows;
    P.N = g.N;
    P.K = g.K;
    P.accumulate = g.accumulate;
    problems.push_back(P);
  }
  if (problems.empty() || g.N <= 0) return;
  gemm::run(problems, g.scatter != nullptr);
}

void grouped_matmul_weight_grad(const GroupedMatmulWeightGrad& g) {
  if (g.K <= 0 || g.N <= 0) return;
  if (grouped_matmul_weight_grad_small_applies(g)) {  // few rows per group: gemm_grouped.cc
    grouped_matmul_weight_grad_small(g);
    return;
  }
  std::vector<gemm::Problem> problems;
  problems.reserve(g.E);
  const int64_t w_stride = static_cast<int64_t>(g.K) * g.N;
  for (int e = 0; e < g.E; ++e) {
    const int begin = g.offsets[e], rows = g.offsets[e + 1] - g.offsets[e];
    gemm::Problem P;
    // dw[e] (K, N) = x_eᵀ (K, rows) · dy_e (rows, N): the group's rows are the depth of the product.
    P.a = g.gather_x ? gemm::Operand{g.x, g.ldx, true, g.gather_x + begin}
                     : gemm::Operand{g.x + static_cast<int64_t>(begin) * g.ldx, g.ldx, true, nullptr};
    P.b = g.gather_dy ? gemm::Operand{g.dy, g.lddy, false, g.gather_dy + begin}
                      : gemm::Operand{g.dy + static_cast<int64_t>(begin) * g.lddy, g.lddy, false, nullptr};
    P.c = g.dw + e * w_stride;
    P.ldc = g.N;
    P.scatter = nullptr;
    P.scale = nullptr;
    P.M = g.K;
    P.N = g.N;
    P.K = std::max(rows, 0);
    P.accumulate = g.accumulate;
    problems.push_back(P);
  }
  gemm::run(problems, false);
}

}  // namespace st
