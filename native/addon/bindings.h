// Each capability registers its functions on the addon's exports.
#pragma once

#include <napi.h>

namespace st::addon {

void init_core(Napi::Env env, Napi::Object exports);   // core.cc: cpuInfo, threads, bf16, matmul
void init_switch(Napi::Env env, Napi::Object exports);  // switch.cc: the Switch layer's kernels

}  // namespace st::addon
