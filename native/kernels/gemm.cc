// Dispatching matmul entry points (gemm.h). The fast paths replace these bodies.
#include "gemm.h"

namespace st {

void matmul(float* c, const float* a, const float* b, int M, int N, int K, int lda, int ldb, int ldc,
            bool trans_a, bool trans_b, bool accumulate) {
  matmul_reference(c, a, b, M, N, K, lda, ldb, ldc, trans_a, trans_b, accumulate);
}

void grouped_matmul(const GroupedMatmul& g) { grouped_matmul_reference(g); }

void grouped_matmul_weight_grad(const GroupedMatmulWeightGrad& g) { grouped_matmul_weight_grad_reference(g); }

}  // namespace st
