// AVX-512 micro-kernels (gemm_kernels.h), compiled with -mavx512f -mavx512vl -mavx512bw
// -mavx512dq (plus the AVX2 flags); called only when active_isa() >= Isa::avx512:
//   - the general driver's tiles (gemm.cc) on zmm registers: the 6 × 16 tile and its variants with
//     side jobs, and the 4 × 16 tile, with the packed layouts of the AVX2 kernels;
//   - the grouped matmul's small-group tile (gemm_grouped.cc), up to 16 rows × 16 columns.
//
// The general tile: one row of 16 columns is one zmm accumulator, so a k step is one B load and
// six FMAs whose A operand is an embedded broadcast ({1to16}) of the packed A value: 7 instructions
// where the AVX2 tile needs 20 (two B loads, six broadcasts, twelve FMAs) for the same flops. Zen 4
// runs a zmm FMA on both 256-bit pipes, so the FMA peak is the same, but the tile runs closer to
// it: 2-3 % faster alone on L2-resident panels (1 and 2 threads), and its side jobs (packing,
// copying and prefetching B) ride in the issue slots the AVX2 tile used for its extra loads. Six
// accumulators cover the FMA latency (4 cycles at one zmm FMA per cycle); the 4-row tile has just
// enough, so the 2-row tile stays the AVX2 one (latency-bound either way).
//
// The small-group tile, why 16 rows: a group of the Switch layer at E = 64 has 64 rows, and each
// packed line of W (16 columns of one depth) is loaded once per row tile. The AVX2 tile (6 × 16 in
// 16 ymm registers) needs eleven tiles for 64 rows; 32 zmm registers hold 16 accumulators of 16
// columns, so four tiles cover the group: half the loads per FMA of the AVX2 tile. Edge columns
// are written through an opmask (no scratch tile); edge rows by the kernel with that many rows (a
// template per row count). Its side job (WidePackJob, gemm_kernels.h): while it sums, the kernel
// also packs a slice of the next B block of the grouped walk and prefetches the slice after it, a
// row after every kc / rows k steps, in registers it has to spare; spread so between the FMAs, the
// copies and prefetches cost less than in bursts between kernel calls (gemm_grouped.cc).
//
// Written with intrinsics: with 32 registers the compiler has room for the accumulators, B and
// the loops' pointers without spilling (checked in the object code). Each output element is summed
// from zero in k order with one FMA per k and then added to (or stored into) C, exactly as the
// AVX2 kernels do, so a tile gives the same bits on either ISA. No standard-library templates here:
// an out-of-line copy compiled for AVX-512 could be the one the linker keeps for portable code.
//
// Packed layouts: A panel of the general tile a[k·MR + r], of the small-group tile a[k·16 + r]
// (rows past the group's are zeros); B panel the shared layout b[k·16 + c] (gemm_kernels.h, NR = 16).
#include <immintrin.h>

#include <cstdint>

#include "gemm_kernels.h"

namespace st::gemm {

namespace {

static_assert(NR == 16, "one zmm register holds one row of the tile");

// ---- The general driver's tiles ----------------------------------------------------------------

// Where a tile's B rows come from: the packed panel, or (the tile that packs its own panel) the
// source rows, each stored into the packed panel as it is used.
struct PackedB {
  const float* b;
  __m512 row(int k) const { return _mm512_loadu_ps(b + static_cast<int64_t>(k) * NR); }
};
struct StridedSourceB {  // row k at s + k·ld
  const float* s;
  int64_t ld;
  float* b;
  __m512 row(int k) const {
    const float* src = s + k * ld;
    // The row eight steps ahead into L1 (a prefetch past the matrix does not fault).
    _mm_prefetch(reinterpret_cast<const char*>(src + 8 * ld), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(src + 8 * ld + 15), _MM_HINT_T0);
    const __m512 v = _mm512_loadu_ps(src);
    _mm512_storeu_ps(b + static_cast<int64_t>(k) * NR, v);
    return v;
  }
};
struct GatheredSourceB {  // row k at s + rows[k]·ld
  const float* s;
  int64_t ld;
  const int32_t* rows;
  float* b;
  __m512 row(int k) const {
    const __m512 v = _mm512_loadu_ps(s + static_cast<int64_t>(rows[k]) * ld);
    _mm512_storeu_ps(b + static_cast<int64_t>(k) * NR, v);
    return v;
  }
};

// The side jobs, one step after every four k steps, the rest after the sums.
struct NoJob {
  void step() {}
  void finish() {}
};
inline void prefetch_l2_row(const float* p) {  // 16 floats, which may straddle two lines
  _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1);
  _mm_prefetch(reinterpret_cast<const char*>(p + 15), _MM_HINT_T1);
}
struct PrefetchJob {  // rows [0, n) of p (row i at p + i·ld) into L2
  const float* p;
  int64_t ld, n;
  void step() {
    if (n > 0) prefetch_l2_row(p), p += ld, --n;
  }
  void finish() {
    while (n > 0) step();
  }
};
struct CopyAndPrefetchJob {  // rows [0, cn) of s copied to d (16 floats each), rows [0, pn) of pf into L2
  const float* s;
  int64_t ld;
  float* d;
  int64_t cn;
  const float* pf;
  int64_t pn;
  void step() {
    if (cn > 0) _mm512_storeu_ps(d, _mm512_loadu_ps(s)), s += ld, d += NR, --cn;
    if (pn > 0) prefetch_l2_row(pf), pf += ld, --pn;
  }
  void finish() {
    while (cn > 0 || pn > 0) step();
  }
};

enum class Write { add_or_store, stream };

// c (R rows × 16, row stride ldc) = [c +] a · b over kc, a in the MR-row packed layout.
template <int R, Write W = Write::add_or_store, class BRows, class Job>
inline void tile(int kc, const float* a, const BRows& b, float* c, int64_t ldc, bool add, Job& job) {
  // The C rows are far apart and needed only at the end: ask for them now (not those streamed
  // out: a non-temporal store to a line in cache first evicts it, and the prefetch reads memory
  // the stream is there to avoid).
  if (W != Write::stream) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 15), _MM_HINT_T0);
    }
  }
  __m512 acc[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  int k = 0;
  for (; k + 4 <= kc; k += 4) {
#pragma GCC unroll 4
    for (int s = 0; s < 4; ++s) {
      const __m512 bk = b.row(k + s);
      const float* ak = a + (k + s) * MR;
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(ak[r]), bk, acc[r]);
    }
    job.step();
  }
  for (; k < kc; ++k) {
    const __m512 bk = b.row(k);
    const float* ak = a + k * MR;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(ak[r]), bk, acc[r]);
  }
  job.finish();
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    float* row = c + r * ldc;
    if (W == Write::stream)
      _mm512_stream_ps(row, acc[r]);
    else
      _mm512_storeu_ps(row, add ? _mm512_add_ps(_mm512_loadu_ps(row), acc[r]) : acc[r]);
  }
}

}  // namespace

void micro_kernel_avx512(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add) {
  NoJob none;
  tile<MR>(kc, a, PackedB{b}, c, ldc, add, none);
}

void micro_kernel_4x16_avx512(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add) {
  NoJob none;
  tile<4>(kc, a, PackedB{b}, c, ldc, add, none);
}

void micro_kernel_stream_avx512(int kc, const float* a, const float* b, float* c, int64_t ldc) {
  NoJob none;
  tile<MR, Write::stream>(kc, a, PackedB{b}, c, ldc, false, none);
}

void micro_kernel_prefetching_avx512(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add,
                                     const float* pf, int64_t pf_ld, int64_t pf_rows) {
  PrefetchJob job{pf, pf_ld, pf_rows};
  tile<MR>(kc, a, PackedB{b}, c, ldc, add, job);
}

void micro_kernel_copying_avx512(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add,
                                 const float* src, int64_t ld, float* dst, int64_t copy_rows, const float* pf,
                                 int64_t pf_rows) {
  CopyAndPrefetchJob job{src, ld, dst, copy_rows, pf, pf_rows};
  tile<MR>(kc, a, PackedB{b}, c, ldc, add, job);
}

void micro_kernel_pack_b_avx512(int kc, const float* a, const float* src, int64_t ld, const int32_t* rows, float* b,
                                float* c, int64_t ldc, bool add) {
  NoJob none;
  if (rows)
    tile<MR>(kc, a, GatheredSourceB{src, ld, rows, b}, c, ldc, add, none);
  else
    tile<MR>(kc, a, StridedSourceB{src, ld, b}, c, ldc, add, none);
}

namespace {

// ---- The small-group tile ------------------------------------------------------------------------

// The side job's copy of one row of the next B block into its packed panels (zeros past nc).
inline void copy_row(const WidePackJob& job, int row) {
  const float* src = job.src + row * job.ld;
  float* dst = job.dst + row * NR;
  for (int q = 0; q + 1 < job.panels; ++q) _mm512_storeu_ps(dst + q * job.panel_stride, _mm512_loadu_ps(src + q * NR));
  const int q = job.panels - 1;
  _mm512_storeu_ps(dst + q * job.panel_stride, _mm512_maskz_loadu_ps(job.last_columns, src + q * NR));
}

// The side job's prefetch of one row of the following slice into L2 (its nc floats may straddle
// one more line than nc / 16).
inline void prefetch_row(const WidePackJob& job, int row) {
  const float* p = job.prefetch + row * job.ld;
  for (int j = 0; j < job.prefetch_columns; j += NR) _mm_prefetch(reinterpret_cast<const char*>(p + j), _MM_HINT_T1);
  _mm_prefetch(reinterpret_cast<const char*>(p + job.prefetch_columns - 1), _MM_HINT_T1);
}

template <int R>
void tile_rows(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add, __mmask16 cols,
               const WidePackJob& job) {
  // The C rows are far apart and are needed only at the end: ask for them now.
  for (int r = 0; r < R; ++r) _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
  __m512 acc[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  // The side job: a row copied and a row prefetched after every `interval` k steps.
  const int jobs = job.rows > job.prefetch_rows ? job.rows : job.prefetch_rows;
  int interval = kc;
  if (jobs > 0) interval = kc / jobs > 0 ? kc / jobs : 1;
  int copied = 0, prefetched = 0;
  for (int k = 0; k < kc;) {
    const int end = k + interval < kc ? k + interval : kc;
#pragma GCC unroll 2
    for (; k < end; ++k) {
      // Eight k steps ahead: one line of the B panel and one of the A panel per step.
      _mm_prefetch(reinterpret_cast<const char*>(b + 8 * NR), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(a + 8 * MR_WIDE), _MM_HINT_T0);
      const __m512 bk = _mm512_loadu_ps(b);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[r]), bk, acc[r]);
      a += MR_WIDE;
      b += NR;
    }
    if (copied < job.rows) copy_row(job, copied++);
    if (prefetched < job.prefetch_rows) prefetch_row(job, prefetched++);
  }
  while (copied < job.rows) copy_row(job, copied++);
  while (prefetched < job.prefetch_rows) prefetch_row(job, prefetched++);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    float* row = c + r * ldc;
    const __m512 v = add ? _mm512_add_ps(_mm512_maskz_loadu_ps(cols, row), acc[r]) : acc[r];
    _mm512_mask_storeu_ps(row, cols, v);
  }
}

using TileRows = void (*)(int, const float*, const float*, float*, int64_t, bool, __mmask16, const WidePackJob&);

}  // namespace

void micro_kernel_wide_avx512(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add, int mr, int nr,
                              const WidePackJob& job) {
  static_assert(MR_WIDE == 16, "one kernel per row count");
  static constexpr TileRows table[MR_WIDE] = {tile_rows<1>,  tile_rows<2>,  tile_rows<3>,  tile_rows<4>,
                                              tile_rows<5>,  tile_rows<6>,  tile_rows<7>,  tile_rows<8>,
                                              tile_rows<9>,  tile_rows<10>, tile_rows<11>, tile_rows<12>,
                                              tile_rows<13>, tile_rows<14>, tile_rows<15>, tile_rows<16>};
  const __mmask16 cols = static_cast<__mmask16>((1u << nr) - 1u);
  table[mr - 1](kc, a, b, c, ldc, add, cols, job);
}

}  // namespace st::gemm
