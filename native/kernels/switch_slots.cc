// Slot assignment and dispatch plan (switch_slots.h).
// T = tokens, E = experts, k = choices, G = group size, C = capacity, R = rows.
#include "switch_slots.h"

#include <algorithm>
#include <vector>

#include "threadpool.h"

namespace st {

void switch_slots_forward(int32_t* slot, int32_t* counts, int32_t* expert_index, float* gate, const uint8_t* want,
                          const float* probs, int T, int k, int G, int E, int C, bool no_token_left_behind) {
  const int groups = T / G;
  parallel_for(groups, [&](int64_t g, int) {
    const int t0 = static_cast<int>(g) * G, t1 = t0 + G;
    // routed[e]: choices of the group routed to e so far (kept or not): the exclusive cumsum.
    std::vector<int32_t> routed(E, 0);
    for (int j = 0; j < k; ++j) {
      for (int t = t0; t < t1; ++t) {
        const int64_t c = static_cast<int64_t>(t) * k + j;
        if (!want[c]) {
          slot[c] = -1;
          continue;
        }
        const int32_t position = routed[expert_index[c]]++;
        slot[c] = position < C ? position : -1;
      }
    }
    int32_t* taken = counts + g * E;
    for (int e = 0; e < E; ++e) taken[e] = std::min(routed[e], C);
    if (!no_token_left_behind || k != 1) return;
    // Appendix B: the r-th best expert (r = 1, 2, 3) for every still dropped token, in token order.
    const int candidates = std::min(4, E);
    std::vector<int32_t> order(candidates);
    for (int r = 1; r < candidates; ++r) {
      for (int t = t0; t < t1; ++t) {
        if (slot[t] >= 0) continue;
        const float* p = probs + static_cast<int64_t>(t) * E;
        // The r-th largest probability, ties to the lowest index (the same order as the argmax).
        std::vector<uint8_t> used(E, 0);
        int e_r = -1;
        for (int q = 0; q <= r; ++q) {
          int best = -1;
          for (int e = 0; e < E; ++e)
            if (!used[e] && (best < 0 || p[e] > p[best])) best = e;
          used[best] = 1;
          e_r = best;
        }
        if (taken[e_r] < C) {
          slot[t] = taken[e_r]++;
          expert_index[t] = e_r;
          gate[t] = p[e_r];
        }
      }
    }
  });
}

int64_t switch_rows_count(const int32_t* counts, int T, int G, int E, int C, bool padded) {
  const int groups = T / G;
  if (padded) return static_cast<int64_t>(E) * groups * C;
  int64_t rows = 0;
  for (int64_t i = 0; i < static_cast<int64_t>(groups) * E; ++i) rows += counts[i];
  return rows;
}

void switch_rows_forward(int32_t* row, int32_t* offsets, int32_t* row_token, int32_t* row_choice,
                         const int32_t* expert_index, const int32_t* slot, const int32_t* counts, int T, int k, int G,
                         int E, int C, bool padded) {
  const int groups = T / G;
  // base[g·E + e]: the row of slot 0 of expert e in group g.
  std::vector<int64_t> base(static_cast<int64_t>(groups) * E);
  int64_t r = 0;
  for (int e = 0; e < E; ++e) {
    offsets[e] = static_cast<int32_t>(r);
    for (int g = 0; g < groups; ++g) {
      base[static_cast<int64_t>(g) * E + e] = r;
      r += padded ? C : counts[static_cast<int64_t>(g) * E + e];
    }
  }
  offsets[E] = static_cast<int32_t>(r);
  if (padded) {
    std::fill(row_token, row_token + r, -1);
    std::fill(row_choice, row_choice + r, -1);
  }
  for (int t = 0; t < T; ++t) {
    for (int j = 0; j < k; ++j) {
      const int64_t c = static_cast<int64_t>(t) * k + j;
      if (slot[c] < 0) {
        row[c] = -1;
        continue;
      }
      const int64_t i = base[static_cast<int64_t>(t / G) * E + expert_index[c]] + slot[c];
      row[c] = static_cast<int32_t>(i);
      row_token[i] = t;
      row_choice[i] = static_cast<int32_t>(c);
    }
  }
}

}  // namespace st
