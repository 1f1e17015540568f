// Timing for the benchmarks: warm-up runs, then the median of timed repeats, measured in C++.
#pragma once

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <vector>

namespace st::bench {

struct Timing {
  double median_seconds;
  double min_seconds;
  int repeats;
};

// Seconds on the steady clock, or with ST_BENCH_CPU_TIME=1 in the environment the CPU time of the
// process (all its threads): on a shared machine the wall clock of a one-thread run counts the time
// other jobs hold the core, its CPU time does not (spinning threads still count).
inline double bench_clock() {
  static const bool cpu = std::getenv("ST_BENCH_CPU_TIME") && std::getenv("ST_BENCH_CPU_TIME")[0] == '1';
  if (cpu) {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Runs fn() `warmup` times untimed, then times it until `repeats` runs and at least
// `min_total_seconds` have passed (at most max_repeats), and returns the median.
template <class F>
Timing time_median(F&& fn, int warmup = 2, int repeats = 7, double min_total_seconds = 0.2, int max_repeats = 1000) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> times;
  double total = 0;
  while (static_cast<int>(times.size()) < repeats || (total < min_total_seconds && static_cast<int>(times.size()) < max_repeats)) {
    const double t0 = bench_clock();
    fn();
    const double s = bench_clock() - t0;
    times.push_back(s);
    total += s;
  }
  std::sort(times.begin(), times.end());
  return {times[times.size() / 2], times.front(), static_cast<int>(times.size())};
}

}  // namespace st::bench
