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
  enum class Kind { peer_lost, timeout, mismatch, argument, system };
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
  uint64_t bytes_read_in_place = 0;   // of what arrived: read from the sender's own buffer (heap or cross-memory attach)
  uint64_t bytes_cross_memory = 0;    // of those, by cross-memory attach
};

// The whole pages of a plain send buffer, moved into the device's shared heap at their own
// addresses (Communicator::adopt): user addresses [lo, hi) are arena bytes [offset, offset + hi − lo).
struct Adopted {
  uintptr_t lo = 0;
  uintptr_t hi = 0;
  uint64_t arena_offset = 0;
};

class Communicator {
 public:
  // axis_names: one per axis of the arena, for messages. cross_memory: this process may read its
  // peers' memory (process_vm_readv; see probe_cross_memory); published in the arena, and a float32
  // all-to-all from plain memory is then read by the peers in place when every peer of the group may.
  Communicator(Arena& arena, int rank, const std::vector<std::string>& axis_names, int64_t timeout_ms,
               bool cross_memory = false);

  int rank() const { return rank_; }
  int size() const { return arena_.n_ranks(); }
  int n_kinds() const { return arena_.n_kinds(); }
  const Group& group(int kind) const { return groups_.at(static_cast<size_t>(kind)); }
  void set_timeout_ms(int64_t ms) { timeout_ns_ = ms * 1000000; }
  int64_t timeout_ms() const { return timeout_ns_ / 1000000; }
  WaitPolicy& wait_policy() { return policy_; }
  Stats stats() const;
  void reset_stats() {
    stats_ = Stats();
    busy_ticks_ = wait_ticks_ = 0;
  }

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
  // adopted: send's pages in the shared heap (or nullptr): read by the peers in place.
  void all_to_all(int kind, float* recv, const float* send, int64_t n, Wire wire, const Adopted* adopted = nullptr);
  // recv: (Σ recv_counts)  send: (Σ send_counts), packed in peer order.
  void all_to_allv(int kind, float* recv, const int64_t* recv_counts, const float* send, const int64_t* send_counts,
                   Wire wire);

  // Bump allocation of n floats in this device's heap (64-byte aligned), nullptr when it is full.
  // An all-to-all whose float32 send buffer lives there is read by the peers in place.
  float* alloc(int64_t n);
  bool in_heap(const void* p, size_t bytes) const;
  // Moves the whole pages inside [p, p + bytes) into this device's heap, keeping their addresses
  // and contents: copies them there, then maps those heap pages over them. The peers can then read
  // a plain buffer in place like one from alloc(). False (nothing changed) when there are no whole
  // pages, the heap is full or the system refuses; the heap pages stay taken for good either way
  // once mapped (the buffer's memory may outlive the buffer inside the allocator).
  bool adopt(const void* p, size_t bytes, Adopted* out);
  size_t heap_used() const { return heap_used_; }

  // Chunks of at least this many bytes per peer go by cross-memory attach (below it, the system
  // call costs more than the second copy it saves).
  void set_cross_memory_min_bytes(size_t bytes) { cross_memory_min_bytes_ = bytes; }
  bool cross_memory() const { return cross_memory_; }

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
  void publish(int kind, uint32_t s, const Signature& sig, const int64_t* counts = nullptr, uint64_t direct = 0,
               uint64_t remote = 0, uint64_t direct_begin = 0, uint64_t direct_end = 0);
  const uint8_t* wait_posted(int kind, int peer, uint32_t s, const Signature& sig, bool check_rounds = true);
  void finish_round(int kind, uint32_t s);
  // dst (len) = Σ over the group, in group order, of this device's part of round s: its own from
  // `mine`, each peer's from its slot at this device's sub-slot (`sub` bytes apart).
  void reduce_round(int kind, uint32_t s, const Signature& sig, float* dst, const float* mine, int64_t len, size_t sub,
                    Wire wire);
  void wait_reached(Counter* counter, uint32_t target, int peer_rank, int kind, const char* what,
                    const uint32_t* early = nullptr);
  [[noreturn]] void throw_lost(int kind);
  bool group_cross_memory(int kind);
  // recv: (n) ← n floats at `address` in the peer's process (cross-memory attach).
  void read_remote(int kind, int peer_rank, float* recv, uint64_t address, int64_t n);
  void wait_all_consumed(int kind, uint32_t s);
  void check_kind(int kind) const;

  Arena& arena_;
  int rank_;
  std::vector<Group> groups_;
  std::vector<uint32_t> seq_;
  std::vector<uint32_t> seen_posted_;   // [kind][rank]: the last round of that peer this device saw published
  int64_t timeout_ns_;
  WaitPolicy policy_;
  Stats stats_;
  int64_t busy_ticks_ = 0;   // Stats::seconds and wait_seconds, counted in ticks() (sync.h)
  int64_t wait_ticks_ = 0;
  Op current_op_ = Op::barrier;
  std::vector<const uint8_t*> inputs_;   // reduce_round: each peer's part of the round
  size_t heap_used_ = 0;
  bool cross_memory_ = false;
  size_t cross_memory_min_bytes_ = 32 * 1024;
  std::vector<uint8_t> group_cross_memory_;   // per kind: every peer has said yes (cached once true)
};

// The address and value of a word in this process that a child may read back with
// cross-memory attach to learn whether the system lets it (ptrace rules, seccomp).
uint64_t cross_memory_probe_address();
// True when `pid`'s word at `address` reads back as the probe value.
bool probe_cross_memory(int pid, uint64_t address);

}  // namespace st::mesh
