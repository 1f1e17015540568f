// Causal multi-head self-attention (attention.h). B = batch, S = sequence, T = B·S, D = d_model,
// H = heads, Dh = D / H.
//
// The core is fused per (batch row, head): scores, mask, softmax and the weighted sum of values of
// one head's (S, S) block in one task, while the block is in cache; its products go through the
// SIMD matmul (run inline inside the task). One task per (b, h) owns its slices of ctx, att and
// dqkv, so no sum crosses tasks and the result does not depend on the thread count.
//
// Causal: query rows go in tiles of kTile; tile [i0, i1) needs keys [0, i1) only, so the products
// skip the blocks above the diagonal (at S = 128, 3/4 of the square's work; smaller tiles lose more to the many small products
// than they save).
#include "attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "exp_approx.h"
#include "gemm.h"
#include "threadpool.h"

namespace st {

namespace {

constexpr int kTile = 64;

// One query row i of the scores (row[0..i] valid) → probabilities, zero above the diagonal.
inline void causal_softmax_row(float* row, int i, int S, float scale) {
  float max = -INFINITY;
  for (int j = 0; j <= i; ++j) max = std::max(max, row[j]);
  const float shift = max * scale;
  float sum = 0.0f;
  for (int j = 0; j <= i; ++j) {
    row[j] = exp_nonpositive(row[j] * scale - shift);
    sum += row[j];
  }
  const float inv = 1.0f / sum;
  for (int j = 0; j <= i; ++j) row[j] *= inv;
  for (int j = i + 1; j < S; ++j) row[j] = 0.0f;  // the causal mask
}

}  // namespace

void attention_core_forward(float* ctx, float* att, const float* qkv, int B, int S, int D, int H) {
  const int Dh = D / H;
  const int ld = 3 * D;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  parallel_for(static_cast<int64_t>(B) * H, [&](int64_t task, int) {
    const int64_t b = task / H;
    const int h = static_cast<int>(task % H);
    const float* q = qkv + b * S * ld + h * Dh;
    const float* k = q + D;
    const float* v = q + 2 * D;
    float* a = att + task * S * S;
    float* c = ctx + b * S * D + h * Dh;
    for (int i0 = 0; i0 < S; i0 += kTile) {
      const int i1 = std::min(S, i0 + kTile), rows = i1 - i0;
      float* at = a + static_cast<int64_t>(i0) * S;
      matmul(at, q + static_cast<int64_t>(i0) * ld, k, rows, i1, Dh, ld, ld, S, false, true, false);  // q · kᵀ
      for (int i = i0; i < i1; ++i) causal_softmax_row(a + static_cast<int64_t>(i) * S, i, S, scale);
      matmul(c + static_cast<int64_t>(i0) * D, at, v, rows, Dh, i1, S, ld, D, false, false, false);  // att · v
    }
  });
}

// datt = dctx · vᵀ, dv = attᵀ · dctx, dscore_ij = att_ij (datt_ij − Σ_j' att_ij' datt_ij') / √Dh,
// dq = dscore · k, dk = dscoreᵀ · q. Masked entries have att = 0, so their dscore is 0; key tile
// [j0, j1) gets contributions from queries [j0, S) only.
void attention_core_backward(float* dqkv, const float* dctx, const float* att, const float* qkv, int B, int S, int D,
                             int H) {
  const int Dh = D / H;
  const int ld = 3 * D;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  parallel_for(static_cast<int64_t>(B) * H, [&](int64_t task, int) {
    const int64_t b = task / H;
    const int h = static_cast<int>(task % H);
    const float* q = qkv + b * S * ld + h * Dh;
    const float* k = q + D;
    const float* v = q + 2 * D;
    float* dq = dqkv + b * S * ld + h * Dh;
    float* dk = dq + D;
    float* dv = dq + 2 * D;
    const float* g = dctx + b * S * D + h * Dh;
    const float* a = att + task * S * S;
    thread_local std::vector<float> ds_buffer;
    ds_buffer.resize(static_cast<size_t>(S) * S);
    float* ds = ds_buffer.data();
    for (int i0 = 0; i0 < S; i0 += kTile) {
      const int i1 = std::min(S, i0 + kTile), rows = i1 - i0;
      float* dst = ds + static_cast<int64_t>(i0) * S;
      matmul(dst, g + static_cast<int64_t>(i0) * D, v, rows, i1, Dh, D, ld, S, false, true, false);  // datt
      for (int i = i0; i < i1; ++i) {
        const float* p = a + static_cast<int64_t>(i) * S;
        float* row = ds + static_cast<int64_t>(i) * S;
        float dot = 0.0f;
        for (int j = 0; j <= i; ++j) dot += p[j] * row[j];
        for (int j = 0; j <= i; ++j) row[j] = p[j] * (row[j] - dot) * scale;
        for (int j = i + 1; j < S; ++j) row[j] = 0.0f;
      }
      matmul(dq + static_cast<int64_t>(i0) * ld, dst, k, rows, Dh, i1, S, ld, ld, false, false, false);  // dscore · k
    }
    for (int j0 = 0; j0 < S; j0 += kTile) {
      const int j1 = std::min(S, j0 + kTile), cols = j1 - j0;
      const int64_t from = static_cast<int64_t>(j0) * S + j0;
      matmul(dv + static_cast<int64_t>(j0) * ld, a + from, g + static_cast<int64_t>(j0) * D, cols, Dh, S - j0, S, D, ld,
             true, false, false);  // attᵀ · dctx
      matmul(dk + static_cast<int64_t>(j0) * ld, ds + from, q + static_cast<int64_t>(j0) * ld, cols, Dh, S - j0, S, ld, ld,
             true, false, false);  // dscoreᵀ · q
    }
  });
}

void attention_forward(float* y, float* qkv, float* att, float* ctx, const float* x, const float* w_qkv,
                       const float* w_o, int B, int S, int D, int H) {
  const int T = B * S;
  matmul(qkv, x, w_qkv, T, 3 * D, D, D, 3 * D, 3 * D, false, false, false);
  attention_core_forward(ctx, att, qkv, B, S, D, H);
  matmul(y, ctx, w_o, T, D, D, D, D, D, false, false, false);
}

void attention_backward(float* dx, float* dw_qkv, float* dw_o, const float* dy, const float* x, const float* w_qkv,
                        const float* w_o, const float* qkv, const float* att, const float* ctx, int B, int S, int D,
                        int H) {
  const int T = B * S;
  std::vector<float> dctx(static_cast<size_t>(T) * D);
  std::vector<float> dqkv(static_cast<size_t>(T) * 3 * D);
  matmul(dw_o, ctx, dy, D, D, T, D, D, D, true, false, false);           // ctxᵀ · dy
  matmul(dctx.data(), dy, w_o, T, D, D, D, D, D, false, true, false);    // dy · w_oᵀ
  attention_core_backward(dqkv.data(), dctx.data(), att, qkv, B, S, D, H);
  matmul(dw_qkv, x, dqkv.data(), D, 3 * D, T, D, 3 * D, 3 * D, true, false, false);  // xᵀ · dqkv
  matmul(dx, dqkv.data(), w_qkv, T, D, 3 * D, 3 * D, 3 * D, D, false, true, false);  // dqkv · w_qkvᵀ
}

void attention_core_forward_reference(float* ctx, float* att, const float* qkv, int B, int S, int D, int H) {
  const int Dh = D / H;
  const int ld = 3 * D;
  std::vector<double> scores(S);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < S; ++i) {
        double max = -INFINITY, sum = 0.0;
        for (int j = 0; j < S; ++j) {
          if (j > i) continue;
          double s = 0.0;
          for (int c = 0; c < Dh; ++c)
            s += static_cast<double>(qkv[(b * S + i) * ld + h * Dh + c]) * qkv[(b * S + j) * ld + D + h * Dh + c];
          scores[j] = s / std::sqrt(static_cast<double>(Dh));
          max = std::max(max, scores[j]);
        }
        for (int j = 0; j <= i; ++j) sum += std::exp(scores[j] - max);
        float* row = att + ((static_cast<int64_t>(b) * H + h) * S + i) * S;
        for (int j = 0; j < S; ++j) row[j] = j <= i ? static_cast<float>(std::exp(scores[j] - max) / sum) : 0.0f;
        for (int c = 0; c < Dh; ++c) {
          double acc = 0.0;
          for (int j = 0; j <= i; ++j) acc += static_cast<double>(row[j]) * qkv[(b * S + j) * ld + 2 * D + h * Dh + c];
          ctx[(b * S + i) * D + h * Dh + c] = static_cast<float>(acc);
        }
      }
}

void attention_core_backward_reference(float* dqkv, const float* dctx, const float* att, const float* qkv, int B,
                                       int S, int D, int H) {
  const int Dh = D / H;
  const int ld = 3 * D;
  const double scale = 1.0 / std::sqrt(static_cast<double>(Dh));
  for (int64_t i = 0; i < static_cast<int64_t>(B) * S * ld; ++i) dqkv[i] = 0.0f;
  std::vector<double> datt(S), dscore(S);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < S; ++i) {
        const float* row = att + ((static_cast<int64_t>(b) * H + h) * S + i) * S;
        for (int j = 0; j <= i; ++j) {
          double d = 0.0;
          for (int c = 0; c < Dh; ++c)
            d += static_cast<double>(dctx[(b * S + i) * D + h * Dh + c]) * qkv[(b * S + j) * ld + 2 * D + h * Dh + c];
          datt[j] = d;
          for (int c = 0; c < Dh; ++c)
            dqkv[(b * S + j) * ld + 2 * D + h * Dh + c] += row[j] * dctx[(b * S + i) * D + h * Dh + c];
        }
        // Softmax Jacobian: dscore_j = p_j (datt_j − Σ_l p_l datt_l).
        double dot = 0.0;
        for (int j = 0; j <= i; ++j) dot += row[j] * datt[j];
        for (int j = 0; j <= i; ++j) dscore[j] = row[j] * (datt[j] - dot) * scale;
        for (int j = 0; j <= i; ++j)
          for (int c = 0; c < Dh; ++c) {
            dqkv[(b * S + i) * ld + h * Dh + c] += static_cast<float>(dscore[j] * qkv[(b * S + j) * ld + D + h * Dh + c]);
            dqkv[(b * S + j) * ld + D + h * Dh + c] += static_cast<float>(dscore[j] * qkv[(b * S + i) * ld + h * Dh + c]);
          }
      }
}

}  // namespace st
