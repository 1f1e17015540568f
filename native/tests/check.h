// A minimal test harness for the native tests: CHECK macros that count, and a summary line.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace st::test {

inline int& failures() { static int n = 0; return n; }
inline int& checks() { static int n = 0; return n; }

// ST_TEST_QUICK=1 (the sanitizer run) asks for smaller sweeps.
inline bool quick() { const char* q = std::getenv("ST_TEST_QUICK"); return q && q[0] == '1'; }

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
