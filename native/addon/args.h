// Argument checks shared by every binding. Each check runs before any memory is touched and
// throws a TypeError or RangeError whose message names the argument and what was expected,
// with a stable `code` property:
//   ERR_SWITCH_ARG_TYPE  wrong JavaScript type (not a Float32Array, not a number, ...)
//   ERR_SWITCH_SHAPE     wrong length or inconsistent sizes
//   ERR_SWITCH_RANGE     a number out of range (negative size, non-integer, index past the end)
//   ERR_SWITCH_DETACHED  a TypedArray whose ArrayBuffer was detached or transferred
#pragma once

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>

namespace st::addon {

[[noreturn]] inline void throw_type_error(Napi::Env env, const char* code, const std::string& message) {
  Napi::TypeError error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  throw error;
}

[[noreturn]] inline void throw_range_error(Napi::Env env, const char* code, const std::string& message) {
  Napi::RangeError error = Napi::RangeError::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  throw error;
}

[[noreturn]] inline void throw_error(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  throw error;
}

inline const char* typed_array_name(napi_typedarray_type t) {
  switch (t) {
    case napi_float32_array: return "Float32Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_float64_array: return "Float64Array";
    default: return "TypedArray";
  }
}

// A view of a TypedArray's elements in place (never copied).
template <class T>
struct View {
  T* data;
  size_t length;
};

template <class T>
View<T> typed_array(const Napi::Value& value, napi_typedarray_type type, const char* name) {
  Napi::Env env = value.Env();
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != type)
    throw_type_error(env, "ERR_SWITCH_ARG_TYPE",
                     std::string("argument '") + name + "' must be a " + typed_array_name(type));
  // napi_get_typedarray_info rather than ArrayBuffer().Data(): the latter rejects a view of a
  // SharedArrayBuffer with an uncoded error, and shared views are fine to read and write here.
  napi_typedarray_type actual;
  size_t length = 0;
  void* data = nullptr;
  napi_value buffer = nullptr;
  size_t byte_offset = 0;
  if (napi_get_typedarray_info(env, value, &actual, &length, &data, &buffer, &byte_offset) != napi_ok)
    throw_type_error(env, "ERR_SWITCH_ARG_TYPE", std::string("argument '") + name + "' is not a readable TypedArray");
  bool detached = false;
  napi_is_detached_arraybuffer(env, buffer, &detached);
  if (detached)
    throw_type_error(env, "ERR_SWITCH_DETACHED",
                     std::string("argument '") + name + "' is backed by a detached ArrayBuffer");
  return {static_cast<T*>(data), length};
}

inline View<float> float32_array(const Napi::Value& v, const char* name) {
  return typed_array<float>(v, napi_float32_array, name);
}
inline View<uint16_t> uint16_array(const Napi::Value& v, const char* name) {
  return typed_array<uint16_t>(v, napi_uint16_array, name);
}
inline View<int32_t> int32_array(const Napi::Value& v, const char* name) {
  return typed_array<int32_t>(v, napi_int32_array, name);
}
inline View<uint8_t> uint8_array(const Napi::Value& v, const char* name) {
  return typed_array<uint8_t>(v, napi_uint8_array, name);
}

template <class T>
void expect_length(Napi::Env env, const View<T>& view, size_t expected, const char* name, const std::string& shape) {
  if (view.length != expected)
    throw_range_error(env, "ERR_SWITCH_SHAPE",
                      std::string("argument '") + name + "' must have " + std::to_string(expected) +
                          " elements (shape " + shape + "), got " + std::to_string(view.length));
}

// A whole number in [lo, hi].
inline int64_t integer(const Napi::Value& value, const char* name, int64_t lo, int64_t hi) {
  Napi::Env env = value.Env();
  // One N-API call: it checks the type too (napi_number_expected), and collectives pay it per call.
  double d = 0;
  if (napi_get_value_double(env, value, &d) != napi_ok)
    throw_type_error(env, "ERR_SWITCH_ARG_TYPE", std::string("argument '") + name + "' must be a number");
  if (!std::isfinite(d) || d != std::floor(d) || d < static_cast<double>(lo) || d > static_cast<double>(hi))
    throw_range_error(env, "ERR_SWITCH_RANGE",
                      std::string("argument '") + name + "' must be an integer in [" + std::to_string(lo) + ", " +
                          std::to_string(hi) + "], got " + value.ToString().Utf8Value());
  return static_cast<int64_t>(d);
}

inline double number(const Napi::Value& value, const char* name) {
  if (!value.IsNumber())
    throw_type_error(value.Env(), "ERR_SWITCH_ARG_TYPE", std::string("argument '") + name + "' must be a number");
  return value.As<Napi::Number>().DoubleValue();
}

inline bool boolean(const Napi::Value& value, const char* name) {
  if (!value.IsBoolean())
    throw_type_error(value.Env(), "ERR_SWITCH_ARG_TYPE", std::string("argument '") + name + "' must be a boolean");
  return value.As<Napi::Boolean>().Value();
}

inline void expect_args(const Napi::CallbackInfo& info, size_t n, const char* fn) {
  if (info.Length() < n)
    throw_type_error(info.Env(), "ERR_SWITCH_ARG_TYPE",
                     std::string(fn) + " expects " + std::to_string(n) + " arguments, got " +
                         std::to_string(info.Length()));
}

}  // namespace st::addon
