// Softmax cross-entropy against the tied embedding (cross_entropy.h). T = tokens, D = d_model, V = vocabulary.
#include "cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "gemm.h"
#include "threadpool.h"

namespace st {

namespace {
constexpr int kRowsPerTask = 8;
}

void cross_entropy_forward(float* losses, float* probs, const float* h, const float* wte, const int32_t* targets,
                           int T, int D, int V) {
  matmul(probs, h, wte, T, V, D, D, D, V, false, true, false);  // the logits, normalised in place below
  parallel_for((T + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t task, int) {
    const int t1 = std::min<int64_t>(T, (task + 1) * kRowsPerTask);
    for (int t = static_cast<int>(task * kRowsPerTask); t < t1; ++t) {
      float* row = probs + static_cast<int64_t>(t) * V;
      float max = -INFINITY;
      for (int v = 0; v < V; ++v) max = std::max(max, row[v]);
      const float target_logit = row[targets[t]];
      float sum = 0.0f;
      for (int v = 0; v < V; ++v) {
        row[v] = std::exp(row[v] - max);
        sum += row[v];
      }
      const float inv = 1.0f / sum;
      for (int v = 0; v < V; ++v) row[v] *= inv;
      losses[t] = std::log(sum) + max - target_logit;
    }
  });
}

void cross_entropy_backward(float* dh, float* dwte, const float* dlosses, const float* probs, const float* h,
                            const float* wte, const int32_t* targets, int T, int D, int V, bool accumulate) {
  // dlogits_t = dloss_t · (p_t − onehot(target_t))
  std::vector<float> dlogits(static_cast<size_t>(T) * V);
  parallel_for((T + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t task, int) {
    const int t1 = std::min<int64_t>(T, (task + 1) * kRowsPerTask);
    for (int t = static_cast<int>(task * kRowsPerTask); t < t1; ++t) {
      const float* p = probs + static_cast<int64_t>(t) * V;
      float* d = dlogits.data() + static_cast<int64_t>(t) * V;
      const float g = dlosses[t];
      for (int v = 0; v < V; ++v) d[v] = g * p[v];
      d[targets[t]] -= g;
    }
  });
  matmul(dh, dlogits.data(), wte, T, D, V, V, D, D, false, false, false);            // dlogits · wte
  matmul(dwte, dlogits.data(), h, V, D, T, V, D, D, true, false, accumulate);        // dlogitsᵀ · h
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
