// Bindings of the benchmark measurements (native/bench/bench.h) for `switch-bench`:
// benchFmaPeak, benchMemcpy, benchStreamCopy, benchBf16. Each blocks for the length of the measurement (a CLI tool,
// not a library call) and returns { seconds (median), fastestSeconds, repeats, gflops | gbps }.
#include <string>

#include "../bench/bench.h"
#include "../kernels/threadpool.h"
#include "args.h"
#include "bindings.h"

namespace st::addon {

namespace {

Isa isa_argument(const Napi::Value& value, const char* name, const char* expected = "'portable', 'avx2' or 'avx512'") {
  Napi::Env env = value.Env();
  if (!value.IsString()) throw_type_error(env, "ERR_SWITCH_ARG_TYPE", std::string("argument '") + name + "' must be " + expected);
  const std::string s = value.As<Napi::String>().Utf8Value();
  Isa isa;
  if (!parse_isa(s.c_str(), &isa))
    throw_range_error(env, "ERR_SWITCH_RANGE", std::string("argument '") + name + "' must be " + expected + ", got '" + s + "'");
  if (!isa_supported(isa)) throw_range_error(env, "ERR_SWITCH_UNSUPPORTED", "this CPU cannot run isa '" + s + "'");
  return isa;
}

struct Plan {
  int repeats = 7;
  double min_seconds = 0.2;
};

// The optional trailing (repeats, minSeconds) of every measurement.
Plan plan_arguments(const Napi::CallbackInfo& info, size_t index) {
  Plan plan;
  if (info.Length() > index && !info[index].IsUndefined())
    plan.repeats = static_cast<int>(integer(info[index], "repeats", 1, 1000));
  if (info.Length() > index + 1 && !info[index + 1].IsUndefined()) {
    plan.min_seconds = number(info[index + 1], "minSeconds");
    if (!(plan.min_seconds >= 0 && plan.min_seconds <= 60))
      throw_range_error(info.Env(), "ERR_SWITCH_RANGE", "argument 'minSeconds' must be in [0, 60]");
  }
  return plan;
}

Napi::Object result(Napi::Env env, const bench::Rate& r, const char* unit) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("seconds", r.timing.median_seconds);
  out.Set("fastestSeconds", r.timing.min_seconds);
  out.Set("repeats", r.timing.repeats);
  out.Set(unit, r.rate);
  return out;
}

// benchFmaPeak(isa, threads, repeats?, minSeconds?)
Napi::Value bench_fma_peak(const Napi::CallbackInfo& info) {
  expect_args(info, 2, "benchFmaPeak");
  const Isa isa = isa_argument(info[0], "isa");
  const int threads = static_cast<int>(integer(info[1], "threads", 1, kMaxThreads));
  const Plan plan = plan_arguments(info, 2);
  return result(info.Env(), bench::fma_peak(isa, threads, plan.repeats, plan.min_seconds), "gflops");
}

// benchMemcpy(bytes, threads, repeats?, minSeconds?)
Napi::Value bench_memcpy(const Napi::CallbackInfo& info) {
  expect_args(info, 2, "benchMemcpy");
  const int64_t bytes = integer(info[0], "bytes", 1, int64_t{1} << 32);
  const int threads = static_cast<int>(integer(info[1], "threads", 1, kMaxThreads));
  const Plan plan = plan_arguments(info, 2);
  return result(info.Env(), bench::memcpy_bandwidth(static_cast<size_t>(bytes), threads, plan.repeats, plan.min_seconds), "gbps");
}

// benchStreamCopy(bytes, threads, repeats?, minSeconds?): memcpy's count, non-temporal stores
Napi::Value bench_stream_copy(const Napi::CallbackInfo& info) {
  expect_args(info, 2, "benchStreamCopy");
  const int64_t bytes = integer(info[0], "bytes", 64, int64_t{1} << 32);
  const int threads = static_cast<int>(integer(info[1], "threads", 1, kMaxThreads));
  const Plan plan = plan_arguments(info, 2);
  return result(info.Env(), bench::stream_copy_bandwidth(static_cast<size_t>(bytes), threads, plan.repeats, plan.min_seconds), "gbps");
}

// benchBf16(direction: 'toBfloat16' | 'fromBfloat16', n, threads,
//           impl: 'reference' | 'portable' | 'avx2' | 'avx512', repeats?, minSeconds?)
Napi::Value bench_bf16(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 4, "benchBf16");
  if (!info[0].IsString()) throw_type_error(env, "ERR_SWITCH_ARG_TYPE", "argument 'direction' must be 'toBfloat16' or 'fromBfloat16'");
  const std::string direction = info[0].As<Napi::String>().Utf8Value();
  if (direction != "toBfloat16" && direction != "fromBfloat16")
    throw_range_error(env, "ERR_SWITCH_RANGE", "argument 'direction' must be 'toBfloat16' or 'fromBfloat16', got '" + direction + "'");
  const int64_t n = integer(info[1], "n", 1, int64_t{1} << 30);
  const int threads = static_cast<int>(integer(info[2], "threads", 1, kMaxThreads));
  const char* expected = "'reference', 'portable', 'avx2' or 'avx512'";
  if (!info[3].IsString()) throw_type_error(env, "ERR_SWITCH_ARG_TYPE", std::string("argument 'impl' must be ") + expected);
  bench::Bf16Impl impl = bench::Bf16Impl::reference;
  if (info[3].As<Napi::String>().Utf8Value() != "reference") {
    const Isa isa = isa_argument(info[3], "impl", expected);
    impl = isa == Isa::avx512 ? bench::Bf16Impl::avx512 : isa == Isa::avx2 ? bench::Bf16Impl::avx2 : bench::Bf16Impl::portable;
  }
  const bench::Bf16Direction d = direction == "toBfloat16" ? bench::Bf16Direction::to_bf16 : bench::Bf16Direction::from_bf16;
  const Plan plan = plan_arguments(info, 4);
  return result(env, bench::bf16_conversion(d, n, impl, threads, plan.repeats, plan.min_seconds), "gbps");
}

}  // namespace

void init_bench(Napi::Env env, Napi::Object exports) {
  exports.Set("benchFmaPeak", Napi::Function::New(env, bench_fma_peak, "benchFmaPeak"));
  exports.Set("benchMemcpy", Napi::Function::New(env, bench_memcpy, "benchMemcpy"));
  exports.Set("benchStreamCopy", Napi::Function::New(env, bench_stream_copy, "benchStreamCopy"));
  exports.Set("benchBf16", Napi::Function::New(env, bench_bf16, "benchBf16"));
}

}  // namespace st::addon
