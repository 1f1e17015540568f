// RMSNorm forward/backward (rmsnorm.h). T = tokens, D = d_model.
//
// The weight gradient is a sum over tokens: it is accumulated per fixed block of kRowsPerTask tokens
// and the block partials are added in block order, so the result does not depend on the thread count.
#include "rmsnorm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "threadpool.h"

namespace st {

namespace {
constexpr int kRowsPerTask = 32;
int64_t row_tasks(int T) { return (static_cast<int64_t>(T) + kRowsPerTask - 1) / kRowsPerTask; }
}  // namespace

void rmsnorm_forward(float* y, float* rstd, const float* x, const float* weight, int T, int D, float eps) {
  parallel_for(row_tasks(T), [&](int64_t task, int) {
    const int t0 = static_cast<int>(task * kRowsPerTask);
    const int t1 = std::min(T, t0 + kRowsPerTask);
    for (int t = t0; t < t1; ++t) {
      const float* xr = x + static_cast<int64_t>(t) * D;
      float* yr = y + static_cast<int64_t>(t) * D;
      float ss = 0.0f;
      for (int i = 0; i < D; ++i) ss += xr[i] * xr[i];
      const float r = 1.0f / std::sqrt(ss / static_cast<float>(D) + eps);
      rstd[t] = r;
      for (int i = 0; i < D; ++i) yr[i] = xr[i] * r * weight[i];
    }
  });
}

// dx_j = r · (w_j dy_j − x_j · r² · (Σ_i w_i dy_i x_i) / D), dweight_j = Σ_t dy_tj x_tj r_t.
void rmsnorm_backward(float* dx, float* dweight, const float* dy, const float* x, const float* weight,
                      const float* rstd, int T, int D, bool accumulate, const float* residual) {
  const int64_t tasks = row_tasks(T);
  std::vector<float> partial(static_cast<size_t>(tasks) * D, 0.0f);
  parallel_for(tasks, [&](int64_t task, int) {
    const int t0 = static_cast<int>(task * kRowsPerTask);
    const int t1 = std::min(T, t0 + kRowsPerTask);
    float* dw = partial.data() + task * D;
    for (int t = t0; t < t1; ++t) {
      const float* xr = x + static_cast<int64_t>(t) * D;
      const float* dyr = dy + static_cast<int64_t>(t) * D;
      float* dxr = dx + static_cast<int64_t>(t) * D;
      const float* res = residual ? residual + static_cast<int64_t>(t) * D : nullptr;
      const float r = rstd[t];
      float dot = 0.0f;
      for (int i = 0; i < D; ++i) dot += weight[i] * dyr[i] * xr[i];
      const float c = r * r * dot / static_cast<float>(D);
      for (int i = 0; i < D; ++i) {
        dxr[i] = r * (weight[i] * dyr[i] - xr[i] * c);
        dw[i] += dyr[i] * xr[i] * r;
      }
      if (res)
        for (int i = 0; i < D; ++i) dxr[i] += res[i];
    }
  });
  for (int i = 0; i < D; ++i) {
    float sum = 0.0f;
    for (int64_t task = 0; task < tasks; ++task) sum += partial[task * D + i];
    dweight[i] = accumulate ? dweight[i] + sum : sum;
  }
}

void rmsnorm_forward_reference(float* y, float* rstd, const float* x, const float* weight, int T, int D, float eps) {
  for (int t = 0; t < T; ++t) {
    double ss = 0.0;
    for (int i = 0; i < D; ++i) ss += static_cast<double>(x[t * D + i]) * x[t * D + i];
    rstd[t] = static_cast<float>(1.0 / std::sqrt(ss / D + eps));
    for (int i = 0; i < D; ++i) y[t * D + i] = x[t * D + i] * rstd[t] * weight[i];
  }
}

void rmsnorm_backward_reference(float* dx, float* dweight, const float* dy, const float* x, const float* weight,
                                const float* rstd, int T, int D, bool accumulate, const float* residual) {
  if (!accumulate)
    for (int i = 0; i < D; ++i) dweight[i] = 0.0f;
  for (int t = 0; t < T; ++t) {
    const double r = rstd[t];
    // dx_j = Σ_i dy_i w_i ∂(x_i r)/∂x_j with ∂r/∂x_j = −r³ x_j / D.
    double dot = 0.0;
    for (int i = 0; i < D; ++i) dot += static_cast<double>(dy[t * D + i]) * weight[i] * x[t * D + i];
    for (int j = 0; j < D; ++j) {
      dx[t * D + j] = static_cast<float>(dy[t * D + j] * weight[j] * r - dot * r * r * r * x[t * D + j] / D +
                                         (residual ? residual[t * D + j] : 0.0));
      dweight[j] += static_cast<float>(dy[t * D + j] * x[t * D + j] * r);
    }
  }
}

}  // namespace st
