// Bindings of the native core: CPU information, the thread pool, the instruction set.
#include "../kernels/cpu.h"
#include "../kernels/threadpool.h"
#include "args.h"
#include "bindings.h"

namespace st::addon {

namespace {

Napi::Value cpu_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CpuFeatures f = cpu_features();
  Napi::Object out = Napi::Object::New(env);
  out.Set("isa", isa_name(active_isa()));
  out.Set("bestIsa", isa_name(best_isa()));
  out.Set("threads", num_threads());
  out.Set("hardwareThreads", hardware_threads());
  Napi::Object features = Napi::Object::New(env);
  features.Set("sse2", f.sse2);
  features.Set("avx", f.avx && f.os_avx);
  features.Set("avx2", f.avx2);
  features.Set("fma", f.fma);
  features.Set("f16c", f.f16c);
  out.Set("features", features);
  return out;
}

Napi::Value set_isa(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 1, "setIsa");
  if (!info[0].IsString()) throw_type_error(env, "ERR_SWITCH_ARG_TYPE", "argument 'isa' must be 'portable' or 'avx2'");
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  Isa isa;
  if (!parse_isa(name.c_str(), &isa))
    throw_range_error(env, "ERR_SWITCH_RANGE", "argument 'isa' must be 'portable' or 'avx2', got '" + name + "'");
  if (!set_active_isa(isa))
    throw_range_error(env, "ERR_SWITCH_UNSUPPORTED", "this CPU cannot run isa '" + name + "'");
  return env.Undefined();
}

Napi::Value set_threads(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "setNumThreads");
  set_num_threads(static_cast<int>(integer(info[0], "n", 1, kMaxThreads)));
  return info.Env().Undefined();
}

Napi::Value get_threads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), num_threads()); }

}  // namespace

void init_core(Napi::Env env, Napi::Object exports) {
  exports.Set("cpuInfo", Napi::Function::New(env, cpu_info, "cpuInfo"));
  exports.Set("setIsa", Napi::Function::New(env, set_isa, "setIsa"));
  exports.Set("setNumThreads", Napi::Function::New(env, set_threads, "setNumThreads"));
  exports.Set("numThreads", Napi::Function::New(env, get_threads, "numThreads"));
}

}  // namespace st::addon
