// The arena: memfd creation, the size table, mapping, and the lost/finished marks.
#include "arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include "sync.h"

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif

namespace st::mesh {

namespace {

size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

std::runtime_error sys_error(const char* what) {
  return std::runtime_error(std::string(what) + ": " + std::strerror(errno));
}

uint8_t* map_fd(int fd, size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) throw sys_error("mesh arena: mmap");
  return static_cast<uint8_t*>(p);
}

// Control block, counters and slots get their pages and page tables now, not by faults in the
// middle of the first collective; the heaps stay sparse until used.
void populate(uint8_t* base, size_t bytes) {
#ifdef MADV_POPULATE_WRITE
  madvise(base, bytes, MADV_POPULATE_WRITE);   // best effort (Linux 5.14+)
#else
  (void)base;
  (void)bytes;
#endif
}

}  // namespace

Layout layout_for(int n_ranks, int n_kinds, size_t slot_bytes, size_t heap_bytes) {
  Layout l;
  l.n_ranks = n_ranks;
  l.n_kinds = n_kinds;
  l.slot_bytes = slot_bytes;
  const size_t nk = static_cast<size_t>(n_ranks) * static_cast<size_t>(n_kinds);
  l.control_offset = 0;
  l.posted_offset = align_up(sizeof(Control), kCacheLine);
  l.consumed_offset = l.posted_offset + nk * sizeof(Counter);
  l.headers_offset = l.consumed_offset + nk * sizeof(Counter);
  l.slots_offset = align_up(l.headers_offset + nk * 2 * sizeof(RoundHeader), 4096);
  l.heap_bytes = heap_bytes;
  l.heaps_offset = l.slots_offset + nk * slot_bytes;
  l.total_bytes = l.heaps_offset + static_cast<size_t>(n_ranks) * heap_bytes;
  return l;
}

std::unique_ptr<Arena> Arena::create(const std::vector<int>& axis_sizes, size_t slot_bytes, size_t heap_bytes) {
  if (axis_sizes.empty() || axis_sizes.size() > static_cast<size_t>(kMaxAxes))
    throw std::invalid_argument("mesh arena: 1 to 4 axes");
  int64_t n = 1;
  for (int s : axis_sizes) {
    if (s < 1) throw std::invalid_argument("mesh arena: axis sizes must be positive");
    n *= s;
  }
  if (n > kMaxRanks) throw std::invalid_argument("mesh arena: at most 64 ranks");
  if (slot_bytes < kMinSlotBytes || slot_bytes > kMaxSlotBytes || slot_bytes % 4096 != 0)
    throw std::invalid_argument("mesh arena: slot bytes must be a multiple of 4096 in [64 KiB, 1 GiB]");
  if (heap_bytes > kMaxHeapBytes || heap_bytes % 4096 != 0)
    throw std::invalid_argument("mesh arena: heap bytes must be a multiple of 4096, at most 16 GiB");
  const int n_kinds = 1 + static_cast<int>(axis_sizes.size());
  const Layout layout = layout_for(static_cast<int>(n), n_kinds, slot_bytes, heap_bytes);

  const int fd = static_cast<int>(syscall(SYS_memfd_create, "switch-transformer-mesh", MFD_CLOEXEC));
  if (fd < 0) throw sys_error("mesh arena: memfd_create");
  if (ftruncate(fd, static_cast<off_t>(layout.total_bytes)) != 0) {
    const auto e = sys_error("mesh arena: ftruncate");
    close(fd);
    throw e;
  }
  uint8_t* base;
  try {
    base = map_fd(fd, layout.total_bytes);
  } catch (...) {
    close(fd);
    throw;
  }
  populate(base, layout.heaps_offset);
  std::unique_ptr<Arena> arena(new Arena(fd, base, layout));
  Control* c = arena->control();
  c->version = kArenaVersion;
  c->n_ranks = static_cast<uint32_t>(n);
  c->n_axes = static_cast<uint32_t>(axis_sizes.size());
  for (size_t a = 0; a < axis_sizes.size(); ++a) c->axis_size[a] = static_cast<uint32_t>(axis_sizes[a]);
  c->slot_bytes = slot_bytes;
  c->heap_bytes = heap_bytes;
  c->total_bytes = layout.total_bytes;
  store_seq(&c->magic, kArenaMagic);   // last: a reader that sees the magic sees the rest
  return arena;
}

std::unique_ptr<Arena> Arena::attach(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) throw sys_error("mesh arena: fstat of the inherited descriptor");
  if (static_cast<size_t>(st.st_size) < sizeof(Control)) throw std::runtime_error("mesh arena: descriptor too small");
  uint8_t* base = map_fd(fd, static_cast<size_t>(st.st_size));
  const Control* c = reinterpret_cast<const Control*>(base);
  const bool ok = load_seq(&c->magic) == kArenaMagic && c->version == kArenaVersion && c->n_axes >= 1 &&
                  c->n_axes <= static_cast<uint32_t>(kMaxAxes) && c->n_ranks >= 1 &&
                  c->n_ranks <= static_cast<uint32_t>(kMaxRanks) && c->total_bytes == static_cast<uint64_t>(st.st_size);
  if (!ok) {
    munmap(base, static_cast<size_t>(st.st_size));
    throw std::runtime_error("mesh arena: the inherited descriptor is not a mesh arena");
  }
  const Layout layout =
      layout_for(static_cast<int>(c->n_ranks), 1 + static_cast<int>(c->n_axes), c->slot_bytes, c->heap_bytes);
  if (layout.total_bytes != c->total_bytes) {
    munmap(base, static_cast<size_t>(st.st_size));
    throw std::runtime_error("mesh arena: inconsistent size table");
  }
  populate(base, layout.heaps_offset);
  return std::unique_ptr<Arena>(new Arena(fd, base, layout));
}

Arena::~Arena() {
  munmap(base_, layout_.total_bytes);
  close_fd();
}

void Arena::close_fd() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

std::vector<int> Arena::axis_sizes() const {
  std::vector<int> sizes;
  for (uint32_t a = 0; a < control()->n_axes; ++a) sizes.push_back(static_cast<int>(control()->axis_size[a]));
  return sizes;
}

Counter* Arena::posted(int rank, int kind) const {
  return reinterpret_cast<Counter*>(base_ + layout_.posted_offset) + rank * layout_.n_kinds + kind;
}

Counter* Arena::consumed(int rank, int kind) const {
  return reinterpret_cast<Counter*>(base_ + layout_.consumed_offset) + rank * layout_.n_kinds + kind;
}

RoundHeader* Arena::header(int rank, int kind, int half) const {
  return reinterpret_cast<RoundHeader*>(base_ + layout_.headers_offset) + (rank * layout_.n_kinds + kind) * 2 + half;
}

uint8_t* Arena::half(int rank, int kind, int half) const {
  return base_ + layout_.slots_offset +
         (static_cast<size_t>(rank) * layout_.n_kinds + kind) * layout_.slot_bytes + half * half_bytes();
}

bool Arena::mark_lost(int rank) {
  if (rank < 0 || rank >= n_ranks()) return false;
  uint32_t expected = 0;
  const bool first = __atomic_compare_exchange_n(&control()->lost, &expected, static_cast<uint32_t>(rank + 1), false,
                                                 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  store_seq(&control()->rank_state[rank], static_cast<uint32_t>(RankState::lost));
  wake_all();
  return first;
}

void Arena::mark_state(int rank, RankState state) {
  if (rank < 0 || rank >= n_ranks()) return;
  store_seq(&control()->rank_state[rank], static_cast<uint32_t>(state));
  if (state == RankState::finished || state == RankState::lost) wake_all();
}

RankState Arena::state(int rank) const { return static_cast<RankState>(load_seq(&control()->rank_state[rank])); }

int Arena::lost_rank() const { return static_cast<int>(load_seq(&control()->lost)) - 1; }

void Arena::wake_all() {
  for (int r = 0; r < n_ranks(); ++r)
    for (int k = 0; k < n_kinds(); ++k) {
      futex_wake_all(&posted(r, k)->value);
      futex_wake_all(&consumed(r, k)->value);
    }
}

}  // namespace st::mesh
