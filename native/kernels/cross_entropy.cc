// Softmax cross-entropy against the tied embedding (cross_entropy.h). T = tokens, D = d_model, V = vocabulary.
#include "cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu.h"
#include "exp_approx.h"
#include "gemm.h"
#include "threadpool.h"

namespace st {

namespace {
constexpr int kRowsPerTask = 8;
constexpr int kLanes = 8;
// Tokens per block of the fused training pass: a (block, V) logits buffer of a few MB.
constexpr int kTokensPerBlock = 256;

// Normalises one row of logits into probabilities in place; returns loss = logsumexp − logit[target].
float softmax_row(float* row, int target, int V) {
  // Reductions in kLanes fixed partial sums (vectorizable, and the same order on every run).
  float lane_max[kLanes], lane_sum[kLanes];
  for (int l = 0; l < kLanes; ++l) lane_max[l] = -INFINITY, lane_sum[l] = 0.0f;
  const int V8 = V - V % kLanes;
  for (int v = 0; v < V8; v += kLanes)
    for (int l = 0; l < kLanes; ++l) lane_max[l] = std::max(lane_max[l], row[v + l]);
  float max = -INFINITY;
  for (int l = 0; l < kLanes; ++l) max = std::max(max, lane_max[l]);
  for (int v = V8; v < V; ++v) max = std::max(max, row[v]);
  const float target_logit = row[target];
  for (int v = 0; v < V; ++v) row[v] = exp_nonpositive(row[v] - max);
  for (int v = 0; v < V8; v += kLanes)
    for (int l = 0; l < kLanes; ++l) lane_sum[l] += row[v + l];
  float sum = 0.0f;
  for (int l = 0; l < kLanes; ++l) sum += lane_sum[l];
  for (int v = V8; v < V; ++v) sum += row[v];
  const float inv = 1.0f / sum;
  for (int v = 0; v < V; ++v) row[v] *= inv;
  return std::log(sum) + max - target_logit;
}

// dlogits = dloss · (p − onehot(target)), in place of p.
void dlogits_row(float* row, int target, float dloss, int V) {
  const float p_target = row[target];
  for (int v = 0; v < V; ++v) row[v] *= dloss;
  row[target] = dloss * p_target - dloss;
}

// The training path's row in three passes (max; exp and sum; one scale): loss = logsumexp − logit[target],
// and with gradient the row becomes dloss · (p − onehot(target)).
float cross_entropy_row_portable(float* row, int target, float dloss, int V, bool gradient) {
  float lane_max[kLanes], lane_sum[kLanes];
  for (int l = 0; l < kLanes; ++l) lane_max[l] = -INFINITY, lane_sum[l] = 0.0f;
  const int V8 = V - V % kLanes;
  for (int v = 0; v < V8; v += kLanes)
    for (int l = 0; l < kLanes; ++l) lane_max[l] = std::max(lane_max[l], row[v + l]);
  float max = -INFINITY;
  for (int l = 0; l < kLanes; ++l) max = std::max(max, lane_max[l]);
  for (int v = V8; v < V; ++v) max = std::max(max, row[v]);
  const float target_logit = row[target];
  for (int v = 0; v < V8; v += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const float e = exp_nonpositive(row[v + l] - max);
      row[v + l] = e;
      lane_sum[l] += e;
    }
  float sum = 0.0f;
  for (int l = 0; l < kLanes; ++l) sum += lane_sum[l];
  for (int v = V8; v < V; ++v) {
    row[v] = exp_nonpositive(row[v] - max);
    sum += row[v];
  }
  if (gradient) {
    const float scale = dloss / sum;
    for (int v = 0; v < V; ++v) row[v] *= scale;
    row[target] -= dloss;
  }
  return std::log(sum) + max - target_logit;
}

float cross_entropy_row(float* row, int target, float dloss, int V, bool gradient) {
  return active_isa() >= Isa::avx2 ? cross_entropy_row_avx2(row, target, dloss, V, gradient)
                                   : cross_entropy_row_portable(row, target, dloss, V, gradient);
}

}  // namespace

void cross_entropy_forward(float* losses, float* probs, const float* h, const float* wte, const int32_t* targets,
                           int T, int D, int V) {
  matmul(probs, h, wte, T, V, D, D, D, V, false, true, false);  // the logits, normalised in place below
  parallel_for((T + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t task, int) {
    const int t1 = std::min<int64_t>(T, (task + 1) * kRowsPerTask);
    for (int t = static_cast<int>(task * kRowsPerTask); t < t1; ++t)
      losses[t] = softmax_row(probs + static_cast<int64_t>(t) * V, targets[t], V);
  });
}

void cross_entropy_forward_backward(float* losses, float* dh, float* dwte, const float* h, const float* wte,
                                    const int32_t* targets, const float* dlosses, int T, int D, int V, bool accumulate) {
  const int block = std::min(T, kTokensPerBlock);
  std::vector<float> logits(static_cast<size_t>(block) * V);
  if (!accumulate && T == 0) std::memset(dwte, 0, sizeof(float) * static_cast<size_t>(V) * D);
  for (int t0 = 0; t0 < T; t0 += block) {
    const int rows = std::min(block, T - t0);
    const float* hb = h + static_cast<int64_t>(t0) * D;
    matmul(logits.data(), hb, wte, rows, V, D, D, D, V, false, true, false);
    parallel_for((rows + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t task, int) {
      const int r1 = std::min<int64_t>(rows, (task + 1) * kRowsPerTask);
      for (int r = static_cast<int>(task * kRowsPerTask); r < r1; ++r) {
        float* row = logits.data() + static_cast<int64_t>(r) * V;
        losses[t0 + r] = cross_entropy_row(row, targets[t0 + r], dlosses[t0 + r], V, true);
      }
    });
    matmul(dh + static_cast<int64_t>(t0) * D, logits.data(), wte, rows, D, V, V, D, D, false, false, false);
    matmul(dwte, logits.data(), hb, V, D, rows, V, D, D, true, false, accumulate || t0 > 0);
  }
}

void cross_entropy_loss(float* losses, const float* h, const float* wte, const int32_t* targets, int T, int D, int V) {
  const int block = std::min(T, kTokensPerBlock);
  std::vector<float> logits(static_cast<size_t>(block) * V);
  for (int t0 = 0; t0 < T; t0 += block) {
    const int rows = std::min(block, T - t0);
    matmul(logits.data(), h + static_cast<int64_t>(t0) * D, wte, rows, V, D, D, D, V, false, true, false);
    parallel_for((rows + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t task, int) {
      const int r1 = std::min<int64_t>(rows, (task + 1) * kRowsPerTask);
      for (int r = static_cast<int>(task * kRowsPerTask); r < r1; ++r)
        losses[t0 + r] = cross_entropy_row(logits.data() + static_cast<int64_t>(r) * V, targets[t0 + r], 0.0f, V, false);
    });
  }
}

void cross_entropy_backward(float* dh, float* dwte, const float* dlosses, float* probs, const float* h,
                            const float* wte, const int32_t* targets, int T, int D, int V, bool accumulate) {
  // dlogits_t = dloss_t · (p_t − onehot(target_t)), in place of p_t.
  float* dlogits = probs;
  parallel_for((T + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t task, int) {
    const int t1 = std::min<int64_t>(T, (task + 1) * kRowsPerTask);
    for (int t = static_cast<int>(task * kRowsPerTask); t < t1; ++t)
      dlogits_row(dlogits + static_cast<int64_t>(t) * V, targets[t], dlosses[t], V);
  });
  matmul(dh, dlogits, wte, T, D, V, V, D, D, false, false, false);            // dlogits · wte
  matmul(dwte, dlogits, h, V, D, T, V, D, D, true, false, accumulate);        // dlogitsᵀ · h
}

void cross_entropy_forward_reference(float* losses, float* probs, const float* h, const float* wte,
                                     const int32_t* targets, int T, int D, int V) {
  std::vector<double> logits(V);
  for (int t = 0; t < T; ++t) {
    double max = -INFINITY;
    for (int v = 0; v < V; ++v) {
      double s = 0.0;
      for (int i = 0; i < D; ++i) s += static_cast<double>(h[t * D + i]) * wte[static_cast<int64_t>(v) * D + i];
      logits[v] = s;
      max = std::max(max, s);
    }
    double sum = 0.0;
    for (int v = 0; v < V; ++v) sum += std::exp(logits[v] - max);
    for (int v = 0; v < V; ++v) probs[static_cast<int64_t>(t) * V + v] = static_cast<float>(std::exp(logits[v] - max) / sum);
    losses[t] = static_cast<float>(std::log(sum) + max - logits[targets[t]]);
  }
}

void cross_entropy_backward_reference(float* dh, float* dwte, const float* dlosses, const float* probs,
                                      const float* h, const float* wte, const int32_t* targets, int T, int D, int V,
                                      bool accumulate) {
  if (!accumulate)
    for (int64_t i = 0; i < static_cast<int64_t>(V) * D; ++i) dwte[i] = 0.0f;
  for (int64_t i = 0; i < static_cast<int64_t>(T) * D; ++i) dh[i] = 0.0f;
  for (int t = 0; t < T; ++t)
    for (int v = 0; v < V; ++v) {
      const double d = dlosses[t] * (probs[static_cast<int64_t>(t) * V + v] - (v == targets[t] ? 1.0 : 0.0));
      for (int i = 0; i < D; ++i) {
        dh[t * D + i] += static_cast<float>(d * wte[static_cast<int64_t>(v) * D + i]);
        dwte[static_cast<int64_t>(v) * D + i] += static_cast<float>(d * h[t * D + i]);
      }
    }
}

}  // namespace st
