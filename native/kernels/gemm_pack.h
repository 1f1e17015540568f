// What the general matmul driver (gemm.cc) and the small-group path of the grouped matmuls
// (gemm_grouped.cc) share: the micro-kernels of the running ISA, the per-thread packing buffers and
// the packing of a full A panel; also the packing of a transposed B panel (used by gemm.cc alone
// since transposed grouped products left the small path). Included by those two baseline (SSE2)
// translation units only: an inline function compiled into an AVX2 unit could be the copy the
// linker keeps.
// MR = panel rows, NR = panel columns, kc = panel depth.
#pragma once

#include <emmintrin.h>
#include <xmmintrin.h>

#include <cstddef>
#include <cstdlib>

#include "cpu.h"
#include "gemm.h"
#include "gemm_kernels.h"

namespace st::gemm {

// The micro-kernels of one ISA: the full tile, and (optionally) the 4-row and 2-row variants.
struct Kernels {
  MicroKernel full;
  MicroKernel four_rows;  // null when the ISA has none
  MicroKernel two_rows;   // null when the ISA has none
  StreamKernel stream;    // the full tile with non-temporal stores; null when the ISA has none
  PackBKernel pack_b;     // the full tile packing its B panel from the source rows; null when none
  PrefetchingKernel prefetching;  // the full tile prefetching rows between its FMAs; null when none
  CopyingKernel copying;  // the full tile copying and prefetching rows between its FMAs; null when none
};

inline Kernels active_kernels() {
  if (active_isa() >= Isa::avx512)
    return {micro_kernel_avx512,         micro_kernel_4x16_avx512,        micro_kernel_2x16_avx2,
            micro_kernel_stream_avx512,  micro_kernel_pack_b_avx512,      micro_kernel_prefetching_avx512,
            micro_kernel_copying_avx512};
  if (active_isa() >= Isa::avx2)
    return {micro_kernel_avx2, micro_kernel_4x16_avx2, micro_kernel_2x16_avx2, micro_kernel_stream_avx2,
            micro_kernel_pack_b_avx2, micro_kernel_prefetching_avx2, micro_kernel_copying_avx2};
  return {micro_kernel_sse2, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
}

// One tile of c (mr ≤ MR rows × nr ≤ NR columns, row stride ldc) = [c +] a_panel · b_panel over kc,
// on the smallest kernel that covers its rows: a full tile in place; a tile of 4 or 2 rows in place
// on the 4- or 2-row kernel; any other tile on the smallest kernel that covers it, into a scratch
// tile whose first mr × nr values are then stored or added. Every kernel sums each value the same
// way, so the choice never changes the bits.
inline void run_tile(const Kernels& kernel, int kc, const float* a_panel, const float* b_panel, float* c, int64_t ldc,
                     bool add, int mr, int nr) {
  if (nr == NR) {
    if (mr == MR) return kernel.full(kc, a_panel, b_panel, c, ldc, add);
    if (mr == 4 && kernel.four_rows) return kernel.four_rows(kc, a_panel, b_panel, c, ldc, add);
    if (mr == 2 && kernel.two_rows) return kernel.two_rows(kc, a_panel, b_panel, c, ldc, add);
  }
  alignas(64) float tile[MR * NR];
  if (mr <= 2 && kernel.two_rows) {
    kernel.two_rows(kc, a_panel, b_panel, tile, NR, false);
  } else if (mr <= 4 && kernel.four_rows) {
    kernel.four_rows(kc, a_panel, b_panel, tile, NR, false);
  } else {
    kernel.full(kc, a_panel, b_panel, tile, NR, false);
  }
  for (int r = 0; r < mr; ++r)
    for (int j = 0; j < nr; ++j) {
      float& out = c[r * ldc + j];
      out = add ? out + tile[r * NR + j] : tile[r * NR + j];
    }
}

// The epilogue (gemm.h) over finished rows × cols of y (row stride ldy), while they are in cache.
// The loop selects after loading, so it vectorises; a NaN becomes 0 under relu, as in the separate
// activation pass.
inline void finish_rows(Epilogue epilogue, float* y, int64_t ldy, int rows, int cols) {
  if (epilogue != Epilogue::relu) return;
  for (int r = 0; r < rows; ++r, y += ldy)
    for (int j = 0; j < cols; ++j) {
      const float v = y[j];
      y[j] = v > 0.0f ? v : 0.0f;
    }
}

// A 64-byte aligned float buffer, grown on demand and kept.
struct AlignedBuffer {
  float* data = nullptr;
  size_t size = 0;
  ~AlignedBuffer() { std::free(data); }
  float* get(size_t n) {
    if (n > size) {
      std::free(data);
      size = (n + 1023) & ~size_t{1023};
      data = static_cast<float*>(std::aligned_alloc(64, size * sizeof(float)));
      if (!data) std::abort();
    }
    return data;
  }
};

// Packing buffers, one set per thread that ever runs a task (gemm.cc).
struct Buffers {
  AlignedBuffer a, b, scratch;
  AlignedBuffer shared_b;  // a B block packed by all threads together (run_shared_b), owned by the caller
};
Buffers& thread_buffers();

// One full A panel (kc × MR, out[k·MR + r]) from MR stored rows src[r], each contiguous in depth
// (src[r][0 .. kc)): four depths at a time, rows 0-3 as a 4 × 4 transpose and rows 4-5 interleaved.
inline void pack_panel_rows(float* out, const float* const* src, int kc) {
  static_assert(MR == 6, "a full panel is packed as a 4 × 4 transpose and a 2-row interleave");
  int k = 0;
  for (; k + 4 <= kc; k += 4) {
    __m128 r0 = _mm_loadu_ps(src[0] + k), r1 = _mm_loadu_ps(src[1] + k);
    __m128 r2 = _mm_loadu_ps(src[2] + k), r3 = _mm_loadu_ps(src[3] + k);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
    const __m128 r4 = _mm_loadu_ps(src[4] + k), r5 = _mm_loadu_ps(src[5] + k);
    const __m128 lo = _mm_unpacklo_ps(r4, r5), hi = _mm_unpackhi_ps(r4, r5);
    float* o = out + k * MR;
    _mm_storeu_ps(o, r0);
    _mm_storel_pi(reinterpret_cast<__m64*>(o + 4), lo);
    _mm_storeu_ps(o + 6, r1);
    _mm_storeh_pi(reinterpret_cast<__m64*>(o + 10), lo);
    _mm_storeu_ps(o + 12, r2);
    _mm_storel_pi(reinterpret_cast<__m64*>(o + 16), hi);
    _mm_storeu_ps(o + 18, r3);
    _mm_storeh_pi(reinterpret_cast<__m64*>(o + 22), hi);
  }
  for (; k < kc; ++k)
    for (int r = 0; r < MR; ++r) out[k * MR + r] = src[r][k];
}

// One B panel (kc × NR, out[k·NR + c]) of op(B) = Bᵀ: column c is stored row src[c], contiguous in
// depth (src[c][0 .. kc)); columns c ≥ nr are zeros (their src may repeat a valid row). Four depths
// at a time, the 16 columns as four 4 × 4 transposes; sixteen depths (one cache line of each stored
// row) at a time where it can: stored rows are often a multiple of 4 KB apart, so their lines share
// one L1 set, and each line is used up before the next four rows come in.
inline void pack_panel_transposed(float* out, const float* const* src, int nr, int kc) {
  static_assert(NR % 4 == 0, "the panel is packed as 4 × 4 transposes");
  int k = 0;
  if (nr == NR) {
    for (; k + 16 <= kc; k += 16)
      for (int g = 0; g < NR; g += 4)
        for (int kk = k; kk < k + 16; kk += 4) {
          __m128 r0 = _mm_loadu_ps(src[g] + kk), r1 = _mm_loadu_ps(src[g + 1] + kk);
          __m128 r2 = _mm_loadu_ps(src[g + 2] + kk), r3 = _mm_loadu_ps(src[g + 3] + kk);
          _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
          float* o = out + kk * NR + g;
          _mm_storeu_ps(o, r0);
          _mm_storeu_ps(o + NR, r1);
          _mm_storeu_ps(o + 2 * NR, r2);
          _mm_storeu_ps(o + 3 * NR, r3);
        }
    for (; k + 4 <= kc; k += 4) {
      float* o = out + k * NR;
      for (int g = 0; g < NR; g += 4) {
        __m128 r0 = _mm_loadu_ps(src[g] + k), r1 = _mm_loadu_ps(src[g + 1] + k);
        __m128 r2 = _mm_loadu_ps(src[g + 2] + k), r3 = _mm_loadu_ps(src[g + 3] + k);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        _mm_storeu_ps(o + g, r0);
        _mm_storeu_ps(o + NR + g, r1);
        _mm_storeu_ps(o + 2 * NR + g, r2);
        _mm_storeu_ps(o + 3 * NR + g, r3);
      }
    }
  }
  for (; k < kc; ++k)
    for (int c = 0; c < NR; ++c) out[k * NR + c] = c < nr ? src[c][k] : 0.0f;
}

}  // namespace st::gemm
