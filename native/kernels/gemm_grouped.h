// The small-group path of the grouped expert matmuls (gemm.h), for calls where every group has few
// rows: the experts of a Switch layer with many experts (E = 64, 128) get 16–80 rows each, so a
// product per expert is a thin strip against a large weight, and what costs is streaming the E
// weight matrices (reading W, or writing dW) rather than the arithmetic. Two walks: products with
// W as stored (y_e = x_e · W_e, the forward's) and weight gradients (dW_e = x_eᵀ · dy_e). Products
// with a transposed weight (trans_w) always take the general driver, which measured faster for
// them at every shape (bench/RESULTS.md, layer; gemm_grouped.cc).
// M = rows of a group, K = depth, N = columns; E = groups.
//
// grouped_matmul / grouped_matmul_weight_grad (gemm.cc) call these when *_applies says so.
#pragma once

#include "gemm.h"

namespace st {

// The largest group (rows) the small path takes; larger groups amortise the general path's packing.
// Products with W as stored (never trans_w): up to kGroupedStoredMaxRows (at 256 rows, E = 16 at
// T = 4096, the general driver measured as fast on one thread and faster on two). Weight gradients:
// up to kGroupedSmallGradRows (past that the arithmetic outweighs the writing of dW, and the
// general driver's direct stores measured as fast).
constexpr int kGroupedStoredMaxRows = 128;
constexpr int kGroupedSmallGradRows = 48;

bool grouped_matmul_small_applies(const GroupedMatmul& g);
void grouped_matmul_small(const GroupedMatmul& g);

bool grouped_matmul_weight_grad_small_applies(const GroupedMatmulWeightGrad& g);
void grouped_matmul_weight_grad_small(const GroupedMatmulWeightGrad& g);

// For tests and A/B benchmarks: when false, the entry points of gemm.h never take the small path
// (default true). Not for use while another thread is inside a grouped matmul.
void set_grouped_small_path(bool enabled);
bool grouped_small_path();

}  // namespace st
