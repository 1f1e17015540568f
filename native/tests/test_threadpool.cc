// The thread pool runs every task exactly once, whatever the thread count, and nests safely.
#include <atomic>
#include <vector>

#include "check.h"
#include "kernels/threadpool.h"

int main() {
  for (int threads : {1, 2, 3, 8}) {
    st::set_num_threads(threads);
    ST_CHECK(st::num_threads() == threads, "num_threads %d", st::num_threads());
    for (int64_t n : {0, 1, 2, 7, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::atomic<int> bad_thread{0};
      st::parallel_for(n, [&](int64_t t, int thread) {
        hits[static_cast<size_t>(t)].fetch_add(1);
        if (thread < 0 || thread >= threads) bad_thread.store(1);
        // A nested call runs inline on the same thread.
        std::atomic<int> inner{0};
        st::parallel_for(3, [&](int64_t, int) { inner.fetch_add(1); });
        if (inner.load() != 3) bad_thread.store(2);
      });
      for (int64_t t = 0; t < n; ++t)
        ST_CHECK(hits[static_cast<size_t>(t)].load() == 1, "threads %d n %lld task %lld ran %d times", threads,
                 static_cast<long long>(n), static_cast<long long>(t), hits[static_cast<size_t>(t)].load());
      ST_CHECK(bad_thread.load() == 0, "thread index or nesting wrong: %d", bad_thread.load());
    }
  }
  return st::test::summary("threadpool");
}
