// The experts (switch_experts.h). R = rows, T = tokens, D = d_model, F = d_ff, E = experts.
#include "switch_experts.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "gemm.h"
#include "switch_random.h"
#include "threadpool.h"

namespace st {

namespace {
constexpr int64_t kRowBlock = 16;
int64_t blocks_of(int64_t n, int64_t block) { return (n + block - 1) / block; }
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;

// exp(y) for y in [-87, 0] as 2^n · p(r) (Cody-Waite reduction, the classic single-precision
// polynomial): no library call, so the loops over d_ff vectorise; relative error about 1e-7.
inline float exp_nonpositive(float y) {
  const int n = static_cast<int>(y * 1.44269504088896341f - 0.5f);  // truncation of a value <= 0: ceil
  const float fn = static_cast<float>(n);
  const float r = (y - fn * 0.693359375f) + fn * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const uint32_t bits = static_cast<uint32_t>(n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

// tanh through exp(-2|x|): absolute error about 1e-7, which is what gelu needs. |x| is clamped
// to 43.5 on its bits (a float compare would keep the loop from vectorising under trapping math);
// tanh(43.5) is 1 in float32.
inline float tanh_fast(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  uint32_t abs_bits = bits & 0x7fffffffu;
  abs_bits = abs_bits < 0x422e0000u ? abs_bits : 0x422e0000u;
  float a;
  std::memcpy(&a, &abs_bits, 4);
  const float e = exp_nonpositive(-2.0f * a);
  const float t = (1.0f - e) / (1.0f + e);
  return std::copysign(t, x);
}

inline float gelu(float v) {
  const float inner = kSqrt2OverPi * (v + kGeluCubic * v * v * v);
  return 0.5f * v * (1.0f + tanh_fast(inner));
}

inline float gelu_derivative(float v) {
  const float inner = kSqrt2OverPi * (v + kGeluCubic * v * v * v);
  const float th = tanh_fast(inner);
  return 0.5f * (1.0f + th) + 0.5f * v * (1.0f - th * th) * kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * v * v);
}
}  // namespace

bool relu_folds(Activation act, float dropout_rate) { return act == Activation::relu && dropout_rate == 0.0f; }

float activation_value(Activation act, float v) {
  if (act == Activation::relu) return v > 0.0f ? v : 0.0f;
  return gelu(v);
}

float activation_derivative(Activation act, float v) {
  if (act == Activation::relu) return v > 0.0f ? 1.0f : 0.0f;
  return gelu_derivative(v);
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
        for (int f = 0; f < F; ++f) out[f] = gelu(in[f]);
      }
      if (rate > 0.0f) {
        // Keyed by the choice, not the row, so the mask does not depend on the dispatch layout.
        // A padded row (row_choice -1) carries no token: any fixed key will do.
        const int64_t c = row_choice && row_choice[i] >= 0 ? row_choice[i] : i;
        const uint64_t base = static_cast<uint64_t>(c) * static_cast<uint64_t>(F);
        uint8_t* m = keep + i * F;
        for (int f = 0; f < F; ++f) {
          m[f] = random_uniform(key, base + f) >= rate ? 1 : 0;
          const float v = out[f] * survivor_scale;
          out[f] = m[f] ? v : 0.0f;
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
        // Load before selecting: a conditional load keeps the compiler from vectorising (8x slower).
        for (int f = 0; f < F; ++f) {
          const float gv = g[f];
          out[f] = in[f] > 0.0f ? gv : 0.0f;
        }
      } else {
        for (int f = 0; f < F; ++f) out[f] = g[f] * gelu_derivative(in[f]);
      }
      if (rate > 0.0f) {
        const uint8_t* m = keep + i * F;
        for (int f = 0; f < F; ++f) out[f] *= survivor_scale * static_cast<float>(m[f]);  // m is 0 or 1
      }
    }
  });
}

void switch_experts_forward(const SwitchExpertsForward& a) {
  const int64_t R = a.offsets[a.E];
  if (R == 0) return;
  // relu without dropout and without h_pre wanted: the relu is the up matmul's epilogue and h is
  // written directly (the backward reads relu's derivative off h: h > 0 exactly where h_pre > 0).
  const bool folded = !a.h_pre && relu_folds(a.act, a.dropout_rate);
  GroupedMatmul up{};
  up.y = folded ? a.h : a.h_pre;
  up.epilogue = folded ? Epilogue::relu : Epilogue::none;
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
  if (!folded) switch_activation_forward(a.h, a.keep, a.h_pre, a.row_choice, R, a.F, a.act, a.dropout_rate, a.dropout_key);
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
    // With the relu folded into the forward there is no h_pre: relu's derivative is read off h,
    // which is positive exactly where h_pre is (the same values).
    const float* pre = a.h_pre ? a.h_pre : a.h;
    switch_activation_backward(a.dh, a.dh, pre, a.keep, R, a.F, a.act, a.dropout_rate);
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
