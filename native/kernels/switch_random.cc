// Seeded initialisation (switch_random.h). n = elements.
#include "switch_random.h"

#include <algorithm>
#include <cmath>

#include "threadpool.h"

namespace st {

void truncated_normal_fill(float* dst, int64_t n, float sigma, uint64_t key) {
  constexpr int64_t kBlock = 4096;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  parallel_for(blocks, [&](int64_t b, int) {
    const int64_t end = std::min(n, (b + 1) * kBlock);
    for (int64_t i = b * kBlock; i < end; ++i) {
      // Box-Muller on attempt a; a draw beyond 2σ is redrawn with the next attempt (P ≈ 0.046).
      double z = 0.0;
      for (uint64_t a = 0; a < 64; ++a) {
        const uint64_t base = (static_cast<uint64_t>(i) << 7) | (a << 1);
        const double u1 = (static_cast<double>(random_uniform(key, base)) * 16777216.0 + 1.0) / 16777216.0;  // (0, 1]
        const double u2 = random_uniform(key, base | 1);
        z = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
        if (std::fabs(z) <= 2.0) break;
        z = 0.0;
      }
      dst[i] = static_cast<float>(z * sigma);
    }
  });
}

}  // namespace st
