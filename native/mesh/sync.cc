// Futex wait/wake on the shared arena.
#include "sync.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <climits>

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

}  // namespace st::mesh
