// A fixed pool of worker threads for the kernels.
//
// Determinism: kernels cut their work into tasks whose boundaries do not depend on the thread
// count, and each task writes its own outputs, so results are bit-identical whatever
// set_num_threads() says. The pool only decides which thread runs which task.
#pragma once

#include <cstdint>
#include <type_traits>

namespace st {

int num_threads();                 // threads a parallel_for may use (the caller included)
void set_num_threads(int n);       // 1 ... kMaxThreads; default: the hardware's cores
int hardware_threads();
constexpr int kMaxThreads = 256;

// Lightweight reference to a callable: fn(task, thread) with thread in [0, num_threads()).
class TaskFn {
 public:
  // The callable must outlive the parallel_for call (a lambda argument does).
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, TaskFn>>>
  TaskFn(F&& f)  // NOLINT: implicit on purpose
      : obj_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, int64_t task, int thread) { (*static_cast<std::remove_reference_t<F>*>(o))(task, thread); }) {}
  void operator()(int64_t task, int thread) const { call_(obj_, task, thread); }

 private:
  void* obj_;
  void (*call_)(void*, int64_t, int);
};

// Runs fn(task, thread) for every task in [0, n_tasks) and returns when all are done.
// Called from inside a task (or while another thread holds the pool) it runs the tasks inline.
void parallel_for(int64_t n_tasks, TaskFn fn);

}  // namespace st
