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
#include "collective_bindings.h"

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

// The checked arguments of the last all-to-all, for meshAllToAllAgain: the same two arrays again
// (the caller holds them, so they are alive; it checks they still have this length, which a
// detached or shrunk buffer would not) skip the TypedArray look-ups, a third of a small call.
struct LastAllToAll {
  bool valid = false;
  int kind = 0;
  const float* send = nullptr;
  float* recv = nullptr;
  int64_t n = 0;   // elements per peer
};

struct DeviceHandle {
  std::unique_ptr<Arena> arena;
  std::unique_ptr<Communicator> comm;
  std::vector<SeenBuffer> seen;
  size_t adopt_min_bytes = 32 * 1024;   // send buffers from this size on; 0: never
  LastAllToAll last;
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
  // One N-API call (it refuses a value that is not an External): collectives pay it per call.
  void* data = nullptr;
  if (napi_get_value_external(value.Env(), value, &data) != napi_ok || data == nullptr)
    throw_type_error(value.Env(), "ERR_SWITCH_ARG_TYPE", std::string("expected a mesh ") + what + " handle");
  return static_cast<T*>(data);
}

Arena& open_arena(const Napi::Value& value) {
  ArenaHandle* h = handle<ArenaHandle>(value, "arena");
  if (!h->arena) throw_error(value.Env(), "ERR_SWITCH_STATE", "the mesh arena is closed");
  return *h->arena;
}

DeviceHandle& device_handle(const Napi::Value& value) {
  DeviceHandle* h = handle<DeviceHandle>(value, "device");
  if (!h->comm) throw_error(value.Env(), "ERR_SWITCH_STATE", "the mesh device is closed");
  return *h;
}

Communicator& device(const Napi::Value& value) { return *device_handle(value).comm; }

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

// The adopted pages of an all-to-all's send buffer (argument 2), or null where the peers need none:
// one device, sending in place, or a buffer already in the shared heap.
const mesh::Adopted* send_pages(const Napi::CallbackInfo& info, DeviceHandle& h, const collectives::AllToAllArgs& a) {
  if (a.P <= 1 || a.send.data == a.recv.data || h.comm->in_heap(a.send.data, a.send.length * 4)) return nullptr;
  return adopted_pages(info.Env(), h, info[2], a.send.length * 4);
}

// The shared-memory all-to-all: a plain send buffer that comes back gets its pages moved into the
// shared heap (adopted_pages), so that the peers read it in place.
Napi::Value all_to_all(const Napi::CallbackInfo& info) {
  DeviceHandle& h = device_handle(info[0]);
  Communicator& comm = *h.comm;
  const collectives::AllToAllArgs a = collectives::all_to_all_args(info, comm);
  const mesh::Adopted* pages = send_pages(info, h, a);
  const size_t bytes = a.send.length * 4;
  // Remembered for meshAllToAllAgain where no page adoption is (or will be) involved: below the
  // adoption size, adoption off, or a buffer from the heap.
  h.last.valid = false;
  collectives::run(info.Env(), [&] {
    comm.all_to_all(a.kind, a.recv.data, a.send.data, static_cast<int64_t>(a.send.length / a.P), a.wire, pages);
  });
  if (h.adopt_min_bytes == 0 || bytes < h.adopt_min_bytes || comm.in_heap(a.send.data, bytes))
    h.last = {true, a.kind, a.send.data, a.recv.data, static_cast<int64_t>(a.send.length / a.P)};
  return info[3];
}

// meshAllToAllAgain(handle, kind, wire): the last all-to-all's arrays again (Device.allToAll calls
// it only with the very same two arrays, at the same length). False: nothing remembered for this
// kind; the caller then makes the full call.
Napi::Value all_to_all_again(const Napi::CallbackInfo& info) {
  DeviceHandle& h = device_handle(info[0]);
  Napi::Env env = info.Env();
  const int kind = collectives::kind_arg(info[1], *h.comm);
  const Wire wire = collectives::wire_arg(info[2]);
  if (!h.last.valid || h.last.kind != kind) return Napi::Boolean::New(env, false);
  const LastAllToAll last = h.last;
  collectives::run(env, [&] { h.comm->all_to_all(kind, last.recv, last.send, last.n, wire); });
  return Napi::Boolean::New(env, true);
}

// The timed loop of the benchmarks (collectives::time_all_to_all) on the shared-memory path the
// JavaScript call takes: a plain send buffer already seen twice is read in place from its adopted pages.
Napi::Value bench_all_to_all(const Napi::CallbackInfo& info) {
  expect_args(info, 6, "meshBenchAllToAll");
  DeviceHandle& h = device_handle(info[0]);
  Communicator& comm = *h.comm;
  const collectives::AllToAllArgs a = collectives::all_to_all_args(info, comm);
  const mesh::Adopted* pages = send_pages(info, h, a);
  return collectives::time_all_to_all(info, comm, a.kind, [&] {
    comm.all_to_all(a.kind, a.recv.data, a.send.data, static_cast<int64_t>(a.send.length / a.P), a.wire, pages);
  });
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

Napi::Value set_wait_policy(const Napi::CallbackInfo& info) {
  expect_args(info, 3, "meshSetWaitPolicy");
  mesh::WaitPolicy& p = device(info[0]).wait_policy();
  p.spin_ns = integer(info[1], "spinMicroseconds", 0, 10000000) * 1000;
  p.yield_ns = integer(info[2], "yieldMicroseconds", 0, 10000000) * 1000;
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
  collectives::export_all<Communicator, device>(env, exports, "mesh");
  exports.Set("meshCreateArena", Napi::Function::New(env, create_arena, "meshCreateArena"));
  exports.Set("meshArenaMarkLost", Napi::Function::New(env, arena_mark_lost, "meshArenaMarkLost"));
  exports.Set("meshArenaMarkFinished", Napi::Function::New(env, arena_mark_finished, "meshArenaMarkFinished"));
  exports.Set("meshArenaLostRank", Napi::Function::New(env, arena_lost_rank, "meshArenaLostRank"));
  exports.Set("meshArenaCloseFd", Napi::Function::New(env, arena_close_fd, "meshArenaCloseFd"));
  exports.Set("meshArenaClose", Napi::Function::New(env, arena_close, "meshArenaClose"));
  exports.Set("meshAttach", Napi::Function::New(env, attach, "meshAttach"));
  exports.Set("meshAllToAll", Napi::Function::New(env, all_to_all, "meshAllToAll"));
  exports.Set("meshAllToAllAgain", Napi::Function::New(env, all_to_all_again, "meshAllToAllAgain"));
  exports.Set("meshBenchAllToAll", Napi::Function::New(env, bench_all_to_all, "meshBenchAllToAll"));
  exports.Set("meshAlloc", Napi::Function::New(env, alloc, "meshAlloc"));
  exports.Set("meshPinCpus", Napi::Function::New(env, pin_cpus, "meshPinCpus"));
  exports.Set("meshCrossMemoryProbe", Napi::Function::New(env, cross_memory_probe, "meshCrossMemoryProbe"));
  exports.Set("meshSetCrossMemoryMinBytes", Napi::Function::New(env, set_cross_memory_min_bytes, "meshSetCrossMemoryMinBytes"));
  exports.Set("meshSetWaitPolicy", Napi::Function::New(env, set_wait_policy, "meshSetWaitPolicy"));
  exports.Set("meshDeviceMark", Napi::Function::New(env, device_mark, "meshDeviceMark"));
}

}  // namespace st::addon
