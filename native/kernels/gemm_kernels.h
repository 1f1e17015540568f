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

constexpr int MR = 6;   // 6 × 16 = 12 ymm accumulators + 2 B vectors + 1 A broadcast of 16 registers
constexpr int NR = 16;

// c (MR, NR) with row stride ldc = [c +] a_panel · b_panel over kc. The product is summed from zero
// in k order, then added to c (add) or stored (not add): the same arithmetic whichever caller or
// thread computes the tile, which is what keeps results independent of the task grid.
using MicroKernel = void (*)(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add);

void micro_kernel_avx2(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add);  // gemm_avx2.cc
void micro_kernel_sse2(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add);  // gemm_sse2.cc
// Rows 0-3 of the tile only (a panels still MR rows wide), for the last rows of a matrix.
void micro_kernel_4x16_avx2(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add);
// Rows 0-1 only: a group whose last tile has one or two rows (the Switch layer's experts get any
// number of rows) costs a third of a full tile instead of a whole one.
void micro_kernel_2x16_avx2(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add);
// The full tile stored (never added) with non-temporal stores; c and ldc·4 must be multiples of 64
// bytes, and the caller issues an sfence before the result is read.
using StreamKernel = void (*)(int kc, const float* a, const float* b, float* c, int64_t ldc);
void micro_kernel_stream_avx2(int kc, const float* a, const float* b, float* c, int64_t ldc);

}  // namespace st::gemm
