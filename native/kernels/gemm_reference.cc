// Scalar definitions of the matmul kernels (gemm.h): what the fast paths are checked against.
// M, N, K = product sizes; E = groups.
#include <cstring>

#include "gemm.h"

namespace st {

void matmul_reference(float* c, const float* a, const float* b, int M, int N, int K, int lda, int ldb,
                      int ldc, bool trans_a, bool trans_b, bool accumulate) {
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < N; ++j) {
      float sum = 0.0f;
      for (int k = 0; k < K; ++k) {
        const float av = trans_a ? a[static_cast<int64_t>(k) * lda + i] : a[static_cast<int64_t>(i) * lda + k];
        const float bv = trans_b ? b[static_cast<int64_t>(j) * ldb + k] : b[static_cast<int64_t>(k) * ldb + j];
        sum += av * bv;
      }
      float& out = c[static_cast<int64_t>(i) * ldc + j];
      out = accumulate ? out + sum : sum;
    }
  }
}

void grouped_matmul_reference(const GroupedMatmul& g) {
  for (int e = 0; e < g.E; ++e) {
    const float* w = g.w + static_cast<int64_t>(e) * g.K * g.N;
    for (int i = g.offsets[e]; i < g.offsets[e + 1]; ++i) {
      const float* xr = g.x + static_cast<int64_t>(g.gather ? g.gather[i] : i) * g.ldx;
      float* yr = g.y + static_cast<int64_t>(g.scatter ? g.scatter[i] : i) * g.ldy;
      const float s = (g.scatter && g.scale) ? g.scale[i] : 1.0f;
      for (int j = 0; j < g.N; ++j) {
        float sum = 0.0f;
        for (int k = 0; k < g.K; ++k)
          sum += xr[k] * (g.trans_w ? w[static_cast<int64_t>(j) * g.K + k] : w[static_cast<int64_t>(k) * g.N + j]);
        if (g.scatter) {
          yr[j] += s * sum;
          continue;
        }
        float v = g.accumulate ? yr[j] + sum : sum;
        if (g.epilogue == Epilogue::relu) v = v > 0.0f ? v : 0.0f;
        yr[j] = v;
      }
    }
  }
}

void grouped_matmul_weight_grad_reference(const GroupedMatmulWeightGrad& g) {
  for (int e = 0; e < g.E; ++e) {
    float* dw = g.dw + static_cast<int64_t>(e) * g.K * g.N;
    if (!g.accumulate) std::memset(dw, 0, sizeof(float) * g.K * g.N);
    for (int i = g.offsets[e]; i < g.offsets[e + 1]; ++i) {
      const float* xr = g.x + static_cast<int64_t>(g.gather_x ? g.gather_x[i] : i) * g.ldx;
      const float* dyr = g.dy + static_cast<int64_t>(g.gather_dy ? g.gather_dy[i] : i) * g.lddy;
      for (int k = 0; k < g.K; ++k)
        for (int j = 0; j < g.N; ++j) dw[static_cast<int64_t>(k) * g.N + j] += xr[k] * dyr[j];
    }
  }
}

}  // namespace st
