// The Switch layer's kernels against plain serial definitions written here, with poisoned
// outputs (NaN-filled before each run), adjoint checks (dispatch/combine), finite differences
// (activation, router), and bit-identical results for 1 and several threads.
// T = tokens, D = d_model, F = d_ff, E = experts, k = choices, G = group size, C = capacity, R = rows.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "check.h"
#include "kernels/bf16.h"
#include "kernels/gemm.h"
#include "kernels/router.h"
#include "kernels/switch_dispatch.h"
#include "kernels/switch_experts.h"
#include "kernels/switch_random.h"
#include "kernels/switch_slots.h"
#include "kernels/threadpool.h"

using namespace st;

namespace {

std::mt19937 gen(12345);

std::vector<float> random_vec(size_t n, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) {
    x = d(gen);
    if (x == 0.f) x = 0.25f;
  }
  return v;
}

template <class T>
std::vector<T> poisoned(size_t n) {
  if constexpr (std::is_floating_point_v<T>) return std::vector<T>(n, std::numeric_limits<T>::quiet_NaN());
  else return std::vector<T>(n, static_cast<T>(-7777));
}

bool all_finite(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

double max_abs_diff(const float* a, const double* b, size_t n, double* scale) {
  double worst = 0, s = 0;
  for (size_t i = 0; i < n; ++i) {
    worst = std::max(worst, std::fabs(a[i] - b[i]));
    s = std::max(s, std::fabs(b[i]));
  }
  *scale = s;
  return worst;
}

#define EXPECT_CLOSE(a, b, n, rtol, what)                                                    \
  do {                                                                                       \
    double scale_;                                                                           \
    const double d_ = max_abs_diff((a), (b), (n), &scale_);                                  \
    ST_CHECK(d_ <= (rtol) * scale_ + 1e-7, "%s: max diff %g (scale %g)", what, d_, scale_);  \
  } while (0)

template <class F>
void for_threads(F&& f) {
  const int saved = num_threads();
  for (int n : {1, 3}) {
    set_num_threads(n);
    f(n);
  }
  set_num_threads(saved);
}

void test_router(int T, int D, int E, int k, int G) {
  const auto x = random_vec(static_cast<size_t>(T) * D);
  auto w = random_vec(static_cast<size_t>(D) * E, -2.f, 2.f);
  // Reference in double.
  std::vector<double> p(static_cast<size_t>(T) * E), lse(T);
  for (int t = 0; t < T; ++t) {
    std::vector<double> l(E);
    for (int e = 0; e < E; ++e)
      for (int d = 0; d < D; ++d) l[e] += static_cast<double>(x[t * D + d]) * w[d * E + e];
    const double m = *std::max_element(l.begin(), l.end());
    double s = 0;
    for (int e = 0; e < E; ++e) s += std::exp(l[e] - m);
    for (int e = 0; e < E; ++e) p[t * E + e] = std::exp(l[e] - m) / s;
    lse[t] = m + std::log(s);
  }
  const auto dgate = random_vec(T * k);
  std::vector<std::vector<float>> runs;
  for_threads([&](int) {
    auto logits = poisoned<float>(T * E), probs = poisoned<float>(T * E), l = poisoned<float>(T);
    router_forward(logits.data(), probs.data(), l.data(), x.data(), w.data(), T, D, E);
    ST_CHECK(all_finite(probs) && all_finite(l) && all_finite(logits), "router_forward wrote every output");
    EXPECT_CLOSE(probs.data(), p.data(), probs.size(), 1e-5, "router probs");
    EXPECT_CLOSE(l.data(), lse.data(), l.size(), 1e-5, "router lse");
    // Choice.
    auto index = poisoned<int32_t>(T * k);
    auto gate = poisoned<float>(T * k);
    std::vector<uint8_t> want(T * k, 77);
    router_choose_forward(index.data(), gate.data(), want.data(), probs.data(), T, E, k, SecondExpertPolicy::threshold,
                          0.3f, random_key(1, 2));
    for (int t = 0; t < T; ++t) {
      std::vector<int> order(E);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return probs[t * E + a] > probs[t * E + b]; });
      ST_CHECK(index[t * k] == order[0], "argmax token %d", t);
      if (k == 1) {
        ST_CHECK(gate[t] == probs[t * E + order[0]], "top-1 gate is the raw probability");
      } else {
        ST_CHECK(index[t * k + 1] == order[1], "second choice token %d", t);
        const double p1 = probs[t * E + order[0]], p2 = probs[t * E + order[1]];
        const double g2 = p2 / (p1 + p2 + 1e-9);
        ST_CHECK(std::fabs(gate[t * k + 1] - g2) < 1e-6, "normalised g2");
        ST_CHECK(want[t * k + 1] == (g2 > 0.3 ? 1 : 0), "threshold policy token %d", t);
      }
      ST_CHECK(want[t * k] == 1, "first choice always wanted");
    }
    // Losses.
    double lb = 0, z = 0, entropy = 0;
    auto f = poisoned<float>((T / G) * E);
    router_losses_forward(&lb, &z, &entropy, f.data(), probs.data(), l.data(), index.data(), T, E, k, G);
    ST_CHECK(all_finite(f), "f written");
    double lb_ref = 0, z_ref = 0;
    for (int g = 0; g < T / G; ++g) {
      double s = 0;
      for (int e = 0; e < E; ++e) {
        double fe = 0, P = 0;
        for (int t = g * G; t < (g + 1) * G; ++t) {
          fe += index[t * k] == e;
          P += p[t * E + e];
        }
        s += fe / G * P / G;
      }
      lb_ref += E * s;
    }
    lb_ref /= T / G;
    double h_ref = 0;
    for (int t = 0; t < T; ++t) {
      z_ref += lse[t] * lse[t];
      for (int e = 0; e < E; ++e) h_ref -= p[t * E + e] * std::log(p[t * E + e]);
    }
    z_ref /= T;
    h_ref /= T;
    ST_CHECK(std::fabs(entropy - h_ref) < 1e-5, "router entropy %g vs %g", entropy, h_ref);
    ST_CHECK(std::fabs(lb - lb_ref) < 1e-5 * std::max(1.0, lb_ref), "load balance loss %g vs %g", lb, lb_ref);
    ST_CHECK(std::fabs(z - z_ref) < 1e-4 * std::max(1.0, z_ref), "z loss %g vs %g", z, z_ref);
    // Backward against finite differences of Σ dgate·gate + a·lb + b·z over the logits (routing fixed).
    const float a = 0.7f, b = 0.3f;
    auto dlogits = poisoned<float>(T * E), dw = poisoned<float>(D * E), dx = poisoned<float>(T * D);
    router_backward(dlogits.data(), dw.data(), dx.data(), dgate.data(), probs.data(), l.data(), f.data(), index.data(),
                    x.data(), w.data(), nullptr, T, D, E, k, G, a, b);
    ST_CHECK(all_finite(dlogits) && all_finite(dw) && all_finite(dx), "router_backward wrote every output");
    auto objective = [&](const std::vector<double>& lg) {
      double total = 0;
      std::vector<double> pp(E);
      for (int t = 0; t < T; ++t) {
        const double m = *std::max_element(lg.begin() + t * E, lg.begin() + (t + 1) * E);
        double s = 0;
        for (int e = 0; e < E; ++e) s += std::exp(lg[t * E + e] - m);
        for (int e = 0; e < E; ++e) pp[e] = std::exp(lg[t * E + e] - m) / s;
        const double ls = m + std::log(s);
        total += b * ls * ls / T;
        for (int e = 0; e < E; ++e) total += a * E * f[(t / G) * E + e] * pp[e] / G / (T / G);
        if (k == 1) {
          total += dgate[t] * pp[index[t]];
        } else {
          const double p1 = pp[index[2 * t]], p2 = pp[index[2 * t + 1]], s2 = p1 + p2 + 1e-9;
          total += dgate[2 * t] * p1 / s2 + dgate[2 * t + 1] * p2 / s2;
        }
      }
      return total;
    };
    std::vector<double> lg(T * E);
    for (int i = 0; i < T * E; ++i) lg[i] = logits[i];
    std::vector<double> fd(T * E);
    for (int i = 0; i < T * E; ++i) {
      const double v = lg[i];
      lg[i] = v + 1e-5;
      const double up = objective(lg);
      lg[i] = v - 1e-5;
      const double down = objective(lg);
      lg[i] = v;
      fd[i] = (up - down) / 2e-5;
    }
    EXPECT_CLOSE(dlogits.data(), fd.data(), fd.size(), 2e-3, "router dlogits vs finite differences");
    std::vector<double> dw_ref(D * E, 0.0), dx_ref(T * D, 0.0);
    for (int t = 0; t < T; ++t)
      for (int d = 0; d < D; ++d)
        for (int e = 0; e < E; ++e) {
          dw_ref[d * E + e] += static_cast<double>(x[t * D + d]) * dlogits[t * E + e];
          dx_ref[t * D + d] += static_cast<double>(dlogits[t * E + e]) * w[d * E + e];
        }
    EXPECT_CLOSE(dw.data(), dw_ref.data(), dw.size(), 1e-5, "router dW");
    EXPECT_CLOSE(dx.data(), dx_ref.data(), dx.size(), 1e-5, "router dx");
    std::vector<float> all(probs);
    all.insert(all.end(), dlogits.begin(), dlogits.end());
    all.insert(all.end(), dw.begin(), dw.end());
    all.insert(all.end(), dx.begin(), dx.end());
    runs.push_back(all);
  });
  ST_CHECK(runs.size() == 2 && std::memcmp(runs[0].data(), runs[1].data(), runs[0].size() * 4) == 0,
           "router bit-identical across thread counts");
}

// Slots: a direct reading of SPEC §1.5 (and Appendix B rounds), compared with the kernel.
void test_slots(int T, int E, int k, int G, int C, bool ntlb) {
  std::vector<float> probs = random_vec(T * E, 0.f, 1.f);
  for (int t = 0; t < T; ++t) {
    float s = 0;
    for (int e = 0; e < E; ++e) s += probs[t * E + e];
    for (int e = 0; e < E; ++e) probs[t * E + e] /= s;
  }
  std::vector<int32_t> index(T * k);
  std::vector<float> gate(T * k);
  std::vector<uint8_t> want(T * k);
  router_choose_forward(index.data(), gate.data(), want.data(), probs.data(), T, E, k, SecondExpertPolicy::threshold,
                        0.35f, 0);
  // Reference.
  std::vector<int32_t> ref_slot(T * k, -1), ref_index(index);
  std::vector<float> ref_gate(gate);
  for (int g = 0; g < T / G; ++g) {
    std::vector<int> n(E, 0);
    for (int j = 0; j < k; ++j)
      for (int t = g * G; t < (g + 1) * G; ++t) {
        const int c = t * k + j;
        if (!want[c]) continue;
        const int pos = n[index[c]]++;
        if (pos < C) ref_slot[c] = pos;
      }
    if (ntlb) {
      std::vector<int> taken(E);
      for (int e = 0; e < E; ++e) taken[e] = std::min(n[e], C);
      for (int r = 1; r < std::min(4, E); ++r)
        for (int t = g * G; t < (g + 1) * G; ++t) {
          if (ref_slot[t] >= 0) continue;
          std::vector<int> order(E);
          std::iota(order.begin(), order.end(), 0);
          std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return probs[t * E + a] > probs[t * E + b]; });
          const int e = order[r];
          if (taken[e] < C) {
            ref_slot[t] = taken[e]++;
            ref_index[t] = e;
            ref_gate[t] = probs[t * E + e];
          }
        }
    }
  }
  std::vector<std::vector<int32_t>> runs;
  for_threads([&](int) {
    auto slot = poisoned<int32_t>(T * k), counts = poisoned<int32_t>((T / G) * E);
    std::vector<int32_t> idx(index);
    std::vector<float> gt(gate);
    switch_slots_forward(slot.data(), counts.data(), idx.data(), gt.data(), want.data(), probs.data(), T, k, G, E, C, ntlb);
    ST_CHECK(slot == ref_slot, "slots T=%d E=%d k=%d G=%d C=%d ntlb=%d", T, E, k, G, C, ntlb);
    ST_CHECK(idx == ref_index && gt == ref_gate, "rerouted choices");
    for (int g = 0; g < T / G; ++g)
      for (int e = 0; e < E; ++e) {
        int kept = 0;
        for (int t = g * G; t < (g + 1) * G; ++t)
          for (int j = 0; j < k; ++j) kept += (slot[t * k + j] >= 0 && idx[t * k + j] == e);
        ST_CHECK(counts[g * E + e] == kept && kept <= C, "counts");
      }
    // The dispatch plan, compact and padded.
    for (bool padded : {false, true}) {
      const int64_t R = switch_rows_count(counts.data(), T, G, E, C, padded);
      auto row = poisoned<int32_t>(T * k), offsets = poisoned<int32_t>(E + 1);
      auto row_token = poisoned<int32_t>(R), row_choice = poisoned<int32_t>(R);
      switch_rows_forward(row.data(), offsets.data(), row_token.data(), row_choice.data(), idx.data(), slot.data(),
                          counts.data(), T, k, G, E, C, padded);
      ST_CHECK(offsets[0] == 0 && offsets[E] == R, "offsets span the rows");
      for (int c = 0; c < T * k; ++c) {
        if (slot[c] < 0) {
          ST_CHECK(row[c] == -1, "dropped choice has no row");
          continue;
        }
        const int32_t i = row[c];
        const int e = idx[c], g = c / k / G;
        ST_CHECK(i >= offsets[e] && i < offsets[e + 1], "row inside its expert");
        ST_CHECK(row_token[i] == c / k && row_choice[i] == c, "row maps back to its choice");
        if (padded) ST_CHECK(i == (static_cast<int64_t>(e) * (T / G) + g) * C + slot[c], "padded layout");
      }
      for (int64_t i = 0; i < R; ++i)
        ST_CHECK(row_token[i] == -1 ? padded : (row[row_choice[i]] == i), "every row is a choice's (or padding)");
    }
    runs.push_back(slot);
  });
  ST_CHECK(runs[0] == runs[1], "slots bit-identical across thread counts");
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// Dispatch and combine are adjoint; the backward kernels agree with the plain definitions.
void test_dispatch_combine(int T, int D, int k, int E, int C) {
  const int G = T;
  std::vector<float> probs = random_vec(T * E, 0.1f, 1.f);
  std::vector<int32_t> index(T * k);
  std::vector<float> gate(T * k);
  std::vector<uint8_t> want(T * k);
  router_choose_forward(index.data(), gate.data(), want.data(), probs.data(), T, E, k, SecondExpertPolicy::all, 0.2f, 0);
  std::vector<int32_t> slot(T * k), counts(E);
  switch_slots_forward(slot.data(), counts.data(), index.data(), gate.data(), want.data(), probs.data(), T, k, G, E, C, false);
  for (bool padded : {false, true}) {
    const int64_t R = switch_rows_count(counts.data(), T, G, E, C, padded);
    std::vector<int32_t> row(T * k), offsets(E + 1), row_token(R), row_choice(R);
    switch_rows_forward(row.data(), offsets.data(), row_token.data(), row_choice.data(), index.data(), slot.data(),
                        counts.data(), T, k, G, E, C, padded);
    const auto x = random_vec(T * D), dbuf = random_vec(R * D), o = random_vec(R * D), dy = random_vec(T * D);
    for (bool wire : {false, true}) {
      auto buf = poisoned<float>(R * D);
      switch_dispatch_forward(buf.data(), x.data(), row_token.data(), R, D, wire);
      ST_CHECK(all_finite(buf), "dispatch wrote every row");
      auto dx = poisoned<float>(T * D);
      switch_dispatch_backward(dx.data(), dbuf.data(), row.data(), T, k, D, false, false);
      ST_CHECK(all_finite(dx), "dispatch backward wrote every token");
      if (!wire) ST_CHECK(std::fabs(dot(buf, dbuf) - dot(x, dx)) < 1e-4 * (1 + std::fabs(dot(buf, dbuf))), "dispatch adjoint");
      for (int64_t i = 0; i < R; ++i)
        for (int d = 0; d < D; ++d) {
          const float want_v = row_token[i] < 0 ? 0.f : (wire ? bf16_to_f32_scalar(bf16_from_f32_scalar(x[row_token[i] * D + d])) : x[row_token[i] * D + d]);
          if (buf[i * D + d] != want_v) { ST_CHECK(false, "dispatch row %lld", static_cast<long long>(i)); i = R; break; }
        }
    }
    auto y = poisoned<float>(T * D);
    switch_combine_forward(y.data(), o.data(), gate.data(), row.data(), T, k, D);
    ST_CHECK(all_finite(y), "combine wrote every token");
    std::vector<double> y_ref(T * D, 0.0);
    for (int t = 0; t < T; ++t)
      for (int j = 0; j < k; ++j)
        if (row[t * k + j] >= 0)
          for (int d = 0; d < D; ++d) y_ref[t * D + d] += static_cast<double>(gate[t * k + j]) * o[row[t * k + j] * D + d];
    EXPECT_CLOSE(y.data(), y_ref.data(), y.size(), 1e-6, "combine");
    auto dgate = poisoned<float>(T * k), dout = poisoned<float>(R * D);
    switch_combine_backward(dgate.data(), dout.data(), dy.data(), o.data(), gate.data(), row_choice.data(), T, k, R, D, false);
    ST_CHECK(all_finite(dgate) && all_finite(dout), "combine backward wrote every output");
    ST_CHECK(std::fabs(dot(y, dy) - dot(o, dout)) < 1e-4 * (1 + std::fabs(dot(y, dy))), "combine adjoint in expert_out");
    for (int c = 0; c < T * k; ++c) {
      double ref = 0;
      if (row[c] >= 0)
        for (int d = 0; d < D; ++d) ref += static_cast<double>(dy[(c / k) * D + d]) * o[row[c] * D + d];
      ST_CHECK(std::fabs(dgate[c] - ref) < 1e-4 * (1 + std::fabs(ref)), "dgate %d", c);
    }
  }
}

void test_activation(int R, int F) {
  for (Activation act : {Activation::relu, Activation::gelu})
    for (float rate : {0.f, 0.3f}) {
      const auto h_pre = random_vec(R * F, -3.f, 3.f), dh = random_vec(R * F);
      std::vector<std::vector<float>> runs;
      for_threads([&](int) {
        auto h = poisoned<float>(R * F), dh_pre = poisoned<float>(R * F);
        std::vector<uint8_t> keep(R * F, 99);
        switch_activation_forward(h.data(), rate > 0 ? keep.data() : nullptr, h_pre.data(), nullptr, R, F, act, rate, 5);
        switch_activation_backward(dh_pre.data(), dh.data(), h_pre.data(), rate > 0 ? keep.data() : nullptr, R, F, act, rate);
        ST_CHECK(all_finite(h) && all_finite(dh_pre), "activation wrote every element");
        int dropped = 0;
        for (int i = 0; i < R * F; ++i) {
          const bool kept = rate == 0 || keep[i];
          dropped += !kept;
          const double scale = rate > 0 ? 1.0 / (1 - rate) : 1.0;
          const double v = h_pre[i];
          const double ref = kept ? scale * (act == Activation::relu ? std::max(0.0, v)
                                                                    : 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))))
                                  : 0.0;
          if (std::fabs(h[i] - ref) > 1e-5 * (1 + std::fabs(ref))) { ST_CHECK(false, "activation value %d", i); break; }
          // Finite differences of the scalar definition (away from relu's kink).
          if (std::fabs(v) > 1e-3) {
            const double e = 1e-3;
            const double fd = (activation_value(act, static_cast<float>(v + e)) - activation_value(act, static_cast<float>(v - e))) / (2 * e);
            const double want_d = kept ? scale * fd * dh[i] : 0.0;
            if (std::fabs(dh_pre[i] - want_d) > 2e-3 * (1 + std::fabs(want_d))) { ST_CHECK(false, "activation derivative %d: %g vs %g", i, dh_pre[i], want_d); break; }
          }
        }
        if (rate > 0 && R * F >= 1000)
          ST_CHECK(std::fabs(static_cast<double>(dropped) / (R * F) - rate) < 0.05, "dropout rate %g", static_cast<double>(dropped) / (R * F));
        std::vector<float> all(h);
        all.insert(all.end(), dh_pre.begin(), dh_pre.end());
        runs.push_back(all);
      });
      ST_CHECK(std::memcmp(runs[0].data(), runs[1].data(), runs[0].size() * 4) == 0, "activation bit-identical across threads");
    }
}

// Experts forward/backward against plain loops over the rows. With relu (no dropout) also without
// h_pre: the relu folded into the matmuls gives the same bits as the separate passes.
void test_experts(int T, int D, int F, int E, Activation act) {
  const int R = T;  // every token once, experts of random sizes
  std::vector<int32_t> offsets(E + 1, 0), row_token(R);
  std::uniform_int_distribution<int> pick(0, E - 1);
  std::vector<int> sizes(E, 0);
  for (int i = 0; i < R; ++i) ++sizes[pick(gen)];
  for (int e = 0; e < E; ++e) offsets[e + 1] = offsets[e] + sizes[e];
  std::iota(row_token.begin(), row_token.end(), 0);
  std::shuffle(row_token.begin(), row_token.end(), gen);
  const auto x = random_vec(T * D), w_in = random_vec(E * D * F), w_out = random_vec(E * F * D), dout = random_vec(R * D);
  std::vector<std::vector<float>> runs;
  for_threads([&](int) {
    auto out = poisoned<float>(R * D), h_pre = poisoned<float>(R * F), h = poisoned<float>(R * F);
    SwitchExpertsForward a{out.data(), h_pre.data(), h.data(), nullptr, x.data(), row_token.data(), nullptr, w_in.data(),
                           w_out.data(), offsets.data(), E, D, F, act, 0.f, 0};
    switch_experts_forward(a);
    ST_CHECK(all_finite(out), "experts forward wrote every row");
    std::vector<double> out_ref(R * D, 0.0), dx_ref(T * D, 0.0), dwin_ref(E * D * F, 0.0), dwout_ref(E * F * D, 0.0);
    for (int e = 0; e < E; ++e)
      for (int i = offsets[e]; i < offsets[e + 1]; ++i) {
        const float* xr = &x[row_token[i] * D];
        std::vector<double> hp(F, 0.0), hv(F), dhv(F, 0.0);
        for (int f = 0; f < F; ++f) {
          for (int d = 0; d < D; ++d) hp[f] += static_cast<double>(xr[d]) * w_in[(e * D + d) * F + f];
          hv[f] = activation_value(act, static_cast<float>(hp[f]));
        }
        for (int d = 0; d < D; ++d)
          for (int f = 0; f < F; ++f) {
            out_ref[i * D + d] += hv[f] * w_out[(e * F + f) * D + d];
            dwout_ref[(e * F + f) * D + d] += hv[f] * dout[i * D + d];
            dhv[f] += static_cast<double>(dout[i * D + d]) * w_out[(e * F + f) * D + d];
          }
        for (int f = 0; f < F; ++f) {
          const double g = dhv[f] * activation_derivative(act, static_cast<float>(hp[f]));
          for (int d = 0; d < D; ++d) {
            dwin_ref[(e * D + d) * F + f] += static_cast<double>(xr[d]) * g;
            dx_ref[row_token[i] * D + d] += g * w_in[(e * D + d) * F + f];
          }
        }
      }
    EXPECT_CLOSE(out.data(), out_ref.data(), out.size(), 1e-5, "experts forward");
    // Backward: scattered into dx (accumulated onto a known start), and per row.
    std::vector<float> dx(T * D, 0.5f), dw_in = poisoned<float>(E * D * F), dw_out = poisoned<float>(E * F * D);
    std::vector<float> dh = poisoned<float>(R * F);
    SwitchExpertsBackward b{dx.data(), dw_in.data(), dw_out.data(), dh.data(), dout.data(), h_pre.data(), h.data(), nullptr,
                            x.data(), row_token.data(), w_in.data(), w_out.data(), offsets.data(), E, D, F,
                            act, 0.f, true};
    switch_experts_backward(b);
    ST_CHECK(all_finite(dw_in) && all_finite(dw_out), "experts backward wrote every weight gradient");
    for (auto& v : dx_ref) v += 0.5;
    EXPECT_CLOSE(dx.data(), dx_ref.data(), dx.size(), 1e-5, "experts dx (scattered)");
    EXPECT_CLOSE(dw_in.data(), dwin_ref.data(), dw_in.size(), 1e-5, "experts dW_in");
    EXPECT_CLOSE(dw_out.data(), dwout_ref.data(), dw_out.size(), 1e-5, "experts dW_out");
    auto dx_rows = poisoned<float>(R * D);
    b.dx = dx_rows.data();
    b.scatter_dx = false;
    switch_experts_backward(b);
    ST_CHECK(all_finite(dx_rows), "experts backward wrote every row of dx");
    std::vector<double> summed(T * D, 0.5);
    for (int i = 0; i < R; ++i)
      for (int d = 0; d < D; ++d) summed[row_token[i] * D + d] += dx_rows[i * D + d];
    std::vector<float> summed_f(summed.begin(), summed.end());
    std::vector<double> dx_d(dx.begin(), dx.end());
    EXPECT_CLOSE(summed_f.data(), dx_d.data(), dx.size(), 1e-5, "per-row dx sums to the scattered dx");
    if (act == Activation::relu) {
      auto out2 = poisoned<float>(R * D), h2 = poisoned<float>(R * F);
      SwitchExpertsForward folded = a;
      folded.expert_out = out2.data(), folded.h_pre = nullptr, folded.h = h2.data();
      switch_experts_forward(folded);
      ST_CHECK(std::memcmp(out.data(), out2.data(), out.size() * 4) == 0 && std::memcmp(h.data(), h2.data(), h.size() * 4) == 0,
               "experts forward with the relu folded: the same bits as with h_pre");
      std::vector<float> dx2(T * D, 0.5f), dw_in2 = poisoned<float>(E * D * F), dw_out2 = poisoned<float>(E * F * D);
      std::vector<float> dh2 = poisoned<float>(R * F);
      SwitchExpertsBackward fb = b;
      fb.dx = dx2.data(), fb.dw_in = dw_in2.data(), fb.dw_out = dw_out2.data(), fb.dh = dh2.data();
      fb.h_pre = nullptr, fb.h = h2.data(), fb.scatter_dx = true;
      switch_experts_backward(fb);
      ST_CHECK(std::memcmp(dx.data(), dx2.data(), dx.size() * 4) == 0 &&
                   std::memcmp(dw_in.data(), dw_in2.data(), dw_in.size() * 4) == 0 &&
                   std::memcmp(dw_out.data(), dw_out2.data(), dw_out.size() * 4) == 0,
               "experts backward without h_pre (relu's derivative read off h): the same bits");
    }
    std::vector<float> all(out);
    all.insert(all.end(), dx.begin(), dx.end());
    all.insert(all.end(), dw_in.begin(), dw_in.end());
    runs.push_back(all);
  });
  ST_CHECK(std::memcmp(runs[0].data(), runs[1].data(), runs[0].size() * 4) == 0, "experts bit-identical across threads");
}

// The vectorisable tanh inside gelu against the library's, over the whole range.
void test_gelu_accuracy() {
  double worst = 0, worst_d = 0;
  for (int i = -200000; i <= 200000; ++i) {
    const double v = i * 2.5e-4 * (std::abs(i) > 100000 ? 10 : 1);  // [-250, 250], dense near 0
    const double inner = 0.7978845608028654 * (v + 0.044715 * v * v * v);
    const double th = std::tanh(inner);
    const double ref = 0.5 * v * (1 + th);
    const double ref_d = 0.5 * (1 + th) + 0.5 * v * (1 - th * th) * 0.7978845608028654 * (1 + 3 * 0.044715 * v * v);
    worst = std::max(worst, std::fabs(activation_value(Activation::gelu, static_cast<float>(v)) - ref) / (1 + std::fabs(ref)));
    worst_d = std::max(worst_d, std::fabs(activation_derivative(Activation::gelu, static_cast<float>(v)) - ref_d) / (1 + std::fabs(ref_d)));
  }
  ST_CHECK(worst < 5e-7, "gelu relative error %g", worst);
  ST_CHECK(worst_d < 3e-6, "gelu derivative relative error %g", worst_d);
}

void test_truncated_normal() {
  const int64_t n = st::test::quick() ? 20000 : 200000;
  std::vector<float> a(n), b(n);
  set_num_threads(1);
  truncated_normal_fill(a.data(), n, 0.5f, random_key(3, 1));
  set_num_threads(3);
  truncated_normal_fill(b.data(), n, 0.5f, random_key(3, 1));
  ST_CHECK(a == b, "truncated normal independent of threads");
  double s = 0, s2 = 0, mx = 0;
  for (float v : a) {
    s += v;
    s2 += static_cast<double>(v) * v;
    mx = std::max(mx, static_cast<double>(std::fabs(v)));
  }
  const double mean = s / n, sd = std::sqrt(s2 / n - mean * mean);
  ST_CHECK(mx <= 1.0 + 1e-6, "values within 2 sigma (max %g)", mx);
  ST_CHECK(std::fabs(mean) < 0.01, "mean %g", mean);
  ST_CHECK(std::fabs(sd / 0.5 - 0.8796) < 0.01, "truncated sd ratio %g", sd / 0.5);
}

}  // namespace

int main() {
  const bool quick = st::test::quick();
  test_truncated_normal();
  test_gelu_accuracy();
  for (auto [T, D, E, k, G] : std::vector<std::array<int, 5>>{{1, 3, 1, 1, 1}, {16, 5, 4, 1, 8}, {24, 1, 3, 2, 24}, {40, 7, 6, 2, 10}, {quick ? 96 : 512, 16, 8, 1, quick ? 96 : 128}})
    test_router(T, D, E, k, G);
  for (auto [T, E, k, G, C, ntlb] : std::vector<std::array<int, 6>>{
           {1, 1, 1, 1, 4, 0}, {16, 4, 1, 16, 3, 0}, {16, 4, 1, 16, 3, 1}, {32, 6, 2, 8, 2, 0},
           {64, 8, 1, 16, 1, 1}, {64, 3, 2, 64, 0, 0}, {quick ? 128 : 1024, 16, 2, quick ? 64 : 256, 20, 0},
           {quick ? 128 : 1024, 16, 1, quick ? 64 : 256, 12, 1}})
    test_slots(T, E, k, G, C, ntlb != 0);
  test_dispatch_combine(1, 3, 1, 1, 4);
  test_dispatch_combine(20, 6, 1, 4, 3);
  test_dispatch_combine(20, 1, 2, 5, 4);
  test_dispatch_combine(quick ? 64 : 300, 33, 2, 8, 30);
  test_activation(1, 1);
  test_activation(37, 29);
  test_activation(quick ? 64 : 256, 300);
  // The experts run the grouped matmuls, whose kernels differ by ISA: every ISA this CPU has.
  const Isa best = active_isa();
  for (Isa isa : st::test::all_isas()) {
    if (!set_active_isa(isa)) continue;
    for (Activation act : {Activation::gelu, Activation::relu}) {
      test_experts(1, 2, 3, 1, act);
      test_experts(30, 5, 7, 4, act);
      test_experts(quick ? 40 : 120, 9, 17, 7, act);
      test_experts(300, 12, 40, 2, act);  // groups past 128 rows: the general driver
    }
  }
  set_active_isa(best);
  return st::test::summary("test_switch_kernels");
}
