// Bindings of the native core: CPU information, the thread pool, the instruction set.
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

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
  // AVX-512 F, VL, BW and DQ on the CPU with the OS saving the opmask and ZMM state (the avx512 level).
  features.Set("avx512", f.avx512f && f.avx512vl && f.avx512bw && f.avx512dq && f.os_avx512);
  out.Set("features", features);
  return out;
}

Napi::Value set_isa(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 1, "setIsa");
  if (!info[0].IsString()) throw_type_error(env, "ERR_SWITCH_ARG_TYPE", "argument 'isa' must be 'portable', 'avx2' or 'avx512'");
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  Isa isa;
  if (!parse_isa(name.c_str(), &isa))
    throw_range_error(env, "ERR_SWITCH_RANGE", "argument 'isa' must be 'portable', 'avx2' or 'avx512', got '" + name + "'");
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

// adviseHugePages(buffer): asks Linux to back the 2 MB-aligned interior of a large ArrayBuffer with
// transparent huge pages (madvise MADV_HUGEPAGE; this machine's THP mode is "madvise"), before the
// buffer is first written. The layers call it on their expert weights and gradients: the grouped
// matmuls stream them from memory once per call, a few kilobytes per 4 KB page at a time, and a
// weight-gradient call ran ~20 % faster on huge pages (bench/RESULTS.md, layer). Returns the bytes
// advised: 0 when the buffer holds no aligned 2 MB page, madvise refuses, or the OS has no THP.
// Only a hint: contents and lifetime are unchanged.
Napi::Value advise_huge_pages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 1, "adviseHugePages");
  if (!info[0].IsArrayBuffer())
    throw_type_error(env, "ERR_SWITCH_ARG_TYPE", "argument 'buffer' must be an ArrayBuffer");
  Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
  double advised = 0;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(buffer.Data());
  const uintptr_t end = begin + buffer.ByteLength();
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1), last = end & ~(kHuge - 1);
  if (begin != 0 && last > first && madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE) == 0)
    advised = static_cast<double>(last - first);
#endif
  return Napi::Number::New(env, advised);
}

// alignedOffset(buffer): the smallest byte offset into the buffer at which its memory is 64-byte
// aligned (0-63). The layers' reused buffers start their views there, so the rows of a weight
// gradient are whole cache lines (the non-temporal write-back of gemm_grouped.cc needs that).
Napi::Value aligned_offset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 1, "alignedOffset");
  if (!info[0].IsArrayBuffer())
    throw_type_error(env, "ERR_SWITCH_ARG_TYPE", "argument 'buffer' must be an ArrayBuffer");
  const uintptr_t address = reinterpret_cast<uintptr_t>(info[0].As<Napi::ArrayBuffer>().Data());
  return Napi::Number::New(env, static_cast<double>((64 - address % 64) % 64));
}

}  // namespace

void init_core(Napi::Env env, Napi::Object exports) {
  exports.Set("cpuInfo", Napi::Function::New(env, cpu_info, "cpuInfo"));
  exports.Set("setIsa", Napi::Function::New(env, set_isa, "setIsa"));
  exports.Set("setNumThreads", Napi::Function::New(env, set_threads, "setNumThreads"));
  exports.Set("numThreads", Napi::Function::New(env, get_threads, "numThreads"));
  exports.Set("adviseHugePages", Napi::Function::New(env, advise_huge_pages, "adviseHugePages"));
  exports.Set("alignedOffset", Napi::Function::New(env, aligned_offset, "alignedOffset"));
}

}  // namespace st::addon
