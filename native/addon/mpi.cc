// Bindings of the device mesh over MPI (native/mesh/mpi.h): a device process started by mpirun
// attaches, runs the same collectives as on the shared-memory mesh (collective_bindings.h), gathers
// the program's results to rank 0 and finalises.
#include <memory>
#include <string>
#include <vector>

#include "../mesh/mpi.h"
#include "args.h"
#include "bindings.h"
#include "collective_bindings.h"

namespace st::addon {

namespace {

using mesh::MpiCommunicator;

struct MpiHandle {
  std::unique_ptr<MpiCommunicator> comm;
};

MpiCommunicator& mpi_device(const Napi::Value& value) {
  void* data = nullptr;   // (one N-API call, which refuses a value that is not an External)
  if (napi_get_value_external(value.Env(), value, &data) != napi_ok || data == nullptr)
    throw_type_error(value.Env(), "ERR_SWITCH_ARG_TYPE", "expected an MPI mesh device handle");
  MpiHandle* h = static_cast<MpiHandle*>(data);
  if (!h->comm) throw_error(value.Env(), "ERR_SWITCH_STATE", "the MPI mesh device is finalized");
  return *h->comm;
}

// mpiAttach(axisNames, axisSizes, timeoutMs, library, launcherPid) → { handle, rank, size }
Napi::Value attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 5, "mpiAttach");
  if (!info[0].IsArray() || !info[1].IsArray())
    throw_type_error(env, "ERR_SWITCH_ARG_TYPE", "mpiAttach: 'axisNames' and 'axisSizes' must be arrays");
  Napi::Array names_js = info[0].As<Napi::Array>(), sizes_js = info[1].As<Napi::Array>();
  if (names_js.Length() != sizes_js.Length() || names_js.Length() == 0)
    throw_range_error(env, "ERR_SWITCH_SHAPE", "mpiAttach: one size per axis name, at least one axis");
  std::vector<std::string> names;
  std::vector<int> sizes;
  for (uint32_t i = 0; i < names_js.Length(); ++i) {
    names.push_back(names_js.Get(i).ToString().Utf8Value());
    sizes.push_back(static_cast<int>(integer(sizes_js.Get(i), "axisSizes[i]", 1, 1 << 20)));
  }
  const int64_t timeout_ms = integer(info[2], "timeoutMs", 1, int64_t{1} << 40);
  if (!info[3].IsString()) throw_type_error(env, "ERR_SWITCH_ARG_TYPE", "mpiAttach: 'library' must be a string ('' for the default)");
  const std::string library = info[3].As<Napi::String>().Utf8Value();
  const int launcher = static_cast<int>(integer(info[4], "launcherPid", 0, int64_t{1} << 31));
  auto* h = new MpiHandle();
  try {
    h->comm = std::make_unique<MpiCommunicator>(names, sizes, timeout_ms, library, launcher);
  } catch (const std::exception& e) {
    delete h;
    throw_error(env, "ERR_MESH_MPI", e.what());
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("rank", h->comm->rank());
  out.Set("size", h->comm->size());
  // Never finalised by the garbage collector: MPI_Finalize is collective and explicit.
  out.Set("handle", Napi::External<MpiHandle>::New(env, h));
  return out;
}

// mpiGatherBytes(handle, bytes) → on rank 0 an array of every rank's bytes, elsewhere undefined.
Napi::Value gather_bytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 2, "mpiGatherBytes");
  MpiCommunicator& comm = mpi_device(info[0]);
  View<uint8_t> bytes = typed_array<uint8_t>(info[1], napi_uint8_array, "bytes");
  std::vector<std::vector<uint8_t>> all;
  collectives::run(env, [&] { all = comm.gather_bytes(bytes.data, static_cast<int64_t>(bytes.length)); });
  if (comm.rank() != 0) return env.Undefined();
  Napi::Array out = Napi::Array::New(env, all.size());
  for (size_t q = 0; q < all.size(); ++q) out.Set(static_cast<uint32_t>(q), Napi::Buffer<uint8_t>::Copy(env, all[q].data(), all[q].size()));
  return out;
}

// mpiBroadcastBytes(handle, bytes | undefined) → rank 0's bytes, on every rank.
Napi::Value broadcast_bytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 2, "mpiBroadcastBytes");
  MpiCommunicator& comm = mpi_device(info[0]);
  View<uint8_t> bytes{nullptr, 0};
  if (comm.rank() == 0) bytes = typed_array<uint8_t>(info[1], napi_uint8_array, "bytes");
  std::vector<uint8_t> out;
  collectives::run(env, [&] { out = comm.broadcast_bytes(bytes.data, static_cast<int64_t>(bytes.length)); });
  return Napi::Buffer<uint8_t>::Copy(env, out.data(), out.size());
}

Napi::Value abort_job(const Napi::CallbackInfo& info) {
  expect_args(info, 2, "mpiAbort");
  mpi_device(info[0]).abort(static_cast<int>(integer(info[1], "code", 0, 255)));
}

Napi::Value finalize(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "mpiFinalize");
  mpi_device(info[0]).finalize();
  return info.Env().Undefined();
}

}  // namespace

void init_mpi(Napi::Env env, Napi::Object exports) {
  collectives::export_all<MpiCommunicator, mpi_device>(env, exports, "mpi");
  exports.Set("mpiAttach", Napi::Function::New(env, attach, "mpiAttach"));
  exports.Set("mpiGatherBytes", Napi::Function::New(env, gather_bytes, "mpiGatherBytes"));
  exports.Set("mpiBroadcastBytes", Napi::Function::New(env, broadcast_bytes, "mpiBroadcastBytes"));
  exports.Set("mpiAbort", Napi::Function::New(env, abort_job, "mpiAbort"));
  exports.Set("mpiFinalize", Napi::Function::New(env, finalize, "mpiFinalize"));
}

}  // namespace st::addon
