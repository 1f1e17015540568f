// Float32 matrix products: the plain matmul and the grouped expert matmul.
// M, N, K = product sizes; E = groups (experts). Row-major; ld* are row strides in elements.
//
// The dispatching entry points choose the ISA through active_isa() and split the work over the
// thread pool with fixed partitions (results do not depend on the thread count). The *_reference
// functions are the plain scalar definitions the tests compare against.
#pragma once

#include <cstdint>

namespace st {

// c (M, N) = [c +] op(a) · op(b); op(a): (M, K) from a (M, K) with lda, or a (K, M) when trans_a;
// op(b): (K, N) from b (K, N) with ldb, or b (N, K) when trans_b.
void matmul(float* c, const float* a, const float* b, int M, int N, int K, int lda, int ldb, int ldc,
            bool trans_a, bool trans_b, bool accumulate);
void matmul_reference(float* c, const float* a, const float* b, int M, int N, int K, int lda, int ldb,
                      int ldc, bool trans_a, bool trans_b, bool accumulate);

// Grouped expert matmul (dispatch → experts). Group e owns rows [offsets[e], offsets[e+1]) of the
// dispatched order. Row i of the product takes x row gather[i] (or row i when gather is null),
// times w[e]: (K, N), or (N, K) when trans_w, with w[e] at w + e·K·N.
// Write-back: without scatter, y row i (y: (offsets[E], N)); with scatter, y row scatter[i] of y,
// multiplied by scale[i] when scale is not null, always accumulated (y += ...) in row order i.
// accumulate applies to the unscattered write only.
// epilogue (unscattered writes only; with accumulate, of the sum) finishes each element after its
// last depth block, while its tile is still in cache: the Switch layer's relu folded into the
// matmul that produces h (relu: y = y > 0 ? y : 0). The values are those of the product followed
// by the separate pass. (relu's derivative folded the same way into the matmul that produces dh,
// reading h as a mask, measured slower than the separate pass: 5 % of that product against 3.5 %.)
enum class Epilogue : int { none = 0, relu = 1 };
struct GroupedMatmul {
  float* y;                    // (rows, N) or (tokens, N) with scatter
  const float* x;              // (any rows, K)
  const float* w;              // (E, K, N) or (E, N, K)
  const int32_t* offsets;      // (E + 1), offsets[0] = 0, non-decreasing
  const int32_t* gather;       // (offsets[E]) rows of x, or null
  const int32_t* scatter;      // (offsets[E]) rows of y, or null
  const float* scale;          // (offsets[E]) or null; only with scatter
  int E, K, N;
  int ldx, ldy;                // row strides of x and y (K and N when dense)
  bool trans_w;
  bool accumulate;
  Epilogue epilogue = Epilogue::none;
};
void grouped_matmul(const GroupedMatmul& g);
void grouped_matmul_reference(const GroupedMatmul& g);

// Grouped weight gradient: for each group e, dw[e] (K, N) = [dw[e] +] Σ_{i in group e}
// x[gx[i]]ᵀ · dy[gy[i]] — both operands gathered by row (null gathers take row i).
struct GroupedMatmulWeightGrad {
  float* dw;                   // (E, K, N)
  const float* x;              // (rows, K)
  const float* dy;             // (rows, N)
  const int32_t* offsets;      // (E + 1)
  const int32_t* gather_x;     // (offsets[E]) or null
  const int32_t* gather_dy;    // (offsets[E]) or null
  int E, K, N;
  int ldx, lddy;
  bool accumulate;
};
void grouped_matmul_weight_grad(const GroupedMatmulWeightGrad& g);
void grouped_matmul_weight_grad_reference(const GroupedMatmulWeightGrad& g);

// For the tests only: when set, a thread of a large multi-threaded matmul that shares one packed B
// with the others (gemm.cc) packs every odd panel again into its own buffer instead of reading the
// shared one, the path it takes otherwise only when the thread packing that panel is descheduled.
void gemm_test_pack_private_panels(bool on);
// For the tests only: when set, the general driver packs every B panel in a separate pass and
// prefetches between the micro-kernel calls, as it did before the tiles took those jobs over
// (gemm.cc): the results must be the same bits either way.
void gemm_test_separate_packing(bool on);

}  // namespace st
