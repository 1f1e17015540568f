// A minimal test harness for the native tests: CHECK macros that count, and a summary line.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "../kernels/cpu.h"

namespace st::test {

// Every ISA the kernels have, in the order the tests run them. A test loop skips the ones this
// CPU or OS cannot run (set_active_isa fails); say so once, so a run without AVX-512 is visible.
inline const std::vector<st::Isa>& all_isas() {
  static const std::vector<st::Isa> isas = [] {
    const std::vector<st::Isa> list{st::Isa::portable, st::Isa::avx2, st::Isa::avx512};
    for (st::Isa isa : list)
      if (!st::isa_supported(isa)) std::printf("isa %s skipped: this CPU or OS cannot run it\n", st::isa_name(isa));
    return list;
  }();
  return isas;
}

inline int& failures() { static int n = 0; return n; }
inline int& checks() { static int n = 0; return n; }

// ST_TEST_QUICK=1 (the sanitizer run) asks for smaller sweeps.
inline bool quick() { const char* q = std::getenv("ST_TEST_QUICK"); return q && q[0] == '1'; }

// Fresh random inputs: a generator seeded anew each run.
inline std::mt19937& rng() {
  static std::mt19937 r(std::random_device{}());
  return r;
}

// Values in [-1, 1], never all zeros.
inline std::vector<float> random_floats(size_t n) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng());
  return v;
}

inline int random_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng()); }

inline std::vector<float> absolute(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = std::fabs(v[i]);
  return out;
}

inline int summary(const char* name) {
  std::printf("%s: %d checks, %d failed\n", name, checks(), failures());
  return failures() == 0 ? 0 : 1;
}

}  // namespace st::test

#define ST_CHECK(cond, ...)                                                   \
  do {                                                                        \
    ++::st::test::checks();                                                   \
    if (!(cond)) {                                                            \
      if (++::st::test::failures() <= 20) {                                   \
        std::fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
        std::fprintf(stderr, __VA_ARGS__);                                    \
        std::fprintf(stderr, "\n");                                           \
      }                                                                       \
    }                                                                         \
  } while (0)
