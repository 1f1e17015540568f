// Synchronisation on the shared arena: 32-bit counters that only grow (modulo 2^32), waited on
// with futexes (shared, not private: the words live in memory mapped by several processes).
#pragma once

#include <cstdint>

#include "arena.h"

namespace st::mesh {

inline uint32_t load_acquire(const uint32_t* word) { return __atomic_load_n(word, __ATOMIC_ACQUIRE); }
inline uint32_t load_seq(const uint32_t* word) { return __atomic_load_n(word, __ATOMIC_SEQ_CST); }
inline void store_seq(uint32_t* word, uint32_t v) { __atomic_store_n(word, v, __ATOMIC_SEQ_CST); }

// a ≥ b on counters that may wrap around.
inline bool reached(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) >= 0; }

// Sleeps while *word == expected, at most timeout_ns. Returns on a wake, a change or the timeout.
void futex_wait(uint32_t* word, uint32_t expected, int64_t timeout_ns);
void futex_wake_all(uint32_t* word);

// Publishes a new value and wakes the sleepers, if any.
void counter_publish(Counter* counter, uint32_t value);

int64_t now_ns();

// A cheaper clock for what a collective measures on its fast path (its spin phase and its own
// time): the time-stamp counter where the CPU says it is invariant (x86-64; 14 ns a read here
// against 36 ns for clock_gettime, and a 1 KiB all-to-all reads it four times), else now_ns.
// Only differences of ticks mean anything; ticks_per_ns converts them (calibrated once per process).
int64_t ticks();
double ticks_per_ns();

}  // namespace st::mesh
