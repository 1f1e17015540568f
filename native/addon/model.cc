// Bindings of the language model's kernels: RMSNorm, causal self-attention, embedding, cross-entropy.
// B = batch, S = sequence length, T = B·S tokens, D = d_model, H = heads, V = vocabulary, P = positions.
// Every function writes into caller-owned outputs (first arguments) and checks every length first.
#include <exception>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "../kernels/adafactor.h"
#include "../kernels/adamw.h"
#include "../kernels/attention.h"
#include "../kernels/cross_entropy.h"
#include "../kernels/embedding.h"
#include "../kernels/residual.h"
#include "../kernels/rmsnorm.h"
#include "args.h"
#include "bindings.h"

namespace st::addon {

namespace {

constexpr int64_t kMaxSize = 1 << 30;

std::string shape(std::initializer_list<std::pair<const char*, int64_t>> dims) {
  std::string s = "(";
  bool first = true;
  for (const auto& [name, n] : dims) {
    if (!first) s += ", ";
    s += std::string(name) + "=" + std::to_string(n);
    first = false;
  }
  return s + ")";
}

View<float> f32(const Napi::CallbackInfo& info, size_t i, const char* name, size_t n, const std::string& shp) {
  View<float> v = float32_array(info[i], name);
  expect_length(info.Env(), v, n, name, shp);
  return v;
}

View<int32_t> tokens_arg(const Napi::CallbackInfo& info, size_t i, const char* name, size_t n, int64_t V) {
  View<int32_t> v = int32_array(info[i], name);
  expect_length(info.Env(), v, n, name, shape({{"T", static_cast<int64_t>(n)}}));
  for (size_t t = 0; t < n; ++t)
    if (v.data[t] < 0 || v.data[t] >= V)
      throw_range_error(info.Env(), "ERR_SWITCH_RANGE",
                        std::string("argument '") + name + "' element " + std::to_string(t) + " is " +
                            std::to_string(v.data[t]) + ", outside the vocabulary [0, " + std::to_string(V) + ")");
  return v;
}

// The long kernels also come as <name>Async: the same checks, then the kernel runs on a libuv worker
// thread and a promise settles when it is done, so the event loop keeps turning during a training
// step (timers, I/O, progress output). The worker holds references to every typed array argument, so
// none is collected while the kernel reads or writes it; the caller must not touch them until then.
class KernelWorker : public Napi::AsyncWorker {
 public:
  KernelWorker(Napi::Env env, std::function<void()> run, const Napi::CallbackInfo& info, size_t arrays)
      : Napi::AsyncWorker(env, "switch-transformer:kernel"),
        deferred_(Napi::Promise::Deferred::New(env)),
        run_(std::move(run)) {
    for (size_t i = 0; i < arrays && i < info.Length(); ++i)
      if (info[i].IsObject()) keep_.push_back(Napi::Persistent(info[i].As<Napi::Object>()));
  }
  Napi::Promise promise() const { return deferred_.Promise(); }
  void Execute() override {
    try {
      run_();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> run_;
  std::vector<Napi::ObjectReference> keep_;
};

// Runs a checked kernel now (returns undefined) or on a worker (returns its promise); the first
// `arrays` arguments are the typed arrays it uses.
Napi::Value run_kernel(const Napi::CallbackInfo& info, bool async, size_t arrays, std::function<void()> run) {
  if (!async) {
    run();
    return info.Env().Undefined();
  }
  auto* worker = new KernelWorker(info.Env(), std::move(run), info, arrays);
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

// rmsnormForward(y, rstd, x, weight, T, D, eps)
Napi::Value rmsnorm_forward_js(const Napi::CallbackInfo& info) {
  expect_args(info, 7, "rmsnormForward");
  const int64_t T = integer(info[4], "T", 0, kMaxSize), D = integer(info[5], "D", 1, kMaxSize);
  const double eps = number(info[6], "eps");
  const std::string td = shape({{"T", T}, {"D", D}});
  auto y = f32(info, 0, "y", T * D, td);
  auto rstd = f32(info, 1, "rstd", T, shape({{"T", T}}));
  auto x = f32(info, 2, "x", T * D, td);
  auto w = f32(info, 3, "weight", D, shape({{"D", D}}));
  rmsnorm_forward(y.data, rstd.data, x.data, w.data, int(T), int(D), static_cast<float>(eps));
  return info.Env().Undefined();
}

// rmsnormBackward(dx, dweight, dy, x, weight, rstd, T, D, accumulate, residual?) — residual (T, D) is added to dx
Napi::Value rmsnorm_backward_js(const Napi::CallbackInfo& info) {
  expect_args(info, 9, "rmsnormBackward");
  const int64_t T = integer(info[6], "T", 0, kMaxSize), D = integer(info[7], "D", 1, kMaxSize);
  const bool accumulate = boolean(info[8], "accumulate");
  const std::string td = shape({{"T", T}, {"D", D}});
  auto dx = f32(info, 0, "dx", T * D, td);
  auto dw = f32(info, 1, "dweight", D, shape({{"D", D}}));
  auto dy = f32(info, 2, "dy", T * D, td);
  auto x = f32(info, 3, "x", T * D, td);
  auto w = f32(info, 4, "weight", D, shape({{"D", D}}));
  auto rstd = f32(info, 5, "rstd", T, shape({{"T", T}}));
  const float* residual = nullptr;
  if (info.Length() > 9 && !info[9].IsUndefined() && !info[9].IsNull()) residual = f32(info, 9, "residual", T * D, td).data;
  rmsnorm_backward(dx.data, dw.data, dy.data, x.data, w.data, rstd.data, int(T), int(D), accumulate, residual);
  return info.Env().Undefined();
}

struct AttentionSizes {
  int64_t B, S, D, H, T;
};

AttentionSizes attention_sizes(const Napi::CallbackInfo& info, size_t first) {
  AttentionSizes s;
  s.B = integer(info[first], "B", 0, kMaxSize);
  s.S = integer(info[first + 1], "S", 1, 1 << 16);
  s.D = integer(info[first + 2], "D", 1, 1 << 16);
  s.H = integer(info[first + 3], "H", 1, 1 << 16);
  if (s.D % s.H != 0)
    throw_range_error(info.Env(), "ERR_SWITCH_SHAPE",
                      "argument 'H' must divide D = " + std::to_string(s.D) + ", got " + std::to_string(s.H));
  s.T = s.B * s.S;
  if (s.T > kMaxSize || s.B * s.H * s.S * s.S > kMaxSize)
    throw_range_error(info.Env(), "ERR_SWITCH_RANGE", "attention sizes B·H·S·S exceed 2^30 elements");
  return s;
}

// attentionForward(y, qkv, att, ctx, x, wQkv, wO, B, S, D, H)
Napi::Value attention_forward_impl(const Napi::CallbackInfo& info, bool async) {
  expect_args(info, 11, async ? "attentionForwardAsync" : "attentionForward");
  const AttentionSizes s = attention_sizes(info, 7);
  const std::string td = shape({{"T", s.T}, {"D", s.D}});
  auto y = f32(info, 0, "y", s.T * s.D, td);
  auto qkv = f32(info, 1, "qkv", s.T * 3 * s.D, shape({{"T", s.T}, {"3D", 3 * s.D}}));
  auto att = f32(info, 2, "att", s.B * s.H * s.S * s.S, shape({{"B", s.B}, {"H", s.H}, {"S", s.S}, {"S", s.S}}));
  auto ctx = f32(info, 3, "ctx", s.T * s.D, td);
  auto x = f32(info, 4, "x", s.T * s.D, td);
  auto wq = f32(info, 5, "wQkv", s.D * 3 * s.D, shape({{"D", s.D}, {"3D", 3 * s.D}}));
  auto wo = f32(info, 6, "wO", s.D * s.D, shape({{"D", s.D}, {"D", s.D}}));
  return run_kernel(info, async, 7, [=] {
    attention_forward(y.data, qkv.data, att.data, ctx.data, x.data, wq.data, wo.data, int(s.B), int(s.S), int(s.D),
                      int(s.H));
  });
}
Napi::Value attention_forward_js(const Napi::CallbackInfo& info) { return attention_forward_impl(info, false); }
Napi::Value attention_forward_async_js(const Napi::CallbackInfo& info) { return attention_forward_impl(info, true); }

// attentionBackward(dx, dwQkv, dwO, dy, x, wQkv, wO, qkv, att, ctx, B, S, D, H)
Napi::Value attention_backward_impl(const Napi::CallbackInfo& info, bool async) {
  expect_args(info, 14, async ? "attentionBackwardAsync" : "attentionBackward");
  const AttentionSizes s = attention_sizes(info, 10);
  const std::string td = shape({{"T", s.T}, {"D", s.D}});
  const std::string dd3 = shape({{"D", s.D}, {"3D", 3 * s.D}});
  const std::string dd = shape({{"D", s.D}, {"D", s.D}});
  auto dx = f32(info, 0, "dx", s.T * s.D, td);
  auto dwq = f32(info, 1, "dwQkv", s.D * 3 * s.D, dd3);
  auto dwo = f32(info, 2, "dwO", s.D * s.D, dd);
  auto dy = f32(info, 3, "dy", s.T * s.D, td);
  auto x = f32(info, 4, "x", s.T * s.D, td);
  auto wq = f32(info, 5, "wQkv", s.D * 3 * s.D, dd3);
  auto wo = f32(info, 6, "wO", s.D * s.D, dd);
  auto qkv = f32(info, 7, "qkv", s.T * 3 * s.D, shape({{"T", s.T}, {"3D", 3 * s.D}}));
  auto att = f32(info, 8, "att", s.B * s.H * s.S * s.S, shape({{"B", s.B}, {"H", s.H}, {"S", s.S}, {"S", s.S}}));
  auto ctx = f32(info, 9, "ctx", s.T * s.D, td);
  return run_kernel(info, async, 10, [=] {
    attention_backward(dx.data, dwq.data, dwo.data, dy.data, x.data, wq.data, wo.data, qkv.data, att.data, ctx.data,
                       int(s.B), int(s.S), int(s.D), int(s.H));
  });
}
Napi::Value attention_backward_js(const Napi::CallbackInfo& info) { return attention_backward_impl(info, false); }
Napi::Value attention_backward_async_js(const Napi::CallbackInfo& info) { return attention_backward_impl(info, true); }

// embeddingForward(x, tokens, wte, wpe, B, S, D, V)
Napi::Value embedding_forward_js(const Napi::CallbackInfo& info) {
  expect_args(info, 8, "embeddingForward");
  const int64_t B = integer(info[4], "B", 0, kMaxSize), S = integer(info[5], "S", 1, kMaxSize);
  const int64_t D = integer(info[6], "D", 1, kMaxSize), V = integer(info[7], "V", 1, kMaxSize);
  auto x = f32(info, 0, "x", B * S * D, shape({{"T", B * S}, {"D", D}}));
  auto tokens = tokens_arg(info, 1, "tokens", B * S, V);
  auto wte = f32(info, 2, "wte", V * D, shape({{"V", V}, {"D", D}}));
  View<float> wpe = float32_array(info[3], "wpe");
  if (wpe.length % D != 0 || static_cast<int64_t>(wpe.length / D) < S)
    throw_range_error(info.Env(), "ERR_SWITCH_SHAPE",
                      "argument 'wpe' must have shape (P, D=" + std::to_string(D) + ") with P >= S = " +
                          std::to_string(S) + ", got " + std::to_string(wpe.length) + " elements");
  embedding_forward(x.data, tokens.data, wte.data, wpe.data, int(B), int(S), int(D));
  return info.Env().Undefined();
}

// embeddingBackward(dwte, dwpe, dx, tokens, B, S, D, V, accumulate)
Napi::Value embedding_backward_js(const Napi::CallbackInfo& info) {
  expect_args(info, 9, "embeddingBackward");
  const int64_t B = integer(info[4], "B", 0, kMaxSize), S = integer(info[5], "S", 1, kMaxSize);
  const int64_t D = integer(info[6], "D", 1, kMaxSize), V = integer(info[7], "V", 1, kMaxSize);
  const bool accumulate = boolean(info[8], "accumulate");
  auto dwte = f32(info, 0, "dwte", V * D, shape({{"V", V}, {"D", D}}));
  View<float> dwpe = float32_array(info[1], "dwpe");
  if (dwpe.length % D != 0 || static_cast<int64_t>(dwpe.length / D) < S)
    throw_range_error(info.Env(), "ERR_SWITCH_SHAPE",
                      "argument 'dwpe' must have shape (P, D=" + std::to_string(D) + ") with P >= S = " +
                          std::to_string(S) + ", got " + std::to_string(dwpe.length) + " elements");
  auto dx = f32(info, 2, "dx", B * S * D, shape({{"T", B * S}, {"D", D}}));
  auto tokens = tokens_arg(info, 3, "tokens", B * S, V);
  embedding_backward(dwte.data, dwpe.data, dx.data, tokens.data, int(B), int(S), int(D), int(V), accumulate);
  return info.Env().Undefined();
}

// crossEntropyForward(losses, probs, h, wte, targets, T, D, V)
Napi::Value cross_entropy_forward_js(const Napi::CallbackInfo& info) {
  expect_args(info, 8, "crossEntropyForward");
  const int64_t T = integer(info[5], "T", 0, kMaxSize), D = integer(info[6], "D", 1, kMaxSize);
  const int64_t V = integer(info[7], "V", 1, kMaxSize);
  if (T * V > kMaxSize) throw_range_error(info.Env(), "ERR_SWITCH_RANGE", "T·V exceeds 2^30 elements");
  auto losses = f32(info, 0, "losses", T, shape({{"T", T}}));
  auto probs = f32(info, 1, "probs", T * V, shape({{"T", T}, {"V", V}}));
  auto h = f32(info, 2, "h", T * D, shape({{"T", T}, {"D", D}}));
  auto wte = f32(info, 3, "wte", V * D, shape({{"V", V}, {"D", D}}));
  auto targets = tokens_arg(info, 4, "targets", T, V);
  cross_entropy_forward(losses.data, probs.data, h.data, wte.data, targets.data, int(T), int(D), int(V));
  return info.Env().Undefined();
}

// crossEntropyBackward(dh, dwte, dlosses, probs, h, wte, targets, T, D, V, accumulate); probs is overwritten with dlogits
Napi::Value cross_entropy_backward_js(const Napi::CallbackInfo& info) {
  expect_args(info, 11, "crossEntropyBackward");
  const int64_t T = integer(info[7], "T", 0, kMaxSize), D = integer(info[8], "D", 1, kMaxSize);
  const int64_t V = integer(info[9], "V", 1, kMaxSize);
  const bool accumulate = boolean(info[10], "accumulate");
  if (T * V > kMaxSize) throw_range_error(info.Env(), "ERR_SWITCH_RANGE", "T·V exceeds 2^30 elements");
  auto dh = f32(info, 0, "dh", T * D, shape({{"T", T}, {"D", D}}));
  auto dwte = f32(info, 1, "dwte", V * D, shape({{"V", V}, {"D", D}}));
  auto dl = f32(info, 2, "dlosses", T, shape({{"T", T}}));
  auto probs = f32(info, 3, "probs", T * V, shape({{"T", T}, {"V", V}}));
  auto h = f32(info, 4, "h", T * D, shape({{"T", T}, {"D", D}}));
  auto wte = f32(info, 5, "wte", V * D, shape({{"V", V}, {"D", D}}));
  auto targets = tokens_arg(info, 6, "targets", T, V);
  cross_entropy_backward(dh.data, dwte.data, dl.data, probs.data, h.data, wte.data, targets.data, int(T), int(D),
                         int(V), accumulate);
  return info.Env().Undefined();
}

// crossEntropyForwardBackward(losses, dh, dwte, h, wte, targets, dlosses, T, D, V, accumulate)
Napi::Value cross_entropy_forward_backward_impl(const Napi::CallbackInfo& info, bool async) {
  expect_args(info, 11, async ? "crossEntropyForwardBackwardAsync" : "crossEntropyForwardBackward");
  const int64_t T = integer(info[7], "T", 0, kMaxSize), D = integer(info[8], "D", 1, kMaxSize);
  const int64_t V = integer(info[9], "V", 1, kMaxSize);
  const bool accumulate = boolean(info[10], "accumulate");
  if (V * 256 > kMaxSize) throw_range_error(info.Env(), "ERR_SWITCH_RANGE", "V exceeds 2^22");
  auto losses = f32(info, 0, "losses", T, shape({{"T", T}}));
  auto dh = f32(info, 1, "dh", T * D, shape({{"T", T}, {"D", D}}));
  auto dwte = f32(info, 2, "dwte", V * D, shape({{"V", V}, {"D", D}}));
  auto h = f32(info, 3, "h", T * D, shape({{"T", T}, {"D", D}}));
  auto wte = f32(info, 4, "wte", V * D, shape({{"V", V}, {"D", D}}));
  auto targets = tokens_arg(info, 5, "targets", T, V);
  auto dl = f32(info, 6, "dlosses", T, shape({{"T", T}}));
  return run_kernel(info, async, 7, [=] {
    cross_entropy_forward_backward(losses.data, dh.data, dwte.data, h.data, wte.data, targets.data, dl.data, int(T),
                                   int(D), int(V), accumulate);
  });
}
Napi::Value cross_entropy_forward_backward_js(const Napi::CallbackInfo& info) {
  return cross_entropy_forward_backward_impl(info, false);
}
Napi::Value cross_entropy_forward_backward_async_js(const Napi::CallbackInfo& info) {
  return cross_entropy_forward_backward_impl(info, true);
}

// residualForward(out, x, y, mask?) — out = x + mask ⊙ y, all of x's length
Napi::Value residual_forward_js(const Napi::CallbackInfo& info) {
  expect_args(info, 3, "residualForward");
  View<float> x = float32_array(info[1], "x");
  const int64_t N = static_cast<int64_t>(x.length);
  const std::string n = shape({{"N", N}});
  auto out = f32(info, 0, "out", N, n);
  auto y = f32(info, 2, "y", N, n);
  const float* mask = nullptr;
  if (info.Length() > 3 && !info[3].IsUndefined() && !info[3].IsNull()) mask = f32(info, 3, "mask", N, n).data;
  residual_forward(out.data, x.data, y.data, mask, N);
  return info.Env().Undefined();
}

// crossEntropyLoss(losses, h, wte, targets, T, D, V)
Napi::Value cross_entropy_loss_impl(const Napi::CallbackInfo& info, bool async) {
  expect_args(info, 7, async ? "crossEntropyLossAsync" : "crossEntropyLoss");
  const int64_t T = integer(info[4], "T", 0, kMaxSize), D = integer(info[5], "D", 1, kMaxSize);
  const int64_t V = integer(info[6], "V", 1, kMaxSize);
  if (V * 256 > kMaxSize) throw_range_error(info.Env(), "ERR_SWITCH_RANGE", "V exceeds 2^22");
  auto losses = f32(info, 0, "losses", T, shape({{"T", T}}));
  auto h = f32(info, 1, "h", T * D, shape({{"T", T}, {"D", D}}));
  auto wte = f32(info, 2, "wte", V * D, shape({{"V", V}, {"D", D}}));
  auto targets = tokens_arg(info, 3, "targets", T, V);
  return run_kernel(info, async, 4, [=] {
    cross_entropy_loss(losses.data, h.data, wte.data, targets.data, int(T), int(D), int(V));
  });
}
Napi::Value cross_entropy_loss_js(const Napi::CallbackInfo& info) { return cross_entropy_loss_impl(info, false); }
Napi::Value cross_entropy_loss_async_js(const Napi::CallbackInfo& info) { return cross_entropy_loss_impl(info, true); }

// adamwUpdate(w, m, v, g, lr, beta1, beta2, eps, weightDecay, biasCorrection1, biasCorrection2)
Napi::Value adamw_update_js(const Napi::CallbackInfo& info) {
  expect_args(info, 11, "adamwUpdate");
  auto w = float32_array(info[0], "w");
  const std::string n = shape({{"N", static_cast<int64_t>(w.length)}});
  auto m = f32(info, 1, "m", w.length, n);
  auto v = f32(info, 2, "v", w.length, n);
  auto g = f32(info, 3, "g", w.length, n);
  AdamWStep s;
  s.lr = static_cast<float>(number(info[4], "lr"));
  s.beta1 = static_cast<float>(number(info[5], "beta1"));
  s.beta2 = static_cast<float>(number(info[6], "beta2"));
  s.eps = static_cast<float>(number(info[7], "eps"));
  s.weight_decay = static_cast<float>(number(info[8], "weightDecay"));
  s.bias_correction1 = number(info[9], "biasCorrection1");
  s.bias_correction2 = number(info[10], "biasCorrection2");
  if (!(s.bias_correction1 > 0) || !(s.bias_correction2 > 0))
    throw_range_error(info.Env(), "ERR_SWITCH_RANGE", "bias corrections must be > 0");
  adamw_forward(w.data, m.data, v.data, g.data, static_cast<int64_t>(w.length), s);
  return info.Env().Undefined();
}

// The optional momentum buffer m of the Adafactor updates: a Float32Array of n elements, or null.
float* momentum_arg(const Napi::CallbackInfo& info, size_t i, size_t n) {
  if (info[i].IsNull() || info[i].IsUndefined()) return nullptr;
  return f32(info, i, "m", n, shape({{"N", static_cast<int64_t>(n)}})).data;
}

struct FactoredShape {
  int64_t mats, rows, cols;
};

FactoredShape factored_shape(const Napi::CallbackInfo& info, size_t first, size_t n) {
  FactoredShape f{integer(info[first], "mats", 1, kMaxSize), integer(info[first + 1], "rows", 1, kMaxSize),
                  integer(info[first + 2], "cols", 1, kMaxSize)};
  if (f.mats * f.rows * f.cols != static_cast<int64_t>(n))
    throw_range_error(info.Env(), "ERR_SWITCH_SHAPE",
                      "argument 'g' must have shape (mats, rows, cols) = " +
                          shape({{"mats", f.mats}, {"rows", f.rows}, {"cols", f.cols}}) + ", got " + std::to_string(n) +
                          " elements");
  return f;
}

// adafactorFactoredStatistics(R, C, g, mats, rows, cols, beta2, eps1) → Σ u²
Napi::Value adafactor_factored_statistics_js(const Napi::CallbackInfo& info) {
  expect_args(info, 8, "adafactorFactoredStatistics");
  auto g = float32_array(info[2], "g");
  const FactoredShape f = factored_shape(info, 3, g.length);
  auto R = f32(info, 0, "R", f.mats * f.rows, shape({{"mats", f.mats}, {"rows", f.rows}}));
  auto C = f32(info, 1, "C", f.mats * f.cols, shape({{"mats", f.mats}, {"cols", f.cols}}));
  const double sum = adafactor_factored_statistics(R.data, C.data, g.data, f.mats, f.rows, f.cols, number(info[6], "beta2"),
                                                   number(info[7], "eps1"));
  return Napi::Number::New(info.Env(), sum);
}

// adafactorVectorStatistics(v, g, beta2, eps1) → Σ u²
Napi::Value adafactor_vector_statistics_js(const Napi::CallbackInfo& info) {
  expect_args(info, 4, "adafactorVectorStatistics");
  auto g = float32_array(info[1], "g");
  auto v = f32(info, 0, "v", g.length, shape({{"N", static_cast<int64_t>(g.length)}}));
  return Napi::Number::New(info.Env(), adafactor_vector_statistics(v.data, g.data, static_cast<int64_t>(g.length),
                                                                   number(info[2], "beta2"), number(info[3], "eps1")));
}

// adafactorFactoredUpdate(w, m | null, g, R, C, mats, rows, cols, scale, decay, beta1)
Napi::Value adafactor_factored_update_js(const Napi::CallbackInfo& info) {
  expect_args(info, 11, "adafactorFactoredUpdate");
  auto g = float32_array(info[2], "g");
  const FactoredShape f = factored_shape(info, 5, g.length);
  const std::string n = shape({{"N", static_cast<int64_t>(g.length)}});
  auto w = f32(info, 0, "w", g.length, n);
  float* m = momentum_arg(info, 1, g.length);
  auto R = f32(info, 3, "R", f.mats * f.rows, shape({{"mats", f.mats}, {"rows", f.rows}}));
  auto C = f32(info, 4, "C", f.mats * f.cols, shape({{"mats", f.mats}, {"cols", f.cols}}));
  adafactor_factored_update(w.data, m, g.data, R.data, C.data, f.mats, f.rows, f.cols, number(info[8], "scale"),
                            number(info[9], "decay"), number(info[10], "beta1"));
  return info.Env().Undefined();
}

// adafactorVectorUpdate(w, m | null, g, v, scale, decay, beta1)
Napi::Value adafactor_vector_update_js(const Napi::CallbackInfo& info) {
  expect_args(info, 7, "adafactorVectorUpdate");
  auto g = float32_array(info[2], "g");
  const std::string n = shape({{"N", static_cast<int64_t>(g.length)}});
  auto w = f32(info, 0, "w", g.length, n);
  float* m = momentum_arg(info, 1, g.length);
  auto v = f32(info, 3, "v", g.length, n);
  adafactor_vector_update(w.data, m, g.data, v.data, static_cast<int64_t>(g.length), number(info[4], "scale"),
                          number(info[5], "decay"), number(info[6], "beta1"));
  return info.Env().Undefined();
}

// sumSquares(g) → Σ g² (double)
Napi::Value sum_squares_js(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "sumSquares");
  auto g = float32_array(info[0], "g");
  return Napi::Number::New(info.Env(), sum_squares(g.data, static_cast<int64_t>(g.length)));
}

// scaleInPlace(g, scale)
Napi::Value scale_in_place_js(const Napi::CallbackInfo& info) {
  expect_args(info, 2, "scaleInPlace");
  auto g = float32_array(info[0], "g");
  scale_in_place(g.data, static_cast<float>(number(info[1], "scale")), static_cast<int64_t>(g.length));
  return info.Env().Undefined();
}

}  // namespace

void init_model(Napi::Env env, Napi::Object exports) {
  exports.Set("rmsnormForward", Napi::Function::New(env, rmsnorm_forward_js, "rmsnormForward"));
  exports.Set("rmsnormBackward", Napi::Function::New(env, rmsnorm_backward_js, "rmsnormBackward"));
  exports.Set("attentionForward", Napi::Function::New(env, attention_forward_js, "attentionForward"));
  exports.Set("attentionBackward", Napi::Function::New(env, attention_backward_js, "attentionBackward"));
  exports.Set("embeddingForward", Napi::Function::New(env, embedding_forward_js, "embeddingForward"));
  exports.Set("embeddingBackward", Napi::Function::New(env, embedding_backward_js, "embeddingBackward"));
  exports.Set("crossEntropyForward", Napi::Function::New(env, cross_entropy_forward_js, "crossEntropyForward"));
  exports.Set("crossEntropyBackward", Napi::Function::New(env, cross_entropy_backward_js, "crossEntropyBackward"));
  exports.Set("crossEntropyForwardBackward",
              Napi::Function::New(env, cross_entropy_forward_backward_js, "crossEntropyForwardBackward"));
  exports.Set("residualForward", Napi::Function::New(env, residual_forward_js, "residualForward"));
  exports.Set("crossEntropyLoss", Napi::Function::New(env, cross_entropy_loss_js, "crossEntropyLoss"));
  exports.Set("attentionForwardAsync", Napi::Function::New(env, attention_forward_async_js, "attentionForwardAsync"));
  exports.Set("attentionBackwardAsync", Napi::Function::New(env, attention_backward_async_js, "attentionBackwardAsync"));
  exports.Set("crossEntropyForwardBackwardAsync",
              Napi::Function::New(env, cross_entropy_forward_backward_async_js, "crossEntropyForwardBackwardAsync"));
  exports.Set("crossEntropyLossAsync", Napi::Function::New(env, cross_entropy_loss_async_js, "crossEntropyLossAsync"));
  exports.Set("adamwUpdate", Napi::Function::New(env, adamw_update_js, "adamwUpdate"));
  exports.Set("adafactorFactoredStatistics",
              Napi::Function::New(env, adafactor_factored_statistics_js, "adafactorFactoredStatistics"));
  exports.Set("adafactorVectorStatistics",
              Napi::Function::New(env, adafactor_vector_statistics_js, "adafactorVectorStatistics"));
  exports.Set("adafactorFactoredUpdate", Napi::Function::New(env, adafactor_factored_update_js, "adafactorFactoredUpdate"));
  exports.Set("adafactorVectorUpdate", Napi::Function::New(env, adafactor_vector_update_js, "adafactorVectorUpdate"));
  exports.Set("sumSquares", Napi::Function::New(env, sum_squares_js, "sumSquares"));
  exports.Set("scaleInPlace", Napi::Function::New(env, scale_in_place_js, "scaleInPlace"));
}

}  // namespace st::addon
