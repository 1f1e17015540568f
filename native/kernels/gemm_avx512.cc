// AVX-512 micro-kernel of the grouped matmul's small path (gemm_kernels.h): a tile of up to
// 16 rows × 16 columns, one zmm accumulator per row. Compiled with -mavx512f -mavx512vl
// -mavx512bw -mavx512dq (plus the AVX2 flags); called only when active_isa() >= Isa::avx512.
//
// Why 16 rows: a group of the Switch layer at E = 64 has 64 rows, and each packed line of W
// (16 columns of one depth) is loaded once per row tile. The AVX2 tile (6 × 16 in 16 ymm
// registers) needs eleven tiles for 64 rows; 32 zmm registers hold 16 accumulators of 16 columns,
// so four tiles cover the group and each k step is one B load and 16 FMAs whose A operand is an
// embedded broadcast ({1to16}) of the packed A value: half the loads per FMA of the AVX2 tile. Edge
// columns are written through an opmask (no scratch tile); edge rows by the kernel with that many
// rows (a template per row count).
//
// The side job (WidePackJob, gemm_kernels.h): while it sums, the kernel also packs a slice of the
// next B block of the grouped walk and prefetches the slice after it, a row after every kc / rows
// k steps, in registers it has to spare; spread so between the FMAs, the copies and prefetches cost
// less than in bursts between kernel calls (gemm_grouped.cc).
//
// Written with intrinsics: with 32 registers the compiler has room for 16 accumulators, B and
// the loop's pointers without spilling (checked in the object code). Each output element is summed
// from zero in k order with one FMA per k and then added to (or stored into) C, exactly as the
// AVX2 kernels do, so a tile gives the same bits on either ISA. No standard-library templates here:
// an out-of-line copy compiled for AVX-512 could be the one the linker keeps for portable code.
//
// Packed layouts: A panel (16 rows × kc) a[k·16 + r] (rows past the group's are zeros); B panel the
// shared layout b[k·16 + c] (gemm_kernels.h, NR = 16).
#include <immintrin.h>

#include <cstdint>

#include "gemm_kernels.h"

namespace st::gemm {

namespace {

static_assert(NR == 16, "one zmm register holds one row of the tile");

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
