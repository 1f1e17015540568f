// Collectives over the shared arena: the round protocol (collectives.h) and the six collectives.
#include "collectives.h"

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <emmintrin.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "../kernels/bf16.h"
#include "sync.h"

namespace st::mesh {

namespace {

size_t wire_bytes(Wire w) { return w == Wire::bf16 ? 2 : 4; }

// Float32 values onto the wire (bf16: rounded as SPEC §2, 16 bits each).
void to_wire(uint8_t* dst, const float* src, int64_t n, Wire w) {
  if (n <= 0) return;
  if (w == Wire::bf16)
    bf16_from_f32(reinterpret_cast<uint16_t*>(dst), src, n);
  else
    std::memcpy(dst, src, static_cast<size_t>(n) * 4);
}

void from_wire(float* dst, const uint8_t* src, int64_t n, Wire w) {
  if (n <= 0) return;
  if (w == Wire::bf16)
    bf16_to_f32(dst, reinterpret_cast<const uint16_t*>(src), n);
  else
    std::memcpy(dst, src, static_cast<size_t>(n) * 4);
}

// acc += wire values (the reduction of one contribution).
void add_from_wire(float* acc, const uint8_t* src, int64_t n, Wire w) {
  if (w == Wire::bf16) {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(src);
    for (int64_t i = 0; i < n; ++i) acc[i] += bf16_to_f32_scalar(h[i]);
  } else {
    const float* f = reinterpret_cast<const float*>(src);
    for (int64_t i = 0; i < n; ++i) acc[i] += f[i];
  }
}

// Per-peer chunks from this size on are copied with non-temporal stores: the receive buffer is far
// larger than the caches then, and streaming saves reading each destination line before writing it.
// (SWITCH_MESH_STREAM_BYTES overrides it, for tuning.)
int64_t stream_bytes() {
  static const int64_t bytes = [] {
    const char* v = std::getenv("SWITCH_MESH_STREAM_BYTES");
    return v ? static_cast<int64_t>(std::strtoll(v, nullptr, 10)) : int64_t{4} << 20;
  }();
  return bytes;
}

// memcpy with non-temporal stores (SSE2: every x86-64). dst and src may not overlap.
void copy_stream(void* dst, const void* src, size_t bytes) {
  uint8_t* d = static_cast<uint8_t*>(dst);
  const uint8_t* s = static_cast<const uint8_t*>(src);
  const size_t head = std::min(bytes, (16 - (reinterpret_cast<uintptr_t>(d) & 15)) & 15);
  std::memcpy(d, s, head);
  size_t i = head;
  for (; i + 64 <= bytes; i += 64) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 32));
    const __m128i e = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 48), e);
  }
  std::memcpy(d + i, s + i, bytes - i);
  _mm_sfence();   // weakly ordered: done before the round is published as consumed
}

// Rounds through bf16 as it copies (the receiving end of a bf16 wire read in place), streaming
// the stores like copy_stream.
void round_stream(float* dst, const float* src, int64_t n) {
  if (n <= 0) return;
  bf16_round_serial(dst, src, n, true);
}

// In-place reads pay a wait at the end (the sender returns once its readers are done); below
// this many bytes per peer the second copy through the slot is cheaper (with more devices than
// cores the wait is a context switch).
constexpr int64_t kDirectMinBytes = 8 * 1024;

void copy_f32(float* dst, const float* src, int64_t n, bool stream) {
  if (n <= 0) return;
  if (stream) copy_stream(dst, src, static_cast<size_t>(n) * 4);
  else std::memcpy(dst, src, static_cast<size_t>(n) * 4);
}

// What a device's own contribution looks like after crossing the wire (its chunk to itself is
// rounded like every other, so results do not depend on where data lives).
void self_copy(float* dst, const float* src, int64_t n, Wire w) {
  if (n <= 0) return;
  if (w == Wire::bf16)
    bf16_round(dst, src, n);
  else if (dst != src)
    std::memmove(dst, src, static_cast<size_t>(n) * 4);
}

void self_add(float* acc, const float* src, int64_t n, Wire w) {
  if (w == Wire::bf16) {
    // Rounded a block at a time by the SIMD kernel, then added: the same sums as rounding each
    // value on its own, which the compiler cannot vectorize (1.8× slower on a 256 KiB shard).
    constexpr int64_t kBlock = 2048;
    float rounded[kBlock];
    for (int64_t i = 0; i < n; i += kBlock) {
      const int64_t len = std::min(kBlock, n - i);
      bf16_round_serial(rounded, src + i, len, false);
      for (int64_t j = 0; j < len; ++j) acc[i + j] += rounded[j];
    }
  } else {
    for (int64_t i = 0; i < n; ++i) acc[i] += src[i];
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t clamp_len(int64_t total, int64_t off, int64_t c) { return std::max<int64_t>(0, std::min(c, total - off)); }

const char* wire_name(uint32_t w) { return w == static_cast<uint32_t>(Wire::bf16) ? "bf16" : "float32"; }

}  // namespace

const char* op_name(Op op) {
  switch (op) {
    case Op::barrier: return "barrier";
    case Op::broadcast: return "broadcast";
    case Op::all_reduce: return "allReduce";
    case Op::all_reduce_gather: return "allReduce";
    case Op::all_gather: return "allGather";
    case Op::reduce_scatter: return "reduceScatter";
    case Op::all_to_all: return "allToAll";
    case Op::all_to_allv: return "allToAllv";
  }
  return "collective";
}

Group group_of(const std::vector<int>& axis_sizes, int rank, int kind, const std::string& name) {
  const int n_axes = static_cast<int>(axis_sizes.size());
  int n = 1;
  for (int s : axis_sizes) n *= s;
  Group g;
  g.name = name;
  if (kind == 0) {
    for (int r = 0; r < n; ++r) g.ranks.push_back(r);
    g.index = rank;
    return g;
  }
  const int axis = kind - 1;
  // Row-major: the stride of an axis is the product of the sizes after it.
  int stride = 1;
  for (int a = n_axes - 1; a > axis; --a) stride *= axis_sizes[static_cast<size_t>(a)];
  const int coord = (rank / stride) % axis_sizes[static_cast<size_t>(axis)];
  const int base = rank - coord * stride;
  for (int c = 0; c < axis_sizes[static_cast<size_t>(axis)]; ++c) g.ranks.push_back(base + c * stride);
  g.index = coord;
  return g;
}

namespace {
// What a child reads back from its launcher to test cross-memory attach ("SWXMEMOK").
volatile uint64_t probe_word = 0x4b4f4d454d585753ull;
}  // namespace

uint64_t cross_memory_probe_address() { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(&probe_word)); }

bool probe_cross_memory(int pid, uint64_t address) {
  if (pid <= 0 || address == 0) return false;
  uint64_t value = 0;
  struct iovec local = {&value, sizeof(value)};
  struct iovec remote = {reinterpret_cast<void*>(static_cast<uintptr_t>(address)), sizeof(value)};
  return process_vm_readv(pid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(sizeof(value)) &&
         value == probe_word;
}

Communicator::Communicator(Arena& arena, int rank, const std::vector<std::string>& axis_names, int64_t timeout_ms,
                           bool cross_memory)
    : arena_(arena), rank_(rank), timeout_ns_(timeout_ms * 1000000), cross_memory_(cross_memory) {
  if (rank < 0 || rank >= arena.n_ranks()) throw std::invalid_argument("mesh: rank out of range");
  const std::vector<int> sizes = arena.axis_sizes();
  for (int k = 0; k < arena.n_kinds(); ++k) {
    std::string name = "mesh";
    if (k > 0)
      name = "axis '" + (static_cast<size_t>(k - 1) < axis_names.size() ? axis_names[static_cast<size_t>(k - 1)]
                                                                          : std::to_string(k - 1)) + "'";
    groups_.push_back(group_of(sizes, rank, k, name));
    // Resume from what the arena says (a fresh arena: 0).
    seq_.push_back(load_seq(&arena.posted(rank, k)->value));
  }
  group_cross_memory_.assign(static_cast<size_t>(arena.n_kinds()), 0);
  seen_posted_.assign(static_cast<size_t>(arena.n_kinds() * arena.n_ranks()), 0);
  ticks_per_ns();   // calibrated now (200 µs), not inside the first wait
  Control* c = arena.control();
  __atomic_store_n(&c->pid[rank], static_cast<int32_t>(getpid()), __ATOMIC_SEQ_CST);
  store_seq(&c->cross_memory[rank], cross_memory ? 1u : 2u);
  arena.mark_state(rank, RankState::running);
}

void Communicator::check_kind(int kind) const {
  if (kind < 0 || kind >= arena_.n_kinds()) throw MeshError(MeshError::Kind::argument, rank_, "mesh: unknown group kind");
}

int64_t Communicator::chunk_elements(int parts, Wire wire) const {
  const int64_t c = static_cast<int64_t>(arena_.half_bytes() / static_cast<size_t>(parts) / wire_bytes(wire));
  return c / 16 * 16;   // 32- or 64-byte aligned sub-slots
}

void Communicator::throw_lost(int kind) {
  const int lost = arena_.lost_rank();
  throw MeshError(MeshError::Kind::peer_lost, lost,
                  "mesh: device rank " + std::to_string(lost) + " was lost; rank " + std::to_string(rank_) +
                      " cannot complete " + op_name(current_op_) + " over the " + group(kind).name);
}

void Communicator::wait_reached(Counter* counter, uint32_t target, int peer_rank, int kind, const char* what,
                                const uint32_t* early) {
  // `early`: a word on the line the caller reads next (the round header's seq, stored with release
  // after the header): polling it saves a cache miss per round over polling the counter.
  const uint32_t* poll = early ? early : &counter->value;
  if (reached(load_acquire(poll), target)) return;
  // The spin and yield phases run on ticks() (cheap); the sleep phase on now_ns, with the deadline
  // counted from the start of the wait.
  const int64_t start = ticks();
  const double per_ns = ticks_per_ns();
  const int64_t spin_end = static_cast<int64_t>(static_cast<double>(policy_.spin_ns) * per_ns);
  const int64_t yield_end = spin_end + static_cast<int64_t>(static_cast<double>(policy_.yield_ns) * per_ns);
  int64_t t = start;
  // Busy-poll, then yield, then sleep: a peer a few microseconds behind is the common case, but
  // with more devices than cores a spinning waiter steals the core its peer needs.
  while (t - start < spin_end) {
    // (A pause takes ~40 ns on recent cores: 8 of them between two looks at the clock.)
    for (int i = 0; i < 8; ++i) {
      if (reached(load_acquire(poll), target)) goto done;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
    t = ticks();
  }
  while (t - start < yield_end) {
    sched_yield();
    if (reached(load_acquire(poll), target)) goto done;
    t = ticks();
  }
  {
    int64_t now = now_ns();
    const int64_t deadline = now + timeout_ns_ - static_cast<int64_t>(static_cast<double>(t - start) / per_ns);
    for (;;) {
      if (arena_.lost_rank() >= 0) throw_lost(kind);
      if (arena_.state(peer_rank) == RankState::finished)
        throw MeshError(MeshError::Kind::peer_lost, peer_rank,
                        "mesh: device rank " + std::to_string(peer_rank) + " finished its program while rank " +
                            std::to_string(rank_) + " waits for it in " + op_name(current_op_) + " over the " +
                            group(kind).name + " (mismatched collectives)");
      now = now_ns();
      if (now >= deadline)
        throw MeshError(MeshError::Kind::timeout, peer_rank,
                        "mesh: rank " + std::to_string(rank_) + " timed out after " + std::to_string(timeout_ns_ / 1000000) +
                            " ms waiting for rank " + std::to_string(peer_rank) + " to " + what + " in " +
                            op_name(current_op_) + " over the " + group(kind).name);
      __atomic_add_fetch(&counter->waiters, 1, __ATOMIC_SEQ_CST);
      const uint32_t v = load_seq(&counter->value);
      if (!reached(v, target)) futex_wait(&counter->value, v, std::min(deadline - now, policy_.slice_ns));
      __atomic_sub_fetch(&counter->waiters, 1, __ATOMIC_SEQ_CST);
      if (reached(load_acquire(&counter->value), target)) break;
    }
  }
done:
  wait_ticks_ += ticks() - start;
}

Stats Communicator::stats() const {
  Stats s = stats_;
  const double per_ns = ticks_per_ns();
  s.seconds = static_cast<double>(busy_ticks_) / per_ns * 1e-9;
  s.wait_seconds = static_cast<double>(wait_ticks_) / per_ns * 1e-9;
  return s;
}

uint8_t* Communicator::begin_round(int kind, uint32_t s) {
  const Group& g = group(kind);
  // Half s % 2 held round s − 2; every peer must have finished reading it. A peer whose round
  // s − 1 this device has seen published has: it finished round s − 2 before it began s − 1 (and
  // the acquire load of its header's seq made that visible here). That saves reading the peer's
  // `consumed` line, a cache miss per peer per round, on every collective where each device waits
  // for all its peers (all but broadcast).
  for (int i = 1; i < g.size(); ++i) {
    const int q = g.ranks[static_cast<size_t>((g.index + i) % g.size())];
    if (reached(seen_posted_[static_cast<size_t>(kind * arena_.n_ranks() + q)], s - 1)) continue;
    wait_reached(arena_.consumed(q, kind), s - 2, q, kind, "finish reading");
  }
  return arena_.half(rank_, kind, static_cast<int>(s & 1));
}

float* Communicator::alloc(int64_t n) {
  const size_t bytes = (static_cast<size_t>(std::max<int64_t>(n, 1)) * 4 + kCacheLine - 1) / kCacheLine * kCacheLine;
  if (n < 0 || heap_used_ + bytes > arena_.heap_bytes()) return nullptr;
  float* p = reinterpret_cast<float*>(arena_.heap(rank_) + heap_used_);
  heap_used_ += bytes;
  return p;
}

bool Communicator::adopt(const void* p, size_t bytes, Adopted* out) {
  constexpr uintptr_t kPage = 4096;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p);
  const uintptr_t lo = (begin + kPage - 1) / kPage * kPage, hi = (begin + bytes) / kPage * kPage;
  if (hi <= lo) return false;
  const size_t size = hi - lo;
  const size_t at = (heap_used_ + kPage - 1) / kPage * kPage;
  if (at + size > arena_.heap_bytes()) return false;
  uint8_t* region = arena_.heap(rank_) + at;
  std::memcpy(region, reinterpret_cast<const void*>(lo), size);
  // A second mapping of the same shared pages, at the buffer's own addresses (it replaces the
  // private pages there); the arena's mapping of the region stays, for the protocol's offsets.
  void* moved = mremap(region, 0, size, MREMAP_MAYMOVE | MREMAP_FIXED, reinterpret_cast<void*>(lo));
  if (moved == MAP_FAILED) return false;   // the private pages are still in place, untouched
  heap_used_ = at + size;
  out->lo = lo;
  out->hi = hi;
  out->arena_offset = static_cast<uint64_t>(region - arena_.base());
  return true;
}

bool Communicator::in_heap(const void* p, size_t bytes) const {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  const uint8_t* heap = arena_.heap(rank_);
  return b >= heap && b + bytes <= heap + arena_.heap_bytes();
}

void Communicator::publish(int kind, uint32_t s, const Signature& sig, const int64_t* counts, uint64_t direct,
                           uint64_t remote, uint64_t direct_begin, uint64_t direct_end) {
  RoundHeader* h = arena_.header(rank_, kind, static_cast<int>(s & 1));
  h->op = static_cast<uint32_t>(sig.op);
  h->wire = static_cast<uint32_t>(sig.wire);
  h->root = sig.root;
  h->count = sig.count;
  h->rounds = sig.rounds;
  h->direct = direct;
  h->direct_begin = direct_begin;
  h->direct_end = direct_end;
  h->remote = remote;
  if (counts)
    for (int p = 0; p < group(kind).size(); ++p) h->counts[p] = static_cast<uint64_t>(counts[p]);
  __atomic_store_n(&h->seq, s, __ATOMIC_RELEASE);   // last: a reader that sees it sees the header and data
  counter_publish(arena_.posted(rank_, kind), s);   // for sleepers
}

const uint8_t* Communicator::wait_posted(int kind, int peer, uint32_t s, const Signature& sig, bool check_rounds) {
  const RoundHeader* h = arena_.header(peer, kind, static_cast<int>(s & 1));
  wait_reached(arena_.posted(peer, kind), s, peer, kind, "publish its data", &h->seq);
  const bool same = h->seq == s && h->op == static_cast<uint32_t>(sig.op) && h->wire == static_cast<uint32_t>(sig.wire) &&
                    h->root == sig.root && h->count == sig.count && (!check_rounds || h->rounds == sig.rounds);
  if (!same) {
    const std::string mine = std::string(op_name(sig.op)) + "(n=" + std::to_string(sig.count) + ", root=" +
                             std::to_string(sig.root) + ", wire=" + wire_name(static_cast<uint32_t>(sig.wire)) + ")";
    const std::string theirs = std::string(op_name(static_cast<Op>(h->op))) + "(n=" + std::to_string(h->count) +
                               ", root=" + std::to_string(h->root) + ", wire=" + wire_name(h->wire) + ")";
    // The rounds no longer line up: this device cannot go on, and its peers must not wait for it.
    arena_.mark_lost(rank_);
    throw MeshError(MeshError::Kind::mismatch, peer,
                    "mesh: mismatched collectives over the " + group(kind).name + ": rank " + std::to_string(rank_) +
                        " called " + mine + ", rank " + std::to_string(peer) + " called " + theirs);
  }
  seen_posted_[static_cast<size_t>(kind * arena_.n_ranks() + peer)] = s;
  return arena_.half(peer, kind, static_cast<int>(s & 1));
}

void Communicator::finish_round(int kind, uint32_t s) { counter_publish(arena_.consumed(rank_, kind), s); }

bool Communicator::group_cross_memory(int kind) {
  uint8_t& cached = group_cross_memory_[static_cast<size_t>(kind)];
  if (cached) return true;
  if (!cross_memory_) return false;
  // A peer that has not attached yet counts as no: this call stages, a later one will not.
  for (int r : group(kind).ranks)
    if (load_acquire(&arena_.control()->cross_memory[r]) != 1) return false;
  cached = 1;
  return true;
}

void Communicator::read_remote(int kind, int peer_rank, float* recv, uint64_t address, int64_t n) {
  const pid_t pid = static_cast<pid_t>(__atomic_load_n(&arena_.control()->pid[peer_rank], __ATOMIC_ACQUIRE));
  size_t done = 0;
  const size_t bytes = static_cast<size_t>(n) * 4;
  while (done < bytes) {
    struct iovec local = {reinterpret_cast<uint8_t*>(recv) + done, bytes - done};
    struct iovec remote = {reinterpret_cast<void*>(static_cast<uintptr_t>(address + done)), bytes - done};
    const ssize_t got = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (got > 0) {
      done += static_cast<size_t>(got);
      stats_.bytes_read_in_place += static_cast<uint64_t>(got);
      stats_.bytes_cross_memory += static_cast<uint64_t>(got);
      continue;
    }
    const int err = got < 0 ? errno : EFAULT;
    if (err == EINTR) continue;
    // A peer that is dying fails the read in several ways (ESRCH once it is gone; EFAULT or a
    // short read while its memory is torn down) before the launcher marks it lost: wait for the
    // mark (the launcher sets it within milliseconds), so that the lost peer is named as the cause
    // and not this device.
    const int64_t until = now_ns() + 1000000000;
    while (now_ns() < until) {
      if (arena_.lost_rank() >= 0) throw_lost(kind);
      usleep(1000);
    }
    if (arena_.state(peer_rank) == RankState::lost || (kill(pid, 0) != 0 && errno == ESRCH))
      throw MeshError(MeshError::Kind::peer_lost, peer_rank,
                      "mesh: device rank " + std::to_string(peer_rank) + " was lost; rank " + std::to_string(rank_) +
                          " cannot complete " + op_name(current_op_) + " over the " + group(kind).name);
    // The peers must not wait for a device that cannot go on.
    arena_.mark_lost(rank_);
    throw MeshError(MeshError::Kind::system, peer_rank,
                    "mesh: rank " + std::to_string(rank_) + " cannot read rank " + std::to_string(peer_rank) +
                        "'s buffer by cross-memory attach in " + op_name(current_op_) + ": " + std::strerror(err) +
                        " (SWITCH_MESH_CROSS_MEMORY=0 stages every chunk through shared memory instead)");
  }
}

void Communicator::wait_all_consumed(int kind, uint32_t s) {
  const Group& g = group(kind);
  for (int i = 1; i < g.size(); ++i) {
    const int q = g.ranks[static_cast<size_t>((g.index + i) % g.size())];
    wait_reached(arena_.consumed(q, kind), s, q, kind, "finish reading");
  }
}

// A scope that times a collective and checks the mesh is still whole before it starts.
#define ST_COLLECTIVE_BEGIN(op_value)                    \
  check_kind(kind);                                      \
  current_op_ = (op_value);                              \
  if (arena_.lost_rank() >= 0) throw_lost(kind);         \
  const int64_t collective_start = ticks();              \
  ++stats_.calls;
#define ST_COLLECTIVE_END() busy_ticks_ += ticks() - collective_start;

void Communicator::barrier(int kind) {
  ST_COLLECTIVE_BEGIN(Op::barrier)
  const Group& g = group(kind);
  const Signature sig{Op::barrier, Wire::float32, 0, 0, 1};
  const uint32_t s = next_seq(kind);
  begin_round(kind, s);
  publish(kind, s, sig);
  for (int i = 1; i < g.size(); ++i) wait_posted(kind, g.ranks[static_cast<size_t>((g.index + i) % g.size())], s, sig);
  finish_round(kind, s);
  ST_COLLECTIVE_END()
}

void Communicator::broadcast(int kind, float* buf, int64_t n, int root, Wire wire) {
  ST_COLLECTIVE_BEGIN(Op::broadcast)
  const Group& g = group(kind);
  const int64_t c = chunk_elements(1, wire);
  const int64_t rounds = std::max<int64_t>(1, ceil_div(n, c));
  const Signature sig{Op::broadcast, wire, static_cast<uint64_t>(n), static_cast<uint32_t>(root), static_cast<uint64_t>(rounds)};
  const bool is_root = g.index == root;
  if (is_root) self_copy(buf, buf, n, wire);
  for (int64_t k = 0; k < rounds; ++k) {
    const int64_t off = k * c, len = clamp_len(n, off, c);
    const uint32_t s = next_seq(kind);
    uint8_t* out = begin_round(kind, s);
    if (is_root) {
      to_wire(out, buf + off, len, wire);
      stats_.bytes_sent += static_cast<uint64_t>(len) * wire_bytes(wire);
    }
    publish(kind, s, sig);
    if (!is_root) {
      const uint8_t* in = wait_posted(kind, g.ranks[static_cast<size_t>(root)], s, sig);
      from_wire(buf + off, in, len, wire);
    }
    finish_round(kind, s);
  }
  ST_COLLECTIVE_END()
}

void Communicator::all_gather(int kind, float* recv, const float* send, int64_t n, Wire wire) {
  ST_COLLECTIVE_BEGIN(Op::all_gather)
  const Group& g = group(kind);
  const int P = g.size(), me = g.index;
  const int64_t c = chunk_elements(1, wire);
  const int64_t rounds = std::max<int64_t>(1, ceil_div(n, c));
  const Signature sig{Op::all_gather, wire, static_cast<uint64_t>(n), 0, static_cast<uint64_t>(rounds)};
  for (int64_t k = 0; k < rounds; ++k) {
    const int64_t off = k * c, len = clamp_len(n, off, c);
    const uint32_t s = next_seq(kind);
    uint8_t* out = begin_round(kind, s);
    to_wire(out, send + off, len, wire);
    stats_.bytes_sent += static_cast<uint64_t>(len) * wire_bytes(wire);
    publish(kind, s, sig);
    self_copy(recv + static_cast<int64_t>(me) * n + off, send + off, len, wire);
    for (int i = 1; i < P; ++i) {
      const int q = (me + i) % P;
      const uint8_t* in = wait_posted(kind, g.ranks[static_cast<size_t>(q)], s, sig);
      from_wire(recv + static_cast<int64_t>(q) * n + off, in, len, wire);
    }
    finish_round(kind, s);
  }
  ST_COLLECTIVE_END()
}

void Communicator::reduce_round(int kind, uint32_t s, const Signature& sig, float* dst, const float* mine, int64_t len,
                                size_t sub, Wire wire) {
  const Group& g = group(kind);
  const int P = g.size(), me = g.index;
  inputs_.assign(static_cast<size_t>(P), nullptr);
  for (int q = 0; q < P; ++q)
    if (q != me) inputs_[static_cast<size_t>(q)] = wait_posted(kind, g.ranks[static_cast<size_t>(q)], s, sig) + static_cast<size_t>(me) * sub;
  // A block at a time, so that the sum stays in L1 while every contribution is added to it (a
  // round's part is up to 1 MiB of float32 on a bf16 wire); dst may be mine (in place): each block
  // of mine is read before that block of dst is written.
  constexpr int64_t kBlock = 4096;
  float acc[kBlock];
  for (int64_t b = 0; b < len; b += kBlock) {
    const int64_t m = std::min(kBlock, len - b);
    // The fixed order: contributions summed in group order 0, 1, ..., P − 1.
    for (int q = 0; q < P; ++q) {
      if (q == me) {
        if (q == 0) self_copy(acc, mine + b, m, wire); else self_add(acc, mine + b, m, wire);
      } else {
        const uint8_t* in = inputs_[static_cast<size_t>(q)] + static_cast<size_t>(b) * wire_bytes(wire);
        if (q == 0) from_wire(acc, in, m, wire); else add_from_wire(acc, in, m, wire);
      }
    }
    std::memcpy(dst + b, acc, static_cast<size_t>(m) * 4);
  }
}

void Communicator::reduce_scatter(int kind, float* recv, const float* send, int64_t n, Wire wire) {
  ST_COLLECTIVE_BEGIN(Op::reduce_scatter)
  const Group& g = group(kind);
  const int P = g.size(), me = g.index;
  const int64_t c = chunk_elements(P, wire);
  const int64_t rounds = std::max<int64_t>(1, ceil_div(n, c));
  const Signature sig{Op::reduce_scatter, wire, static_cast<uint64_t>(n), 0, static_cast<uint64_t>(rounds)};
  const size_t sub = static_cast<size_t>(c) * wire_bytes(wire);
  for (int64_t k = 0; k < rounds; ++k) {
    const int64_t off = k * c, len = clamp_len(n, off, c);
    const uint32_t s = next_seq(kind);
    uint8_t* out = begin_round(kind, s);
    for (int p = 0; p < P; ++p)
      if (p != me) to_wire(out + static_cast<size_t>(p) * sub, send + static_cast<int64_t>(p) * n + off, len, wire);
    stats_.bytes_sent += static_cast<uint64_t>(len) * static_cast<uint64_t>(P - 1) * wire_bytes(wire);
    publish(kind, s, sig);
    reduce_round(kind, s, sig, recv + off, send + static_cast<int64_t>(me) * n + off, len, sub, wire);
    finish_round(kind, s);
  }
  ST_COLLECTIVE_END()
}

void Communicator::all_reduce(int kind, float* recv, const float* send, int64_t n, Wire wire) {
  ST_COLLECTIVE_BEGIN(Op::all_reduce)
  const Group& g = group(kind);
  const int P = g.size(), me = g.index;
  // Shard q of the buffer is [lo(q), lo(q + 1)); device q reduces it, then every device gathers.
  auto lo = [&](int q) { return n * q / P; };
  int64_t max_shard = 0;
  for (int q = 0; q < P; ++q) max_shard = std::max(max_shard, lo(q + 1) - lo(q));

  // Phase 1, reduce-scatter on the chosen wire (each contribution rounded before it is summed).
  {
    const int64_t c = chunk_elements(P, wire);
    const int64_t rounds = std::max<int64_t>(1, ceil_div(max_shard, c));
    const Signature sig{Op::all_reduce, wire, static_cast<uint64_t>(n), 0, static_cast<uint64_t>(rounds)};
    const size_t sub = static_cast<size_t>(c) * wire_bytes(wire);
    const int64_t my_lo = lo(me), my_len = lo(me + 1) - my_lo;
    for (int64_t k = 0; k < rounds; ++k) {
      const int64_t off = k * c;
      const uint32_t s = next_seq(kind);
      uint8_t* out = begin_round(kind, s);
      for (int p = 0; p < P; ++p) {
        if (p == me) continue;
        const int64_t len = clamp_len(lo(p + 1) - lo(p), off, c);
        to_wire(out + static_cast<size_t>(p) * sub, send + lo(p) + off, len, wire);
        stats_.bytes_sent += static_cast<uint64_t>(len) * wire_bytes(wire);
      }
      publish(kind, s, sig);
      reduce_round(kind, s, sig, recv + my_lo + off, send + my_lo + off, clamp_len(my_len, off, c), sub, wire);
      finish_round(kind, s);
    }
  }
  // Phase 2, all-gather of the reduced shards in float32: the sum is the result, not a
  // contribution, and rounding it again would make it differ from Σ bf16(x_q).
  {
    current_op_ = Op::all_reduce_gather;
    const int64_t c = chunk_elements(1, Wire::float32);
    const int64_t rounds = std::max<int64_t>(1, ceil_div(max_shard, c));
    const Signature sig{Op::all_reduce_gather, wire, static_cast<uint64_t>(n), 0, static_cast<uint64_t>(rounds)};
    for (int64_t k = 0; k < rounds; ++k) {
      const int64_t off = k * c;
      const uint32_t s = next_seq(kind);
      uint8_t* out = begin_round(kind, s);
      const int64_t len = clamp_len(lo(me + 1) - lo(me), off, c);
      to_wire(out, recv + lo(me) + off, len, Wire::float32);
      stats_.bytes_sent += static_cast<uint64_t>(len) * 4;
      publish(kind, s, sig);
      for (int i = 1; i < P; ++i) {
        const int q = (me + i) % P;
        const uint8_t* in = wait_posted(kind, g.ranks[static_cast<size_t>(q)], s, sig);
        from_wire(recv + lo(q) + off, in, clamp_len(lo(q + 1) - lo(q), off, c), Wire::float32);
      }
      finish_round(kind, s);
    }
    current_op_ = Op::all_reduce;
  }
  ST_COLLECTIVE_END()
}

void Communicator::all_to_all(int kind, float* recv, const float* send, int64_t n, Wire wire, const Adopted* adopted) {
  ST_COLLECTIVE_BEGIN(Op::all_to_all)
  const Group& g = group(kind);
  const int P = g.size(), me = g.index;
  const int64_t c = chunk_elements(P, wire);
  const int64_t rounds = std::max<int64_t>(1, ceil_div(n, c));
  const Signature sig{Op::all_to_all, wire, static_cast<uint64_t>(n), 0, static_cast<uint64_t>(rounds)};
  const size_t sub = static_cast<size_t>(c) * wire_bytes(wire);
  const size_t send_bytes = static_cast<size_t>(P) * static_cast<size_t>(n) * 4;
  // The send buffer is read by the peers in place (one copy instead of two; on a bf16 wire the
  // reader rounds as it copies) where it lives in this device's heap: bytes [d_begin, d_end) of it
  // (all of a buffer from alloc(), the whole pages of an adopted one; the rest goes through the
  // slot). Else, on the float32 wire, by cross-memory attach when the chunks are large enough to
  // pay for the system call. Either way it must stay untouched until every peer has read it; so
  // not in place (recv == send): this device would overwrite what a peer has yet to read.
  const uintptr_t send_at = reinterpret_cast<uintptr_t>(send);
  const bool apart = recv + static_cast<int64_t>(P) * n <= send || send + static_cast<int64_t>(P) * n <= recv;
  const bool in_place_ok = n * 4 >= kDirectMinBytes && P > 1 && apart;
  size_t d_begin = 0, d_end = 0;
  uint64_t direct_at = 0;
  if (in_place_ok && in_heap(send, send_bytes)) {
    d_end = send_bytes;
    direct_at = 1 + static_cast<uint64_t>(reinterpret_cast<const uint8_t*>(send) - arena_.base());
  } else if (in_place_ok && adopted && adopted->lo < send_at + send_bytes && adopted->hi > send_at) {
    d_begin = adopted->lo > send_at ? adopted->lo - send_at : 0;
    d_end = std::min<size_t>(send_bytes, adopted->hi - send_at);
    direct_at = 1 + adopted->arena_offset + (send_at + d_begin - adopted->lo);
  }
  const bool direct = direct_at != 0;
  const bool remote = in_place_ok && !direct && wire == Wire::float32 &&
                      static_cast<size_t>(std::min(n, c)) * 4 >= cross_memory_min_bytes_ && group_cross_memory(kind);
  const uint64_t remote_at = remote ? static_cast<uint64_t>(send_at) : 0;
  const bool stream = apart && n * 4 >= stream_bytes();
  uint32_t last = 0;
  for (int64_t k = 0; k < rounds; ++k) {
    const int64_t off = k * c, len = clamp_len(n, off, c);
    const uint32_t s = last = next_seq(kind);
    uint8_t* out = begin_round(kind, s);
    if (!remote)
      for (int p = 0; p < P; ++p) {
        if (p == me) continue;
        // Elements [a, b) of the send buffer; what is not read in place goes to the slot.
        uint8_t* to = out + static_cast<size_t>(p) * sub;
        const int64_t a = static_cast<int64_t>(p) * n + off, b = a + len;
        if (!direct) {
          to_wire(to, send + a, len, wire);
          continue;
        }
        const int64_t in_lo = static_cast<int64_t>(d_begin / 4), in_hi = static_cast<int64_t>(d_end / 4);
        if (a < std::min(b, in_lo)) to_wire(to, send + a, std::min(b, in_lo) - a, wire);
        const int64_t tail = std::max(a, in_hi);
        if (tail < b) to_wire(to + static_cast<size_t>(tail - a) * wire_bytes(wire), send + tail, b - tail, wire);
      }
    stats_.bytes_sent += static_cast<uint64_t>(len) * static_cast<uint64_t>(P - 1) * wire_bytes(wire);
    publish(kind, s, sig, nullptr, direct_at, remote_at, d_begin, d_end);
    // In place (recv == send) works: this round's chunks were packed before any is overwritten.
    if (stream && wire == Wire::float32)
      copy_f32(recv + static_cast<int64_t>(me) * n + off, send + static_cast<int64_t>(me) * n + off, len, true);
    else if (stream)
      round_stream(recv + static_cast<int64_t>(me) * n + off, send + static_cast<int64_t>(me) * n + off, len);
    else
      self_copy(recv + static_cast<int64_t>(me) * n + off, send + static_cast<int64_t>(me) * n + off, len, wire);
    for (int i = 1; i < P; ++i) {
      const int q = (me + i) % P;
      const int peer = g.ranks[static_cast<size_t>(q)];
      const uint8_t* in = wait_posted(kind, peer, s, sig) + static_cast<size_t>(me) * sub;
      const RoundHeader* h = arena_.header(peer, kind, static_cast<int>(s & 1));
      const int64_t a = static_cast<int64_t>(me) * n + off, b = a + len;
      float* dst = recv + static_cast<int64_t>(q) * n + off;
      if (h->direct != 0) {
        // The peer's float32 in place, rounded on the way on a bf16 wire (one pass: the values
        // are those a trip through bf16 gives); the parts outside its heap pages from the slot.
        const int64_t in_lo = static_cast<int64_t>(h->direct_begin / 4), in_hi = static_cast<int64_t>(h->direct_end / 4);
        const int64_t lo = std::max(a, in_lo), hi = std::min(b, in_hi);
        if (lo < hi) {
          const float* src = reinterpret_cast<const float*>(arena_.base() + (h->direct - 1)) + (lo - in_lo);
          if (wire == Wire::float32) copy_f32(dst + (lo - a), src, hi - lo, stream);
          else if (stream) round_stream(dst + (lo - a), src, hi - lo);
          else self_copy(dst + (lo - a), src, hi - lo, wire);
          stats_.bytes_read_in_place += static_cast<uint64_t>(hi - lo) * 4;
        }
        if (a < std::min(b, in_lo)) from_wire(dst, in, std::min(b, in_lo) - a, wire);
        const int64_t tail = std::max(a, in_hi);
        if (tail < b) from_wire(dst + (tail - a), in + static_cast<size_t>(tail - a) * wire_bytes(wire), b - tail, wire);
      } else if (h->remote != 0) {
        read_remote(kind, peer, dst, h->remote + static_cast<uint64_t>(a) * 4, len);
      } else {
        from_wire(dst, in, len, wire);
      }
    }
    finish_round(kind, s);
  }
  if (direct || remote) wait_all_consumed(kind, last);
  ST_COLLECTIVE_END()
}

void Communicator::all_to_allv(int kind, float* recv, const int64_t* recv_counts, const float* send,
                               const int64_t* send_counts, Wire wire) {
  ST_COLLECTIVE_BEGIN(Op::all_to_allv)
  const Group& g = group(kind);
  const int P = g.size(), me = g.index;
  std::vector<int64_t> send_at(static_cast<size_t>(P) + 1, 0), recv_at(static_cast<size_t>(P) + 1, 0);
  for (int p = 0; p < P; ++p) {
    send_at[static_cast<size_t>(p) + 1] = send_at[static_cast<size_t>(p)] + send_counts[p];
    recv_at[static_cast<size_t>(p) + 1] = recv_at[static_cast<size_t>(p)] + recv_counts[p];
  }
  if (send_counts[me] != recv_counts[me])
    throw MeshError(MeshError::Kind::argument, rank_,
                    "allToAllv: sendCounts[" + std::to_string(me) + "] = " + std::to_string(send_counts[me]) +
                        " but recvCounts[" + std::to_string(me) + "] = " + std::to_string(recv_counts[me]) +
                        " (this device's chunk to itself)");
  const int64_t c = chunk_elements(P, wire);
  const size_t sub = static_cast<size_t>(c) * wire_bytes(wire);
  // The round count depends on the largest count anywhere in the group, which every device learns
  // from the headers of the first round (they carry each sender's counts).
  const Signature sig{Op::all_to_allv, wire, 0, 0, 0};
  // Plain float32 memory is read by the peers in place (cross-memory attach) when the chunks are
  // large enough on average; the buffer then stays untouched until every peer has read it.
  int64_t to_peers = 0;
  for (int p = 0; p < P; ++p)
    if (p != me) to_peers += send_counts[p];
  const float* send_end = send + send_at[static_cast<size_t>(P)];
  const float* recv_end = recv + recv_at[static_cast<size_t>(P)];
  const bool apart = send_end <= recv || recv_end <= send;
  const bool remote = wire == Wire::float32 && P > 1 && apart &&
                      static_cast<size_t>(std::min(to_peers / (P - 1), c)) * 4 >= cross_memory_min_bytes_ &&
                      group_cross_memory(kind);
  const uint64_t remote_at = remote ? static_cast<uint64_t>(reinterpret_cast<uintptr_t>(send)) : 0;
  int64_t rounds = 1;
  uint32_t last = 0;
  for (int64_t k = 0; k < rounds; ++k) {
    const int64_t off = k * c;
    const uint32_t s = last = next_seq(kind);
    uint8_t* out = begin_round(kind, s);
    for (int p = 0; p < P; ++p) {
      if (p == me) continue;
      const int64_t len = clamp_len(send_counts[p], off, c);
      if (!remote) to_wire(out + static_cast<size_t>(p) * sub, send + send_at[static_cast<size_t>(p)] + off, len, wire);
      stats_.bytes_sent += static_cast<uint64_t>(len) * wire_bytes(wire);
    }
    publish(kind, s, sig, send_counts, 0, remote_at);
    self_copy(recv + recv_at[static_cast<size_t>(me)] + off, send + send_at[static_cast<size_t>(me)] + off,
              clamp_len(send_counts[me], off, c), wire);
    int64_t largest = 0;
    for (int p = 0; p < P; ++p) largest = std::max(largest, send_counts[p]);
    for (int i = 1; i < P; ++i) {
      const int q = (me + i) % P;
      const int peer = g.ranks[static_cast<size_t>(q)];
      const uint8_t* in = wait_posted(kind, peer, s, sig, false);
      const RoundHeader* h = arena_.header(peer, kind, static_cast<int>(s & 1));
      if (k == 0) {
        if (static_cast<int64_t>(h->counts[me]) != recv_counts[q]) {
          arena_.mark_lost(rank_);
          throw MeshError(MeshError::Kind::mismatch, peer,
                          "allToAllv over the " + g.name + ": peer " + std::to_string(q) + " (rank " +
                              std::to_string(peer) + ") sends " +
                              std::to_string(h->counts[me]) + " elements to this device (rank " +
                              std::to_string(rank_) + "), but recvCounts[" + std::to_string(q) + "] is " +
                              std::to_string(recv_counts[q]));
        }
        for (int p = 0; p < P; ++p) largest = std::max(largest, static_cast<int64_t>(h->counts[p]));
      }
      float* dst = recv + recv_at[static_cast<size_t>(q)] + off;
      const int64_t len = clamp_len(recv_counts[q], off, c);
      if (h->remote != 0) {
        // This device's part of the peer's packed buffer starts after its chunks for peers 0 .. me − 1.
        uint64_t before = 0;
        for (int p = 0; p < me; ++p) before += h->counts[p];
        if (len > 0) read_remote(kind, peer, dst, h->remote + (before + static_cast<uint64_t>(off)) * 4, len);
      } else {
        from_wire(dst, in + static_cast<size_t>(me) * sub, len, wire);
      }
    }
    if (k == 0) rounds = std::max<int64_t>(1, ceil_div(largest, c));
    finish_round(kind, s);
  }
  if (remote) wait_all_consumed(kind, last);
  ST_COLLECTIVE_END()
}

}  // namespace st::mesh
