// The mesh core without Node: the size table, the groups, every collective on forked processes
// against a scalar reference (both wires, each axis, sizes that need several rounds), a lost rank,
// a timeout and a mismatched call.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "check.h"
#include "kernels/bf16.h"
#include "mesh/arena.h"
#include "mesh/collectives.h"
#include "mesh/sync.h"

using namespace st::mesh;

namespace {

// Deterministic, never zero, wide magnitudes: the value device `rank` holds at `i` in case `c`.
float value(int c, int rank, int64_t i) {
  uint32_t h = static_cast<uint32_t>(c * 7919 + rank * 104729) ^ static_cast<uint32_t>(i * 2654435761u);
  h ^= h >> 15;
  h *= 0x2c1b3c6dU;
  h ^= h >> 12;
  const float mag = std::ldexp(1.0f, static_cast<int>(h % 13) - 6);
  const float v = (static_cast<float>((h >> 8) & 0xffff) / 65536.0f - 0.5f) * mag;
  return v == 0 ? 0.25f : v;
}

float wire_of(float x, Wire w) {
  return w == Wire::bf16 ? st::bf16_to_f32_scalar(st::bf16_from_f32_scalar(x)) : x;
}

bool same(float a, float b) {
  uint32_t ua, ub;
  std::memcpy(&ua, &a, 4);
  std::memcpy(&ub, &b, 4);
  return ua == ub || (std::isnan(a) && std::isnan(b));
}

// Runs body(rank) in `n` forked processes over a fresh arena; each returns its failure count.
int run_mesh(const std::vector<int>& axes, size_t slot, size_t heap, const std::function<int(Arena&, int)>& body,
             const std::function<void(Arena&, std::vector<pid_t>&)>& watch = nullptr) {
  std::unique_ptr<Arena> arena = Arena::create(axes, slot, heap);
  std::vector<pid_t> pids;
  for (int r = 0; r < arena->n_ranks(); ++r) {
    const pid_t pid = fork();
    if (pid == 0) {
      int failures = 0;
      try {
        std::unique_ptr<Arena> mine = Arena::attach(arena->fd());
        failures = body(*mine, r);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "rank %d: %s\n", r, e.what());
        failures = 1;
      }
      std::fflush(stderr);
      _exit(failures == 0 ? 0 : 1);
    }
    pids.push_back(pid);
  }
  if (watch) watch(*arena, pids);
  int bad = 0;
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++bad;
  }
  return bad;
}

int collectives_body(Arena& arena, int rank) {
  Communicator comm(arena, rank, {"data", "model"}, 20000);
  int fail = 0;
  auto expect = [&](bool ok, const char* what, int kind, int64_t n, Wire w, int64_t i, float got, float want) {
    if (!ok && ++fail <= 5)
      std::fprintf(stderr, "rank %d %s kind %d n %lld wire %d at %lld: got %g want %g\n", rank, what, kind,
                   static_cast<long long>(n), static_cast<int>(w), static_cast<long long>(i), got, want);
  };
  const bool quick = st::test::quick();
  int c = 0;
  for (int kind = 0; kind < comm.n_kinds(); ++kind) {
    const Group& g = comm.group(kind);
    const int P = g.size(), me = g.index;
    for (Wire w : {Wire::float32, Wire::bf16}) {
      for (int64_t n : {int64_t{1}, int64_t{37}, int64_t{quick ? 3000 : 9000}}) {
        ++c;
        const float nan = std::nanf("");
        // all-to-all
        std::vector<float> send(static_cast<size_t>(P * n)), recv(static_cast<size_t>(P * n), nan);
        for (int64_t i = 0; i < P * n; ++i) send[static_cast<size_t>(i)] = value(c, rank, i);
        comm.all_to_all(kind, recv.data(), send.data(), n, w);
        for (int q = 0; q < P; ++q)
          for (int64_t i = 0; i < n; ++i) {
            const float want = wire_of(value(c, g.ranks[static_cast<size_t>(q)], me * n + i), w);
            expect(same(recv[static_cast<size_t>(q * n + i)], want), "allToAll", kind, n, w, i, recv[static_cast<size_t>(q * n + i)], want);
          }
        // all-reduce, twice: bit-identical
        std::vector<float> buf(static_cast<size_t>(n)), sum(static_cast<size_t>(n), nan), again(static_cast<size_t>(n), nan);
        for (int64_t i = 0; i < n; ++i) buf[static_cast<size_t>(i)] = value(c + 1000, rank, i);
        comm.all_reduce(kind, sum.data(), buf.data(), n, w);
        comm.all_reduce(kind, again.data(), buf.data(), n, w);
        for (int64_t i = 0; i < n; ++i) {
          float want = wire_of(value(c + 1000, g.ranks[0], i), w);
          for (int q = 1; q < P; ++q) want += wire_of(value(c + 1000, g.ranks[static_cast<size_t>(q)], i), w);
          expect(same(sum[static_cast<size_t>(i)], want), "allReduce", kind, n, w, i, sum[static_cast<size_t>(i)], want);
          expect(same(again[static_cast<size_t>(i)], sum[static_cast<size_t>(i)]), "allReduce again", kind, n, w, i, again[static_cast<size_t>(i)], sum[static_cast<size_t>(i)]);
        }
        // all-gather
        std::vector<float> gathered(static_cast<size_t>(P * n), nan);
        comm.all_gather(kind, gathered.data(), buf.data(), n, w);
        for (int q = 0; q < P; ++q)
          for (int64_t i = 0; i < n; ++i) {
            const float want = wire_of(value(c + 1000, g.ranks[static_cast<size_t>(q)], i), w);
            expect(same(gathered[static_cast<size_t>(q * n + i)], want), "allGather", kind, n, w, i, gathered[static_cast<size_t>(q * n + i)], want);
          }
        // reduce-scatter
        std::vector<float> part(static_cast<size_t>(n), nan);
        comm.reduce_scatter(kind, part.data(), send.data(), n, w);
        for (int64_t i = 0; i < n; ++i) {
          float want = wire_of(value(c, g.ranks[0], me * n + i), w);
          for (int q = 1; q < P; ++q) want += wire_of(value(c, g.ranks[static_cast<size_t>(q)], me * n + i), w);
          expect(same(part[static_cast<size_t>(i)], want), "reduceScatter", kind, n, w, i, part[static_cast<size_t>(i)], want);
        }
        // broadcast from the last index
        std::vector<float> b(static_cast<size_t>(n), nan);
        if (me == P - 1) b = buf;
        comm.broadcast(kind, b.data(), n, P - 1, w);
        for (int64_t i = 0; i < n; ++i) {
          const float want = wire_of(value(c + 1000, g.ranks[static_cast<size_t>(P - 1)], i), w);
          expect(same(b[static_cast<size_t>(i)], want), "broadcast", kind, n, w, i, b[static_cast<size_t>(i)], want);
        }
        // all-to-all with per-peer sizes: rank r sends (r + 2q + n) % 5 * n / 4 elements to peer q
        auto cnt = [&](int from, int to) { return static_cast<int64_t>((from + 2 * to + n) % 5) * n / 4; };
        std::vector<int64_t> sc(static_cast<size_t>(P)), rc(static_cast<size_t>(P));
        int64_t st = 0, rt = 0;
        for (int q = 0; q < P; ++q) {
          sc[static_cast<size_t>(q)] = cnt(me, q);
          rc[static_cast<size_t>(q)] = cnt(q, me);
          st += sc[static_cast<size_t>(q)];
          rt += rc[static_cast<size_t>(q)];
        }
        std::vector<float> vs(static_cast<size_t>(st)), vr(static_cast<size_t>(rt), nan);
        for (int64_t i = 0; i < st; ++i) vs[static_cast<size_t>(i)] = value(c + 2000, rank, i);
        comm.all_to_allv(kind, vr.data(), rc.data(), vs.data(), sc.data(), w);
        int64_t at = 0;
        for (int q = 0; q < P; ++q) {
          int64_t from = 0;
          for (int p = 0; p < me; ++p) from += cnt(q, p);
          for (int64_t i = 0; i < rc[static_cast<size_t>(q)]; ++i) {
            const float want = wire_of(value(c + 2000, g.ranks[static_cast<size_t>(q)], from + i), w);
            expect(same(vr[static_cast<size_t>(at + i)], want), "allToAllv", kind, n, w, i, vr[static_cast<size_t>(at + i)], want);
          }
          at += rc[static_cast<size_t>(q)];
        }
        comm.barrier(kind);
      }
    }
  }
  // A send buffer in the heap is read in place.
  float* heap_send = comm.alloc(4 * 5000);
  std::vector<float> recv(4 * 5000, std::nanf(""));
  for (int64_t i = 0; i < 4 * 5000; ++i) heap_send[i] = value(777, rank, i);
  comm.all_to_all(0, recv.data(), heap_send, 5000, Wire::float32);
  for (int q = 0; q < 4; ++q)
    for (int64_t i = 0; i < 5000; ++i)
      expect(same(recv[static_cast<size_t>(q * 5000 + i)], value(777, q, rank * 5000 + i)), "allToAll heap", 0, 5000,
             Wire::float32, i, recv[static_cast<size_t>(q * 5000 + i)], value(777, q, rank * 5000 + i));
  return fail;
}

}  // namespace

int main() {
  // The size table: regions in order, aligned, nothing overlapping.
  const Layout l = layout_for(4, 3, 65536, 1 << 20);
  ST_CHECK(l.posted_offset >= sizeof(Control) && l.posted_offset % kCacheLine == 0, "posted at %zu", l.posted_offset);
  ST_CHECK(l.consumed_offset == l.posted_offset + 12 * sizeof(Counter), "consumed at %zu", l.consumed_offset);
  ST_CHECK(l.headers_offset == l.consumed_offset + 12 * sizeof(Counter), "headers at %zu", l.headers_offset);
  ST_CHECK(l.slots_offset % 4096 == 0 && l.slots_offset >= l.headers_offset + 24 * sizeof(RoundHeader), "slots at %zu", l.slots_offset);
  ST_CHECK(l.heaps_offset == l.slots_offset + 12 * 65536 && l.total_bytes == l.heaps_offset + 4 * (1 << 20), "total %zu", l.total_bytes);

  // Groups: row-major, the last axis fastest.
  const std::vector<int> axes{2, 3, 2};
  const Group model = group_of(axes, 7, 3, "m");   // rank 7 = (1, 0, 1)
  ST_CHECK(model.ranks == std::vector<int>({6, 7}) && model.index == 1, "model group of 7");
  const Group mid = group_of(axes, 7, 2, "b");
  ST_CHECK(mid.ranks == std::vector<int>({7, 9, 11}) && mid.index == 0, "axis-1 group of 7");
  const Group data = group_of(axes, 7, 1, "d");
  ST_CHECK(data.ranks == std::vector<int>({1, 7}) && data.index == 1, "data group of 7");

  // Every collective on a { data: 2, model: 2 } mesh with the smallest slot (several rounds).
  ST_CHECK(run_mesh({2, 2}, 65536, 1 << 20, collectives_body) == 0, "collectives on 4 forked devices");

  // The single-copy paths of a plain send buffer: cross-memory attach, then its pages adopted
  // into the heap (at an odd offset: the chunk edges go through the slot), on both wires, with new
  // values every iteration; the results equal the staged path's, element for element.
  ST_CHECK(run_mesh({3}, 65536, 1 << 20, [](Arena& arena, int rank) {
             const bool may = probe_cross_memory(static_cast<int>(getppid()), cross_memory_probe_address());
             Communicator comm(arena, rank, {"data"}, 20000, may);
             comm.set_cross_memory_min_bytes(1024);
             comm.barrier(0);   // every peer has attached (and said whether it may): iteration 0 goes by cross-memory attach
             const int P = 3;
             const int64_t n = 5000, offset = 37;
             std::vector<float> storage(static_cast<size_t>(P * n + offset + 8));
             float* send = storage.data() + offset;
             std::vector<float> recv(static_cast<size_t>(P * n));
             Adopted pages;
             int fail = 0;
             auto value = [](int it, int from, int64_t i) { return static_cast<float>(it * 7 + from + 1) * 0.37f + static_cast<float>(i) * 1.001e-3f; };
             for (int it = 0; it < 6; ++it) {
               const Wire w = it % 2 == 0 ? Wire::float32 : Wire::bf16;
               if (it == 2 && !comm.adopt(storage.data(), storage.size() * 4, &pages)) ++fail;
               for (int64_t i = 0; i < P * n; ++i) send[i] = value(it, rank, i);
               std::fill(recv.begin(), recv.end(), std::nanf(""));
               comm.all_to_all(0, recv.data(), send, n, w, it >= 2 ? &pages : nullptr);
               for (int q = 0; q < P; ++q)
                 for (int64_t i = 0; i < n; ++i)
                   if (!same(recv[static_cast<size_t>(q * n + i)], wire_of(value(it, q, rank * n + i), w)) && ++fail <= 3)
                     std::fprintf(stderr, "rank %d iteration %d: from %d element %lld\n", rank, it, q, static_cast<long long>(i));
               for (int64_t i = 0; i < P * n; ++i)
                 if (send[i] != value(it, rank, i) && ++fail <= 3) std::fprintf(stderr, "rank %d: send changed\n", rank);
             }
             const Stats& s = comm.stats();
             if (may && s.bytes_cross_memory == 0 && ++fail) std::fprintf(stderr, "rank %d: no cross-memory reads\n", rank);
             if (s.bytes_read_in_place <= s.bytes_cross_memory && ++fail) std::fprintf(stderr, "rank %d: nothing read from adopted pages\n", rank);
             return fail;
           }) == 0, "plain send buffers by cross-memory attach and adopted pages");

  // A rank that dies in the middle: the others' all-to-all throws peer_lost naming it, in < 2 s.
  int64_t killed_at = 0;
  const int lost_bad = run_mesh(
      {3}, 65536, 0,
      [](Arena& arena, int rank) {
        Communicator comm(arena, rank, {"data"}, 20000);
        comm.barrier(0);
        if (rank == 2) {
          usleep(50000);
          raise(SIGKILL);
        }
        std::vector<float> send(3 * 100000, 1.0f), recv(3 * 100000);
        try {
          comm.all_to_all(0, recv.data(), send.data(), 100000, Wire::float32);
        } catch (const MeshError& e) {
          return (e.kind == MeshError::Kind::peer_lost && e.rank == 2 && std::strstr(e.what(), "rank 2 was lost")) ? 0 : 1;
        }
        return 1;
      },
      [&](Arena& arena, std::vector<pid_t>& pids) {
        int status = 0;
        waitpid(pids[2], &status, 0);
        killed_at = now_ns();
        arena.mark_lost(2);
        pids.erase(pids.begin() + 2);
      });
  ST_CHECK(lost_bad == 0, "peer lost seen by the survivors");
  ST_CHECK(now_ns() - killed_at < 2000000000LL, "survivors took %lld ms", static_cast<long long>((now_ns() - killed_at) / 1000000));

  // A timeout, and a mismatched call.
  ST_CHECK(run_mesh({2}, 65536, 0, [](Arena& arena, int rank) {
             Communicator comm(arena, rank, {"data"}, 100);
             if (rank == 1) {
               usleep(400000);
               return 0;
             }
             try {
               comm.barrier(0);
             } catch (const MeshError& e) {
               return e.kind == MeshError::Kind::timeout && e.rank == 1 ? 0 : 1;
             }
             return 1;
           }) == 0, "timeout");
  ST_CHECK(run_mesh({2}, 65536, 0, [](Arena& arena, int rank) {
             Communicator comm(arena, rank, {"data"}, 5000);
             std::vector<float> a(8, 1.0f), b(16);
             try {
               if (rank == 0) comm.all_reduce(0, a.data(), a.data(), 8, Wire::float32);
               else comm.all_gather(0, b.data(), a.data(), 8, Wire::float32);
             } catch (const MeshError& e) {
               return e.kind == MeshError::Kind::mismatch || e.kind == MeshError::Kind::peer_lost ? 0 : 1;
             }
             return 1;
           }) == 0, "mismatch");
  return st::test::summary("mesh");
}
