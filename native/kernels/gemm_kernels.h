// Internals of the fast matmul (gemm.cc): the register tile, the packed-panel layout and the
// per-ISA micro-kernels. MR = tile rows, NR = tile columns, kc = depth of one packed block.
//
// Packed layouts (shared by every ISA, so one packing serves both micro-kernels):
//   A panel (MR rows × kc): a[k·MR + r]   — the MR values of column k of the tile, adjacent
//   B panel (kc × NR cols): b[k·NR + c]   — the NR values of row k of the tile, adjacent
// Rows or columns past the matrix edge are packed as zeros, so the kernels never branch on edges.
#pragma once

#include <cstdint>

namespace st::gemm {

constexpr int MR = 6;   // AVX2: 6 × 16 = 12 ymm accumulators + 2 B vectors + 2 A broadcasts; AVX-512: 6 zmm
constexpr int NR = 16;

// c (MR, NR) with row stride ldc = [c +] a_panel · b_panel over kc. The product is summed from zero
// in k order, then added to c (add) or stored (not add): the same arithmetic whichever caller or
// thread computes the tile, which is what keeps results independent of the task grid.
using MicroKernel = void (*)(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add);

void micro_kernel_avx2(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add);  // gemm_avx2.cc
void micro_kernel_sse2(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add);  // gemm_sse2.cc
// The full tile with a side job spread between its FMAs: pf_rows rows of a strided source (row i at
// pf + i·pf_ld, 16 floats) prefetched into L2; c as micro_kernel_avx2 computes it.
using PrefetchingKernel = void (*)(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add,
                                   const float* pf, int64_t pf_ld, int64_t pf_rows);
void micro_kernel_prefetching_avx2(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add,
                                   const float* pf, int64_t pf_ld, int64_t pf_rows);
// The full tile with two side jobs spread between its FMAs: copy_rows rows of the next B panel's
// source (row i at src + i·ld, 16 floats) copied into its packed slot (dst + i·NR), and pf_rows rows
// of the panel after it (pf + i·ld) prefetched into L2; c as micro_kernel_avx2 computes it.
using CopyingKernel = void (*)(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add,
                               const float* src, int64_t ld, float* dst, int64_t copy_rows, const float* pf,
                               int64_t pf_rows);
void micro_kernel_copying_avx2(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add,
                               const float* src, int64_t ld, float* dst, int64_t copy_rows, const float* pf,
                               int64_t pf_rows);
// The full tile that packs its B panel as it sums (the first call on a panel, instead of a separate
// packing pass): row k of the panel (NR floats) is read from src + rows[k]·ld (rows null: src +
// k·ld) and written to b[k·NR ..]; c as micro_kernel_avx2 computes it, the same bits.
using PackBKernel = void (*)(int kc, const float* a, const float* src, int64_t ld, const int32_t* rows, float* b,
                             float* c, int64_t ldc, bool add);
void micro_kernel_pack_b_avx2(int kc, const float* a, const float* src, int64_t ld, const int32_t* rows, float* b,
                              float* c, int64_t ldc, bool add);
// Rows 0-3 of the tile only (a panels still MR rows wide), for the last rows of a matrix.
void micro_kernel_4x16_avx2(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add);
// Rows 0-1 only: a group whose last tile has one or two rows (the Switch layer's experts get any
// number of rows) costs a third of a full tile instead of a whole one.
void micro_kernel_2x16_avx2(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add);
// The full tile stored (never added) with non-temporal stores; c and ldc·4 must be multiples of 64
// bytes, and the caller issues an sfence before the result is read.
using StreamKernel = void (*)(int kc, const float* a, const float* b, float* c, int64_t ldc);
void micro_kernel_stream_avx2(int kc, const float* a, const float* b, float* c, int64_t ldc);

// AVX-512 (gemm_avx512.cc): the same tiles on zmm registers (one accumulator per row), with the
// same layouts, arguments and bits as their AVX2 namesakes above (the 2-row tile has no zmm one).
void micro_kernel_avx512(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add);
void micro_kernel_4x16_avx512(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add);
void micro_kernel_stream_avx512(int kc, const float* a, const float* b, float* c, int64_t ldc);
void micro_kernel_prefetching_avx512(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add,
                                     const float* pf, int64_t pf_ld, int64_t pf_rows);
void micro_kernel_copying_avx512(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add,
                                 const float* src, int64_t ld, float* dst, int64_t copy_rows, const float* pf,
                                 int64_t pf_rows);
void micro_kernel_pack_b_avx512(int kc, const float* a, const float* src, int64_t ld, const int32_t* rows, float* b,
                                float* c, int64_t ldc, bool add);

// AVX-512 (gemm_avx512.cc): the wide tile, up to MR_WIDE rows × NR columns, for the small-group
// path of the grouped matmul. Its A panels are MR_WIDE rows wide (a[k·MR_WIDE + r], rows past the
// matrix zeros); B panels are the shared layout. c (mr ≤ MR_WIDE, nr ≤ NR) = [c +] a · b over kc,
// summed as the kernels above sum (the same bits); only the mr × nr values are read or written.
constexpr int MR_WIDE = 16;
// A side job done while the tile is summed, spread over its k steps: rows [0, rows) of a slice of
// the next B block (source row i at src + i·ld, nc floats) copied into their packed panels (row i of
// panel q at dst + i·NR + q·panel_stride; the last panel's columns past nc zeros: last_columns is
// its mask), and rows [0, prefetch_rows) of the slice after it (prefetch + i·ld, prefetch_columns
// floats) prefetched into L2. The walk of gemm_grouped.cc packs W this way, so the copies and
// prefetches are spread evenly between the FMAs instead of bunched between kernel calls.
struct WidePackJob {
  const float* src = nullptr;
  int64_t ld = 0;
  float* dst = nullptr;
  int64_t panel_stride = 0;
  int rows = 0, panels = 0;
  uint16_t last_columns = 0;
  const float* prefetch = nullptr;
  int prefetch_rows = 0, prefetch_columns = 0;
};
void micro_kernel_wide_avx512(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add, int mr, int nr,
                              const WidePackJob& job);

}  // namespace st::gemm
