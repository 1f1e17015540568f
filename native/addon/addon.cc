// The addon's entry point: one module, each capability's functions registered by its own file.
#include "bindings.h"

namespace {

Napi::Object init(Napi::Env env, Napi::Object exports) {
  st::addon::init_core(env, exports);
  st::addon::init_matmul(env, exports);
  st::addon::init_bf16(env, exports);
  st::addon::init_bench(env, exports);
  st::addon::init_mesh(env, exports);
  st::addon::init_mpi(env, exports);
  st::addon::init_switch(env, exports);
  st::addon::init_model(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(switch_transformer, init)
