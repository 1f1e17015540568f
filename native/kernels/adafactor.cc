// Adafactor kernels (adafactor.h). n = elements; mats, rows, cols = the matrices of a factored tensor.
//
// Determinism: the statistics of a matrix are summed in one task in a fixed order (rows, then the
// columns in row order), and a tensor's Σ u² adds the matrices' (or the fixed blocks') partials in
// order; the update is elementwise. So results do not depend on the thread count.
#include "adafactor.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "threadpool.h"

namespace st {

namespace {
constexpr int64_t kBlock = 16384;

// Σ g² + ε1 per row and per column of one matrix, the running means R and C, and Σ u².
// u = g / sqrt(R_r C_c / mean(R)) is taken as g · a_r · b_c with a_r = sqrt(mean(R) / R_r) and
// b_c = 1 / sqrt(C_c): two multiplies per element instead of a square root and a division.
double factored_matrix(float* R, float* C, const float* g, int64_t rows, int64_t cols, double beta2, double eps1,
                       std::vector<double>& col_sum, std::vector<double>& b) {
  col_sum.assign(static_cast<size_t>(cols), 0.0);
  double row_mean_sum = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* gr = g + r * cols;
    double lanes[4] = {0.0, 0.0, 0.0, 0.0};  // four partial row sums: no chain of dependent adds
    int64_t c = 0;
    for (; c + 4 <= cols; c += 4)
      for (int l = 0; l < 4; ++l) {
        const double g2 = static_cast<double>(gr[c + l]) * gr[c + l] + eps1;
        lanes[l] += g2;
        col_sum[c + l] += g2;
      }
    for (; c < cols; ++c) {
      const double g2 = static_cast<double>(gr[c]) * gr[c] + eps1;
      lanes[0] += g2;
      col_sum[c] += g2;
    }
    const double row_sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    R[r] = static_cast<float>(beta2 * R[r] + (1.0 - beta2) * (row_sum / static_cast<double>(cols)));
    row_mean_sum += R[r];
  }
  b.resize(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) {
    C[c] = static_cast<float>(beta2 * C[c] + (1.0 - beta2) * (col_sum[c] / static_cast<double>(rows)));
    b[c] = 1.0 / std::sqrt(static_cast<double>(C[c]));
  }
  const double row_mean = row_mean_sum / static_cast<double>(rows);
  double sum_u2 = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const double a = std::sqrt(row_mean / R[r]);
    const float* gr = g + r * cols;
    double lanes[4] = {0.0, 0.0, 0.0, 0.0};
    int64_t c = 0;
    for (; c + 4 <= cols; c += 4)
      for (int l = 0; l < 4; ++l) {
        const double u = gr[c + l] * b[c + l];
        lanes[l] += u * u;
      }
    for (; c < cols; ++c) {
      const double u = gr[c] * b[c];
      lanes[0] += u * u;
    }
    sum_u2 += a * a * ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]));
  }
  return sum_u2;
}

double mean_of(const float* R, int64_t rows) {
  double s = 0.0;
  for (int64_t r = 0; r < rows; ++r) s += R[r];
  return s / static_cast<double>(rows);
}

inline void apply(float* w, float* m, int64_t i, double u, double scale, double decay, double beta1) {
  if (m) {
    m[i] = static_cast<float>(beta1 * m[i] + (1.0 - beta1) * u * scale);
    w[i] = static_cast<float>(w[i] * decay - m[i]);
  } else {
    w[i] = static_cast<float>(w[i] * decay - scale * u);
  }
}
}  // namespace

double adafactor_factored_statistics(float* R, float* C, const float* g, int64_t mats, int64_t rows, int64_t cols,
                                     double beta2, double eps1) {
  std::vector<double> partial(static_cast<size_t>(mats), 0.0);
  parallel_for(mats, [&](int64_t k, int) {
    thread_local std::vector<double> col_sum, b;
    partial[k] = factored_matrix(R + k * rows, C + k * cols, g + k * rows * cols, rows, cols, beta2, eps1, col_sum, b);
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

double adafactor_vector_statistics(float* v, const float* g, int64_t n, double beta2, double eps1) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
  parallel_for(blocks, [&](int64_t b, int) {
    double s = 0.0;
    for (int64_t i = b * kBlock, end = std::min(n, (b + 1) * kBlock); i < end; ++i) {
      v[i] = static_cast<float>(beta2 * v[i] + (1.0 - beta2) * (static_cast<double>(g[i]) * g[i] + eps1));
      const double u = g[i] / std::sqrt(static_cast<double>(v[i]));
      s += u * u;
    }
    partial[b] = s;
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

void adafactor_factored_update(float* w, float* m, const float* g, const float* R, const float* C, int64_t mats,
                               int64_t rows, int64_t cols, double scale, double decay, double beta1) {
  // u = g · a_r · b_c as in the statistics pass; scale folded into a_r.
  std::vector<double> row_mean(static_cast<size_t>(mats));
  for (int64_t k = 0; k < mats; ++k) row_mean[k] = mean_of(R + k * rows, rows);
  std::vector<double> b(static_cast<size_t>(mats * cols));
  for (int64_t i = 0; i < mats * cols; ++i) b[i] = 1.0 / std::sqrt(static_cast<double>(C[i]));
  // Tasks of whole rows (about kBlock elements each).
  const int64_t rows_per_task = std::max<int64_t>(1, kBlock / std::max<int64_t>(cols, 1));
  const int64_t total_rows = mats * rows;
  parallel_for((total_rows + rows_per_task - 1) / rows_per_task, [&](int64_t task, int) {
    for (int64_t row = task * rows_per_task, end = std::min(total_rows, (task + 1) * rows_per_task); row < end; ++row) {
      const int64_t k = row / rows;
      const double a = std::sqrt(row_mean[k] / R[row]);
      const double* bk = b.data() + k * cols;
      float* wr = w + row * cols;
      const float* gr = g + row * cols;
      if (m) {
        float* mr = m + row * cols;
        const double step = (1.0 - beta1) * scale * a;
        for (int64_t c = 0; c < cols; ++c) {
          mr[c] = static_cast<float>(beta1 * mr[c] + step * (gr[c] * bk[c]));
          wr[c] = static_cast<float>(wr[c] * decay - mr[c]);
        }
      } else {
        const double step = scale * a;
        for (int64_t c = 0; c < cols; ++c) wr[c] = static_cast<float>(wr[c] * decay - step * (gr[c] * bk[c]));
      }
    }
  });
}

void adafactor_vector_update(float* w, float* m, const float* g, const float* v, int64_t n, double scale, double decay,
                             double beta1) {
  parallel_for((n + kBlock - 1) / kBlock, [&](int64_t b, int) {
    for (int64_t i = b * kBlock, end = std::min(n, (b + 1) * kBlock); i < end; ++i)
      apply(w, m, i, g[i] / std::sqrt(static_cast<double>(v[i])), scale, decay, beta1);
  });
}

double adafactor_factored_statistics_reference(float* R, float* C, const float* g, int64_t mats, int64_t rows,
                                               int64_t cols, double beta2, double eps1) {
  double total = 0.0;
  for (int64_t k = 0; k < mats; ++k) {
    const float* gk = g + k * rows * cols;
    float* Rk = R + k * rows;
    float* Ck = C + k * cols;
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0.0;
      for (int64_t c = 0; c < cols; ++c) s += static_cast<double>(gk[r * cols + c]) * gk[r * cols + c] + eps1;
      Rk[r] = static_cast<float>(beta2 * Rk[r] + (1.0 - beta2) * s / static_cast<double>(cols));
    }
    for (int64_t c = 0; c < cols; ++c) {
      double s = 0.0;
      for (int64_t r = 0; r < rows; ++r) s += static_cast<double>(gk[r * cols + c]) * gk[r * cols + c] + eps1;
      Ck[c] = static_cast<float>(beta2 * Ck[c] + (1.0 - beta2) * s / static_cast<double>(rows));
    }
    double mean = 0.0;
    for (int64_t r = 0; r < rows; ++r) mean += Rk[r];
    mean /= static_cast<double>(rows);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const double u = gk[r * cols + c] / std::sqrt(Rk[r] * static_cast<double>(Ck[c]) / mean);
        total += u * u;
      }
  }
  return total;
}

void adafactor_factored_update_reference(float* w, float* m, const float* g, const float* R, const float* C,
                                         int64_t mats, int64_t rows, int64_t cols, double scale, double decay,
                                         double beta1) {
  for (int64_t k = 0; k < mats; ++k) {
    double mean = 0.0;
    for (int64_t r = 0; r < rows; ++r) mean += R[k * rows + r];
    mean /= static_cast<double>(rows);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t i = (k * rows + r) * cols + c;
        const double u = g[i] / std::sqrt(R[k * rows + r] * static_cast<double>(C[k * cols + c]) / mean);
        if (m) {
          m[i] = static_cast<float>(beta1 * m[i] + (1.0 - beta1) * u * scale);
          w[i] = static_cast<float>(w[i] * decay - m[i]);
        } else {
          w[i] = static_cast<float>(w[i] * decay - scale * u);
        }
      }
  }
}

}  // namespace st
