// Timing for the benchmarks: warm-up runs, then the median of timed repeats, measured in C++.
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

namespace st::bench {

struct Timing {
  double median_seconds;
  double min_seconds;
  int repeats;
};

// Runs fn() `warmup` times untimed, then times it until `repeats` runs and at least
// `min_total_seconds` have passed (at most max_repeats), and returns the median.
template <class F>
Timing time_median(F&& fn, int warmup = 2, int repeats = 7, double min_total_seconds = 0.2, int max_repeats = 1000) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> times;
  double total = 0;
  while (static_cast<int>(times.size()) < repeats || (total < min_total_seconds && static_cast<int>(times.size()) < max_repeats)) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    times.push_back(s);
    total += s;
  }
  std::sort(times.begin(), times.end());
  return {times[times.size() / 2], times.front(), static_cast<int>(times.size())};
}

}  // namespace st::bench
