// exp for the softmaxes of the portable kernels (cross_entropy.cc, attention.cc): plain float
// arithmetic that the compiler vectorizes, where std::exp stays a scalar call. Internal linkage on
// purpose: an AVX2 translation unit must never share an inline definition with a portable one.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace st {
namespace {

// exp(x) for x <= 0 in plain float arithmetic that the compiler vectorizes (std::exp does not):
// x = n·ln2 + f·ln2 with n integer and |f| <= 1/2, 2^f by its degree-6 Taylor polynomial
// (relative error below 2e-7), 2^n through the exponent bits. Below −87 the result flushes to 0.
inline float exp_nonpositive(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kRound = 12582912.0f;  // 1.5 · 2^23: adding and subtracting it rounds to an integer
  x = std::max(x, -87.0f);
  const float t = x * kLog2e;
  const float n = (t + kRound) - kRound;
  const float f = t - n;
  float p = 1.540353039e-4f;
  p = p * f + 1.333355815e-3f;
  p = p * f + 9.618129108e-3f;
  p = p * f + 5.550410866e-2f;
  p = p * f + 2.402265070e-1f;
  p = p * f + 6.931471806e-1f;
  p = p * f + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

}  // namespace
}  // namespace st
