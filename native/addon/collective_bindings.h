// The collectives' bindings, shared by every transport of the device mesh: the shared-memory
// Communicator (mesh.cc) and MpiCommunicator (mpi.cc) offer the same methods, so one set of
// argument checks and error codes serves both. `Get` turns the handle argument into the transport.
#pragma once

#include <string>
#include <vector>

#include "../mesh/collectives.h"
#include "../mesh/sync.h"
#include "args.h"

namespace st::addon::collectives {

using mesh::Group;
using mesh::MeshError;
using mesh::Stats;
using mesh::Wire;

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
        if (e.rank >= 0) error.Set("rank", Napi::Number::New(env, e.rank));   // (MPI cannot tell whom it waits for)
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

template <class C>
int kind_arg(const Napi::Value& v, const C& comm) {
  return static_cast<int>(integer(v, "kind", 0, comm.n_kinds() - 1));
}

inline Wire wire_arg(const Napi::Value& v) { return integer(v, "wire", 0, 1) == 1 ? Wire::bf16 : Wire::float32; }

// Buffers of one call either are the same array or do not overlap.
inline void expect_apart(Napi::Env env, const char* fn, const View<float>& a, const View<float>& b, bool same_ok) {
  const float* a_end = a.data + a.length;
  const float* b_end = b.data + b.length;
  if (a.length == 0 || b.length == 0 || a_end <= b.data || b_end <= a.data) return;
  if (same_ok && a.data == b.data && a.length == b.length) return;
  throw_range_error(env, "ERR_SWITCH_SHAPE",
                    std::string(fn) + ": 'send' and 'recv' overlap" + (same_ok ? " (only the very same array may be passed twice)" : ""));
}

// A Float32Array's elements in place, with the checks of args.h in two N-API calls instead of
// seven (this runs on every collective call, where 100 ns is a third of the latency).
inline View<float> f32(const Napi::Value& value, const char* name) {
  Napi::Env env = value.Env();
  napi_typedarray_type type = napi_int8_array;
  size_t length = 0;
  void* data = nullptr;
  // (napi_get_typedarray_info itself refuses what is not a TypedArray: napi_invalid_arg.)
  if (napi_get_typedarray_info(env, value, &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_float32_array)
    throw_type_error(env, "ERR_SWITCH_ARG_TYPE", std::string("argument '") + name + "' must be a Float32Array");
  if (data == nullptr) return float32_array(value, name);   // detached (throws) or empty
  return {static_cast<float*>(data), length};
}

template <class C>
std::string where(const C& comm, int kind) {
  return " (group of " + std::to_string(comm.group(kind).size()) + " devices, " + comm.group(kind).name + ")";
}

template <class C, C& (*Get)(const Napi::Value&)>
Napi::Value group_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 2, "meshGroup");
  C& comm = Get(info[0]);
  const Group& g = comm.group(kind_arg(info[1], comm));
  Napi::Array ranks = Napi::Array::New(env, g.ranks.size());
  for (size_t i = 0; i < g.ranks.size(); ++i) ranks.Set(static_cast<uint32_t>(i), g.ranks[i]);
  Napi::Object out = Napi::Object::New(env);
  out.Set("ranks", ranks);
  out.Set("index", g.index);
  return out;
}

template <class C, C& (*Get)(const Napi::Value&)>
Napi::Value barrier(const Napi::CallbackInfo& info) {
  expect_args(info, 2, "barrier");
  C& comm = Get(info[0]);
  const int kind = kind_arg(info[1], comm);
  run(info.Env(), [&] { comm.barrier(kind); });
  return info.Env().Undefined();
}

template <class C, C& (*Get)(const Napi::Value&)>
Napi::Value broadcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 5, "broadcast");
  C& comm = Get(info[0]);
  const int kind = kind_arg(info[1], comm);
  View<float> buf = f32(info[2], "buffer");
  const int root = static_cast<int>(integer(info[3], "root", 0, comm.group(kind).size() - 1));
  const Wire wire = wire_arg(info[4]);
  run(env, [&] { comm.broadcast(kind, buf.data, static_cast<int64_t>(buf.length), root, wire); });
  return info[2];
}

template <class C, C& (*Get)(const Napi::Value&)>
Napi::Value all_reduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 5, "allReduce");
  C& comm = Get(info[0]);
  const int kind = kind_arg(info[1], comm);
  View<float> send = f32(info[2], "send");
  View<float> recv = f32(info[3], "recv");
  if (recv.length != send.length) expect_length(env, recv, send.length, "recv", "like 'send'" + where(comm, kind));
  expect_apart(env, "allReduce", send, recv, true);
  const Wire wire = wire_arg(info[4]);
  run(env, [&] { comm.all_reduce(kind, recv.data, send.data, static_cast<int64_t>(send.length), wire); });
  return info[3];
}

template <class C, C& (*Get)(const Napi::Value&)>
Napi::Value all_gather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 5, "allGather");
  C& comm = Get(info[0]);
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

template <class C, C& (*Get)(const Napi::Value&)>
Napi::Value reduce_scatter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 5, "reduceScatter");
  C& comm = Get(info[0]);
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

// The checked arguments of allToAll(handle, kind, send, recv, wire).
struct AllToAllArgs {
  int kind;
  View<float> send, recv;
  size_t P;
  Wire wire;
};

template <class C>
AllToAllArgs all_to_all_args(const Napi::CallbackInfo& info, C& comm) {
  Napi::Env env = info.Env();
  expect_args(info, 5, "allToAll");
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
  return {kind, send, recv, P, wire_arg(info[4])};
}

template <class C, C& (*Get)(const Napi::Value&)>
Napi::Value all_to_all(const Napi::CallbackInfo& info) {
  C& comm = Get(info[0]);
  const AllToAllArgs a = all_to_all_args(info, comm);
  run(info.Env(), [&] { comm.all_to_all(a.kind, a.recv.data, a.send.data, static_cast<int64_t>(a.send.length / a.P), a.wire); });
  return info[3];
}

// The timed loop of a benchmark, inside C++ the way an MPI program times itself: `repeats` ×
// (barrier, then one all-to-all timed on its own); returns each all-to-all's seconds. It shows
// what the collective costs without the JavaScript call around it. `call` runs one all-to-all.
template <class C, class F>
Napi::Value time_all_to_all(const Napi::CallbackInfo& info, C& comm, int kind, F&& call) {
  Napi::Env env = info.Env();
  const int64_t repeats = integer(info[5], "repeats", 1, int64_t{1} << 24);
  Napi::Float64Array seconds = Napi::Float64Array::New(env, static_cast<size_t>(repeats));
  double* out = seconds.Data();
  run(env, [&] {
    for (int64_t i = 0; i < repeats; ++i) {
      comm.barrier(kind);
      const int64_t start = mesh::now_ns();
      call();
      out[i] = static_cast<double>(mesh::now_ns() - start) * 1e-9;
    }
  });
  return seconds;
}

// benchAllToAll(handle, kind, send, recv, wire, repeats): the all-to-all's arguments and checks,
// then time_all_to_all.
template <class C, C& (*Get)(const Napi::Value&)>
Napi::Value bench_all_to_all(const Napi::CallbackInfo& info) {
  expect_args(info, 6, "benchAllToAll");
  C& comm = Get(info[0]);
  const AllToAllArgs a = all_to_all_args(info, comm);
  return time_all_to_all(info, comm, a.kind, [&] {
    comm.all_to_all(a.kind, a.recv.data, a.send.data, static_cast<int64_t>(a.send.length / a.P), a.wire);
  });
}

inline std::vector<int64_t> counts_arg(const Napi::Value& v, const char* name, size_t P, size_t limit) {
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

template <class C, C& (*Get)(const Napi::Value&)>
Napi::Value all_to_allv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 7, "allToAllv");
  C& comm = Get(info[0]);
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

template <class C, C& (*Get)(const Napi::Value&)>
Napi::Value set_timeout(const Napi::CallbackInfo& info) {
  expect_args(info, 2, "meshSetTimeout");
  Get(info[0]).set_timeout_ms(integer(info[1], "timeoutMs", 1, int64_t{1} << 40));
  return info.Env().Undefined();
}

template <class C, C& (*Get)(const Napi::Value&)>
Napi::Value stats(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "meshStats");
  const Stats& s = Get(info[0]).stats();
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("calls", static_cast<double>(s.calls));
  out.Set("seconds", s.seconds);
  out.Set("waitSeconds", s.wait_seconds);
  out.Set("bytesSent", static_cast<double>(s.bytes_sent));
  out.Set("bytesReadInPlace", static_cast<double>(s.bytes_read_in_place));
  out.Set("bytesCrossMemory", static_cast<double>(s.bytes_cross_memory));
  out.Set("crossMemory", Napi::Boolean::New(info.Env(), Get(info[0]).cross_memory()));
  return out;
}

template <class C, C& (*Get)(const Napi::Value&)>
Napi::Value reset_stats(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "meshResetStats");
  Get(info[0]).reset_stats();
  return info.Env().Undefined();
}

// Registers the bindings under `prefix` + Group, Barrier, Broadcast, ... (e.g. meshAllToAll).
template <class C, C& (*Get)(const Napi::Value&)>
void export_all(Napi::Env env, Napi::Object exports, const std::string& prefix) {
  auto set = [&](const char* name, Napi::Value (*fn)(const Napi::CallbackInfo&)) {
    const std::string full = prefix + name;
    exports.Set(full, Napi::Function::New(env, fn, full));
  };
  set("Group", group_info<C, Get>);
  set("Barrier", barrier<C, Get>);
  set("Broadcast", broadcast<C, Get>);
  set("AllReduce", all_reduce<C, Get>);
  set("AllGather", all_gather<C, Get>);
  set("ReduceScatter", reduce_scatter<C, Get>);
  set("AllToAll", all_to_all<C, Get>);
  set("AllToAllv", all_to_allv<C, Get>);
  set("BenchAllToAll", bench_all_to_all<C, Get>);
  set("SetTimeout", set_timeout<C, Get>);
  set("Stats", stats<C, Get>);
  set("ResetStats", reset_stats<C, Get>);
}

}  // namespace st::addon::collectives
