// Bindings of the bf16 conversions (SPEC §2): toBfloat16, fromBfloat16, roundBfloat16.
// n = elements. Each takes (src, dst?) and returns the array written: dst when given, else a new one.
#include <cstring>
#include <vector>

#include "../kernels/bf16.h"
#include "args.h"
#include "bindings.h"

namespace st::addon {

namespace {

// Whether two byte ranges share memory (a dst that views the same buffer as src).
bool overlap(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const auto* pa = static_cast<const uint8_t*>(a);
  const auto* pb = static_cast<const uint8_t*>(b);
  return a_bytes != 0 && b_bytes != 0 && pa < pb + b_bytes && pb < pa + a_bytes;
}

// The destination: the caller's array (type, length and buffer checked) or a new one of n elements.
template <class T, class Array>
View<T> destination(const Napi::CallbackInfo& info, napi_typedarray_type type, size_t n, Napi::Value* out) {
  if (info.Length() < 2 || info[1].IsUndefined()) {
    Array array = Array::New(info.Env(), n);
    *out = array;
    return {n == 0 ? nullptr : array.Data(), n};
  }
  View<T> dst = typed_array<T>(info[1], type, "dst");
  expect_length(info.Env(), dst, n, "dst", "[src.length]");
  *out = info[1];
  return dst;
}

// Runs kernel(dst, src, n); if the caller's arrays share memory (but are not the same elements in
// place where that is allowed) the kernel writes a scratch copy first, so the answer stays that
// of distinct arrays.
template <class D, class S, class Kernel>
void convert(View<D> dst, View<S> src, bool in_place_ok, Kernel kernel) {
  const size_t n = src.length;
  const bool same = static_cast<const void*>(dst.data) == static_cast<const void*>(src.data) && sizeof(D) == sizeof(S);
  if ((same && in_place_ok) || !overlap(dst.data, n * sizeof(D), src.data, n * sizeof(S))) {
    kernel(dst.data, src.data, static_cast<int64_t>(n));
    return;
  }
  std::vector<D> scratch(n);
  kernel(scratch.data(), src.data, static_cast<int64_t>(n));
  std::memcpy(dst.data, scratch.data(), n * sizeof(D));
}

Napi::Value to_bfloat16(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "toBfloat16");
  const View<float> src = float32_array(info[0], "src");
  Napi::Value out;
  const View<uint16_t> dst = destination<uint16_t, Napi::Uint16Array>(info, napi_uint16_array, src.length, &out);
  convert(dst, src, false, bf16_from_f32);
  return out;
}

Napi::Value from_bfloat16(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "fromBfloat16");
  const View<uint16_t> src = uint16_array(info[0], "src");
  Napi::Value out;
  const View<float> dst = destination<float, Napi::Float32Array>(info, napi_float32_array, src.length, &out);
  convert(dst, src, false, bf16_to_f32);
  return out;
}

Napi::Value round_bfloat16(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "roundBfloat16");
  const View<float> src = float32_array(info[0], "src");
  Napi::Value out;
  const View<float> dst = destination<float, Napi::Float32Array>(info, napi_float32_array, src.length, &out);
  convert(dst, src, true, bf16_round);
  return out;
}

}  // namespace

void init_bf16(Napi::Env env, Napi::Object exports) {
  exports.Set("toBfloat16", Napi::Function::New(env, to_bfloat16, "toBfloat16"));
  exports.Set("fromBfloat16", Napi::Function::New(env, from_bfloat16, "fromBfloat16"));
  exports.Set("roundBfloat16", Napi::Function::New(env, round_bfloat16, "roundBfloat16"));
}

}  // namespace st::addon
