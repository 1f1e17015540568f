// P = devices in the group, n = float32 elements per chunk (see mpi.h).
#include "mpi.h"

#include <dlfcn.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <climits>
#include <cstring>
#include <stdexcept>

#include "../kernels/bf16.h"

namespace st::mesh {

// Open MPI's ABI: every handle is a pointer, the predefined ones are addresses of global objects.
using Comm = void*;
using Datatype = void*;
using Request = void*;

struct MpiLibrary {
  void* so = nullptr;
  int (*Initialized)(int*);
  int (*Init_thread)(int*, char***, int, int*);
  int (*Finalized)(int*);
  int (*Finalize)();
  int (*Abort)(Comm, int);
  int (*Comm_rank)(Comm, int*);
  int (*Comm_size)(Comm, int*);
  int (*Comm_split)(Comm, int, int, Comm*);
  int (*Test)(Request*, int*, void*);
  int (*Ibarrier)(Comm, Request*);
  int (*Ibcast)(void*, int, Datatype, int, Comm, Request*);
  int (*Ialltoall)(const void*, int, Datatype, void*, int, Datatype, Comm, Request*);
  int (*Ialltoallv)(const void*, const int*, const int*, Datatype, void*, const int*, const int*, Datatype, Comm, Request*);
  int (*Iallgather)(const void*, int, Datatype, void*, int, Datatype, Comm, Request*);
  int (*Iallgatherv)(const void*, int, Datatype, void*, const int*, const int*, Datatype, Comm, Request*);
  int (*Igather)(const void*, int, Datatype, void*, int, Datatype, int, Comm, Request*);
  int (*Igatherv)(const void*, int, Datatype, void*, const int*, const int*, Datatype, int, Comm, Request*);
  Comm world;
  Datatype f32, u16, i32, u8;
};

namespace {

constexpr int kThreadFunneled = 1;   // MPI_THREAD_FUNNELED: only the main thread calls MPI
void* const kInPlace = reinterpret_cast<void*>(1);

template <class F>
void resolve(void* so, F& f, const char* name) {
  f = reinterpret_cast<F>(dlsym(so, name));
  if (!f) throw std::runtime_error(std::string("mpi: the MPI library has no symbol ") + name);
}

void* handle_symbol(void* so, const char* name) {
  void* p = dlsym(so, name);
  if (!p) throw std::runtime_error(std::string("mpi: the MPI library has no ") + name + " (Open MPI 4 or 5 is needed)");
  return p;
}

// One library per process (MPI can be initialised once).
const MpiLibrary& load(const std::string& path) {
  static MpiLibrary lib;
  if (lib.so) return lib;
  std::vector<std::string> names;
  if (!path.empty()) names.push_back(path);
  else names = {"libmpi.so.40", "libmpi.so"};
  std::string errors;
  void* so = nullptr;
  for (const std::string& n : names) {
    // RTLD_GLOBAL: Open MPI's own components resolve their symbols against it.
    so = dlopen(n.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (so) break;
    const char* e = dlerror();
    errors += std::string(errors.empty() ? "" : "; ") + (e ? e : n);
  }
  if (!so) throw std::runtime_error("mpi: cannot load the MPI library (" + errors + "); install Open MPI (Debian: openmpi-bin) or set SWITCH_MPI_LIBRARY");
  MpiLibrary l;
  l.so = so;
  resolve(so, l.Initialized, "MPI_Initialized");
  resolve(so, l.Init_thread, "MPI_Init_thread");
  resolve(so, l.Finalized, "MPI_Finalized");
  resolve(so, l.Finalize, "MPI_Finalize");
  resolve(so, l.Abort, "MPI_Abort");
  resolve(so, l.Comm_rank, "MPI_Comm_rank");
  resolve(so, l.Comm_size, "MPI_Comm_size");
  resolve(so, l.Comm_split, "MPI_Comm_split");
  resolve(so, l.Test, "MPI_Test");
  resolve(so, l.Ibarrier, "MPI_Ibarrier");
  resolve(so, l.Ibcast, "MPI_Ibcast");
  resolve(so, l.Ialltoall, "MPI_Ialltoall");
  resolve(so, l.Ialltoallv, "MPI_Ialltoallv");
  resolve(so, l.Iallgather, "MPI_Iallgather");
  resolve(so, l.Iallgatherv, "MPI_Iallgatherv");
  resolve(so, l.Igather, "MPI_Igather");
  resolve(so, l.Igatherv, "MPI_Igatherv");
  l.world = handle_symbol(so, "ompi_mpi_comm_world");
  l.f32 = handle_symbol(so, "ompi_mpi_float");
  l.u16 = handle_symbol(so, "ompi_mpi_uint16_t");
  l.i32 = handle_symbol(so, "ompi_mpi_int");
  l.u8 = handle_symbol(so, "ompi_mpi_byte");
  lib = l;
  return lib;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int count(int64_t n, const char* what) {
  if (n > INT_MAX)
    throw MeshError(MeshError::Kind::argument, -1, std::string("mpi: ") + what + " of more than 2^31 − 1 elements per peer");
  return static_cast<int>(n);
}

void check(int rc, const char* fn) {
  if (rc != 0) throw std::runtime_error(std::string("mpi: ") + fn + " failed with error code " + std::to_string(rc));
}

size_t wire_bytes(Wire w) { return w == Wire::bf16 ? 2 : 4; }

// acc = wire values (q == 0) or acc += wire values: the fixed-order sum of the contributions.
void accumulate(float* acc, const void* in, int64_t n, Wire wire, bool first) {
  if (wire == Wire::bf16) {
    const uint16_t* h = static_cast<const uint16_t*>(in);
    if (first) bf16_to_f32(acc, h, n);
    else for (int64_t i = 0; i < n; ++i) acc[i] += bf16_to_f32_scalar(h[i]);
  } else {
    const float* f = static_cast<const float*>(in);
    if (first) std::memcpy(acc, f, static_cast<size_t>(n) * 4);
    else for (int64_t i = 0; i < n; ++i) acc[i] += f[i];
  }
}

}  // namespace

#define ST_MPI_BEGIN              \
  const int64_t call_start = now_ns(); \
  ++stats_.calls;
#define ST_MPI_END stats_.seconds += static_cast<double>(now_ns() - call_start) * 1e-9;

MpiCommunicator::MpiCommunicator(const std::vector<std::string>& axis_names, const std::vector<int>& axis_sizes,
                                 int64_t timeout_ms, const std::string& library, int launcher_pid)
    : mpi_(&load(library)), timeout_ms_(timeout_ms), launcher_pid_(launcher_pid) {
  int initialized = 0;
  check(mpi_->Initialized(&initialized), "MPI_Initialized");
  if (!initialized) {
    int provided = 0;
    check(mpi_->Init_thread(nullptr, nullptr, kThreadFunneled, &provided), "MPI_Init_thread");
  }
  check(mpi_->Comm_rank(mpi_->world, &rank_), "MPI_Comm_rank");
  check(mpi_->Comm_size(mpi_->world, &size_), "MPI_Comm_size");
  int product = 1;
  for (int s : axis_sizes) product *= s;
  if (product != size_)
    throw std::runtime_error("mpi: the axes make a mesh of " + std::to_string(product) + " devices, but MPI started " +
                             std::to_string(size_) + " ranks");
  groups_.push_back(group_of(axis_sizes, rank_, 0, "mesh"));
  comms_.push_back(mpi_->world);
  for (size_t a = 0; a < axis_sizes.size(); ++a) {
    const int kind = static_cast<int>(a) + 1;
    Group g = group_of(axis_sizes, rank_, kind, "axis '" + (a < axis_names.size() ? axis_names[a] : std::to_string(a)) + "'");
    Comm c = nullptr;
    // Colour: the group's first rank (the same for every member); key: the index within it.
    check(mpi_->Comm_split(mpi_->world, g.ranks[0], g.index, &c), "MPI_Comm_split");
    groups_.push_back(std::move(g));
    comms_.push_back(c);
  }
}

MpiCommunicator::~MpiCommunicator() = default;

void MpiCommunicator::wait(void* request, const char* what, int kind) {
  const int64_t start = now_ns();
  const int64_t deadline = start + timeout_ms_ * 1000000;
  Request r = request;
  int done = 0;
  for (int64_t polls = 0;; ++polls) {
    check(mpi_->Test(&r, &done, nullptr), "MPI_Test");
    if (done) break;
    if ((polls & 255) == 255) {
      const int64_t t = now_ns();
      if (t > deadline)
        throw MeshError(MeshError::Kind::timeout, -1,
                        std::string("mesh: ") + what + " timed out after " + std::to_string(timeout_ms_) + " ms waiting for the " +
                            group(kind).name + " (MPI)");
      // The launcher on this host is gone: nobody will collect the result.
      if (launcher_pid_ > 0 && kill(launcher_pid_, 0) != 0 && errno == ESRCH) abort(70);
      sched_yield();
    }
  }
  stats_.wait_seconds += static_cast<double>(now_ns() - start) * 1e-9;
}

const void* MpiCommunicator::stage_send(const float* src, int64_t n, Wire wire, std::vector<uint16_t>& staging) {
  if (wire == Wire::float32) return src;
  staging.resize(static_cast<size_t>(std::max<int64_t>(n, 1)));
  bf16_from_f32(staging.data(), src, n);
  return staging.data();
}

void MpiCommunicator::barrier(int kind) {
  ST_MPI_BEGIN
  Request r = nullptr;
  check(mpi_->Ibarrier(comm(kind), &r), "MPI_Ibarrier");
  wait(r, "barrier", kind);
  ST_MPI_END
}

void MpiCommunicator::broadcast(int kind, float* buf, int64_t n, int root, Wire wire) {
  ST_MPI_BEGIN
  const bool is_root = group(kind).index == root;
  Request r = nullptr;
  if (wire == Wire::float32) {
    check(mpi_->Ibcast(buf, count(n, "broadcast"), mpi_->f32, root, comm(kind), &r), "MPI_Ibcast");
    wait(r, "broadcast", kind);
  } else {
    send16_.resize(static_cast<size_t>(std::max<int64_t>(n, 1)));
    if (is_root) {
      bf16_from_f32(send16_.data(), buf, n);
      bf16_to_f32(buf, send16_.data(), n);   // the root holds what the others receive
    }
    check(mpi_->Ibcast(send16_.data(), count(n, "broadcast"), mpi_->u16, root, comm(kind), &r), "MPI_Ibcast");
    wait(r, "broadcast", kind);
    if (!is_root) bf16_to_f32(buf, send16_.data(), n);
  }
  if (is_root) stats_.bytes_sent += static_cast<uint64_t>(n) * wire_bytes(wire) * static_cast<uint64_t>(group(kind).size() - 1);
  ST_MPI_END
}

void MpiCommunicator::all_gather(int kind, float* recv, const float* send, int64_t n, Wire wire) {
  ST_MPI_BEGIN
  const int P = group(kind).size();
  const int c = count(n, "allGather");
  Request r = nullptr;
  if (wire == Wire::float32) {
    check(mpi_->Iallgather(send, c, mpi_->f32, recv, c, mpi_->f32, comm(kind), &r), "MPI_Iallgather");
    wait(r, "allGather", kind);
  } else {
    const void* out = stage_send(send, n, wire, send16_);
    recv16_.resize(static_cast<size_t>(std::max<int64_t>(n * P, 1)));
    check(mpi_->Iallgather(out, c, mpi_->u16, recv16_.data(), c, mpi_->u16, comm(kind), &r), "MPI_Iallgather");
    wait(r, "allGather", kind);
    bf16_to_f32(recv, recv16_.data(), n * P);
  }
  stats_.bytes_sent += static_cast<uint64_t>(n) * wire_bytes(wire) * static_cast<uint64_t>(P - 1);
  ST_MPI_END
}

void MpiCommunicator::reduce_scatter(int kind, float* recv, const float* send, int64_t n, Wire wire) {
  ST_MPI_BEGIN
  const int P = group(kind).size();
  const int c = count(n, "reduceScatter");
  const Datatype t = wire == Wire::bf16 ? mpi_->u16 : mpi_->f32;
  const void* out = stage_send(send, n * P, wire, send16_);
  const size_t elem = wire_bytes(wire);
  recv16_.resize(static_cast<size_t>(std::max<int64_t>(n * P * static_cast<int64_t>(elem) / 2, 1)));
  Request r = nullptr;
  check(mpi_->Ialltoall(out, c, t, recv16_.data(), c, t, comm(kind), &r), "MPI_Ialltoall");
  wait(r, "reduceScatter", kind);
  const uint8_t* in = reinterpret_cast<const uint8_t*>(recv16_.data());
  for (int q = 0; q < P; ++q) accumulate(recv, in + static_cast<size_t>(q) * static_cast<size_t>(n) * elem, n, wire, q == 0);
  stats_.bytes_sent += static_cast<uint64_t>(n) * elem * static_cast<uint64_t>(P - 1);
  ST_MPI_END
}

void MpiCommunicator::all_reduce(int kind, float* recv, const float* send, int64_t n, Wire wire) {
  ST_MPI_BEGIN
  const int P = group(kind).size(), me = group(kind).index;
  // Shard q of the buffer is [lo(q), lo(q + 1)), as on the shared-memory mesh: device q sums it
  // in group order, then every device gathers the sums in float32.
  auto lo = [&](int q) { return n * q / P; };
  const int64_t my_lo = lo(me), my_len = lo(me + 1) - my_lo;
  std::vector<int> send_counts(static_cast<size_t>(P)), send_displs(static_cast<size_t>(P));
  std::vector<int> recv_counts(static_cast<size_t>(P)), recv_displs(static_cast<size_t>(P));
  for (int q = 0; q < P; ++q) {
    send_counts[static_cast<size_t>(q)] = count(lo(q + 1) - lo(q), "allReduce");
    send_displs[static_cast<size_t>(q)] = count(lo(q), "allReduce");
    recv_counts[static_cast<size_t>(q)] = count(my_len, "allReduce");
    recv_displs[static_cast<size_t>(q)] = count(my_len * q, "allReduce");
  }
  const Datatype t = wire == Wire::bf16 ? mpi_->u16 : mpi_->f32;
  const size_t elem = wire_bytes(wire);
  const void* out = stage_send(send, n, wire, send16_);
  recv16_.resize(static_cast<size_t>(std::max<int64_t>(my_len * P * static_cast<int64_t>(elem) / 2, 1)));
  Request r = nullptr;
  check(mpi_->Ialltoallv(out, send_counts.data(), send_displs.data(), t, recv16_.data(), recv_counts.data(),
                         recv_displs.data(), t, comm(kind), &r), "MPI_Ialltoallv");
  wait(r, "allReduce", kind);
  // Only now (send is read) may recv, which may be send itself, be written.
  const uint8_t* in = reinterpret_cast<const uint8_t*>(recv16_.data());
  for (int q = 0; q < P; ++q)
    accumulate(recv + my_lo, in + static_cast<size_t>(q) * static_cast<size_t>(my_len) * elem, my_len, wire, q == 0);
  check(mpi_->Iallgatherv(kInPlace, 0, mpi_->f32, recv, send_counts.data(), send_displs.data(), mpi_->f32, comm(kind), &r),
        "MPI_Iallgatherv");
  wait(r, "allReduce", kind);
  stats_.bytes_sent += static_cast<uint64_t>(n - my_len) * elem + static_cast<uint64_t>(my_len) * 4 * static_cast<uint64_t>(P - 1);
  ST_MPI_END
}

void MpiCommunicator::all_to_all(int kind, float* recv, const float* send, int64_t n, Wire wire) {
  ST_MPI_BEGIN
  const int P = group(kind).size();
  const int c = count(n, "allToAll");
  Request r = nullptr;
  if (wire == Wire::float32) {
    const float* from = send;
    if (send == recv) {   // the very same array: MPI needs them apart
      scratch_.assign(send, send + n * P);
      from = scratch_.data();
    }
    check(mpi_->Ialltoall(from, c, mpi_->f32, recv, c, mpi_->f32, comm(kind), &r), "MPI_Ialltoall");
    wait(r, "allToAll", kind);
  } else {
    // Only the chunks that cross are converted (twice); this device's own is rounded in one pass
    // (the same values: SPEC §2 rounding either way). Its slot in the staging buffers goes
    // through MPI unread.
    const int me = group(kind).index;
    send16_.resize(static_cast<size_t>(std::max<int64_t>(n * P, 1)));
    recv16_.resize(static_cast<size_t>(std::max<int64_t>(n * P, 1)));
    for (int p = 0; p < P; ++p)
      if (p != me) bf16_from_f32(send16_.data() + static_cast<size_t>(p) * static_cast<size_t>(n), send + static_cast<int64_t>(p) * n, n);
    check(mpi_->Ialltoall(send16_.data(), c, mpi_->u16, recv16_.data(), c, mpi_->u16, comm(kind), &r), "MPI_Ialltoall");
    wait(r, "allToAll", kind);
    for (int q = 0; q < P; ++q)
      if (q != me) bf16_to_f32(recv + static_cast<int64_t>(q) * n, recv16_.data() + static_cast<size_t>(q) * static_cast<size_t>(n), n);
    if (n > 0) bf16_round(recv + static_cast<int64_t>(me) * n, send + static_cast<int64_t>(me) * n, n);
  }
  stats_.bytes_sent += static_cast<uint64_t>(n) * wire_bytes(wire) * static_cast<uint64_t>(P - 1);
  ST_MPI_END
}

void MpiCommunicator::all_to_allv(int kind, float* recv, const int64_t* recv_counts, const float* send,
                                  const int64_t* send_counts, Wire wire) {
  ST_MPI_BEGIN
  const Group& g = group(kind);
  const int P = g.size(), me = g.index;
  // Every device learns every device's counts, so a mismatch throws on all of them alike
  // (rather than leaving the consistent ones waiting).
  std::vector<int> mine(static_cast<size_t>(2 * P)), all(static_cast<size_t>(2 * P * P));
  for (int p = 0; p < P; ++p) {
    mine[static_cast<size_t>(2 * p)] = count(send_counts[p], "allToAllv");
    mine[static_cast<size_t>(2 * p + 1)] = count(recv_counts[p], "allToAllv");
  }
  Request r = nullptr;
  check(mpi_->Iallgather(mine.data(), 2 * P, mpi_->i32, all.data(), 2 * P, mpi_->i32, comm(kind), &r), "MPI_Iallgather");
  wait(r, "allToAllv", kind);
  for (int p = 0; p < P; ++p)
    for (int q = 0; q < P; ++q) {
      const int sent = all[static_cast<size_t>(2 * P * p + 2 * q)];          // p sends to q
      const int expected = all[static_cast<size_t>(2 * P * q + 2 * p + 1)];  // q expects from p
      if (sent != expected) {
        const int blame = p == me ? q : p;
        throw MeshError(MeshError::Kind::mismatch, g.ranks[static_cast<size_t>(blame)],
                        "mesh: allToAllv counts disagree: device " + std::to_string(g.ranks[static_cast<size_t>(p)]) + " sends " +
                            std::to_string(sent) + " elements to device " + std::to_string(g.ranks[static_cast<size_t>(q)]) +
                            ", which expects " + std::to_string(expected) + " (" + g.name + ")");
      }
    }
  std::vector<int> sc(static_cast<size_t>(P)), sd(static_cast<size_t>(P)), rc(static_cast<size_t>(P)), rd(static_cast<size_t>(P));
  int64_t s_total = 0, r_total = 0;
  for (int p = 0; p < P; ++p) {
    sc[static_cast<size_t>(p)] = static_cast<int>(send_counts[p]);
    sd[static_cast<size_t>(p)] = count(s_total, "allToAllv");
    rc[static_cast<size_t>(p)] = static_cast<int>(recv_counts[p]);
    rd[static_cast<size_t>(p)] = count(r_total, "allToAllv");
    s_total += send_counts[p];
    r_total += recv_counts[p];
  }
  if (wire == Wire::float32) {
    check(mpi_->Ialltoallv(send, sc.data(), sd.data(), mpi_->f32, recv, rc.data(), rd.data(), mpi_->f32, comm(kind), &r),
          "MPI_Ialltoallv");
    wait(r, "allToAllv", kind);
  } else {
    const void* out = stage_send(send, s_total, wire, send16_);
    recv16_.resize(static_cast<size_t>(std::max<int64_t>(r_total, 1)));
    check(mpi_->Ialltoallv(out, sc.data(), sd.data(), mpi_->u16, recv16_.data(), rc.data(), rd.data(), mpi_->u16, comm(kind), &r),
          "MPI_Ialltoallv");
    wait(r, "allToAllv", kind);
    bf16_to_f32(recv, recv16_.data(), r_total);
  }
  stats_.bytes_sent += static_cast<uint64_t>(s_total - send_counts[me]) * wire_bytes(wire);
  ST_MPI_END
}

std::vector<uint8_t> MpiCommunicator::broadcast_bytes(const uint8_t* data, int64_t n) {
  int64_t length = rank_ == 0 ? n : 0;
  Request r = nullptr;
  check(mpi_->Ibcast(&length, 8, mpi_->u8, 0, mpi_->world, &r), "MPI_Ibcast");
  wait(r, "broadcast", 0);
  std::vector<uint8_t> out(static_cast<size_t>(length));
  if (rank_ == 0 && length > 0) std::memcpy(out.data(), data, static_cast<size_t>(length));
  check(mpi_->Ibcast(out.data(), count(length, "broadcast"), mpi_->u8, 0, mpi_->world, &r), "MPI_Ibcast");
  wait(r, "broadcast", 0);
  return out;
}

std::vector<std::vector<uint8_t>> MpiCommunicator::gather_bytes(const uint8_t* data, int64_t n) {
  const int c = count(n, "gather");
  std::vector<int> sizes(static_cast<size_t>(size_));
  Request r = nullptr;
  check(mpi_->Igather(&c, 1, mpi_->i32, sizes.data(), 1, mpi_->i32, 0, mpi_->world, &r), "MPI_Igather");
  wait(r, "gather", 0);
  std::vector<int> displs(static_cast<size_t>(size_));
  int64_t total = 0;
  for (int q = 0; q < size_; ++q) {
    displs[static_cast<size_t>(q)] = count(total, "gather");
    total += sizes[static_cast<size_t>(q)];
  }
  std::vector<uint8_t> all(static_cast<size_t>(rank_ == 0 ? std::max<int64_t>(total, 1) : 1));
  check(mpi_->Igatherv(data, c, mpi_->u8, all.data(), sizes.data(), displs.data(), mpi_->u8, 0, mpi_->world, &r), "MPI_Igatherv");
  wait(r, "gather", 0);
  std::vector<std::vector<uint8_t>> out;
  if (rank_ != 0) return out;
  for (int q = 0; q < size_; ++q) {
    const uint8_t* p = all.data() + displs[static_cast<size_t>(q)];
    out.emplace_back(p, p + sizes[static_cast<size_t>(q)]);
  }
  return out;
}

void MpiCommunicator::abort(int code) {
  mpi_->Abort(mpi_->world, code);
  _exit(code);   // (MPI_Abort does not return)
}

void MpiCommunicator::finalize() {
  if (finalized_) return;
  finalized_ = true;
  int done = 0;
  mpi_->Finalized(&done);
  if (!done) check(mpi_->Finalize(), "MPI_Finalize");
}

}  // namespace st::mesh
