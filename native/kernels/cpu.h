// Run-time choice of the instruction set. SIMD kernels live in per-ISA translation units;
// the dispatching entry points pick one through active_isa(), decided once at load.
#pragma once

namespace st {

// Ordered: each level can run the kernels of the levels below it, so a dispatch that has no
// kernel of its own for a level tests `>= Isa::avx2` and takes the AVX2 one.
enum class Isa { portable = 0, avx2 = 1, avx512 = 2 };

struct CpuFeatures {
  bool sse2 = false, avx = false, avx2 = false, fma = false, f16c = false, os_avx = false;
  bool avx512f = false, avx512vl = false, avx512bw = false, avx512dq = false;
  bool os_avx512 = false;  // XCR0 bits 5-7: the OS saves the opmask and ZMM registers
};

CpuFeatures cpu_features();                 // cpuid + XGETBV (the OS saves the YMM / ZMM state)
bool isa_supported(Isa isa);
Isa best_isa();                             // the fastest ISA this CPU and OS can run
Isa active_isa();                           // what the dispatching kernels use now
// Forces a path (tests, SWITCH_TRANSFORMER_ISA). Returns false, and changes nothing, when the CPU lacks it.
bool set_active_isa(Isa isa);
const char* isa_name(Isa isa);
bool parse_isa(const char* name, Isa* out);  // "portable" | "avx2" | "avx512"

}  // namespace st
