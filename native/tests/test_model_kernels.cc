// The model's kernels (attention, RMSNorm, embedding, cross-entropy): the threaded kernels against
// their scalar references, bit-identical results for any thread count, backward against finite
// differences of the reference forward. B = batch, S = sequence, D = d_model, H = heads, V = vocabulary.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "check.h"
#include "kernels/adafactor.h"
#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/cpu.h"
#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"
#include "kernels/residual.h"
#include "kernels/rmsnorm.h"
#include "kernels/threadpool.h"

namespace {

std::mt19937 rng(12345);

std::vector<float> randn(size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<float> poisoned(size_t n) { return std::vector<float>(n, NAN); }

float max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float worst = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) {
    const float d = std::fabs(a[i] - b[i]) / (1e-3f + std::fabs(b[i]));
    if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;
  }
  return worst;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Σ f(x) · w for a loss direction w, in double.
double dot(const std::vector<float>& a, const std::vector<float>& w) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * w[i];
  return s;
}

// Checks analytic gradient entries against central differences of loss(x) at a few indices.
void check_fd(const char* what, std::vector<float>& x, const std::vector<float>& grad,
              const std::function<double()>& loss) {
  const int probes = std::min<int>(static_cast<int>(x.size()), 6);
  for (int p = 0; p < probes; ++p) {
    const size_t i = (static_cast<size_t>(p) * 7919) % x.size();
    const float saved = x[i];
    const float h = 1e-2f * std::max(1.0f, std::fabs(saved));
    x[i] = saved + h;
    const double up = loss();
    x[i] = saved - h;
    const double down = loss();
    x[i] = saved;
    const double fd = (up - down) / (2.0 * h);
    ST_CHECK(std::fabs(fd - grad[i]) <= 2e-2 * (1.0 + std::fabs(fd)), "%s: index %zu fd %g analytic %g", what, i, fd,
             grad[i]);
  }
}

void test_rmsnorm(int T, int D) {
  auto x = randn(static_cast<size_t>(T) * D), w = randn(D), dy = randn(static_cast<size_t>(T) * D);
  auto y = poisoned(x.size()), r = poisoned(T), yr = poisoned(x.size()), rr = poisoned(T);
  st::rmsnorm_forward(y.data(), r.data(), x.data(), w.data(), T, D, 1e-6f);
  st::rmsnorm_forward_reference(yr.data(), rr.data(), x.data(), w.data(), T, D, 1e-6f);
  ST_CHECK(max_rel_diff(y, yr) < 1e-4f, "rmsnorm forward T=%d D=%d: %g", T, D, max_rel_diff(y, yr));
  auto dx = poisoned(x.size()), dw = poisoned(D), dxr = poisoned(x.size()), dwr = poisoned(D);
  st::rmsnorm_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), r.data(), T, D, false);
  st::rmsnorm_backward_reference(dxr.data(), dwr.data(), dy.data(), x.data(), w.data(), r.data(), T, D, false);
  ST_CHECK(max_rel_diff(dx, dxr) < 1e-3f, "rmsnorm dx T=%d D=%d: %g", T, D, max_rel_diff(dx, dxr));
  ST_CHECK(max_rel_diff(dw, dwr) < 1e-3f, "rmsnorm dweight T=%d D=%d: %g", T, D, max_rel_diff(dw, dwr));
  auto loss = [&] {
    auto yy = poisoned(x.size()), rs = poisoned(T);
    st::rmsnorm_forward_reference(yy.data(), rs.data(), x.data(), w.data(), T, D, 1e-6f);
    return dot(yy, dy);
  };
  if (D > 1) check_fd("rmsnorm dx", x, dxr, loss);  // D = 1: y = sign(x)·w, flat almost everywhere
  // With a residual gradient: dx is the same plus the residual, elementwise.
  auto res = randn(x.size());
  auto dxs = poisoned(x.size()), dws = poisoned(D), dxsr = poisoned(x.size()), dwsr = poisoned(D);
  st::rmsnorm_backward(dxs.data(), dws.data(), dy.data(), x.data(), w.data(), r.data(), T, D, false, res.data());
  st::rmsnorm_backward_reference(dxsr.data(), dwsr.data(), dy.data(), x.data(), w.data(), r.data(), T, D, false, res.data());
  ST_CHECK(max_rel_diff(dxs, dxsr) < 1e-3f, "rmsnorm dx + residual T=%d D=%d: %g", T, D, max_rel_diff(dxs, dxsr));
  ST_CHECK(same_bits(dws, dw), "rmsnorm dweight changed with a residual");
  for (size_t i = 0; i < dx.size(); ++i) dx[i] += res[i];
  ST_CHECK(same_bits(dxs, dx), "rmsnorm dx + residual is not dx plus the residual");
  for (size_t i = 0; i < dx.size(); ++i) dx[i] = dxr[i];  // restore for the thread check below
  st::rmsnorm_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), r.data(), T, D, false);
  check_fd("rmsnorm dweight", w, dwr, loss);
  // Thread-count invariance.
  for (int threads : {1, 3}) {
    st::set_num_threads(threads);
    auto dx2 = poisoned(x.size()), dw2 = poisoned(D);
    st::rmsnorm_backward(dx2.data(), dw2.data(), dy.data(), x.data(), w.data(), r.data(), T, D, false);
    ST_CHECK(same_bits(dx2, dx) && same_bits(dw2, dw), "rmsnorm backward differs at %d threads", threads);
  }
  st::set_num_threads(st::hardware_threads());
}

void test_attention(int B, int S, int D, int H) {
  const size_t T = static_cast<size_t>(B) * S;
  auto qkv = randn(T * 3 * D), dctx = randn(T * D);
  auto ctx = poisoned(T * D), att = poisoned(static_cast<size_t>(B) * H * S * S);
  auto ctxr = poisoned(T * D), attr = poisoned(att.size());
  st::attention_core_forward(ctx.data(), att.data(), qkv.data(), B, S, D, H);
  st::attention_core_forward_reference(ctxr.data(), attr.data(), qkv.data(), B, S, D, H);
  ST_CHECK(max_rel_diff(ctx, ctxr) < 1e-3f, "attention ctx B=%d S=%d D=%d H=%d: %g", B, S, D, H, max_rel_diff(ctx, ctxr));
  ST_CHECK(max_rel_diff(att, attr) < 1e-3f, "attention att: %g", max_rel_diff(att, attr));
  auto dqkv = poisoned(qkv.size()), dqkvr = poisoned(qkv.size());
  st::attention_core_backward(dqkv.data(), dctx.data(), att.data(), qkv.data(), B, S, D, H);
  st::attention_core_backward_reference(dqkvr.data(), dctx.data(), attr.data(), qkv.data(), B, S, D, H);
  ST_CHECK(max_rel_diff(dqkv, dqkvr) < 2e-3f, "attention dqkv: %g", max_rel_diff(dqkv, dqkvr));
  check_fd("attention dqkv", qkv, dqkvr, [&] {
    auto c = poisoned(T * D), a = poisoned(att.size());
    st::attention_core_forward_reference(c.data(), a.data(), qkv.data(), B, S, D, H);
    return dot(c, dctx);
  });
  // Full layer with projections: thread-count invariance.
  auto x = randn(T * D), wq = randn(static_cast<size_t>(D) * 3 * D, 0.3f), wo = randn(static_cast<size_t>(D) * D, 0.3f);
  std::vector<float> first;
  for (int threads : {1, 2, 3}) {
    st::set_num_threads(threads);
    auto y = poisoned(T * D), q = poisoned(qkv.size()), a = poisoned(att.size()), c = poisoned(T * D);
    st::attention_forward(y.data(), q.data(), a.data(), c.data(), x.data(), wq.data(), wo.data(), B, S, D, H);
    auto dx = poisoned(T * D), dwq = poisoned(wq.size()), dwo = poisoned(wo.size());
    st::attention_backward(dx.data(), dwq.data(), dwo.data(), dctx.data(), x.data(), wq.data(), wo.data(), q.data(),
                           a.data(), c.data(), B, S, D, H);
    std::vector<float> all = y;
    all.insert(all.end(), dx.begin(), dx.end());
    all.insert(all.end(), dwq.begin(), dwq.end());
    all.insert(all.end(), dwo.begin(), dwo.end());
    bool finite = true;
    for (float v : all) finite = finite && std::isfinite(v);
    ST_CHECK(finite, "attention layer wrote a non-finite value at %d threads", threads);
    if (first.empty()) first = all;
    else ST_CHECK(same_bits(all, first), "attention layer differs at %d threads", threads);
  }
  st::set_num_threads(st::hardware_threads());
}

void test_embedding(int B, int S, int D, int V) {
  const size_t T = static_cast<size_t>(B) * S;
  std::vector<int32_t> tokens(T);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % V);
  auto wte = randn(static_cast<size_t>(V) * D), wpe = randn(static_cast<size_t>(S + 2) * D), dx = randn(T * D);
  auto x = poisoned(T * D), xr = poisoned(T * D);
  st::embedding_forward(x.data(), tokens.data(), wte.data(), wpe.data(), B, S, D);
  st::embedding_forward_reference(xr.data(), tokens.data(), wte.data(), wpe.data(), B, S, D);
  ST_CHECK(same_bits(x, xr), "embedding forward B=%d S=%d D=%d", B, S, D);
  auto dwte = poisoned(wte.size()), dwpe = poisoned(wpe.size()), dwter = poisoned(wte.size()), dwper = poisoned(wpe.size());
  st::embedding_backward(dwte.data(), dwpe.data(), dx.data(), tokens.data(), B, S, D, V, false);
  st::embedding_backward_reference(dwter.data(), dwper.data(), dx.data(), tokens.data(), B, S, D, V, false);
  dwpe.resize(static_cast<size_t>(S) * D);
  dwper.resize(dwpe.size());
  ST_CHECK(same_bits(dwte, dwter) && same_bits(dwpe, dwper), "embedding backward B=%d S=%d D=%d", B, S, D);
}

void test_cross_entropy(int T, int D, int V) {
  auto h = randn(static_cast<size_t>(T) * D), wte = randn(static_cast<size_t>(V) * D, 0.5f), dl = randn(T);
  std::vector<int32_t> targets(T);
  for (auto& t : targets) t = static_cast<int32_t>(rng() % V);
  auto loss = poisoned(T), probs = poisoned(static_cast<size_t>(T) * V), lossr = poisoned(T), probsr = poisoned(probs.size());
  st::cross_entropy_forward(loss.data(), probs.data(), h.data(), wte.data(), targets.data(), T, D, V);
  st::cross_entropy_forward_reference(lossr.data(), probsr.data(), h.data(), wte.data(), targets.data(), T, D, V);
  ST_CHECK(max_rel_diff(loss, lossr) < 1e-4f, "cross-entropy loss T=%d D=%d V=%d: %g", T, D, V, max_rel_diff(loss, lossr));
  ST_CHECK(max_rel_diff(probs, probsr) < 1e-3f, "cross-entropy probs: %g", max_rel_diff(probs, probsr));
  auto dh = poisoned(h.size()), dw = poisoned(wte.size()), dhr = poisoned(h.size()), dwr = poisoned(wte.size());
  st::cross_entropy_backward(dh.data(), dw.data(), dl.data(), probs.data(), h.data(), wte.data(), targets.data(), T, D, V, false);
  st::cross_entropy_backward_reference(dhr.data(), dwr.data(), dl.data(), probsr.data(), h.data(), wte.data(), targets.data(), T, D, V, false);
  ST_CHECK(max_rel_diff(dh, dhr) < 2e-3f, "cross-entropy dh: %g", max_rel_diff(dh, dhr));
  ST_CHECK(max_rel_diff(dw, dwr) < 2e-3f, "cross-entropy dwte: %g", max_rel_diff(dw, dwr));
  // The fused training pass (blocks of tokens) against the same references, at 1 and 3 threads.
  std::vector<float> first;
  for (int threads : {1, 3}) {
    st::set_num_threads(threads);
    auto fl = poisoned(T), fdh = poisoned(h.size()), fdw = poisoned(wte.size());
    st::cross_entropy_forward_backward(fl.data(), fdh.data(), fdw.data(), h.data(), wte.data(), targets.data(), dl.data(), T, D, V, false);
    ST_CHECK(max_rel_diff(fl, lossr) < 1e-4f, "fused cross-entropy loss T=%d: %g", T, max_rel_diff(fl, lossr));
    ST_CHECK(max_rel_diff(fdh, dhr) < 2e-3f, "fused cross-entropy dh: %g", max_rel_diff(fdh, dhr));
    ST_CHECK(max_rel_diff(fdw, dwr) < 2e-3f, "fused cross-entropy dwte: %g", max_rel_diff(fdw, dwr));
    std::vector<float> all = fl;
    all.insert(all.end(), fdh.begin(), fdh.end());
    all.insert(all.end(), fdw.begin(), fdw.end());
    if (first.empty()) first = all;
    else ST_CHECK(same_bits(all, first), "fused cross-entropy differs at %d threads", threads);
  }
  st::set_num_threads(st::hardware_threads());
  auto objective = [&] {
    auto l = poisoned(T), p = poisoned(probs.size());
    st::cross_entropy_forward_reference(l.data(), p.data(), h.data(), wte.data(), targets.data(), T, D, V);
    return dot(l, dl);
  };
  check_fd("cross-entropy dh", h, dhr, objective);
  check_fd("cross-entropy dwte", wte, dwr, objective);
}

void test_residual(int64_t N) {
  auto x = randn(N), y = randn(N), mask = randn(N);
  for (auto& m : mask) m = m < 0 ? 0.0f : 1.25f;
  for (const float* mk : {static_cast<const float*>(nullptr), static_cast<const float*>(mask.data())}) {
    auto out = poisoned(N), outr = poisoned(N);
    st::residual_forward(out.data(), x.data(), y.data(), mk, N);
    st::residual_forward_reference(outr.data(), x.data(), y.data(), mk, N);
    ST_CHECK(same_bits(out, outr), "residual N=%lld mask=%d", (long long)N, mk != nullptr);
  }
}

void test_cross_entropy_loss(int T, int D, int V) {
  auto h = randn(static_cast<size_t>(T) * D), wte = randn(static_cast<size_t>(V) * D, 0.5f);
  std::vector<int32_t> targets(T);
  for (auto& t : targets) t = static_cast<int32_t>(rng() % V);
  auto l = poisoned(T), lr = poisoned(T), pr = poisoned(static_cast<size_t>(T) * V);
  st::cross_entropy_loss(l.data(), h.data(), wte.data(), targets.data(), T, D, V);
  st::cross_entropy_forward_reference(lr.data(), pr.data(), h.data(), wte.data(), targets.data(), T, D, V);
  ST_CHECK(max_rel_diff(l, lr) < 1e-4f, "cross-entropy loss (blocks) T=%d D=%d V=%d: %g", T, D, V, max_rel_diff(l, lr));
}

void test_adamw(int64_t N) {
  auto w = randn(N), m = randn(N, 0.1f), v = randn(N, 0.1f), g = randn(N);
  for (auto& x : v) x = std::fabs(x);
  auto w2 = w, m2 = m, v2 = v;
  st::AdamWStep s{1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, 1 - 0.9 * 0.9 * 0.9, 1 - 0.999 * 0.999 * 0.999};
  st::adamw_forward(w.data(), m.data(), v.data(), g.data(), N, s);
  st::adamw_forward_reference(w2.data(), m2.data(), v2.data(), g.data(), N, s);
  // The kernel runs in float (the reference in double): the update term, up to ~lr·|m̂|/sqrt(v̂) where
  // v is near 0, carries float rounding, so w is compared to an absolute bound scaled by the step.
  // m and v may differ by an ulp where the AVX2 path fuses a multiply-add and the sum cancels.
  auto err = [&](const std::vector<float>& a, const std::vector<float>& b) {
    float e = 0.0f;
    for (int64_t i = 0; i < N; ++i) e = std::isnan(a[i]) ? INFINITY : std::max(e, std::fabs(a[i] - b[i]) / (1.0f + std::fabs(b[i])));
    return e;
  };
  ST_CHECK(err(w, w2) < 2e-6f && err(m, m2) < 1e-7f && err(v, v2) < 1e-7f, "adamw N=%lld: w %g m %g v %g", (long long)N,
           err(w, w2), err(m, m2), err(v, v2));
  double ref = 0.0;
  for (float x : g) ref += static_cast<double>(x) * x;
  st::set_num_threads(1);
  const double one = st::sum_squares(g.data(), N);
  st::set_num_threads(3);
  const double three = st::sum_squares(g.data(), N);
  st::set_num_threads(st::hardware_threads());
  ST_CHECK(one == three && std::fabs(one - ref) <= 1e-9 * ref, "sum_squares N=%lld: %g %g %g", (long long)N, one, three, ref);
}

void test_adafactor(int64_t mats, int64_t rows, int64_t cols) {
  const int64_t n = mats * rows * cols;
  auto g = randn(n, 0.1f), w = randn(n), m = randn(n, 0.01f);
  auto R = randn(mats * rows), C = randn(mats * cols);
  for (auto& x : R) x = std::fabs(x) * 1e-2f;
  for (auto& x : C) x = std::fabs(x) * 1e-2f;
  const double beta2 = 0.9, eps1 = 1e-30;
  for (bool momentum : {false, true}) {
    std::vector<float> first_w;
    for (int threads : {1, 3}) {
      st::set_num_threads(threads);
      auto R1 = R, C1 = C, R2 = R, C2 = C, w1 = w, w2 = w, m1 = m, m2 = m;
      const double s1 = st::adafactor_factored_statistics(R1.data(), C1.data(), g.data(), mats, rows, cols, beta2, eps1);
      const double s2 = st::adafactor_factored_statistics_reference(R2.data(), C2.data(), g.data(), mats, rows, cols, beta2, eps1);
      ST_CHECK(max_rel_diff(R1, R2) < 1e-6f && max_rel_diff(C1, C2) < 1e-6f, "adafactor R, C (%lld, %lld, %lld)", (long long)mats,
               (long long)rows, (long long)cols);
      ST_CHECK(std::fabs(s1 - s2) <= 1e-9 * s2, "adafactor sum u² %g vs %g", s1, s2);
      const double scale = 1e-3, decay = 0.999, beta1 = momentum ? 0.9 : 0.0;
      st::adafactor_factored_update(w1.data(), momentum ? m1.data() : nullptr, g.data(), R1.data(), C1.data(), mats, rows,
                                    cols, scale, decay, beta1);
      st::adafactor_factored_update_reference(w2.data(), momentum ? m2.data() : nullptr, g.data(), R2.data(), C2.data(),
                                              mats, rows, cols, scale, decay, beta1);
      ST_CHECK(max_rel_diff(w1, w2) < 1e-5f && (!momentum || max_rel_diff(m1, m2) < 1e-5f), "adafactor update momentum=%d: %g",
               momentum, max_rel_diff(w1, w2));
      if (first_w.empty()) first_w = w1;
      else ST_CHECK(same_bits(first_w, w1), "adafactor update differs at %d threads", threads);
    }
  }
  st::set_num_threads(st::hardware_threads());
  // The unfactored statistic against its formula.
  auto v = R, v2 = R;
  const int64_t k = static_cast<int64_t>(v.size());
  double expect = 0.0;
  for (int64_t i = 0; i < k; ++i) {
    v2[i] = static_cast<float>(beta2 * v2[i] + (1 - beta2) * (static_cast<double>(g[i]) * g[i] + eps1));
    expect += static_cast<double>(g[i]) * g[i] / v2[i];
  }
  const double got = st::adafactor_vector_statistics(v.data(), g.data(), k, beta2, eps1);
  ST_CHECK(same_bits(v, v2) && std::fabs(got - expect) <= 1e-9 * expect, "adafactor vector statistics %g vs %g", got, expect);
  auto wv = std::vector<float>(w.begin(), w.begin() + k), wv2 = wv;
  st::adafactor_vector_update(wv.data(), nullptr, g.data(), v.data(), k, 1e-3, 0.999, 0.0);
  for (int64_t i = 0; i < k; ++i) wv2[i] = static_cast<float>(wv2[i] * 0.999 - 1e-3 * (g[i] / std::sqrt(static_cast<double>(v[i]))));
  ST_CHECK(same_bits(wv, wv2), "adafactor vector update");
}

void run_all(bool quick) {
  test_adafactor(1, 1, 1);
  test_adafactor(3, 5, 7);
  test_adafactor(2, 33, 70);
  test_adamw(1);
  test_adamw(13);  // a vector body and a scalar tail
  test_adamw(100000);
  test_residual(1);
  test_residual(70001);
  // Degenerate shapes first: one token, D = 1, one head, one batch row.
  test_rmsnorm(1, 1);
  test_rmsnorm(1, 7);
  test_rmsnorm(33, 16);
  if (!quick) test_rmsnorm(257, 64);
  test_attention(1, 1, 1, 1);
  test_attention(1, 5, 4, 1);
  test_attention(2, 7, 8, 2);
  if (!quick) test_attention(3, 33, 32, 4);
  test_attention(1, 70, 8, 2);  // two causal tiles, the second partial
  test_embedding(1, 1, 1, 1);
  test_embedding(2, 5, 3, 4);
  test_embedding(3, 9, 70, 11);
  test_cross_entropy(1, 1, 1);
  test_cross_entropy(3, 4, 5);
  test_cross_entropy(17, 8, 33);
  if (!quick) test_cross_entropy(64, 32, 300);
  test_cross_entropy(600, 4, 9);  // more than one block of the fused pass
  test_cross_entropy(5, 8, 37);    // V not a multiple of 8 or 16: the SIMD rows' tails
  test_cross_entropy_loss(1, 1, 1);
  test_cross_entropy_loss(300, 8, 21);
}

}  // namespace

int main() {
  const bool quick = st::test::quick();
  // Every kernel on every ISA this CPU runs (the portable path always).
  for (st::Isa isa : st::test::all_isas()) {
    if (!st::set_active_isa(isa)) continue;
    std::printf("ISA %s\n", st::isa_name(isa));
    run_all(quick);
  }
  st::set_active_isa(st::best_isa());
  return st::test::summary("test_model_kernels");
}
