// Each capability registers its functions on the addon's exports.
#pragma once

#include <napi.h>

namespace st::addon {

void init_core(Napi::Env env, Napi::Object exports);   // core.cc: cpuInfo, threads, ISA
void init_matmul(Napi::Env env, Napi::Object exports); // matmul.cc: matmul, grouped matmuls, their benchmarks
void init_bf16(Napi::Env env, Napi::Object exports);   // bf16.cc: toBfloat16, fromBfloat16, roundBfloat16
void init_bench(Napi::Env env, Napi::Object exports);  // bench.cc: the measurements of switch-bench
void init_mesh(Napi::Env env, Napi::Object exports);   // mesh.cc: the arena and the collectives
void init_switch(Napi::Env env, Napi::Object exports);  // switch.cc: the Switch layer's kernels
void init_model(Napi::Env env, Napi::Object exports);  // model.cc: attention, RMSNorm, embedding, cross-entropy
void init_mpi(Napi::Env env, Napi::Object exports);    // mpi.cc: the mesh over an MPI library

}  // namespace st::addon
