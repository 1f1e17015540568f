// What the matmul tests share: the tolerance of a float32 product against its float64-accumulated
// reference. K = depth of the product.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>

namespace st::test {

// got vs want elementwise, |got - want| <= tol · magnitude (+ a floor for tiny values), where
// magnitude is |A|·|B| at that element; prints the first few mismatches, returns their count.
inline int compare(const float* got, const float* want, const float* magnitude, int rows, int cols, int64_t ld, int K,
                   const char* what) {
  const double tol = (K + 16) * std::ldexp(1.0, -22);
  int bad = 0;
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) {
      const int64_t at = i * ld + j;
      const double diff = std::fabs(static_cast<double>(got[at]) - want[at]);
      if (!(diff <= tol * magnitude[at] + 1e-30)) {
        if (++bad <= 3)
          std::fprintf(stderr, "  %s: [%d,%d] got %g want %g (magnitude %g)\n", what, i, j, got[at], want[at],
                       magnitude[at]);
      }
    }
  return bad;
}

}  // namespace st::test
