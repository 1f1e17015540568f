// Causal multi-head self-attention with its projections, no biases.
// B = batch, S = sequence length, T = B·S tokens, D = d_model, H = heads, Dh = D / H.
//   qkv = x · w_qkv                 (T, 3D), row t = [q_t | k_t | v_t], head h in columns h·Dh ... (h+1)·Dh
//   att[b, h] = softmax(q kᵀ / √Dh + causal mask)    (S, S) per batch row and head, zero above the diagonal
//   ctx = att · v                   (T, D), heads side by side
//   y = ctx · w_o                   (T, D)
#pragma once

namespace st {

// y: (T, D)  qkv: (T, 3D), att: (B, H, S, S), ctx: (T, D) saved for backward
// x: (T, D)  w_qkv: (D, 3D)  w_o: (D, D)
void attention_forward(float* y, float* qkv, float* att, float* ctx, const float* x, const float* w_qkv,
                       const float* w_o, int B, int S, int D, int H);
// dx: (T, D)  dw_qkv: (D, 3D)  dw_o: (D, D), all written  dy: (T, D)  then the forward's inputs and saved values
void attention_backward(float* dx, float* dw_qkv, float* dw_o, const float* dy, const float* x, const float* w_qkv,
                        const float* w_o, const float* qkv, const float* att, const float* ctx, int B, int S, int D,
                        int H);

// The fused per-head core alone (what the projections surround), and its plain references.
// ctx: (T, D)  att: (B, H, S, S)  qkv: (T, 3D)
void attention_core_forward(float* ctx, float* att, const float* qkv, int B, int S, int D, int H);
// dqkv: (T, 3D) written  dctx: (T, D)  att: (B, H, S, S)  qkv: (T, 3D)
void attention_core_backward(float* dqkv, const float* dctx, const float* att, const float* qkv, int B, int S, int D,
                             int H);
void attention_core_forward_reference(float* ctx, float* att, const float* qkv, int B, int S, int D, int H);
void attention_core_backward_reference(float* dqkv, const float* dctx, const float* att, const float* qkv, int B,
                                       int S, int D, int H);

}  // namespace st
