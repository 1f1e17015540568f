#include "threadpool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace st {

namespace {

thread_local bool t_inside_pool = false;

// Back-to-back kernel calls (a layer's matmuls, one after another) find their workers still
// spinning instead of asleep: a futex wake-up costs tens of microseconds, as much as a small
// matmul. About 30 µs of PAUSE, then the condition variable.
constexpr int kSpins = 2000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

class Pool {
 public:
  Pool() : threads_(std::max(1, hardware_threads())) {}
  ~Pool() { stop_workers(); }

  int threads() const { return threads_; }

  void resize(int n) {
    std::lock_guard<std::mutex> run(run_mutex_);
    stop_workers();
    threads_ = n;
  }

  void run(int64_t n_tasks, TaskFn fn) {
    if (n_tasks <= 0) return;
    std::unique_lock<std::mutex> run(run_mutex_, std::try_to_lock);
    if (!run.owns_lock() || t_inside_pool || threads_ == 1 || n_tasks == 1) {
      run_inline(n_tasks, fn);
      return;
    }
    start_workers();
    const int helpers = static_cast<int>(std::min<int64_t>(threads_ - 1, n_tasks - 1));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &fn;
      job_tasks_ = n_tasks;
      next_task_.store(0, std::memory_order_relaxed);
      job_helpers_ = helpers;
      pending_.store(helpers, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    t_inside_pool = true;
    work(fn, n_tasks, 0);
    t_inside_pool = false;
    for (int i = 0; i < kSpins && pending_.load(std::memory_order_acquire) != 0; ++i) cpu_relax();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    job_ = nullptr;
  }

 private:
  void run_inline(int64_t n_tasks, TaskFn fn) {
    const bool was_inside = t_inside_pool;
    t_inside_pool = true;
    for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
    t_inside_pool = was_inside;
  }

  void work(TaskFn fn, int64_t n_tasks, int thread) {
    for (;;) {
      const int64_t t = next_task_.fetch_add(1, std::memory_order_relaxed);
      if (t >= n_tasks) break;
      fn(t, thread);
    }
  }

  void start_workers() {
    if (static_cast<int>(workers_.size()) == threads_ - 1) return;
    stop_workers();
    stopping_.store(false);
    const uint64_t current = generation_.load();  // new workers wait for the next job, not an old one
    for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, i, current] { worker_loop(i, current); });
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_.store(true);
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  void worker_loop(int index, uint64_t seen) {
    t_inside_pool = true;
    for (;;) {
      for (int i = 0; i < kSpins && generation_.load(std::memory_order_acquire) == seen && !stopping_.load(); ++i)
        cpu_relax();
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_.load() || generation_.load() != seen; });
      if (stopping_.load()) return;
      seen = generation_.load();
      if (index > job_helpers_) continue;  // this job needs fewer helpers
      TaskFn fn = *job_;
      const int64_t n = job_tasks_;
      lock.unlock();
      work(fn, n, index);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> done_lock(mutex_);
        done_.notify_one();
      }
    }
  }

  int threads_;
  std::mutex run_mutex_;  // one job at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> generation_{0};
  TaskFn* job_ = nullptr;
  int64_t job_tasks_ = 0;
  int job_helpers_ = 0;
  std::atomic<int> pending_{0};
  std::atomic<int64_t> next_task_{0};
};

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(std::min<unsigned>(n, kMaxThreads));
}

int num_threads() { return pool().threads(); }

void set_num_threads(int n) { pool().resize(std::clamp(n, 1, kMaxThreads)); }

void parallel_for(int64_t n_tasks, TaskFn fn) { pool().run(n_tasks, fn); }

}  // namespace st
