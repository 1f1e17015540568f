// Dispatch and combine (switch_dispatch.h). T = tokens, D = d_model, k = choices, R = rows.
#include "switch_dispatch.h"

#include <algorithm>
#include <cstring>

#include "bf16.h"
#include "threadpool.h"

namespace st {

namespace {
constexpr int64_t kRowBlock = 32;
int64_t blocks_of(int64_t n, int64_t block) { return (n + block - 1) / block; }
}  // namespace

void switch_dispatch_forward(float* buffer, const float* x, const int32_t* row_token, int64_t R, int D,
                             bool round_wire) {
  parallel_for(blocks_of(R, kRowBlock), [&](int64_t b, int) {
    for (int64_t i = b * kRowBlock; i < std::min(R, (b + 1) * kRowBlock); ++i) {
      float* out = buffer + i * D;
      const int32_t t = row_token[i];
      if (t < 0) {
        std::memset(out, 0, sizeof(float) * D);
      } else if (round_wire) {
        bf16_round(out, x + static_cast<int64_t>(t) * D, D);
      } else {
        std::memcpy(out, x + static_cast<int64_t>(t) * D, sizeof(float) * D);
      }
    }
  });
}

void switch_dispatch_backward(float* dx, const float* dbuffer, const int32_t* row, int T, int k, int D,
                              bool round_wire, bool accumulate) {
  parallel_for(blocks_of(T, kRowBlock), [&](int64_t b, int) {
    float* wire = nullptr;
    float local[256];
    for (int t = static_cast<int>(b * kRowBlock); t < std::min<int64_t>(T, (b + 1) * kRowBlock); ++t) {
      float* out = dx + static_cast<int64_t>(t) * D;
      if (!accumulate) std::memset(out, 0, sizeof(float) * D);
      for (int j = 0; j < k; ++j) {
        const int32_t i = row[static_cast<int64_t>(t) * k + j];
        if (i < 0) continue;
        const float* src = dbuffer + static_cast<int64_t>(i) * D;
        // Round in chunks so no scratch allocation is needed per row.
        for (int d0 = 0; d0 < D; d0 += 256) {
          const int n = std::min(256, D - d0);
          const float* s = src + d0;
          if (round_wire) {
            wire = local;
            bf16_round(wire, s, n);
            s = wire;
          }
          for (int d = 0; d < n; ++d) out[d0 + d] += s[d];
        }
      }
    }
  });
}

void switch_combine_forward(float* y, const float* expert_out, const float* gate, const int32_t* row, int T, int k,
                            int D) {
  parallel_for(blocks_of(T, kRowBlock), [&](int64_t b, int) {
    for (int t = static_cast<int>(b * kRowBlock); t < std::min<int64_t>(T, (b + 1) * kRowBlock); ++t) {
      float* out = y + static_cast<int64_t>(t) * D;
      std::memset(out, 0, sizeof(float) * D);
      for (int j = 0; j < k; ++j) {
        const int64_t c = static_cast<int64_t>(t) * k + j;
        if (row[c] < 0) continue;
        const float g = gate[c];
        const float* o = expert_out + static_cast<int64_t>(row[c]) * D;
        for (int d = 0; d < D; ++d) out[d] += g * o[d];
      }
    }
  });
}

void switch_combine_backward(float* dgate, float* dexpert_out, const float* dy, const float* expert_out,
                             const float* gate, const int32_t* row_choice, int T, int k, int64_t R, int D,
                             bool round_wire) {
  std::fill(dgate, dgate + static_cast<int64_t>(T) * k, 0.0f);
  parallel_for(blocks_of(R, kRowBlock), [&](int64_t b, int) {
    for (int64_t i = b * kRowBlock; i < std::min(R, (b + 1) * kRowBlock); ++i) {
      float* out = dexpert_out + i * D;
      const int32_t c = row_choice[i];
      if (c < 0) {
        std::memset(out, 0, sizeof(float) * D);
        continue;
      }
      const float* dyt = dy + static_cast<int64_t>(c / k) * D;
      const float* o = expert_out + i * D;
      const float g = gate[c];
      float dot = 0.0f;
      for (int d = 0; d < D; ++d) {
        dot += dyt[d] * o[d];
        out[d] = g * dyt[d];
      }
      if (round_wire) bf16_round(out, out, D);
      dgate[c] = dot;  // each choice owns at most one row: no two tasks write the same element
    }
  });
}

}  // namespace st
