// Futex wait/wake on the shared arena.
#include "sync.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <climits>

#if defined(__x86_64__)
#include <cpuid.h>
#include <x86intrin.h>
#endif

namespace st::mesh {

void futex_wait(uint32_t* word, uint32_t expected, int64_t timeout_ns) {
  if (timeout_ns <= 0) return;
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(timeout_ns / 1000000000);
  ts.tv_nsec = static_cast<long>(timeout_ns % 1000000000);
  // EAGAIN (the word changed), EINTR (a signal) and ETIMEDOUT all mean: look again.
  syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futex_wake_all(uint32_t* word) { syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0); }

void counter_publish(Counter* counter, uint32_t value) {
  // Sequentially consistent on both sides (here: store value, load waiters; the sleeper: add
  // waiters, load value), so either the writer sees the sleeper or the sleeper sees the value.
  store_seq(&counter->value, value);
  if (load_seq(&counter->waiters) != 0) futex_wake_all(&counter->value);
}

int64_t now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

namespace {

bool invariant_tsc() {
#if defined(__x86_64__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0x80000000u, nullptr) < 0x80000007u) return false;
  __cpuid(0x80000007u, a, b, c, d);
  return (d >> 8) & 1u;   // the counter runs at a constant rate in every power state, on every core
#else
  return false;
#endif
}

const bool use_tsc = invariant_tsc();

// Ticks per nanosecond: the counter against CLOCK_MONOTONIC over 200 µs (once, on first use).
double calibrate() {
#if defined(__x86_64__)
  if (use_tsc) {
    const int64_t t0 = now_ns();
    const uint64_t c0 = __rdtsc();
    int64_t t1 = t0;
    while ((t1 = now_ns()) - t0 < 200000) {
    }
    const uint64_t c1 = __rdtsc();
    const double r = static_cast<double>(c1 - c0) / static_cast<double>(t1 - t0);
    if (r > 0.01) return r;
  }
#endif
  return 1.0;
}

}  // namespace

int64_t ticks() {
#if defined(__x86_64__)
  if (use_tsc) return static_cast<int64_t>(__rdtsc());
#endif
  return now_ns();
}

double ticks_per_ns() {
  static const double r = calibrate();
  return r;
}

}  // namespace st::mesh
