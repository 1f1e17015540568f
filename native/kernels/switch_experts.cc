// The experts (switch_experts.h). R = rows, T = tokens, D = d_model, F = d_ff, E = experts.
#include "switch_experts.h"

#include <algorithm>
#include <cmath>

#include "gemm.h"
#include "switch_random.h"
#include "threadpool.h"

namespace st {

namespace {
constexpr int64_t kRowBlock = 16;
int64_t blocks_of(int64_t n, int64_t block) { return (n + block - 1) / block; }
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;
}  // namespace

float activation_value(Activation act, float v) {
  if (act == Activation::relu) return v > 0.0f ? v : 0.0f;
  const float inner = kSqrt2OverPi * (v + kGeluCubic * v * v * v);
  return 0.5f * v * (1.0f + std::tanh(inner));
}

float activation_derivative(Activation act, float v) {
  if (act == Activation::relu) return v > 0.0f ? 1.0f : 0.0f;
  const float inner = kSqrt2OverPi * (v + kGeluCubic * v * v * v);
  const float th = std::tanh(inner);
  return 0.5f * (1.0f + th) + 0.5f * v * (1.0f - th * th) * kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * v * v);
}

void switch_activation_forward(float* h, uint8_t* keep, const float* h_pre, const int32_t* row_choice, int64_t R,
                               int F, Activation act, float rate, uint64_t key) {
  const float survivor_scale = rate > 0.0f ? 1.0f / (1.0f - rate) : 1.0f;
  parallel_for(blocks_of(R, kRowBlock), [&](int64_t b, int) {
    for (int64_t i = b * kRowBlock; i < std::min(R, (b + 1) * kRowBlock); ++i) {
      const float* in = h_pre + i * F;
      float* out = h + i * F;
      if (act == Activation::relu) {
        for (int f = 0; f < F; ++f) out[f] = in[f] > 0.0f ? in[f] : 0.0f;
      } else {
        for (int f = 0; f < F; ++f) out[f] = activation_value(Activation::gelu, in[f]);
      }
      if (rate > 0.0f) {
        // Keyed by the choice, not the row, so the mask does not depend on the dispatch layout.
        const uint64_t base = static_cast<uint64_t>(row_choice ? row_choice[i] : i) * static_cast<uint64_t>(F);
        uint8_t* m = keep + i * F;
        for (int f = 0; f < F; ++f) {
          m[f] = random_uniform(key, base + f) >= rate ? 1 : 0;
          out[f] = m[f] ? out[f] * survivor_scale : 0.0f;
        }
      }
    }
  });
}

void switch_activation_backward(float* dh_pre, const float* dh, const float* h_pre, const uint8_t* keep, int64_t R,
                                int F, Activation act, float rate) {
  const float survivor_scale = rate > 0.0f ? 1.0f / (1.0f - rate) : 1.0f;
  parallel_for(blocks_of(R, kRowBlock), [&](int64_t b, int) {
    for (int64_t i = b * kRowBlock; i < std::min(R, (b + 1) * kRowBlock); ++i) {
      const float* in = h_pre + i * F;
      const float* g = dh + i * F;
      float* out = dh_pre + i * F;
      if (act == Activation::relu) {
        for (int f = 0; f < F; ++f) out[f] = in[f] > 0.0f ? g[f] : 0.0f;
      } else {
        for (int f = 0; f < F; ++f) out[f] = g[f] * activation_derivative(Activation::gelu, in[f]);
      }
      if (rate > 0.0f) {
        const uint8_t* m = keep + i * F;
        for (int f = 0; f < F; ++f) out[f] = m[f] ? out[f] * survivor_scale : 0.0f;
      }
    }
  });
}

void switch_experts_forward(const SwitchExpertsForward& a) {
  const int64_t R = a.offsets[a.E];
  if (R == 0) return;
  GroupedMatmul up{};
  up.y = a.h_pre;
  up.x = a.x;
  up.w = a.w_in;
  up.offsets = a.offsets;
  up.gather = a.row_token;  // dispatch folded into the matmul's reads
  up.E = a.E;
  up.K = a.D;
  up.N = a.F;
  up.ldx = a.D;
  up.ldy = a.F;
  grouped_matmul(up);
  switch_activation_forward(a.h, a.keep, a.h_pre, a.row_choice, R, a.F, a.act, a.dropout_rate, a.dropout_key);
  GroupedMatmul down{};
  down.y = a.expert_out;
  down.x = a.h;
  down.w = a.w_out;
  down.offsets = a.offsets;
  down.E = a.E;
  down.K = a.F;
  down.N = a.D;
  down.ldx = a.F;
  down.ldy = a.D;
  grouped_matmul(down);
}

void switch_experts_backward(const SwitchExpertsBackward& a) {
  const int64_t R = a.offsets[a.E];
  // dW_out[e] = h[e rows]ᵀ · dexpert_out[e rows] (experts with no rows get zeros).
  GroupedMatmulWeightGrad gw_out{};
  gw_out.dw = a.dw_out;
  gw_out.x = a.h;
  gw_out.dy = a.dexpert_out;
  gw_out.offsets = a.offsets;
  gw_out.E = a.E;
  gw_out.K = a.F;
  gw_out.N = a.D;
  gw_out.ldx = a.F;
  gw_out.lddy = a.D;
  grouped_matmul_weight_grad(gw_out);
  if (R > 0) {
    // dh = dexpert_out · W_out[e]ᵀ, then through dropout and the activation, in place.
    GroupedMatmul back_out{};
    back_out.y = a.dh;
    back_out.x = a.dexpert_out;
    back_out.w = a.w_out;
    back_out.offsets = a.offsets;
    back_out.E = a.E;
    back_out.K = a.D;
    back_out.N = a.F;
    back_out.ldx = a.D;
    back_out.ldy = a.F;
    back_out.trans_w = true;
    grouped_matmul(back_out);
    switch_activation_backward(a.dh, a.dh, a.h_pre, a.keep, R, a.F, a.act, a.dropout_rate);
  }
  // dW_in[e] = x[e rows]ᵀ · dh_pre[e rows], x gathered like the forward.
  GroupedMatmulWeightGrad gw_in{};
  gw_in.dw = a.dw_in;
  gw_in.x = a.x;
  gw_in.dy = a.dh;
  gw_in.offsets = a.offsets;
  gw_in.gather_x = a.row_token;
  gw_in.E = a.E;
  gw_in.K = a.D;
  gw_in.N = a.F;
  gw_in.ldx = a.D;
  gw_in.lddy = a.F;
  grouped_matmul_weight_grad(gw_in);
  if (R == 0) return;
  // dx = dh_pre · W_in[e]ᵀ: scattered back to the tokens (combine folded into the write-back), or
  // written per row for the caller to round and send back.
  GroupedMatmul back_in{};
  back_in.y = a.dx;
  back_in.x = a.dh;
  back_in.w = a.w_in;
  back_in.offsets = a.offsets;
  back_in.scatter = a.scatter_dx ? a.row_token : nullptr;
  back_in.E = a.E;
  back_in.K = a.F;
  back_in.N = a.D;
  back_in.ldx = a.F;
  back_in.ldy = a.D;
  back_in.trans_w = true;
  grouped_matmul(back_in);
}

}  // namespace st
