// The Switch router (router.h). T = tokens, D = d_model, E = experts, k = choices, G = group size.
#include "router.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "gemm.h"
#include "switch_random.h"
#include "threadpool.h"

namespace st {

namespace {

constexpr int64_t kTokenBlock = 64;

int64_t blocks_of(int64_t n, int64_t block) { return (n + block - 1) / block; }

// Numerically stable softmax of one row, with its logsumexp.
inline void softmax_row(float* p, float* lse, const float* l, int E) {
  float m = l[0];
  for (int e = 1; e < E; ++e) m = std::max(m, l[e]);
  float sum = 0.0f;
  for (int e = 0; e < E; ++e) {
    p[e] = std::exp(l[e] - m);
    sum += p[e];
  }
  const float inv = 1.0f / sum;
  for (int e = 0; e < E; ++e) p[e] *= inv;
  *lse = m + std::log(sum);
}

}  // namespace

void router_jitter_forward(float* x_router, float* u, const float* x, uint64_t key, float epsilon, int T, int D,
                           int64_t token_offset) {
  const uint64_t first = static_cast<uint64_t>(token_offset) * static_cast<uint64_t>(D);
  const int64_t n = static_cast<int64_t>(T) * D;
  parallel_for(blocks_of(n, 4096), [&](int64_t b, int) {
    const int64_t end = std::min(n, (b + 1) * 4096);
    for (int64_t i = b * 4096; i < end; ++i) {
      u[i] = (1.0f - epsilon) + 2.0f * epsilon * random_uniform(key, first + static_cast<uint64_t>(i));
      x_router[i] = x[i] * u[i];
    }
  });
}

void router_softmax_reference(float* probs, float* lse, const float* logits, int T, int E) {
  for (int t = 0; t < T; ++t)
    softmax_row(probs + static_cast<int64_t>(t) * E, lse + t, logits + static_cast<int64_t>(t) * E, E);
}

void router_forward(float* logits, float* probs, float* lse, const float* x_router, const float* w_router, int T,
                    int D, int E) {
  matmul(logits, x_router, w_router, T, E, D, D, E, E, false, false, false);
  parallel_for(blocks_of(T, kTokenBlock), [&](int64_t b, int) {
    const int t1 = static_cast<int>(std::min<int64_t>(T, (b + 1) * kTokenBlock));
    for (int t = static_cast<int>(b * kTokenBlock); t < t1; ++t)
      softmax_row(probs + static_cast<int64_t>(t) * E, lse + t, logits + static_cast<int64_t>(t) * E, E);
  });
}

void router_choose_forward(int32_t* expert_index, float* gate, uint8_t* want, const float* probs, int T, int E, int k,
                           SecondExpertPolicy policy, float threshold, uint64_t random_key, int64_t token_offset) {
  parallel_for(blocks_of(T, kTokenBlock), [&](int64_t b, int) {
    const int t1 = static_cast<int>(std::min<int64_t>(T, (b + 1) * kTokenBlock));
    for (int t = static_cast<int>(b * kTokenBlock); t < t1; ++t) {
      const float* p = probs + static_cast<int64_t>(t) * E;
      int e1 = 0;
      for (int e = 1; e < E; ++e)
        if (p[e] > p[e1]) e1 = e;  // strict: ties keep the lowest index
      if (k == 1) {
        expert_index[t] = e1;
        gate[t] = p[e1];
        want[t] = 1;
        continue;
      }
      int e2 = e1 == 0 ? 1 : 0;
      for (int e = 0; e < E; ++e)
        if (e != e1 && p[e] > p[e2]) e2 = e;
      const float denom = p[e1] + p[e2] + 1e-9f;
      const float g1 = p[e1] / denom, g2 = p[e2] / denom;
      bool second = true;
      switch (policy) {
        case SecondExpertPolicy::all: second = true; break;
        case SecondExpertPolicy::none: second = false; break;
        case SecondExpertPolicy::threshold: second = g2 > threshold; break;
        case SecondExpertPolicy::random: second = random_uniform(random_key, static_cast<uint64_t>(token_offset + t)) < g2 / threshold; break;
      }
      expert_index[2 * t] = e1;
      expert_index[2 * t + 1] = e2;
      gate[2 * t] = g1;
      gate[2 * t + 1] = g2;
      want[2 * t] = 1;
      want[2 * t + 1] = second ? 1 : 0;
    }
  });
}

void router_losses_forward(double* load_balance_loss, double* z_loss, double* entropy, float* f, const float* probs, const float* lse,
                           const int32_t* first_choice, int T, int E, int k, int G) {
  const int groups = T / G;
  std::vector<double> group_lb(groups), group_entropy(groups);
  parallel_for(groups, [&](int64_t g, int) {
    std::vector<double> P(E, 0.0);
    std::vector<int> count(E, 0);
    double h = 0.0;
    for (int t = static_cast<int>(g) * G; t < static_cast<int>(g + 1) * G; ++t) {
      const float* p = probs + static_cast<int64_t>(t) * E;
      for (int e = 0; e < E; ++e) {
        P[e] += p[e];
        if (p[e] > 0.0f) h -= static_cast<double>(p[e]) * std::log(p[e]);
      }
      ++count[first_choice[static_cast<int64_t>(t) * k]];
    }
    group_entropy[g] = h;
    double sum = 0.0;
    for (int e = 0; e < E; ++e) {
      const double fe = static_cast<double>(count[e]) / G;
      f[g * E + e] = static_cast<float>(fe);
      sum += fe * (P[e] / G);
    }
    group_lb[g] = E * sum;
  });
  double lb = 0.0, h = 0.0;
  for (int g = 0; g < groups; ++g) {
    lb += group_lb[g];
    h += group_entropy[g];
  }
  *entropy = h / T;
  *load_balance_loss = lb / groups;
  double z = 0.0;
  for (int t = 0; t < T; ++t) z += static_cast<double>(lse[t]) * lse[t];
  *z_loss = z / T;
}

void router_backward(float* dlogits, float* dw_router, float* dx, const float* dgate, const float* probs,
                     const float* lse, const float* f, const int32_t* expert_index, const float* x_router,
                     const float* w_router, const float* u, int T, int D, int E, int k, int G, float load_balance_coef,
                     float z_loss_coef) {
  const int groups = T / G;
  // d lb / d p_ti = E · f_gi / (G · groups); d z / d logit_ti = 2 · lse_t · p_ti / T.
  const float lb_scale = load_balance_coef * static_cast<float>(E) / (static_cast<float>(G) * groups);
  const float z_scale = 2.0f * z_loss_coef / static_cast<float>(T);
  parallel_for(blocks_of(T, kTokenBlock), [&](int64_t b, int) {
    std::vector<float> dp(E);
    const int t1 = static_cast<int>(std::min<int64_t>(T, (b + 1) * kTokenBlock));
    for (int t = static_cast<int>(b * kTokenBlock); t < t1; ++t) {
      const float* p = probs + static_cast<int64_t>(t) * E;
      const float* fg = f + static_cast<int64_t>(t / G) * E;
      for (int e = 0; e < E; ++e) dp[e] = lb_scale * fg[e];
      if (k == 1) {
        dp[expert_index[t]] += dgate[t];
      } else {
        const int e1 = expert_index[2 * t], e2 = expert_index[2 * t + 1];
        const float p1 = p[e1], p2 = p[e2];
        const float s = p1 + p2 + 1e-9f;
        const float inv2 = 1.0f / (s * s);
        const float dg1 = dgate[2 * t], dg2 = dgate[2 * t + 1];
        // g1 = p1/s, g2 = p2/s with s = p1 + p2 + 1e-9.
        dp[e1] += (dg1 * (s - p1) - dg2 * p2) * inv2;
        dp[e2] += (dg2 * (s - p2) - dg1 * p1) * inv2;
      }
      float dot = 0.0f;
      for (int e = 0; e < E; ++e) dot += p[e] * dp[e];
      float* dl = dlogits + static_cast<int64_t>(t) * E;
      const float dz = z_scale * lse[t];
      for (int e = 0; e < E; ++e) dl[e] = p[e] * (dp[e] - dot) + dz * p[e];
    }
  });
  matmul(dw_router, x_router, dlogits, D, E, T, D, E, E, true, false, false);
  if (dx) {
    matmul(dx, dlogits, w_router, T, D, E, E, E, D, false, true, false);
    if (u) {
      const int64_t n = static_cast<int64_t>(T) * D;
      parallel_for(blocks_of(n, 4096), [&](int64_t b, int) {
        const int64_t end = std::min(n, (b + 1) * 4096);
        for (int64_t i = b * 4096; i < end; ++i) dx[i] *= u[i];
      });
    }
  }
}

}  // namespace st
