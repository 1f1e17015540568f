#include "cpu.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <cpuid.h>
#define ST_X86 1
#endif

namespace st {

namespace {

#if ST_X86
unsigned long long xgetbv0() {
  unsigned int eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#if ST_X86
  unsigned int eax, ebx, ecx, edx;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
    f.sse2 = (edx >> 26) & 1;
    f.fma = (ecx >> 12) & 1;
    f.avx = (ecx >> 28) & 1;
    f.f16c = (ecx >> 29) & 1;
    const bool osxsave = (ecx >> 27) & 1;
    // XCR0 bits 1 (SSE) and 2 (AVX): the OS saves the YMM registers on a context switch; bits
    // 5-7 (opmask, upper halves of ZMM0-15, ZMM16-31): it saves the AVX-512 state as well.
    const unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
    f.os_avx = (xcr0 & 0x6) == 0x6;
    f.os_avx512 = (xcr0 & 0xe6) == 0xe6;
  }
  if (__get_cpuid_max(0, nullptr) >= 7) {
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    f.avx2 = (ebx >> 5) & 1;
    f.avx512f = (ebx >> 16) & 1;
    f.avx512dq = (ebx >> 17) & 1;
    f.avx512bw = (ebx >> 30) & 1;
    f.avx512vl = (ebx >> 31) & 1;
  }
#endif
  return f;
}

Isa initial_isa() {
  Isa isa = best_isa();
  if (const char* forced = std::getenv("SWITCH_TRANSFORMER_ISA")) {
    Isa want;
    if (parse_isa(forced, &want) && isa_supported(want)) isa = want;
  }
  return isa;
}

std::atomic<int>& active() {
  static std::atomic<int> isa{static_cast<int>(initial_isa())};
  return isa;
}

}  // namespace

CpuFeatures cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

bool isa_supported(Isa isa) {
  const CpuFeatures f = cpu_features();
  switch (isa) {
    case Isa::portable: return true;
    case Isa::avx2: return f.avx && f.avx2 && f.fma && f.f16c && f.os_avx;
    case Isa::avx512:
      return isa_supported(Isa::avx2) && f.avx512f && f.avx512vl && f.avx512bw && f.avx512dq && f.os_avx512;
  }
  return false;
}

Isa best_isa() {
  if (isa_supported(Isa::avx512)) return Isa::avx512;
  return isa_supported(Isa::avx2) ? Isa::avx2 : Isa::portable;
}

Isa active_isa() { return static_cast<Isa>(active().load(std::memory_order_relaxed)); }

bool set_active_isa(Isa isa) {
  if (!isa_supported(isa)) return false;
  active().store(static_cast<int>(isa), std::memory_order_relaxed);
  return true;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    case Isa::portable: break;
  }
  return "portable";
}

bool parse_isa(const char* name, Isa* out) {
  if (std::strcmp(name, "portable") == 0) { *out = Isa::portable; return true; }
  if (std::strcmp(name, "avx2") == 0) { *out = Isa::avx2; return true; }
  if (std::strcmp(name, "avx512") == 0) { *out = Isa::avx512; return true; }
  return false;
}

}  // namespace st
