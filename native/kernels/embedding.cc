// Embedding forward/backward (embedding.h). B = batch, S = sequence, T = B·S, D = d_model, V = vocabulary.
//
// The backward scatters token rows into dwte. Tasks own fixed column slices of D and walk the tokens
// in order, so every dwte element is summed in token order whatever the thread count.
#include "embedding.h"

#include <algorithm>
#include <cstring>

#include "threadpool.h"

namespace st {

namespace {
constexpr int kRowsPerTask = 64;
constexpr int kColumnsPerTask = 32;
}  // namespace

void embedding_forward(float* x, const int32_t* tokens, const float* wte, const float* wpe, int B, int S, int D) {
  const int64_t T = static_cast<int64_t>(B) * S;
  parallel_for((T + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t task, int) {
    const int64_t t1 = std::min(T, (task + 1) * kRowsPerTask);
    for (int64_t t = task * kRowsPerTask; t < t1; ++t) {
      const float* e = wte + static_cast<int64_t>(tokens[t]) * D;
      const float* p = wpe + (t % S) * D;
      float* xr = x + t * D;
      for (int i = 0; i < D; ++i) xr[i] = e[i] + p[i];
    }
  });
}

void embedding_backward(float* dwte, float* dwpe, const float* dx, const int32_t* tokens, int B, int S, int D,
                        int V, bool accumulate) {
  const int64_t T = static_cast<int64_t>(B) * S;
  if (!accumulate) {
    std::memset(dwte, 0, sizeof(float) * static_cast<size_t>(V) * D);
    std::memset(dwpe, 0, sizeof(float) * static_cast<size_t>(S) * D);
  }
  parallel_for((D + kColumnsPerTask - 1) / kColumnsPerTask, [&](int64_t task, int) {
    const int c0 = static_cast<int>(task * kColumnsPerTask);
    const int c1 = std::min(D, c0 + kColumnsPerTask);
    for (int64_t t = 0; t < T; ++t) {
      const float* g = dx + t * D;
      float* e = dwte + static_cast<int64_t>(tokens[t]) * D;
      float* p = dwpe + (t % S) * D;
      for (int i = c0; i < c1; ++i) {
        e[i] += g[i];
        p[i] += g[i];
      }
    }
  });
}

void embedding_forward_reference(float* x, const int32_t* tokens, const float* wte, const float* wpe, int B, int S,
                                 int D) {
  for (int b = 0; b < B; ++b)
    for (int s = 0; s < S; ++s) {
      const int64_t t = static_cast<int64_t>(b) * S + s;
      for (int i = 0; i < D; ++i) x[t * D + i] = wte[static_cast<int64_t>(tokens[t]) * D + i] + wpe[s * D + i];
    }
}

void embedding_backward_reference(float* dwte, float* dwpe, const float* dx, const int32_t* tokens, int B, int S,
                                  int D, int V, bool accumulate) {
  if (!accumulate) {
    for (int64_t i = 0; i < static_cast<int64_t>(V) * D; ++i) dwte[i] = 0.0f;
    for (int64_t i = 0; i < static_cast<int64_t>(S) * D; ++i) dwpe[i] = 0.0f;
  }
  for (int b = 0; b < B; ++b)
    for (int s = 0; s < S; ++s) {
      const int64_t t = static_cast<int64_t>(b) * S + s;
      for (int i = 0; i < D; ++i) {
        dwte[static_cast<int64_t>(tokens[t]) * D + i] += dx[t * D + i];
        dwpe[s * D + i] += dx[t * D + i];
      }
    }
}

}  // namespace st
