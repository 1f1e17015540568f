// Bindings of the matmul kernels (kernels/gemm.h) and their benchmarks (bench/gemm_bench.h):
//   matmul(a, b, {m, n, k, transA?, transB?, out?, accumulate?})
//   groupedMatmul(x, w, offsets, {k, n, gather?, scatter?, scale?, transW?, outRows?, out?, accumulate?})
//   groupedMatmulWeightGrad(x, dy, offsets, {k, n, gatherX?, gatherDy?, out?, accumulate?})
//   benchMatmul, benchMatmulReference, benchGroupedMatmul, benchBlasSgemm, blasLibraries
// M, N, K = product sizes; E = groups (experts). Every argument is checked before any memory is
// read or written (args.h); inputs are read in place, outputs are allocated here unless `out` is given.
#include <cstdint>
#include <limits>
#include <string>

#include "../bench/gemm_bench.h"
#include "../kernels/cpu.h"
#include "../kernels/gemm.h"
#include "args.h"
#include "bindings.h"

namespace st::addon {

namespace {

constexpr int64_t kMaxSize = std::numeric_limits<int32_t>::max();

std::string dims(int64_t a, int64_t b) { return "(" + std::to_string(a) + ", " + std::to_string(b) + ")"; }
std::string dims(int64_t a, int64_t b, int64_t c) {
  return "(" + std::to_string(a) + ", " + std::to_string(b) + ", " + std::to_string(c) + ")";
}

Napi::Object options_object(const Napi::CallbackInfo& info, size_t index, const char* fn, const char* fields) {
  if (info.Length() <= index || !info[index].IsObject() || info[index].IsArray() || info[index].IsTypedArray())
    throw_type_error(info.Env(), "ERR_SWITCH_ARG_TYPE",
                     std::string(fn) + ": argument 'options' must be an object " + fields);
  return info[index].As<Napi::Object>();
}

// A required whole-number size option.
int64_t size_option(const Napi::Object& options, const char* key, const char* name) {
  const Napi::Value v = options.Get(key);
  if (v.IsUndefined())
    throw_type_error(options.Env(), "ERR_SWITCH_ARG_TYPE", std::string("option '") + name + "' is required (a size >= 0)");
  return integer(v, name, 0, kMaxSize);
}

bool bool_option(const Napi::Object& options, const char* key, const char* name) {
  const Napi::Value v = options.Get(key);
  return v.IsUndefined() ? false : boolean(v, name);
}

// An optional TypedArray option: present (and checked) or absent (undefined / null).
bool present(const Napi::Object& options, const char* key) {
  const Napi::Value v = options.Get(key);
  return !v.IsUndefined() && !v.IsNull();
}

// The product of sizes, which must fit a TypedArray.
int64_t elements(Napi::Env env, int64_t a, int64_t b, const char* what) {
  const double n = static_cast<double>(a) * static_cast<double>(b);
  if (n > 4294967295.0)
    throw_range_error(env, "ERR_SWITCH_RANGE", std::string(what) + " would need " + std::to_string(n) + " elements, past the TypedArray limit");
  return a * b;
}

template <class T, class U>
void expect_disjoint(Napi::Env env, const View<T>& out, const char* out_name, const View<U>& in, const char* in_name) {
  const auto* o0 = reinterpret_cast<const uint8_t*>(out.data);
  const auto* i0 = reinterpret_cast<const uint8_t*>(in.data);
  const uint8_t* o1 = o0 + out.length * sizeof(T);
  const uint8_t* i1 = i0 + in.length * sizeof(U);
  if (out.length > 0 && in.length > 0 && o0 < i1 && i0 < o1)
    throw_range_error(env, "ERR_SWITCH_RANGE",
                      std::string("argument '") + out_name + "' must not share memory with '" + in_name + "'");
}

// Every index in [0, limit).
void expect_indices(Napi::Env env, const View<int32_t>& v, int64_t limit, const char* name, const char* what) {
  for (size_t i = 0; i < v.length; ++i)
    if (v.data[i] < 0 || v.data[i] >= limit)
      throw_range_error(env, "ERR_SWITCH_RANGE",
                        std::string("option '") + name + "'[" + std::to_string(i) + "] = " + std::to_string(v.data[i]) +
                            " is out of range: " + what + " has " + std::to_string(limit) + " rows");
}

// offsets (E + 1): offsets[0] = 0, non-decreasing. Returns the total rows offsets[E].
int64_t check_offsets(Napi::Env env, const View<int32_t>& offsets) {
  if (offsets.length < 1)
    throw_range_error(env, "ERR_SWITCH_SHAPE", "argument 'offsets' must have E + 1 >= 1 elements (offsets[0] = 0)");
  if (offsets.data[0] != 0)
    throw_range_error(env, "ERR_SWITCH_RANGE", "argument 'offsets'[0] must be 0, got " + std::to_string(offsets.data[0]));
  for (size_t e = 1; e < offsets.length; ++e)
    if (offsets.data[e] < offsets.data[e - 1])
      throw_range_error(env, "ERR_SWITCH_RANGE",
                        "argument 'offsets' must be non-decreasing: offsets[" + std::to_string(e) + "] = " +
                            std::to_string(offsets.data[e]) + " < offsets[" + std::to_string(e - 1) + "] = " +
                            std::to_string(offsets.data[e - 1]));
  return offsets.data[offsets.length - 1];
}

// The output: options.out checked for its length, or a new zeroed Float32Array.
Napi::Float32Array output(Napi::Env env, const Napi::Object& options, size_t length, const std::string& shape,
                          bool accumulate) {
  if (present(options, "out")) {
    const Napi::Value v = options.Get("out");
    const View<float> out = float32_array(v, "out");
    expect_length(env, out, length, "out", shape);
    return v.As<Napi::Float32Array>();
  }
  if (accumulate)
    throw_type_error(env, "ERR_SWITCH_OPTION", "option 'accumulate' needs option 'out' (the array to add into)");
  return Napi::Float32Array::New(env, length);
}

View<float> view_of(const Napi::Float32Array& a) {
  return {reinterpret_cast<float*>(static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset()), a.ElementLength()};
}

Napi::Value matmul_binding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 3, "matmul(a, b, options)");
  const View<float> a = float32_array(info[0], "a");
  const View<float> b = float32_array(info[1], "b");
  const Napi::Object options = options_object(info, 2, "matmul", "{m, n, k, transA?, transB?, out?, accumulate?}");
  const int64_t M = size_option(options, "m", "m"), N = size_option(options, "n", "n"), K = size_option(options, "k", "k");
  const bool trans_a = bool_option(options, "transA", "transA"), trans_b = bool_option(options, "transB", "transB");
  const bool accumulate = bool_option(options, "accumulate", "accumulate");
  expect_length(env, a, elements(env, M, K, "a"), "a", trans_a ? "(k, m) = " + dims(K, M) : "(m, k) = " + dims(M, K));
  expect_length(env, b, elements(env, K, N, "b"), "b", trans_b ? "(n, k) = " + dims(N, K) : "(k, n) = " + dims(K, N));
  Napi::Float32Array out_array = output(env, options, elements(env, M, N, "out"), "(m, n) = " + dims(M, N), accumulate);
  const View<float> out = view_of(out_array);
  expect_disjoint(env, out, "out", a, "a");
  expect_disjoint(env, out, "out", b, "b");
  matmul(out.data, a.data, b.data, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K),
         static_cast<int>(trans_a ? M : K), static_cast<int>(trans_b ? K : N), static_cast<int>(N), trans_a, trans_b,
         accumulate);
  return out_array;
}

Napi::Value grouped_matmul_binding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 4, "groupedMatmul(x, w, offsets, options)");
  const View<float> x = float32_array(info[0], "x");
  const View<float> w = float32_array(info[1], "w");
  const View<int32_t> offsets = int32_array(info[2], "offsets");
  const Napi::Object options = options_object(
      info, 3, "groupedMatmul", "{k, n, gather?, scatter?, scale?, transW?, outRows?, out?, accumulate?}");
  const int64_t K = size_option(options, "k", "k"), N = size_option(options, "n", "n");
  const bool trans_w = bool_option(options, "transW", "transW");
  const bool accumulate = bool_option(options, "accumulate", "accumulate");
  const int64_t E = static_cast<int64_t>(offsets.length) - 1;
  const int64_t rows = check_offsets(env, offsets);
  expect_length(env, w, elements(env, elements(env, E, K, "w"), N, "w"), "w",
                trans_w ? "(E, n, k) = " + dims(E, N, K) : "(E, k, n) = " + dims(E, K, N));

  const bool has_gather = present(options, "gather"), has_scatter = present(options, "scatter");
  View<int32_t> gather{nullptr, 0}, scatter{nullptr, 0};
  View<float> scale{nullptr, 0};
  int64_t x_rows = rows;
  if (has_gather) {
    gather = int32_array(options.Get("gather"), "gather");
    expect_length(env, gather, rows, "gather", "(offsets[E]) = (" + std::to_string(rows) + ")");
    if (K > 0) {
      if (x.length % K != 0)
        throw_range_error(env, "ERR_SWITCH_SHAPE", "argument 'x' must have a multiple of k = " + std::to_string(K) +
                                                       " elements (shape (rows, k)), got " + std::to_string(x.length));
      x_rows = static_cast<int64_t>(x.length) / K;
      expect_indices(env, gather, x_rows, "gather", "x");
    } else {
      expect_indices(env, gather, kMaxSize, "gather", "x");
    }
  } else {
    expect_length(env, x, elements(env, rows, K, "x"), "x", "(offsets[E], k) = " + dims(rows, K));
  }
  if (present(options, "scale") && !has_scatter)
    throw_type_error(env, "ERR_SWITCH_OPTION", "option 'scale' needs option 'scatter' (it scales the scattered rows)");

  Napi::Float32Array out_array;
  if (has_scatter) {
    scatter = int32_array(options.Get("scatter"), "scatter");
    expect_length(env, scatter, rows, "scatter", "(offsets[E]) = (" + std::to_string(rows) + ")");
    if (present(options, "scale")) {
      scale = float32_array(options.Get("scale"), "scale");
      expect_length(env, scale, rows, "scale", "(offsets[E]) = (" + std::to_string(rows) + ")");
    }
    if (accumulate)
      throw_type_error(env, "ERR_SWITCH_OPTION", "option 'accumulate' does not apply with 'scatter' (scattered rows are always added)");
    int64_t out_rows;
    if (present(options, "outRows")) {
      out_rows = integer(options.Get("outRows"), "outRows", 0, kMaxSize);
      out_array = output(env, options, elements(env, out_rows, N, "out"), "(outRows, n) = " + dims(out_rows, N), false);
    } else if (present(options, "out")) {
      const View<float> out = float32_array(options.Get("out"), "out");
      out_array = options.Get("out").As<Napi::Float32Array>();
      if (N == 0 || out.length % N != 0)
        throw_range_error(env, "ERR_SWITCH_SHAPE", "argument 'out' must have a multiple of n = " + std::to_string(N) +
                                                       " elements (shape (outRows, n)), got " + std::to_string(out.length) +
                                                       (N == 0 ? "; with n = 0 give option 'outRows'" : ""));
      out_rows = static_cast<int64_t>(out.length) / N;
    } else {
      throw_type_error(env, "ERR_SWITCH_OPTION", "option 'scatter' needs option 'out' or 'outRows' (the rows of the output)");
    }
    expect_indices(env, scatter, out_rows, "scatter", "the output");
  } else {
    if (present(options, "outRows") && integer(options.Get("outRows"), "outRows", 0, kMaxSize) != rows)
      throw_range_error(env, "ERR_SWITCH_SHAPE", "option 'outRows' must equal offsets[E] = " + std::to_string(rows) + " without 'scatter'");
    out_array = output(env, options, elements(env, rows, N, "out"), "(offsets[E], n) = " + dims(rows, N), accumulate);
  }
  const View<float> out = view_of(out_array);
  expect_disjoint(env, out, "out", x, "x");
  expect_disjoint(env, out, "out", w, "w");
  if (scale.data) expect_disjoint(env, out, "out", scale, "scale");
  if (gather.data) expect_disjoint(env, out, "out", gather, "gather");
  if (scatter.data) expect_disjoint(env, out, "out", scatter, "scatter");
  expect_disjoint(env, out, "out", offsets, "offsets");

  GroupedMatmul g{};
  g.y = out.data;
  g.x = x.data;
  g.w = w.data;
  g.offsets = offsets.data;
  g.gather = gather.data;
  g.scatter = scatter.data;
  g.scale = scale.data;
  g.E = static_cast<int>(E);
  g.K = static_cast<int>(K);
  g.N = static_cast<int>(N);
  g.ldx = static_cast<int>(K);
  g.ldy = static_cast<int>(N);
  g.trans_w = trans_w;
  g.accumulate = accumulate;
  grouped_matmul(g);
  return out_array;
}

Napi::Value grouped_weight_grad_binding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 4, "groupedMatmulWeightGrad(x, dy, offsets, options)");
  const View<float> x = float32_array(info[0], "x");
  const View<float> dy = float32_array(info[1], "dy");
  const View<int32_t> offsets = int32_array(info[2], "offsets");
  const Napi::Object options =
      options_object(info, 3, "groupedMatmulWeightGrad", "{k, n, gatherX?, gatherDy?, out?, accumulate?}");
  const int64_t K = size_option(options, "k", "k"), N = size_option(options, "n", "n");
  const bool accumulate = bool_option(options, "accumulate", "accumulate");
  const int64_t E = static_cast<int64_t>(offsets.length) - 1;
  const int64_t rows = check_offsets(env, offsets);

  // One gathered operand: the index list checked against the operand's rows, or the operand dense.
  auto operand = [&](const View<float>& data, const char* data_name, const char* gather_key, int64_t cols,
                     const char* cols_name) {
    View<int32_t> gather{nullptr, 0};
    if (!present(options, gather_key)) {
      expect_length(env, data, elements(env, rows, cols, data_name), data_name,
                    std::string("(offsets[E], ") + cols_name + ") = " + dims(rows, cols));
      return gather;
    }
    gather = int32_array(options.Get(gather_key), gather_key);
    expect_length(env, gather, rows, gather_key, "(offsets[E]) = (" + std::to_string(rows) + ")");
    if (cols == 0) {
      expect_indices(env, gather, kMaxSize, gather_key, data_name);
      return gather;
    }
    if (data.length % cols != 0)
      throw_range_error(env, "ERR_SWITCH_SHAPE", std::string("argument '") + data_name + "' must have a multiple of " +
                                                     cols_name + " = " + std::to_string(cols) + " elements, got " +
                                                     std::to_string(data.length));
    expect_indices(env, gather, static_cast<int64_t>(data.length) / cols, gather_key, data_name);
    return gather;
  };
  const View<int32_t> gather_x = operand(x, "x", "gatherX", K, "k");
  const View<int32_t> gather_dy = operand(dy, "dy", "gatherDy", N, "n");
  Napi::Float32Array out_array =
      output(env, options, elements(env, elements(env, E, K, "out"), N, "out"), "(E, k, n) = " + dims(E, K, N), accumulate);
  const View<float> out = view_of(out_array);
  expect_disjoint(env, out, "out", x, "x");
  expect_disjoint(env, out, "out", dy, "dy");
  expect_disjoint(env, out, "out", offsets, "offsets");
  if (gather_x.data) expect_disjoint(env, out, "out", gather_x, "gatherX");
  if (gather_dy.data) expect_disjoint(env, out, "out", gather_dy, "gatherDy");

  GroupedMatmulWeightGrad g{};
  g.dw = out.data;
  g.x = x.data;
  g.dy = dy.data;
  g.offsets = offsets.data;
  g.gather_x = gather_x.data;
  g.gather_dy = gather_dy.data;
  g.E = static_cast<int>(E);
  g.K = static_cast<int>(K);
  g.N = static_cast<int>(N);
  g.ldx = static_cast<int>(K);
  g.lddy = static_cast<int>(N);
  g.accumulate = accumulate;
  grouped_matmul_weight_grad(g);
  return out_array;
}

// ---- benchmarks (blocking: they are meant to own the machine while they run) ----

struct BenchShape {
  int M, K, N, threads;
  bench::RunSettings settings;
};

BenchShape bench_shape(const Napi::CallbackInfo& info, const char* fn) {
  const Napi::Object o = options_object(info, 0, fn, "{m, k, n, threads, warmup?, repeats?, minSeconds?}");
  BenchShape s;
  s.M = static_cast<int>(integer(o.Get("m"), "m", 1, 1 << 16));
  s.K = static_cast<int>(integer(o.Get("k"), "k", 1, 1 << 16));
  s.N = static_cast<int>(integer(o.Get("n"), "n", 1, 1 << 16));
  s.threads = static_cast<int>(integer(o.Get("threads"), "threads", 1, kMaxThreads));
  if (present(o, "warmup")) s.settings.warmup = static_cast<int>(integer(o.Get("warmup"), "warmup", 0, 1000));
  if (present(o, "repeats")) s.settings.repeats = static_cast<int>(integer(o.Get("repeats"), "repeats", 1, 10000));
  if (present(o, "minSeconds")) s.settings.min_seconds = number(o.Get("minSeconds"), "minSeconds");
  return s;
}

Napi::Object timing_object(Napi::Env env, const bench::Timing& t) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("seconds", t.median_seconds);
  out.Set("minSeconds", t.min_seconds);
  out.Set("repeats", t.repeats);
  return out;
}

Napi::Value bench_matmul_binding(const Napi::CallbackInfo& info) {
  const BenchShape s = bench_shape(info, "benchMatmul");
  return timing_object(info.Env(), bench::bench_matmul(s.M, s.K, s.N, s.threads, s.settings));
}

Napi::Value bench_matmul_reference_binding(const Napi::CallbackInfo& info) {
  const BenchShape s = bench_shape(info, "benchMatmulReference");
  return timing_object(info.Env(), bench::bench_matmul_reference(s.M, s.K, s.N, s.settings));
}

Napi::Value bench_grouped_binding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const BenchShape s = bench_shape(info, "benchGroupedMatmul");
  const Napi::Object o = info[0].As<Napi::Object>();
  const int E = static_cast<int>(integer(o.Get("experts"), "experts", 1, s.M));
  const Napi::Value v = o.Get("variant");
  const std::string variant = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  bench::GroupedVariant which;
  if (variant == "grouped") which = bench::GroupedVariant::folded;
  else if (variant == "grouped-scatter") which = bench::GroupedVariant::folded_scatter;
  else if (variant == "gather-then-matmul") which = bench::GroupedVariant::gather_then_matmul;
  else throw_range_error(env, "ERR_SWITCH_RANGE", "option 'variant' must be 'grouped', 'grouped-scatter' or 'gather-then-matmul'");
  return timing_object(env, bench::bench_grouped(s.M, s.K, s.N, E, s.threads, which, s.settings));
}

Napi::Value blas_libraries_binding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& found = bench::system_blas();
  Napi::Array out = Napi::Array::New(env, found.size());
  for (size_t i = 0; i < found.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", found[i].name);
    o.Set("library", found[i].library);
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

Napi::Value bench_blas_binding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const BenchShape s = bench_shape(info, "benchBlasSgemm");
  const Napi::Value v = info[0].As<Napi::Object>().Get("library");
  const std::string name = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  for (const auto& blas : bench::system_blas())
    if (blas.name == name) return timing_object(env, bench::bench_blas_sgemm(blas, s.M, s.K, s.N, s.threads, s.settings));
  throw_range_error(env, "ERR_SWITCH_UNSUPPORTED", "BLAS library '" + name + "' is not present (see blasLibraries())");
}

}  // namespace

void init_matmul(Napi::Env env, Napi::Object exports) {
  exports.Set("matmul", Napi::Function::New(env, matmul_binding, "matmul"));
  exports.Set("groupedMatmul", Napi::Function::New(env, grouped_matmul_binding, "groupedMatmul"));
  exports.Set("groupedMatmulWeightGrad", Napi::Function::New(env, grouped_weight_grad_binding, "groupedMatmulWeightGrad"));
  exports.Set("benchMatmul", Napi::Function::New(env, bench_matmul_binding, "benchMatmul"));
  exports.Set("benchMatmulReference", Napi::Function::New(env, bench_matmul_reference_binding, "benchMatmulReference"));
  exports.Set("benchGroupedMatmul", Napi::Function::New(env, bench_grouped_binding, "benchGroupedMatmul"));
  exports.Set("benchBlasSgemm", Napi::Function::New(env, bench_blas_binding, "benchBlasSgemm"));
  exports.Set("blasLibraries", Napi::Function::New(env, blas_libraries_binding, "blasLibraries"));
}

}  // namespace st::addon
