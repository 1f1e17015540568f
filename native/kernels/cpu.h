// Run-time choice of the instruction set. SIMD kernels live in per-ISA translation units;
// the dispatching entry points pick one through active_isa(), decided once at load.
#pragma once

namespace st {

enum class Isa { portable = 0, avx2 = 1 };

struct CpuFeatures {
  bool sse2 = false, avx = false, avx2 = false, fma = false, f16c = false, os_avx = false;
};

CpuFeatures cpu_features();                 // cpuid + XGETBV (the OS saves the YMM state)
bool isa_supported(Isa isa);
Isa best_isa();                             // the fastest ISA this CPU and OS can run
Isa active_isa();                           // what the dispatching kernels use now
// Forces a path (tests, SWITCH_TRANSFORMER_ISA). Returns false, and changes nothing, when the CPU lacks it.
bool set_active_isa(Isa isa);
const char* isa_name(Isa isa);
bool parse_isa(const char* name, Isa* out);  // "portable" | "avx2"

}  // namespace st
