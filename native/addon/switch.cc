// Bindings of the Switch layer's kernels: router, slots, dispatch plan, dispatch, experts,
// combine, initialisation. Each is one step of the layer, callable on its own so that the mesh
// layer can put an all-to-all between dispatch and the experts. Every argument is checked here
// (types, lengths, index ranges) before a kernel touches memory.
// T = tokens, D = d_model, F = d_ff, E = experts, k = choices, G = group size, C = capacity, R = rows.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "../kernels/bf16.h"
#include "../kernels/gemm.h"
#include "../kernels/router.h"
#include "../kernels/switch_dispatch.h"
#include "../kernels/switch_experts.h"
#include "../kernels/switch_random.h"
#include "../kernels/switch_slots.h"
#include "../kernels/threadpool.h"
#include "args.h"
#include "bindings.h"

namespace st::addon {

namespace {

constexpr int64_t kMaxDim = 1 << 30;

std::string shape_of(std::initializer_list<int64_t> dims) {
  std::string s = "(";
  bool first = true;
  for (int64_t d : dims) {
    if (!first) s += ", ";
    s += std::to_string(d);
    first = false;
  }
  return s + ")";
}

template <class T>
T* checked(Napi::Env env, View<T> v, int64_t n, const char* name, std::initializer_list<int64_t> dims) {
  expect_length(env, v, static_cast<size_t>(n), name, shape_of(dims));
  return v.data;
}

float* f32(const Napi::Value& v, const char* name, int64_t n, std::initializer_list<int64_t> dims) {
  return checked(v.Env(), float32_array(v, name), n, name, dims);
}
float* f32_or_null(const Napi::Value& v, const char* name, int64_t n, std::initializer_list<int64_t> dims) {
  return v.IsNull() || v.IsUndefined() ? nullptr : f32(v, name, n, dims);
}
int32_t* i32(const Napi::Value& v, const char* name, int64_t n, std::initializer_list<int64_t> dims) {
  return checked(v.Env(), int32_array(v, name), n, name, dims);
}
uint8_t* u8(const Napi::Value& v, const char* name, int64_t n, std::initializer_list<int64_t> dims) {
  return checked(v.Env(), uint8_array(v, name), n, name, dims);
}

// Every index in [lo, hi) (or -1 when allow_minus_one): a bad index is an error, never a wild read.
void expect_indices(Napi::Env env, const int32_t* p, int64_t n, int64_t lo, int64_t hi, bool allow_minus_one,
                    const char* name) {
  for (int64_t i = 0; i < n; ++i) {
    if (p[i] == -1 && allow_minus_one) continue;
    if (p[i] < lo || p[i] >= hi)
      throw_range_error(env, "ERR_SWITCH_RANGE",
                        std::string("argument '") + name + "' element " + std::to_string(i) + " = " +
                            std::to_string(p[i]) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) +
                            ")" + (allow_minus_one ? " and is not -1" : ""));
  }
}

// offsets (E + 1): 0, non-decreasing; returns R = offsets[E].
int64_t expect_offsets(Napi::Env env, const int32_t* offsets, int E) {
  if (offsets[0] != 0) throw_range_error(env, "ERR_SWITCH_RANGE", "argument 'offsets' must start at 0");
  for (int e = 0; e < E; ++e)
    if (offsets[e + 1] < offsets[e])
      throw_range_error(env, "ERR_SWITCH_RANGE", "argument 'offsets' must be non-decreasing");
  return offsets[E];
}

uint64_t key_of(const Napi::Value& seed, const Napi::Value& stream) {
  const uint64_t s = static_cast<uint64_t>(integer(seed, "seed", 0, (int64_t{1} << 53)));
  const uint64_t c = static_cast<uint64_t>(integer(stream, "stream", 0, (int64_t{1} << 53)));
  return random_key(s, c);
}

int64_t dim(const Napi::Value& v, const char* name, int64_t lo = 1) { return integer(v, name, lo, kMaxDim); }

void expect_groups(Napi::Env env, int64_t T, int64_t G) {
  if (T % G != 0)
    throw_range_error(env, "ERR_SWITCH_SHAPE", "tokens T = " + std::to_string(T) +
                                                   " must be a multiple of the group size G = " + std::to_string(G));
}

Activation activation_of(const Napi::Value& v) {
  return static_cast<Activation>(integer(v, "activation (0 relu, 1 gelu)", 0, 1));
}

int64_t token_offset(const Napi::CallbackInfo& info, size_t i);

// switchTruncatedNormal(dst, sigma, seed, stream)
Napi::Value truncated_normal(const Napi::CallbackInfo& info) {
  expect_args(info, 4, "switchTruncatedNormal");
  View<float> dst = float32_array(info[0], "dst");
  const double sigma = number(info[1], "sigma");
  if (!(sigma >= 0.0) || !std::isfinite(sigma))
    throw_range_error(info.Env(), "ERR_SWITCH_RANGE", "argument 'sigma' must be finite and >= 0");
  truncated_normal_fill(dst.data, static_cast<int64_t>(dst.length), static_cast<float>(sigma), key_of(info[2], info[3]));
  return info.Env().Undefined();
}

// switchRouterJitter(xRouter, u, x, epsilon, seed, stream, T, D[, tokenOffset])
Napi::Value router_jitter(const Napi::CallbackInfo& info) {
  expect_args(info, 8, "switchRouterJitter");
  const int64_t T = dim(info[6], "T"), D = dim(info[7], "D");
  const double eps = number(info[3], "epsilon");
  if (!(eps >= 0.0 && eps < 1.0)) throw_range_error(info.Env(), "ERR_SWITCH_RANGE", "argument 'epsilon' must be in [0, 1)");
  router_jitter_forward(f32(info[0], "xRouter", T * D, {T, D}), f32(info[1], "u", T * D, {T, D}),
                        f32(info[2], "x", T * D, {T, D}), key_of(info[4], info[5]), static_cast<float>(eps),
                        static_cast<int>(T), static_cast<int>(D), token_offset(info, 8));
  return info.Env().Undefined();
}

// switchRouterForward(logits, probs, lse, xRouter, wRouter, T, D, E)
Napi::Value router_fwd(const Napi::CallbackInfo& info) {
  expect_args(info, 8, "switchRouterForward");
  const int64_t T = dim(info[5], "T"), D = dim(info[6], "D"), E = dim(info[7], "E");
  router_forward(f32(info[0], "logits", T * E, {T, E}), f32(info[1], "probs", T * E, {T, E}), f32(info[2], "lse", T, {T}),
                 f32(info[3], "xRouter", T * D, {T, D}), f32(info[4], "wRouter", D * E, {D, E}), static_cast<int>(T),
                 static_cast<int>(D), static_cast<int>(E));
  return info.Env().Undefined();
}

// An optional trailing tokenOffset (the global index of the call's first token), 0 when absent.
int64_t token_offset(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && !info[i].IsUndefined() ? integer(info[i], "tokenOffset", 0, int64_t{1} << 40) : 0;
}

int64_t choices(const Napi::Value& v) { return integer(v, "k", 1, 2); }

// switchRouterChoose(expertIndex, gate, want, probs, T, E, k, policy, threshold, seed, stream[, tokenOffset])
Napi::Value router_choose(const Napi::CallbackInfo& info) {
  expect_args(info, 11, "switchRouterChoose");
  const int64_t T = dim(info[4], "T"), E = dim(info[5], "E"), k = choices(info[6]);
  if (k > E) throw_range_error(info.Env(), "ERR_SWITCH_RANGE", "k must be <= E");
  const auto policy = static_cast<SecondExpertPolicy>(integer(info[7], "policy", 0, 3));
  const double threshold = number(info[8], "threshold");
  if (policy == SecondExpertPolicy::random && !(threshold > 0.0))
    throw_range_error(info.Env(), "ERR_SWITCH_RANGE", "argument 'threshold' must be > 0 for the random policy");
  router_choose_forward(i32(info[0], "expertIndex", T * k, {T, k}), f32(info[1], "gate", T * k, {T, k}),
                        u8(info[2], "want", T * k, {T, k}), f32(info[3], "probs", T * E, {T, E}), static_cast<int>(T),
                        static_cast<int>(E), static_cast<int>(k), policy, static_cast<float>(threshold),
                        key_of(info[9], info[10]), token_offset(info, 11));
  return info.Env().Undefined();
}

// switchRouterLosses(f, probs, lse, expertIndex, T, E, k, G) -> [loadBalanceLoss, zLoss, routerEntropy]
Napi::Value router_losses(const Napi::CallbackInfo& info) {
  expect_args(info, 8, "switchRouterLosses");
  Napi::Env env = info.Env();
  const int64_t T = dim(info[4], "T"), E = dim(info[5], "E"), k = choices(info[6]), G = dim(info[7], "G");
  expect_groups(env, T, G);
  int32_t* index = i32(info[3], "expertIndex", T * k, {T, k});
  expect_indices(env, index, T * k, 0, E, false, "expertIndex");
  double lb = 0, z = 0, entropy = 0;
  router_losses_forward(&lb, &z, &entropy, f32(info[0], "f", (T / G) * E, {T / G, E}), f32(info[1], "probs", T * E, {T, E}),
                        f32(info[2], "lse", T, {T}), index, static_cast<int>(T), static_cast<int>(E),
                        static_cast<int>(k), static_cast<int>(G));
  Napi::Array out = Napi::Array::New(env, 3);
  out.Set(uint32_t{0}, Napi::Number::New(env, lb));
  out.Set(uint32_t{1}, Napi::Number::New(env, z));
  out.Set(uint32_t{2}, Napi::Number::New(env, entropy));
  return out;
}

// switchRouterBackward(dlogits, dwRouter, dx|null, dgate, probs, lse, f, expertIndex, xRouter, wRouter, u|null,
//                      T, D, E, k, G, loadBalanceCoef, zLossCoef)
Napi::Value router_bwd(const Napi::CallbackInfo& info) {
  expect_args(info, 18, "switchRouterBackward");
  Napi::Env env = info.Env();
  const int64_t T = dim(info[11], "T"), D = dim(info[12], "D"), E = dim(info[13], "E"), k = choices(info[14]),
                G = dim(info[15], "G");
  expect_groups(env, T, G);
  int32_t* index = i32(info[7], "expertIndex", T * k, {T, k});
  expect_indices(env, index, T * k, 0, E, false, "expertIndex");
  router_backward(f32(info[0], "dlogits", T * E, {T, E}), f32(info[1], "dwRouter", D * E, {D, E}),
                  f32_or_null(info[2], "dx", T * D, {T, D}), f32(info[3], "dgate", T * k, {T, k}),
                  f32(info[4], "probs", T * E, {T, E}), f32(info[5], "lse", T, {T}),
                  f32(info[6], "f", (T / G) * E, {T / G, E}), index, f32(info[8], "xRouter", T * D, {T, D}),
                  f32(info[9], "wRouter", D * E, {D, E}), f32_or_null(info[10], "u", T * D, {T, D}),
                  static_cast<int>(T), static_cast<int>(D), static_cast<int>(E), static_cast<int>(k),
                  static_cast<int>(G), static_cast<float>(number(info[16], "loadBalanceCoef")),
                  static_cast<float>(number(info[17], "zLossCoef")));
  return env.Undefined();
}

// switchSlots(slot, counts, expertIndex, gate, want, probs, T, k, G, E, C, noTokenLeftBehind)
Napi::Value slots(const Napi::CallbackInfo& info) {
  expect_args(info, 12, "switchSlots");
  Napi::Env env = info.Env();
  const int64_t T = dim(info[6], "T"), k = choices(info[7]), G = dim(info[8], "G"), E = dim(info[9], "E"),
                C = dim(info[10], "C", 0);
  expect_groups(env, T, G);
  int32_t* index = i32(info[2], "expertIndex", T * k, {T, k});
  expect_indices(env, index, T * k, 0, E, false, "expertIndex");
  switch_slots_forward(i32(info[0], "slot", T * k, {T, k}), i32(info[1], "counts", (T / G) * E, {T / G, E}), index,
                       f32(info[3], "gate", T * k, {T, k}), u8(info[4], "want", T * k, {T, k}),
                       f32(info[5], "probs", T * E, {T, E}), static_cast<int>(T), static_cast<int>(k),
                       static_cast<int>(G), static_cast<int>(E), static_cast<int>(C), boolean(info[11], "noTokenLeftBehind"));
  return env.Undefined();
}

// switchRowsCount(counts, T, G, E, C, padded) -> R
Napi::Value rows_count(const Napi::CallbackInfo& info) {
  expect_args(info, 6, "switchRowsCount");
  Napi::Env env = info.Env();
  const int64_t T = dim(info[1], "T"), G = dim(info[2], "G"), E = dim(info[3], "E"), C = dim(info[4], "C", 0);
  expect_groups(env, T, G);
  int32_t* counts = i32(info[0], "counts", (T / G) * E, {T / G, E});
  expect_indices(env, counts, (T / G) * E, 0, C + 1, false, "counts");
  return Napi::Number::New(env, static_cast<double>(switch_rows_count(counts, static_cast<int>(T), static_cast<int>(G),
                                                                      static_cast<int>(E), static_cast<int>(C),
                                                                      boolean(info[5], "padded"))));
}

// switchRows(row, offsets, rowToken, rowChoice, expertIndex, slot, counts, T, k, G, E, C, padded)
Napi::Value rows(const Napi::CallbackInfo& info) {
  expect_args(info, 13, "switchRows");
  Napi::Env env = info.Env();
  const int64_t T = dim(info[7], "T"), k = choices(info[8]), G = dim(info[9], "G"), E = dim(info[10], "E"),
                C = dim(info[11], "C", 0);
  expect_groups(env, T, G);
  const bool padded = boolean(info[12], "padded");
  int32_t* index = i32(info[4], "expertIndex", T * k, {T, k});
  expect_indices(env, index, T * k, 0, E, false, "expertIndex");
  int32_t* slot = i32(info[5], "slot", T * k, {T, k});
  expect_indices(env, slot, T * k, 0, C, true, "slot");
  int32_t* counts = i32(info[6], "counts", (T / G) * E, {T / G, E});
  expect_indices(env, counts, (T / G) * E, 0, C + 1, false, "counts");
  // Every kept choice's slot must lie below its (group, expert) count, or rows would collide.
  for (int64_t c = 0; c < T * k; ++c)
    if (slot[c] >= counts[(c / k / G) * E + index[c]])
      throw_range_error(env, "ERR_SWITCH_RANGE", "argument 'slot' element " + std::to_string(c) +
                                                     " is not below its expert's count in 'counts'");
  const int64_t R = switch_rows_count(counts, static_cast<int>(T), static_cast<int>(G), static_cast<int>(E),
                                      static_cast<int>(C), padded);
  switch_rows_forward(i32(info[0], "row", T * k, {T, k}), i32(info[1], "offsets", E + 1, {E + 1}),
                      i32(info[2], "rowToken", R, {R}), i32(info[3], "rowChoice", R, {R}), index, slot, counts,
                      static_cast<int>(T), static_cast<int>(k), static_cast<int>(G), static_cast<int>(E),
                      static_cast<int>(C), padded);
  return env.Undefined();
}

// switchDispatchForward(buffer, x, rowToken, T, D, roundWire)
Napi::Value dispatch_fwd(const Napi::CallbackInfo& info) {
  expect_args(info, 6, "switchDispatchForward");
  Napi::Env env = info.Env();
  const int64_t T = dim(info[3], "T"), D = dim(info[4], "D");
  View<int32_t> rt = int32_array(info[2], "rowToken");
  const int64_t R = static_cast<int64_t>(rt.length);
  expect_indices(env, rt.data, R, 0, T, true, "rowToken");
  switch_dispatch_forward(f32(info[0], "buffer", R * D, {R, D}), f32(info[1], "x", T * D, {T, D}), rt.data, R,
                          static_cast<int>(D), boolean(info[5], "roundWire"));
  return env.Undefined();
}

// switchDispatchBackward(dx, dbuffer, row, T, k, D, roundWire, accumulate)
Napi::Value dispatch_bwd(const Napi::CallbackInfo& info) {
  expect_args(info, 8, "switchDispatchBackward");
  Napi::Env env = info.Env();
  const int64_t T = dim(info[3], "T"), k = choices(info[4]), D = dim(info[5], "D");
  View<float> db = float32_array(info[1], "dbuffer");
  if (db.length % D != 0)
    throw_range_error(env, "ERR_SWITCH_SHAPE", "argument 'dbuffer' length must be a multiple of D = " + std::to_string(D));
  const int64_t R = static_cast<int64_t>(db.length) / D;
  int32_t* row = i32(info[2], "row", T * k, {T, k});
  expect_indices(env, row, T * k, 0, R, true, "row");
  switch_dispatch_backward(f32(info[0], "dx", T * D, {T, D}), db.data, row, static_cast<int>(T), static_cast<int>(k),
                           static_cast<int>(D), boolean(info[6], "roundWire"), boolean(info[7], "accumulate"));
  return env.Undefined();
}

// switchCombineForward(y, expertOut, gate, row, T, k, D)
Napi::Value combine_fwd(const Napi::CallbackInfo& info) {
  expect_args(info, 7, "switchCombineForward");
  Napi::Env env = info.Env();
  const int64_t T = dim(info[4], "T"), k = choices(info[5]), D = dim(info[6], "D");
  View<float> eo = float32_array(info[1], "expertOut");
  if (eo.length % D != 0)
    throw_range_error(env, "ERR_SWITCH_SHAPE", "argument 'expertOut' length must be a multiple of D = " + std::to_string(D));
  const int64_t R = static_cast<int64_t>(eo.length) / D;
  int32_t* row = i32(info[3], "row", T * k, {T, k});
  expect_indices(env, row, T * k, 0, R, true, "row");
  switch_combine_forward(f32(info[0], "y", T * D, {T, D}), eo.data, f32(info[2], "gate", T * k, {T, k}), row,
                         static_cast<int>(T), static_cast<int>(k), static_cast<int>(D));
  return env.Undefined();
}

// switchCombineBackward(dgate, dExpertOut, dy, expertOut, gate, rowChoice, T, k, D, roundWire)
Napi::Value combine_bwd(const Napi::CallbackInfo& info) {
  expect_args(info, 10, "switchCombineBackward");
  Napi::Env env = info.Env();
  const int64_t T = dim(info[6], "T"), k = choices(info[7]), D = dim(info[8], "D");
  View<int32_t> rc = int32_array(info[5], "rowChoice");
  const int64_t R = static_cast<int64_t>(rc.length);
  expect_indices(env, rc.data, R, 0, T * k, true, "rowChoice");
  switch_combine_backward(f32(info[0], "dgate", T * k, {T, k}), f32(info[1], "dExpertOut", R * D, {R, D}),
                          f32(info[2], "dy", T * D, {T, D}), f32(info[3], "expertOut", R * D, {R, D}),
                          f32(info[4], "gate", T * k, {T, k}), rc.data, static_cast<int>(T), static_cast<int>(k), R,
                          static_cast<int>(D), boolean(info[9], "roundWire"));
  return env.Undefined();
}

struct ExpertShapes {
  int64_t R, T, E, D, F;
  bool has_row_token;  // given by the caller (its data pointer may be null when R = 0)
};

// Offsets, row_token (optional) and the sizes shared by the experts' forward and backward.
ExpertShapes expert_shapes(const Napi::CallbackInfo& info, int offsets_arg, int row_token_arg, int x_arg, int first_dim,
                           int32_t** offsets, int32_t** row_token, float** x) {
  Napi::Env env = info.Env();
  ExpertShapes s{};
  s.E = dim(info[first_dim], "E");
  s.D = dim(info[first_dim + 1], "D");
  s.F = dim(info[first_dim + 2], "F");
  *offsets = i32(info[offsets_arg], "offsets", s.E + 1, {s.E + 1});
  s.R = expect_offsets(env, *offsets, static_cast<int>(s.E));
  View<float> xv = float32_array(info[x_arg], "x");
  if (info[row_token_arg].IsNull() || info[row_token_arg].IsUndefined()) {
    *row_token = nullptr;
    expect_length(env, xv, static_cast<size_t>(s.R * s.D), "x", shape_of({s.R, s.D}));
    s.T = s.R;
    s.has_row_token = false;
  } else {
    s.has_row_token = true;
    if (xv.length % s.D != 0)
      throw_range_error(env, "ERR_SWITCH_SHAPE", "argument 'x' length must be a multiple of D = " + std::to_string(s.D));
    s.T = static_cast<int64_t>(xv.length) / s.D;
    *row_token = i32(info[row_token_arg], "rowToken", s.R, {s.R});
    expect_indices(env, *row_token, s.R, 0, s.T, false, "rowToken");
  }
  *x = xv.data;
  return s;
}

// switchExpertsForward(expertOut, hPre|null, h, keep|null, x, rowToken|null, rowChoice|null, wIn, wOut, offsets,
//                      E, D, F, activation, dropoutRate, seed, stream)
Napi::Value experts_fwd(const Napi::CallbackInfo& info) {
  expect_args(info, 17, "switchExpertsForward");
  Napi::Env env = info.Env();
  SwitchExpertsForward a{};
  int32_t* offsets;
  int32_t* row_token;
  float* x;
  const ExpertShapes s = expert_shapes(info, 9, 5, 4, 10, &offsets, &row_token, &x);
  const double rate = number(info[14], "dropoutRate");
  if (!(rate >= 0.0 && rate < 1.0)) throw_range_error(env, "ERR_SWITCH_RANGE", "argument 'dropoutRate' must be in [0, 1)");
  a.act = activation_of(info[13]);
  a.expert_out = f32(info[0], "expertOut", s.R * s.D, {s.R, s.D});
  // hPre may be null for relu without dropout: the relu is folded into the matmul, h written directly.
  a.h_pre = relu_folds(a.act, static_cast<float>(rate)) ? f32_or_null(info[1], "hPre", s.R * s.F, {s.R, s.F})
                                                        : f32(info[1], "hPre", s.R * s.F, {s.R, s.F});
  a.h = f32(info[2], "h", s.R * s.F, {s.R, s.F});
  a.keep = rate > 0 ? u8(info[3], "keep", s.R * s.F, {s.R, s.F}) : nullptr;
  a.x = x;
  a.row_token = row_token;
  if (!(info[6].IsNull() || info[6].IsUndefined())) {
    a.row_choice = i32(info[6], "rowChoice", s.R, {s.R});
    expect_indices(env, a.row_choice, s.R, 0, INT32_MAX, true, "rowChoice");
  }
  a.w_in = f32(info[7], "wIn", s.E * s.D * s.F, {s.E, s.D, s.F});
  a.w_out = f32(info[8], "wOut", s.E * s.F * s.D, {s.E, s.F, s.D});
  a.offsets = offsets;
  a.E = static_cast<int>(s.E);
  a.D = static_cast<int>(s.D);
  a.F = static_cast<int>(s.F);
  a.dropout_rate = static_cast<float>(rate);
  a.dropout_key = key_of(info[15], info[16]);
  switch_experts_forward(a);
  return env.Undefined();
}

// switchExpertsBackward(dx, dwIn, dwOut, dh, dExpertOut, hPre|null, h, keep|null, x, rowToken|null, wIn, wOut, offsets,
//                       E, D, F, activation, dropoutRate, scatterDx)
// scatterDx (needs rowToken): dx (T, D) is accumulated into (the experts' part of the input
// gradient scattered back to the tokens); otherwise dx (R, D) is written per row.
Napi::Value experts_bwd(const Napi::CallbackInfo& info) {
  expect_args(info, 19, "switchExpertsBackward");
  Napi::Env env = info.Env();
  SwitchExpertsBackward a{};
  int32_t* offsets;
  int32_t* row_token;
  float* x;
  const ExpertShapes s = expert_shapes(info, 12, 9, 8, 13, &offsets, &row_token, &x);
  const double rate = number(info[17], "dropoutRate");
  if (!(rate >= 0.0 && rate < 1.0)) throw_range_error(env, "ERR_SWITCH_RANGE", "argument 'dropoutRate' must be in [0, 1)");
  a.scatter_dx = boolean(info[18], "scatterDx");
  if (a.scatter_dx && !s.has_row_token)
    throw_type_error(env, "ERR_SWITCH_ARG_TYPE", "argument 'rowToken' is needed when scatterDx is true");
  const int64_t dx_rows = a.scatter_dx ? s.T : s.R;
  a.dx = f32(info[0], "dx", dx_rows * s.D, {dx_rows, s.D});
  a.dw_in = f32(info[1], "dwIn", s.E * s.D * s.F, {s.E, s.D, s.F});
  a.dw_out = f32(info[2], "dwOut", s.E * s.F * s.D, {s.E, s.F, s.D});
  a.dh = f32(info[3], "dh", s.R * s.F, {s.R, s.F});
  a.dexpert_out = f32(info[4], "dExpertOut", s.R * s.D, {s.R, s.D});
  a.act = activation_of(info[16]);
  // hPre may be null for relu without dropout: relu's derivative is read off h.
  a.h_pre = relu_folds(a.act, static_cast<float>(rate)) ? f32_or_null(info[5], "hPre", s.R * s.F, {s.R, s.F})
                                                        : f32(info[5], "hPre", s.R * s.F, {s.R, s.F});
  a.h = f32(info[6], "h", s.R * s.F, {s.R, s.F});
  a.keep = rate > 0 ? u8(info[7], "keep", s.R * s.F, {s.R, s.F}) : nullptr;
  a.x = x;
  a.row_token = row_token;
  a.w_in = f32(info[10], "wIn", s.E * s.D * s.F, {s.E, s.D, s.F});
  a.w_out = f32(info[11], "wOut", s.E * s.F * s.D, {s.E, s.F, s.D});
  a.offsets = offsets;
  a.E = static_cast<int>(s.E);
  a.D = static_cast<int>(s.D);
  a.F = static_cast<int>(s.F);
  a.dropout_rate = static_cast<float>(rate);
  switch_experts_backward(a);
  return env.Undefined();
}

// switchActivationForward(h, keep|null, hPre, rowChoice|null, R, F, activation, dropoutRate, seed, stream)
Napi::Value activation_fwd(const Napi::CallbackInfo& info) {
  expect_args(info, 10, "switchActivationForward");
  Napi::Env env = info.Env();
  const int64_t R = dim(info[4], "R", 0), F = dim(info[5], "F");
  const double rate = number(info[7], "dropoutRate");
  if (!(rate >= 0.0 && rate < 1.0)) throw_range_error(env, "ERR_SWITCH_RANGE", "argument 'dropoutRate' must be in [0, 1)");
  int32_t* row_choice = nullptr;
  if (!info[3].IsNull() && !info[3].IsUndefined()) {
    row_choice = i32(info[3], "rowChoice", R, {R});
    expect_indices(env, row_choice, R, 0, INT32_MAX, true, "rowChoice");
  }
  switch_activation_forward(f32(info[0], "h", R * F, {R, F}), rate > 0 ? u8(info[1], "keep", R * F, {R, F}) : nullptr,
                            f32(info[2], "hPre", R * F, {R, F}), row_choice, R, static_cast<int>(F),
                            activation_of(info[6]), static_cast<float>(rate), key_of(info[8], info[9]));
  return env.Undefined();
}

// switchActivationBackward(dhPre, dh, hPre, keep|null, R, F, activation, dropoutRate)
Napi::Value activation_bwd(const Napi::CallbackInfo& info) {
  expect_args(info, 8, "switchActivationBackward");
  Napi::Env env = info.Env();
  const int64_t R = dim(info[4], "R", 0), F = dim(info[5], "F");
  const double rate = number(info[7], "dropoutRate");
  if (!(rate >= 0.0 && rate < 1.0)) throw_range_error(env, "ERR_SWITCH_RANGE", "argument 'dropoutRate' must be in [0, 1)");
  switch_activation_backward(f32(info[0], "dhPre", R * F, {R, F}), f32(info[1], "dh", R * F, {R, F}),
                             f32(info[2], "hPre", R * F, {R, F}), rate > 0 ? u8(info[3], "keep", R * F, {R, F}) : nullptr,
                             R, static_cast<int>(F), activation_of(info[6]), static_cast<float>(rate));
  return env.Undefined();
}

// switchFirstNonFinite(x) -> index of the first NaN or ±Inf, or -1 (input checks without a JS loop).
Napi::Value first_non_finite(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "switchFirstNonFinite");
  View<float> x = float32_array(info[0], "x");
  const int64_t n = static_cast<int64_t>(x.length);
  constexpr int64_t kBlock = 1 << 16;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<int64_t> first(blocks, -1);
  parallel_for(blocks, [&](int64_t b, int) {
    const int64_t end = std::min(n, (b + 1) * kBlock);
    for (int64_t i = b * kBlock; i < end; ++i) {
      uint32_t u;
      std::memcpy(&u, x.data + i, 4);
      if ((u & 0x7f800000u) == 0x7f800000u) {  // exponent all ones: NaN or Inf
        first[b] = i;
        return;
      }
    }
  });
  for (int64_t b = 0; b < blocks; ++b)
    if (first[b] >= 0) return Napi::Number::New(info.Env(), static_cast<double>(first[b]));
  return Napi::Number::New(info.Env(), -1);
}

// switchWireRound(dst, src): what crossing a bfloat16 wire does to float32 values.
Napi::Value wire_round(const Napi::CallbackInfo& info) {
  expect_args(info, 2, "switchWireRound");
  View<float> src = float32_array(info[1], "src");
  float* dst = f32(info[0], "dst", static_cast<int64_t>(src.length), {static_cast<int64_t>(src.length)});
  bf16_round(dst, src.data, static_cast<int64_t>(src.length));
  return info.Env().Undefined();
}

// switchGroupedMatmul(y, x, w, offsets, gather|null, scatter|null, scale|null, E, K, N, transW, accumulate
//                     [, epilogue]): the expert matmul primitive of gemm.h on its own (the benchmarks
// time the experts' matmuls with it). epilogue: 0 none, 1 relu.
Napi::Value grouped_mm(const Napi::CallbackInfo& info) {
  expect_args(info, 12, "switchGroupedMatmul");
  Napi::Env env = info.Env();
  const int64_t E = dim(info[7], "E"), K = dim(info[8], "K"), N = dim(info[9], "N");
  int32_t* offsets = i32(info[3], "offsets", E + 1, {E + 1});
  const int64_t R = expect_offsets(env, offsets, static_cast<int>(E));
  View<float> x = float32_array(info[1], "x");
  View<float> y = float32_array(info[0], "y");
  if (x.length % K != 0 || y.length % N != 0)
    throw_range_error(env, "ERR_SWITCH_SHAPE", "arguments 'x' and 'y' must have whole rows of K and N elements");
  const int64_t x_rows = static_cast<int64_t>(x.length) / K, y_rows = static_cast<int64_t>(y.length) / N;
  GroupedMatmul g{};
  g.y = y.data;
  g.x = x.data;
  g.w = f32(info[2], "w", E * K * N, {E, K, N});
  g.offsets = offsets;
  if (!info[4].IsNull() && !info[4].IsUndefined()) {
    g.gather = i32(info[4], "gather", R, {R});
    expect_indices(env, g.gather, R, 0, x_rows, false, "gather");
  } else if (x_rows < R) {
    throw_range_error(env, "ERR_SWITCH_SHAPE", "argument 'x' needs at least offsets[E] rows");
  }
  if (!info[5].IsNull() && !info[5].IsUndefined()) {
    g.scatter = i32(info[5], "scatter", R, {R});
    expect_indices(env, g.scatter, R, 0, y_rows, false, "scatter");
    g.scale = f32_or_null(info[6], "scale", R, {R});
  } else if (y_rows < R) {
    throw_range_error(env, "ERR_SWITCH_SHAPE", "argument 'y' needs at least offsets[E] rows");
  }
  g.E = static_cast<int>(E);
  g.K = static_cast<int>(K);
  g.N = static_cast<int>(N);
  g.ldx = static_cast<int>(K);
  g.ldy = static_cast<int>(N);
  g.trans_w = boolean(info[10], "transW");
  g.accumulate = boolean(info[11], "accumulate");
  if (info.Length() > 12 && !info[12].IsUndefined()) {
    const int64_t code = integer(info[12], "epilogue", 0, 1);  // 0 none, 1 relu
    if (code != 0 && g.scatter)
      throw_range_error(env, "ERR_SWITCH_RANGE", "argument 'epilogue' needs an unscattered write (scatter null)");
    g.epilogue = static_cast<Epilogue>(code);
  }
  grouped_matmul(g);
  return env.Undefined();
}

// switchGroupedMatmulWeightGrad(dw, x, dy, offsets, gatherX|null, E, K, N): dw[e] = Σ x[rows]ᵀ · dy[rows].
Napi::Value grouped_mm_wgrad(const Napi::CallbackInfo& info) {
  expect_args(info, 8, "switchGroupedMatmulWeightGrad");
  Napi::Env env = info.Env();
  const int64_t E = dim(info[5], "E"), K = dim(info[6], "K"), N = dim(info[7], "N");
  int32_t* offsets = i32(info[3], "offsets", E + 1, {E + 1});
  const int64_t R = expect_offsets(env, offsets, static_cast<int>(E));
  View<float> x = float32_array(info[1], "x");
  if (x.length % K != 0) throw_range_error(env, "ERR_SWITCH_SHAPE", "argument 'x' must have whole rows of K elements");
  const int64_t x_rows = static_cast<int64_t>(x.length) / K;
  GroupedMatmulWeightGrad g{};
  g.dw = f32(info[0], "dw", E * K * N, {E, K, N});
  g.x = x.data;
  g.dy = f32(info[2], "dy", R * N, {R, N});
  g.offsets = offsets;
  if (!info[4].IsNull() && !info[4].IsUndefined()) {
    g.gather_x = i32(info[4], "gatherX", R, {R});
    expect_indices(env, g.gather_x, R, 0, x_rows, false, "gatherX");
  } else if (x_rows < R) {
    throw_range_error(env, "ERR_SWITCH_SHAPE", "argument 'x' needs at least offsets[E] rows");
  }
  g.E = static_cast<int>(E);
  g.K = static_cast<int>(K);
  g.N = static_cast<int>(N);
  g.ldx = static_cast<int>(K);
  g.lddy = static_cast<int>(N);
  grouped_matmul_weight_grad(g);
  return env.Undefined();
}

}  // namespace

void init_switch(Napi::Env env, Napi::Object exports) {
  exports.Set("switchTruncatedNormal", Napi::Function::New(env, truncated_normal, "switchTruncatedNormal"));
  exports.Set("switchRouterJitter", Napi::Function::New(env, router_jitter, "switchRouterJitter"));
  exports.Set("switchRouterForward", Napi::Function::New(env, router_fwd, "switchRouterForward"));
  exports.Set("switchRouterChoose", Napi::Function::New(env, router_choose, "switchRouterChoose"));
  exports.Set("switchRouterLosses", Napi::Function::New(env, router_losses, "switchRouterLosses"));
  exports.Set("switchRouterBackward", Napi::Function::New(env, router_bwd, "switchRouterBackward"));
  exports.Set("switchSlots", Napi::Function::New(env, slots, "switchSlots"));
  exports.Set("switchRowsCount", Napi::Function::New(env, rows_count, "switchRowsCount"));
  exports.Set("switchRows", Napi::Function::New(env, rows, "switchRows"));
  exports.Set("switchDispatchForward", Napi::Function::New(env, dispatch_fwd, "switchDispatchForward"));
  exports.Set("switchDispatchBackward", Napi::Function::New(env, dispatch_bwd, "switchDispatchBackward"));
  exports.Set("switchCombineForward", Napi::Function::New(env, combine_fwd, "switchCombineForward"));
  exports.Set("switchCombineBackward", Napi::Function::New(env, combine_bwd, "switchCombineBackward"));
  exports.Set("switchExpertsForward", Napi::Function::New(env, experts_fwd, "switchExpertsForward"));
  exports.Set("switchExpertsBackward", Napi::Function::New(env, experts_bwd, "switchExpertsBackward"));
  exports.Set("switchGroupedMatmul", Napi::Function::New(env, grouped_mm, "switchGroupedMatmul"));
  exports.Set("switchGroupedMatmulWeightGrad", Napi::Function::New(env, grouped_mm_wgrad, "switchGroupedMatmulWeightGrad"));
  exports.Set("switchActivationForward", Napi::Function::New(env, activation_fwd, "switchActivationForward"));
  exports.Set("switchActivationBackward", Napi::Function::New(env, activation_bwd, "switchActivationBackward"));
  exports.Set("switchFirstNonFinite", Napi::Function::New(env, first_non_finite, "switchFirstNonFinite"));
  exports.Set("switchWireRound", Napi::Function::New(env, wire_round, "switchWireRound"));
}

}  // namespace st::addon
