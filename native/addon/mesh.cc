// Bindings of the device mesh: the arena for the launcher, and the collectives for a device.
// Collectives block the calling thread; they are only ever called inside a device process, whose
// event loop has nothing else to do meanwhile (the launcher never calls them).
#include <sched.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "../mesh/arena.h"
#include "../mesh/collectives.h"
#include "args.h"
#include "bindings.h"

namespace st::addon {

namespace {

using mesh::Arena;
using mesh::Communicator;
using mesh::MeshError;
using mesh::Wire;

struct ArenaHandle {
  std::unique_ptr<Arena> arena;
};

// A plain send buffer seen by an all-to-all: on its second use its pages move into the shared
// heap (Communicator::adopt), so that the peers read it in place from then on. One-off buffers
// are never moved (the heap pages of a moved buffer are never reused). Held weakly: a collected
// buffer's entry goes, and a new buffer at the same address starts afresh.
struct SeenBuffer {
  napi_ref buffer = nullptr;   // weak reference to the ArrayBuffer
  int uses = 0;
  bool adopted = false;
  mesh::Adopted pages;
};

struct DeviceHandle {
  std::unique_ptr<Arena> arena;
  std::unique_ptr<Communicator> comm;
  std::vector<SeenBuffer> seen;
  size_t adopt_min_bytes = 32 * 1024;   // send buffers from this size on; 0: never
};

constexpr size_t kMaxSeenBuffers = 64;

// The adopted pages of a plain Float32Array `send` (nullptr: none yet, or not worth it).
const mesh::Adopted* adopted_pages(Napi::Env env, DeviceHandle& h, const Napi::Value& send, size_t bytes) {
  if (h.adopt_min_bytes == 0 || bytes < h.adopt_min_bytes) return nullptr;
  napi_value buffer = nullptr;
  if (napi_get_typedarray_info(env, send, nullptr, nullptr, nullptr, &buffer, nullptr) != napi_ok) return nullptr;
  bool plain = false;   // not a SharedArrayBuffer: nothing else writes it while its pages move
  if (napi_is_arraybuffer(env, buffer, &plain) != napi_ok || !plain) return nullptr;
  // Nor a resizable one: V8 counts on fresh pages reading zero when it grows one back after a
  // shrink, which shared pages (that keep their bytes) would not.
  napi_value resizable = nullptr;
  bool is_resizable = false;
  if (napi_get_named_property(env, buffer, "resizable", &resizable) == napi_ok)
    napi_get_value_bool(env, resizable, &is_resizable);   // undefined on older engines: false
  if (is_resizable) return nullptr;
  SeenBuffer* entry = nullptr;
  for (size_t i = 0; i < h.seen.size();) {
    napi_value v = nullptr;
    napi_get_reference_value(env, h.seen[i].buffer, &v);
    if (v == nullptr) {   // collected
      napi_delete_reference(env, h.seen[i].buffer);
      h.seen.erase(h.seen.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    bool same = false;
    if (!entry && napi_strict_equals(env, v, buffer, &same) == napi_ok && same) entry = &h.seen[i];
    ++i;
  }
  if (!entry) {
    if (h.seen.size() >= kMaxSeenBuffers) {
      // Forget the oldest buffer seen once (adopted ones stay: their pages are in the heap).
      for (size_t i = 0; i < h.seen.size(); ++i)
        if (!h.seen[i].adopted) {
          napi_delete_reference(env, h.seen[i].buffer);
          h.seen.erase(h.seen.begin() + static_cast<std::ptrdiff_t>(i));
          break;
        }
      if (h.seen.size() >= kMaxSeenBuffers) return nullptr;
    }
    SeenBuffer fresh;
    if (napi_create_reference(env, buffer, 0, &fresh.buffer) != napi_ok) return nullptr;
    fresh.uses = 1;
    h.seen.push_back(fresh);
    return nullptr;
  }
  if (entry->adopted) return &entry->pages;
  if (++entry->uses < 2) return nullptr;
  void* data = nullptr;
  size_t length = 0;
  if (napi_get_arraybuffer_info(env, buffer, &data, &length) != napi_ok || data == nullptr) return nullptr;
  // The whole ArrayBuffer: other views of it (subarrays) then go in place too.
  if (!h.comm->adopt(data, length, &entry->pages)) {
    entry->uses = -(1 << 30);   // do not try again
    return nullptr;
  }
  entry->adopted = true;
  return &entry->pages;
}

template <class T>
T* handle(const Napi::Value& value, const char* what) {
  if (!value.IsExternal()) throw_type_error(value.Env(), "ERR_SWITCH_ARG_TYPE", std::string("expected a mesh ") + what + " handle");
  return value.As<Napi::External<T>>().Data();
}

Arena& open_arena(const Napi::Value& value) {
  ArenaHandle* h = handle<ArenaHandle>(value, "arena");
  if (!h->arena) throw_error(value.Env(), "ERR_SWITCH_STATE", "the mesh arena is closed");
  return *h->arena;
}

Communicator& device(const Napi::Value& value) {
  DeviceHandle* h = handle<DeviceHandle>(value, "device");
  if (!h->comm) throw_error(value.Env(), "ERR_SWITCH_STATE", "the mesh device is closed");
  return *h->comm;
}

// Runs a collective and turns its failures into coded JavaScript errors.
template <class F>
void run(Napi::Env env, F&& f) {
  try {
    f();
  } catch (const MeshError& e) {
    switch (e.kind) {
      case MeshError::Kind::peer_lost: {
        Napi::Error error = Napi::Error::New(env, e.what());
        error.Set("code", Napi::String::New(env, "ERR_MESH_PEER_LOST"));
        error.Set("rank", Napi::Number::New(env, e.rank));
        throw error;
      }
      case MeshError::Kind::timeout: {
        Napi::Error error = Napi::Error::New(env, e.what());
        error.Set("code", Napi::String::New(env, "ERR_MESH_TIMEOUT"));
        error.Set("rank", Napi::Number::New(env, e.rank));
        throw error;
      }
      case MeshError::Kind::mismatch: {
        Napi::RangeError error = Napi::RangeError::New(env, e.what());
        error.Set("code", Napi::String::New(env, "ERR_MESH_MISMATCH"));
        error.Set("rank", Napi::Number::New(env, e.rank));
        throw error;
      }
      case MeshError::Kind::system: {
        Napi::Error error = Napi::Error::New(env, e.what());
        error.Set("code", Napi::String::New(env, "ERR_MESH_CROSS_MEMORY"));
        error.Set("rank", Napi::Number::New(env, e.rank));
        throw error;
      }
      case MeshError::Kind::argument: throw_range_error(env, "ERR_SWITCH_SHAPE", e.what());
    }
  }
}

int kind_arg(const Napi::Value& v, const Communicator& comm) {
  return static_cast<int>(integer(v, "kind", 0, comm.n_kinds() - 1));
}

Wire wire_arg(const Napi::Value& v) { return integer(v, "wire", 0, 1) == 1 ? Wire::bf16 : Wire::float32; }

// Buffers of one call either are the same array or do not overlap.
void expect_apart(Napi::Env env, const char* fn, const View<float>& a, const View<float>& b, bool same_ok) {
  const float* a_end = a.data + a.length;
  const float* b_end = b.data + b.length;
  if (a.length == 0 || b.length == 0 || a_end <= b.data || b_end <= a.data) return;
  if (same_ok && a.data == b.data && a.length == b.length) return;
  throw_range_error(env, "ERR_SWITCH_SHAPE",
                    std::string(fn) + ": 'send' and 'recv' overlap" + (same_ok ? " (only the very same array may be passed twice)" : ""));
}

// A Float32Array's elements in place, with the checks of args.h in two N-API calls instead of
// seven (this runs on every collective call, where a microsecond is a third of the latency).
View<float> f32(const Napi::Value& value, const char* name) {
  Napi::Env env = value.Env();
  napi_typedarray_type type = napi_int8_array;
  size_t length = 0;
  void* data = nullptr;
  if (!value.IsTypedArray() ||
      napi_get_typedarray_info(env, value, &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_float32_array)
    throw_type_error(env, "ERR_SWITCH_ARG_TYPE", std::string("argument '") + name + "' must be a Float32Array");
  if (data == nullptr) return float32_array(value, name);   // detached (throws) or empty
  return {static_cast<float*>(data), length};
}

std::string where(const Communicator& comm, int kind) {
  return " (group of " + std::to_string(comm.group(kind).size()) + " devices, " + comm.group(kind).name + ")";
}

// ---- the launcher's side ----

Napi::Value create_arena(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 3, "meshCreateArena");
  if (!info[0].IsArray()) throw_type_error(env, "ERR_SWITCH_ARG_TYPE", "argument 'axisSizes' must be an array");
  Napi::Array sizes_js = info[0].As<Napi::Array>();
  std::vector<int> sizes;
  for (uint32_t i = 0; i < sizes_js.Length(); ++i)
    sizes.push_back(static_cast<int>(integer(sizes_js.Get(i), "axisSizes[i]", 1, mesh::kMaxRanks)));
  const int64_t slot = integer(info[1], "slotBytes", static_cast<int64_t>(mesh::kMinSlotBytes),
                               static_cast<int64_t>(mesh::kMaxSlotBytes));
  const int64_t heap = integer(info[2], "heapBytes", 0, static_cast<int64_t>(mesh::kMaxHeapBytes));
  auto* h = new ArenaHandle();
  try {
    h->arena = Arena::create(sizes, static_cast<size_t>(slot), static_cast<size_t>(heap));
  } catch (const std::exception& e) {
    delete h;
    throw_error(env, "ERR_MESH_LAUNCH", e.what());
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", h->arena->fd());
  out.Set("bytes", static_cast<double>(h->arena->layout().total_bytes));
  out.Set("arena", Napi::External<ArenaHandle>::New(env, h, [](Napi::Env, ArenaHandle* p) { delete p; }));
  return out;
}

Napi::Value arena_mark_lost(const Napi::CallbackInfo& info) {
  expect_args(info, 2, "meshArenaMarkLost");
  Arena& arena = open_arena(info[0]);
  const int rank = static_cast<int>(integer(info[1], "rank", 0, arena.n_ranks() - 1));
  return Napi::Boolean::New(info.Env(), arena.mark_lost(rank));
}

Napi::Value arena_mark_finished(const Napi::CallbackInfo& info) {
  expect_args(info, 2, "meshArenaMarkFinished");
  Arena& arena = open_arena(info[0]);
  const int rank = static_cast<int>(integer(info[1], "rank", 0, arena.n_ranks() - 1));
  if (arena.state(rank) != mesh::RankState::lost) arena.mark_state(rank, mesh::RankState::finished);
  return info.Env().Undefined();
}

Napi::Value arena_lost_rank(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "meshArenaLostRank");
  return Napi::Number::New(info.Env(), open_arena(info[0]).lost_rank());
}

Napi::Value arena_close_fd(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "meshArenaCloseFd");
  open_arena(info[0]).close_fd();
  return info.Env().Undefined();
}

Napi::Value arena_close(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "meshArenaClose");
  handle<ArenaHandle>(info[0], "arena")->arena.reset();
  return info.Env().Undefined();
}

// ---- a device's side ----

Napi::Value attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 6, "meshAttach");
  const int fd = static_cast<int>(integer(info[0], "fd", 0, 1 << 20));
  const int rank = static_cast<int>(integer(info[1], "rank", 0, mesh::kMaxRanks - 1));
  if (!info[2].IsArray()) throw_type_error(env, "ERR_SWITCH_ARG_TYPE", "argument 'axisNames' must be an array");
  std::vector<std::string> names;
  Napi::Array names_js = info[2].As<Napi::Array>();
  for (uint32_t i = 0; i < names_js.Length(); ++i) names.push_back(names_js.Get(i).ToString().Utf8Value());
  const int64_t timeout_ms = integer(info[3], "timeoutMs", 1, int64_t{1} << 40);
  const int64_t parent = integer(info[4], "parentPid", 0, int64_t{1} << 31);
  // The launcher's probe word (0: cross-memory attach off): readable means the system lets a
  // device read its peers' memory (same user, no ptrace restriction, no seccomp filter).
  const int64_t probe = integer(info[5], "crossMemoryProbe", 0, int64_t{1} << 52);
  // A device dies with its launcher, whatever kills the launcher; if the launcher is already gone
  // (it died before this line), leave at once.
  // (parentPid 0: a device inside the calling process itself, no launcher to watch.)
  if (parent != 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != static_cast<pid_t>(parent)) _exit(70);
  }
  auto* h = new DeviceHandle();
  if (const char* v = getenv("SWITCH_MESH_ADOPT_BYTES")) h->adopt_min_bytes = static_cast<size_t>(std::strtoull(v, nullptr, 10));
  try {
    // In-process, the creator keeps its descriptor: map a duplicate. Either way the mapping is
    // all a device needs.
    const int own = parent != 0 ? fd : dup(fd);
    if (own < 0) throw std::runtime_error("mesh: cannot duplicate the arena descriptor");
    try {
      h->arena = Arena::attach(own);
    } catch (...) {
      if (own != fd) close(own);
      throw;
    }
    h->arena->close_fd();
    if (rank >= h->arena->n_ranks()) throw std::runtime_error("mesh: rank beyond the arena's ranks");
    const bool cross_memory = parent != 0 && probe != 0 &&
                              mesh::probe_cross_memory(static_cast<int>(parent), static_cast<uint64_t>(probe));
    h->comm = std::make_unique<Communicator>(*h->arena, rank, names, timeout_ms, cross_memory);
  } catch (const std::exception& e) {
    delete h;
    throw_error(env, "ERR_MESH_LAUNCH", e.what());
  }
  return Napi::External<DeviceHandle>::New(env, h, [](Napi::Env e, DeviceHandle* p) {
    for (SeenBuffer& b : p->seen) napi_delete_reference(e, b.buffer);
    delete p;
  });
}

Napi::Value group_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 2, "meshGroup");
  Communicator& comm = device(info[0]);
  const mesh::Group& g = comm.group(kind_arg(info[1], comm));
  Napi::Array ranks = Napi::Array::New(env, g.ranks.size());
  for (size_t i = 0; i < g.ranks.size(); ++i) ranks.Set(static_cast<uint32_t>(i), g.ranks[i]);
  Napi::Object out = Napi::Object::New(env);
  out.Set("ranks", ranks);
  out.Set("index", g.index);
  return out;
}

Napi::Value barrier(const Napi::CallbackInfo& info) {
  expect_args(info, 2, "barrier");
  Communicator& comm = device(info[0]);
  const int kind = kind_arg(info[1], comm);
  run(info.Env(), [&] { comm.barrier(kind); });
  return info.Env().Undefined();
}

Napi::Value broadcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 5, "broadcast");
  Communicator& comm = device(info[0]);
  const int kind = kind_arg(info[1], comm);
  View<float> buf = f32(info[2], "buffer");
  const int root = static_cast<int>(integer(info[3], "root", 0, comm.group(kind).size() - 1));
  const Wire wire = wire_arg(info[4]);
  run(env, [&] { comm.broadcast(kind, buf.data, static_cast<int64_t>(buf.length), root, wire); });
  return info[2];
}

Napi::Value all_reduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 5, "allReduce");
  Communicator& comm = device(info[0]);
  const int kind = kind_arg(info[1], comm);
  View<float> send = f32(info[2], "send");
  View<float> recv = f32(info[3], "recv");
  if (recv.length != send.length) expect_length(env, recv, send.length, "recv", "like 'send'" + where(comm, kind));
  expect_apart(env, "allReduce", send, recv, true);
  const Wire wire = wire_arg(info[4]);
  run(env, [&] { comm.all_reduce(kind, recv.data, send.data, static_cast<int64_t>(send.length), wire); });
  return info[3];
}

Napi::Value all_gather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 5, "allGather");
  Communicator& comm = device(info[0]);
  const int kind = kind_arg(info[1], comm);
  View<float> send = f32(info[2], "send");
  View<float> recv = f32(info[3], "recv");
  const size_t P = static_cast<size_t>(comm.group(kind).size());
  if (recv.length != send.length * P) expect_length(env, recv, send.length * P, "recv", "[" + std::to_string(P) + " × " + std::to_string(send.length) + "]" + where(comm, kind));
  expect_apart(env, "allGather", send, recv, false);
  const Wire wire = wire_arg(info[4]);
  run(env, [&] { comm.all_gather(kind, recv.data, send.data, static_cast<int64_t>(send.length), wire); });
  return info[3];
}

Napi::Value reduce_scatter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 5, "reduceScatter");
  Communicator& comm = device(info[0]);
  const int kind = kind_arg(info[1], comm);
  View<float> send = f32(info[2], "send");
  View<float> recv = f32(info[3], "recv");
  const size_t P = static_cast<size_t>(comm.group(kind).size());
  if (send.length != recv.length * P) expect_length(env, send, recv.length * P, "send", "[" + std::to_string(P) + " × " + std::to_string(recv.length) + "]" + where(comm, kind));
  expect_apart(env, "reduceScatter", send, recv, false);
  const Wire wire = wire_arg(info[4]);
  run(env, [&] { comm.reduce_scatter(kind, recv.data, send.data, static_cast<int64_t>(recv.length), wire); });
  return info[3];
}

Napi::Value all_to_all(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 5, "allToAll");
  Communicator& comm = device(info[0]);
  const int kind = kind_arg(info[1], comm);
  View<float> send = f32(info[2], "send");
  View<float> recv = f32(info[3], "recv");
  const size_t P = static_cast<size_t>(comm.group(kind).size());
  if (send.length % P != 0)
    throw_range_error(env, "ERR_SWITCH_SHAPE",
                      "allToAll: argument 'send' must have a multiple of " + std::to_string(P) +
                          " elements (one equal chunk per peer), got " + std::to_string(send.length) + where(comm, kind));
  if (recv.length != send.length) expect_length(env, recv, send.length, "recv", "[" + std::to_string(P) + " × " + std::to_string(send.length / P) + "], like 'send'" + where(comm, kind));
  expect_apart(env, "allToAll", send, recv, true);
  const Wire wire = wire_arg(info[4]);
  const mesh::Adopted* pages = nullptr;
  if (P > 1 && send.data != recv.data && !comm.in_heap(send.data, send.length * 4))
    pages = adopted_pages(env, *handle<DeviceHandle>(info[0], "device"), info[2], send.length * 4);
  run(env, [&] { comm.all_to_all(kind, recv.data, send.data, static_cast<int64_t>(send.length / P), wire, pages); });
  return info[3];
}

std::vector<int64_t> counts_arg(const Napi::Value& v, const char* name, size_t P, size_t limit) {
  Napi::Env env = v.Env();
  std::vector<int64_t> counts;
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
    View<int32_t> a = int32_array(v, name);
    counts.assign(a.data, a.data + a.length);
  } else if (v.IsArray()) {
    Napi::Array a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) counts.push_back(integer(a.Get(i), name, 0, int64_t{1} << 40));
  } else {
    throw_type_error(env, "ERR_SWITCH_ARG_TYPE", std::string("allToAllv: argument '") + name + "' must be an Int32Array or an array of numbers");
  }
  if (counts.size() != P)
    throw_range_error(env, "ERR_SWITCH_SHAPE",
                      std::string("allToAllv: argument '") + name + "' must have one count per peer (" + std::to_string(P) + "), got " +
                          std::to_string(counts.size()));
  int64_t total = 0;
  for (size_t p = 0; p < P; ++p) {
    if (counts[p] < 0)
      throw_range_error(env, "ERR_SWITCH_RANGE", std::string("allToAllv: ") + name + "[" + std::to_string(p) + "] is negative");
    total += counts[p];
  }
  if (static_cast<size_t>(total) != limit)
    throw_range_error(env, "ERR_SWITCH_SHAPE",
                      std::string("allToAllv: the ") + name + " add up to " + std::to_string(total) + ", but the buffer has " +
                          std::to_string(limit) + " elements");
  return counts;
}

Napi::Value all_to_allv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 7, "allToAllv");
  Communicator& comm = device(info[0]);
  const int kind = kind_arg(info[1], comm);
  View<float> send = f32(info[2], "send");
  View<float> recv = f32(info[4], "recv");
  const size_t P = static_cast<size_t>(comm.group(kind).size());
  const std::vector<int64_t> send_counts = counts_arg(info[3], "sendCounts", P, send.length);
  const std::vector<int64_t> recv_counts = counts_arg(info[5], "recvCounts", P, recv.length);
  expect_apart(env, "allToAllv", send, recv, false);
  const Wire wire = wire_arg(info[6]);
  run(env, [&] { comm.all_to_allv(kind, recv.data, recv_counts.data(), send.data, send_counts.data(), wire); });
  return info[4];
}

// A Float32Array over n floats of this device's heap in the arena (never freed: the heap lives as
// long as the process). An all-to-all reads such a send buffer in place.
Napi::Value alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 2, "meshAlloc");
  DeviceHandle* h = handle<DeviceHandle>(info[0], "device");
  if (!h->comm) throw_error(env, "ERR_SWITCH_STATE", "the mesh device is closed");
  const int64_t n = integer(info[1], "length", 0, int64_t{1} << 40);
  float* p = h->comm->alloc(n);
  if (!p)
    throw_range_error(env, "ERR_SWITCH_RANGE",
                      "alloc: " + std::to_string(n) + " floats do not fit in this device's shared heap (" +
                          std::to_string(h->arena->heap_bytes() - h->comm->heap_used()) +
                          " bytes left; raise launchMesh's heapBytes)");
  Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, p, static_cast<size_t>(n) * 4);
  return Napi::Float32Array::New(env, static_cast<size_t>(n), buffer, 0);
}

// Binds this device process to `count` CPUs starting at the first·count-th of those it may use
// (device r of a mesh takes CPUs r·t ... r·t + t − 1): waiting devices then never get pulled onto
// one core by wake-ups, as the launcher of an MPI job does for small jobs. Returns false when
// there are not enough CPUs (nothing changed).
Napi::Value pin_cpus(const Napi::CallbackInfo& info) {
  expect_args(info, 2, "meshPinCpus");
  const int64_t first = integer(info[0], "first", 0, CPU_SETSIZE);
  const int64_t count = integer(info[1], "count", 1, CPU_SETSIZE);
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return Napi::Boolean::New(info.Env(), false);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  if (static_cast<size_t>(first + count) > cpus.size()) return Napi::Boolean::New(info.Env(), false);
  cpu_set_t mine;
  CPU_ZERO(&mine);
  for (int64_t i = first; i < first + count; ++i) CPU_SET(cpus[static_cast<size_t>(i)], &mine);
  return Napi::Boolean::New(info.Env(), sched_setaffinity(0, sizeof(mine), &mine) == 0);
}

Napi::Value cross_memory_probe(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(mesh::cross_memory_probe_address()));
}

Napi::Value set_cross_memory_min_bytes(const Napi::CallbackInfo& info) {
  expect_args(info, 2, "meshSetCrossMemoryMinBytes");
  device(info[0]).set_cross_memory_min_bytes(static_cast<size_t>(integer(info[1], "bytes", 0, int64_t{1} << 40)));
  return info.Env().Undefined();
}

Napi::Value set_timeout(const Napi::CallbackInfo& info) {
  expect_args(info, 2, "meshSetTimeout");
  device(info[0]).set_timeout_ms(integer(info[1], "timeoutMs", 1, int64_t{1} << 40));
  return info.Env().Undefined();
}

Napi::Value set_wait_policy(const Napi::CallbackInfo& info) {
  expect_args(info, 3, "meshSetWaitPolicy");
  mesh::WaitPolicy& p = device(info[0]).wait_policy();
  p.spin_ns = integer(info[1], "spinMicroseconds", 0, 10000000) * 1000;
  p.yield_ns = integer(info[2], "yieldMicroseconds", 0, 10000000) * 1000;
  return info.Env().Undefined();
}

Napi::Value stats(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "meshStats");
  const mesh::Stats& s = device(info[0]).stats();
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("calls", static_cast<double>(s.calls));
  out.Set("seconds", s.seconds);
  out.Set("waitSeconds", s.wait_seconds);
  out.Set("bytesSent", static_cast<double>(s.bytes_sent));
  out.Set("bytesReadInPlace", static_cast<double>(s.bytes_read_in_place));
  out.Set("bytesCrossMemory", static_cast<double>(s.bytes_cross_memory));
  out.Set("crossMemory", Napi::Boolean::New(info.Env(), device(info[0]).cross_memory()));
  return out;
}

Napi::Value reset_stats(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "meshResetStats");
  device(info[0]).reset_stats();
  return info.Env().Undefined();
}

Napi::Value device_mark(const Napi::CallbackInfo& info) {
  expect_args(info, 2, "meshDeviceMark");
  DeviceHandle* h = handle<DeviceHandle>(info[0], "device");
  if (!h->arena) return info.Env().Undefined();
  const int rank = h->comm->rank();
  const std::string what = info[1].ToString().Utf8Value();
  if (what == "lost")
    h->arena->mark_lost(rank);
  else if (h->arena->state(rank) != mesh::RankState::lost)
    h->arena->mark_state(rank, mesh::RankState::finished);
  return info.Env().Undefined();
}

}  // namespace

void init_mesh(Napi::Env env, Napi::Object exports) {
  exports.Set("meshCreateArena", Napi::Function::New(env, create_arena, "meshCreateArena"));
  exports.Set("meshArenaMarkLost", Napi::Function::New(env, arena_mark_lost, "meshArenaMarkLost"));
  exports.Set("meshArenaMarkFinished", Napi::Function::New(env, arena_mark_finished, "meshArenaMarkFinished"));
  exports.Set("meshArenaLostRank", Napi::Function::New(env, arena_lost_rank, "meshArenaLostRank"));
  exports.Set("meshArenaCloseFd", Napi::Function::New(env, arena_close_fd, "meshArenaCloseFd"));
  exports.Set("meshArenaClose", Napi::Function::New(env, arena_close, "meshArenaClose"));
  exports.Set("meshAttach", Napi::Function::New(env, attach, "meshAttach"));
  exports.Set("meshGroup", Napi::Function::New(env, group_info, "meshGroup"));
  exports.Set("meshBarrier", Napi::Function::New(env, barrier, "meshBarrier"));
  exports.Set("meshBroadcast", Napi::Function::New(env, broadcast, "meshBroadcast"));
  exports.Set("meshAllReduce", Napi::Function::New(env, all_reduce, "meshAllReduce"));
  exports.Set("meshAllGather", Napi::Function::New(env, all_gather, "meshAllGather"));
  exports.Set("meshReduceScatter", Napi::Function::New(env, reduce_scatter, "meshReduceScatter"));
  exports.Set("meshAllToAll", Napi::Function::New(env, all_to_all, "meshAllToAll"));
  exports.Set("meshAllToAllv", Napi::Function::New(env, all_to_allv, "meshAllToAllv"));
  exports.Set("meshAlloc", Napi::Function::New(env, alloc, "meshAlloc"));
  exports.Set("meshPinCpus", Napi::Function::New(env, pin_cpus, "meshPinCpus"));
  exports.Set("meshCrossMemoryProbe", Napi::Function::New(env, cross_memory_probe, "meshCrossMemoryProbe"));
  exports.Set("meshSetCrossMemoryMinBytes", Napi::Function::New(env, set_cross_memory_min_bytes, "meshSetCrossMemoryMinBytes"));
  exports.Set("meshSetTimeout", Napi::Function::New(env, set_timeout, "meshSetTimeout"));
  exports.Set("meshSetWaitPolicy", Napi::Function::New(env, set_wait_policy, "meshSetWaitPolicy"));
  exports.Set("meshStats", Napi::Function::New(env, stats, "meshStats"));
  exports.Set("meshResetStats", Napi::Function::New(env, reset_stats, "meshResetStats"));
  exports.Set("meshDeviceMark", Napi::Function::New(env, device_mark, "meshDeviceMark"));
}

}  // namespace st::addon
