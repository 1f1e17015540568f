// The shared-memory arena of a device mesh: one unlinked memfd (nothing appears in /dev/shm, and
// the memory goes away with the last process that maps it), carved into named regions by a size
// table, the way the parameters of a model are carved out of one allocation.
// N = ranks (devices), K = group kinds (kind 0 = the whole mesh, kind 1 + a = axis a),
// S = slot bytes (each rank's staging slot for one group kind, two halves for double buffering),
// H = heap bytes (each rank's own shared buffers: a send buffer there is read by the peers in
// place, one copy instead of two).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace st::mesh {

constexpr int kMaxRanks = 64;
constexpr int kMaxAxes = 4;
constexpr int kMaxKinds = kMaxAxes + 1;
constexpr size_t kCacheLine = 64;
constexpr size_t kMinSlotBytes = 64 * 1024;     // two halves of 64 ranks × 16 floats at least
constexpr size_t kMaxSlotBytes = 1ull << 30;
constexpr size_t kMaxHeapBytes = 1ull << 34;
constexpr uint32_t kArenaMagic = 0x4853454du;    // "MESH"
constexpr uint32_t kArenaVersion = 2;

enum class RankState : uint32_t { starting = 0, running = 1, finished = 2, lost = 3 };

// Fixed header of the arena (offset 0). Written once by the creator, then read-only except for
// the `lost` word and the per-rank states.
struct alignas(kCacheLine) Control {
  uint32_t magic;
  uint32_t version;
  uint32_t n_ranks;
  uint32_t n_axes;
  uint32_t axis_size[kMaxAxes];
  uint64_t slot_bytes;
  uint64_t heap_bytes;
  uint64_t total_bytes;
  alignas(kCacheLine) uint32_t lost;               // 0, or the first lost rank + 1
  alignas(kCacheLine) uint32_t rank_state[kMaxRanks];  // RankState
  // Written by each device when it attaches: its process id, and whether it may read its peers'
  // memory with cross-memory attach (1 yes, 2 no, 0 not attached yet).
  alignas(kCacheLine) int32_t pid[kMaxRanks];
  uint32_t cross_memory[kMaxRanks];
};

// A futex word and the number of processes sleeping on it (so a writer skips the wake syscall
// when nobody sleeps). One cache line each: counters of different ranks never share a line.
struct alignas(kCacheLine) Counter {
  uint32_t value;
  uint32_t waiters;
};

// What a rank published in one round of a collective; readers check it against their own call,
// which is how mismatched calls (different collective, size, root or wire) are caught.
struct alignas(kCacheLine) RoundHeader {
  uint32_t seq;
  uint32_t op;
  uint32_t wire;
  uint32_t root;
  uint64_t count;
  uint64_t rounds;
  uint64_t direct;              // 0: the data is in the slot; else 1 + arena offset of byte direct_begin of the sender's buffer
  uint64_t direct_begin;        // bytes [direct_begin, direct_end) of the sender's buffer are read in place
  uint64_t direct_end;          // (the rest of each chunk is in the slot, where it would be anyway)
  uint64_t remote;              // 0, or the address of the sender's buffer in its own process (cross-memory attach)
  uint64_t counts[kMaxRanks];   // all-to-all with per-peer sizes: elements sent to each peer
};

// The size table: byte offsets of every region.
struct Layout {
  int n_ranks = 0;
  int n_kinds = 0;
  size_t slot_bytes = 0;
  size_t control_offset = 0;
  size_t posted_offset = 0;     // Counter[N][K]: rounds this rank has published
  size_t consumed_offset = 0;   // Counter[N][K]: rounds this rank has finished reading
  size_t headers_offset = 0;    // RoundHeader[N][K][2]
  size_t slots_offset = 0;      // uint8_t[N][K][S], page aligned
  size_t heap_bytes = 0;
  size_t heaps_offset = 0;      // uint8_t[N][H], page aligned
  size_t total_bytes = 0;
};

Layout layout_for(int n_ranks, int n_kinds, size_t slot_bytes, size_t heap_bytes);

class Arena {
 public:
  // Creates the memfd, sizes and maps it, and writes the control block (the launcher does this).
  static std::unique_ptr<Arena> create(const std::vector<int>& axis_sizes, size_t slot_bytes, size_t heap_bytes);
  // Maps an arena from an inherited descriptor and checks its control block (a device does this).
  static std::unique_ptr<Arena> attach(int fd);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  int fd() const { return fd_; }
  void close_fd();   // the mapping stays valid without it

  const Layout& layout() const { return layout_; }
  int n_ranks() const { return layout_.n_ranks; }
  int n_kinds() const { return layout_.n_kinds; }
  std::vector<int> axis_sizes() const;
  Control* control() const { return reinterpret_cast<Control*>(base_); }
  Counter* posted(int rank, int kind) const;
  Counter* consumed(int rank, int kind) const;
  RoundHeader* header(int rank, int kind, int half) const;
  uint8_t* half(int rank, int kind, int half) const;
  size_t half_bytes() const { return layout_.slot_bytes / 2; }
  uint8_t* heap(int rank) const { return base_ + layout_.heaps_offset + static_cast<size_t>(rank) * layout_.heap_bytes; }
  size_t heap_bytes() const { return layout_.heap_bytes; }
  uint8_t* base() const { return base_; }

  // Marks a rank lost (died, threw, or broke the protocol); the first one is remembered as the
  // cause. Wakes every sleeper so that its wait notices. Returns true for the first lost rank.
  bool mark_lost(int rank);
  void mark_state(int rank, RankState state);
  RankState state(int rank) const;
  int lost_rank() const;   // -1 when none
  void wake_all();

 private:
  Arena(int fd, uint8_t* base, const Layout& layout) : fd_(fd), base_(base), layout_(layout) {}
  int fd_;
  uint8_t* base_;
  Layout layout_;
};

}  // namespace st::mesh
