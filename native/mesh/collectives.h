// Collectives of a device mesh over the shared arena (SPEC §3).
// P = devices in the group, n = elements per peer (all-to-all, all-gather, reduce-scatter) or in
// the whole buffer (all-reduce, broadcast). Buffers are float32; the wire is float32 or bf16.
//
// Groups: ranks map to axis coordinates row-major (the last axis fastest). Kind 0 is the whole
// mesh; kind 1 + a groups the devices that share every coordinate except the one on axis a.
// Peers and roots are indices within the group.
//
// Protocol: every collective is a sequence of rounds. In round s a rank waits until its group
// peers have finished reading round s − 2 from it (two halves per slot: writing round s overlaps
// the peers reading round s − 1), writes its outgoing chunks into half s % 2 of its slot, publishes
// a header and its `posted` counter, reads what it needs from its peers' halves once their
// `posted` reaches s, and publishes its `consumed` counter. Every wait is a futex wait with a
// deadline, and notices a lost rank (the launcher marks it and wakes everyone).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "arena.h"

namespace st::mesh {

enum class Wire : uint32_t { float32 = 0, bf16 = 1 };

enum class Op : uint32_t {
  barrier = 1,
  broadcast = 2,
  all_reduce = 3,          // its reduce-scatter phase
  all_reduce_gather = 4,   // its all-gather phase
  all_gather = 5,
  reduce_scatter = 6,
  all_to_all = 7,
  all_to_allv = 8,
};
const char* op_name(Op op);

class MeshError : public std::runtime_error {
 public:
  enum class Kind { peer_lost, timeout, mismatch, argument };
  MeshError(Kind kind, int rank, const std::string& message) : std::runtime_error(message), kind(kind), rank(rank) {}
  Kind kind;
  int rank;   // the lost rank, the rank waited for, or the mismatching rank
};

struct Group {
  std::string name;        // "mesh" or "axis 'data'"
  std::vector<int> ranks;  // global ranks of the group, by index within the group
  int index = 0;           // this device's index within the group
  int size() const { return static_cast<int>(ranks.size()); }
};

// The group kind `kind` of `rank` on a mesh with these axis sizes.
Group group_of(const std::vector<int>& axis_sizes, int rank, int kind, const std::string& name);

struct WaitPolicy {
  int64_t spin_ns = 1000;        // busy-poll first (a peer a little behind is the common case)
  int64_t yield_ns = 1000000;    // then poll with sched_yield (the core goes to whoever can use it)
  int64_t slice_ns = 100000000;  // then sleep on the futex, re-checking the lost mark each slice
};

struct Stats {
  uint64_t calls = 0;
  double seconds = 0;        // inside collectives
  double wait_seconds = 0;   // of that, waiting for peers
  uint64_t bytes_sent = 0;   // written to the wire (this device's slot)
};

class Communicator {
 public:
  // axis_names: one per axis of the arena, for messages.
  Communicator(Arena& arena, int rank, const std::vector<std::string>& axis_names, int64_t timeout_ms);

  int rank() const { return rank_; }
  int size() const { return arena_.n_ranks(); }
  int n_kinds() const { return arena_.n_kinds(); }
  const Group& group(int kind) const { return groups_.at(static_cast<size_t>(kind)); }
  void set_timeout_ms(int64_t ms) { timeout_ns_ = ms * 1000000; }
  int64_t timeout_ms() const { return timeout_ns_ / 1000000; }
  WaitPolicy& wait_policy() { return policy_; }
  const Stats& stats() const { return stats_; }
  void reset_stats() { stats_ = Stats(); }

  void barrier(int kind);
  // buf: (n), the root's values on return everywhere (the root's own rounded too on a bf16 wire).
  void broadcast(int kind, float* buf, int64_t n, int root, Wire wire);
  // recv: (n)  send: (n); Σ over the group in group order; may be the same buffer.
  void all_reduce(int kind, float* recv, const float* send, int64_t n, Wire wire);
  // recv: (P, n)  send: (n)
  void all_gather(int kind, float* recv, const float* send, int64_t n, Wire wire);
  // recv: (n)  send: (P, n); recv = Σ_q send_q[this index]
  void reduce_scatter(int kind, float* recv, const float* send, int64_t n, Wire wire);
  // recv: (P, n)  send: (P, n); chunk p of send goes to peer p, chunk q of recv came from peer q.
  void all_to_all(int kind, float* recv, const float* send, int64_t n, Wire wire);
  // recv: (Σ recv_counts)  send: (Σ send_counts), packed in peer order.
  void all_to_allv(int kind, float* recv, const int64_t* recv_counts, const float* send, const int64_t* send_counts,
                   Wire wire);

  // Bump allocation of n floats in this device's heap (64-byte aligned), nullptr when it is full.
  // An all-to-all whose float32 send buffer lives there is read by the peers in place.
  float* alloc(int64_t n);
  bool in_heap(const void* p, size_t bytes) const;
  size_t heap_used() const { return heap_used_; }

  // Bytes-per-element-aware chunk: elements per peer per round when `parts` peers share a half.
  int64_t chunk_elements(int parts, Wire wire) const;

 private:
  struct Signature {
    Op op;
    Wire wire;
    uint64_t count;
    uint32_t root;
    uint64_t rounds;
  };
  uint32_t next_seq(int kind) { return ++seq_[static_cast<size_t>(kind)]; }
  uint8_t* begin_round(int kind, uint32_t s);
  void publish(int kind, uint32_t s, const Signature& sig, const int64_t* counts = nullptr, uint64_t direct = 0);
  const uint8_t* wait_posted(int kind, int peer, uint32_t s, const Signature& sig, bool check_rounds = true);
  void finish_round(int kind, uint32_t s);
  void wait_reached(Counter* counter, uint32_t target, int peer_rank, int kind, const char* what);
  [[noreturn]] void throw_lost(int kind);
  void check_kind(int kind) const;

  Arena& arena_;
  int rank_;
  std::vector<Group> groups_;
  std::vector<uint32_t> seq_;
  int64_t timeout_ns_;
  WaitPolicy policy_;
  Stats stats_;
  Op current_op_ = Op::barrier;
  std::vector<float> scratch_;
  size_t heap_used_ = 0;
};

}  // namespace st::mesh
