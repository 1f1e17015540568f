// AVX2 + FMA micro-kernels of the matmul (gemm_kernels.h): the 6 × 16 register tile, and 4 × 16
// and 2 × 16 variants for the last rows of a matrix or of an expert's group (every expert shape
// here has M ≡ 4 mod 6; a group of the Switch layer leaves any remainder). Compiled with -mavx2 -mfma; called only when active_isa() == Isa::avx2.
//
// Written as inline assembly because the tile uses all 16 ymm registers (12 accumulators, two B
// vectors, two A broadcasts) and compilers given the same loop as intrinsics spill accumulators
// to the stack, which costs about a third of the peak. Each k step: two B loads, six broadcasts,
// twelve independent FMAs (enough to cover the FMA latency on two pipes); unrolled by four. The C
// tile is prefetched first: its rows are far apart and would otherwise miss at the very end.
// All three kernels sum each output element in the same order, so they give the same bits.
//
// Generated: one k step is, per row r, `vbroadcastss a[k·6 + r]; vfmadd231ps b0; vfmadd231ps b1`.
#include <cstdint>

#include "gemm_kernels.h"

namespace st::gemm {

// The 6 × 16 tile's sums into ymm0–ymm11 (zeroed first; k4 unrolled steps of four, then kr single
// steps), shared by the kernel that stores or adds the tile and the one that streams it out.
#define ST_TILE_6X16_SUMS \
  "vxorps %%ymm0, %%ymm0, %%ymm0\n\t" \
  "vxorps %%ymm1, %%ymm1, %%ymm1\n\t" \
  "vxorps %%ymm2, %%ymm2, %%ymm2\n\t" \
  "vxorps %%ymm3, %%ymm3, %%ymm3\n\t" \
  "vxorps %%ymm4, %%ymm4, %%ymm4\n\t" \
  "vxorps %%ymm5, %%ymm5, %%ymm5\n\t" \
  "vxorps %%ymm6, %%ymm6, %%ymm6\n\t" \
  "vxorps %%ymm7, %%ymm7, %%ymm7\n\t" \
  "vxorps %%ymm8, %%ymm8, %%ymm8\n\t" \
  "vxorps %%ymm9, %%ymm9, %%ymm9\n\t" \
  "vxorps %%ymm10, %%ymm10, %%ymm10\n\t" \
  "vxorps %%ymm11, %%ymm11, %%ymm11\n\t" \
  "test %[k4], %[k4]\n\t" \
  "jz 2f\n\t" \
  ".p2align 5\n\t" \
  "1:\n\t" \
  "prefetcht0 512(%[b])\n\t" \
  "prefetcht0 384(%[a])\n\t" \
  "vmovups 0(%[b]), %%ymm12\n\t" \
  "vmovups 32(%[b]), %%ymm13\n\t" \
  "vbroadcastss 0(%[a]), %%ymm14\n\t" \
  "vfmadd231ps %%ymm12, %%ymm14, %%ymm0\n\t" \
  "vfmadd231ps %%ymm13, %%ymm14, %%ymm1\n\t" \
  "vbroadcastss 4(%[a]), %%ymm15\n\t" \
  "vfmadd231ps %%ymm12, %%ymm15, %%ymm2\n\t" \
  "vfmadd231ps %%ymm13, %%ymm15, %%ymm3\n\t" \
  "vbroadcastss 8(%[a]), %%ymm14\n\t" \
  "vfmadd231ps %%ymm12, %%ymm14, %%ymm4\n\t" \
  "vfmadd231ps %%ymm13, %%ymm14, %%ymm5\n\t" \
  "vbroadcastss 12(%[a]), %%ymm15\n\t" \
  "vfmadd231ps %%ymm12, %%ymm15, %%ymm6\n\t" \
  "vfmadd231ps %%ymm13, %%ymm15, %%ymm7\n\t" \
  "vbroadcastss 16(%[a]), %%ymm14\n\t" \
  "vfmadd231ps %%ymm12, %%ymm14, %%ymm8\n\t" \
  "vfmadd231ps %%ymm13, %%ymm14, %%ymm9\n\t" \
  "vbroadcastss 20(%[a]), %%ymm15\n\t" \
  "vfmadd231ps %%ymm12, %%ymm15, %%ymm10\n\t" \
  "vfmadd231ps %%ymm13, %%ymm15, %%ymm11\n\t" \
  "vmovups 64(%[b]), %%ymm12\n\t" \
  "vmovups 96(%[b]), %%ymm13\n\t" \
  "vbroadcastss 24(%[a]), %%ymm14\n\t" \
  "vfmadd231ps %%ymm12, %%ymm14, %%ymm0\n\t" \
  "vfmadd231ps %%ymm13, %%ymm14, %%ymm1\n\t" \
  "vbroadcastss 28(%[a]), %%ymm15\n\t" \
  "vfmadd231ps %%ymm12, %%ymm15, %%ymm2\n\t" \
  "vfmadd231ps %%ymm13, %%ymm15, %%ymm3\n\t" \
  "vbroadcastss 32(%[a]), %%ymm14\n\t" \
  "vfmadd231ps %%ymm12, %%ymm14, %%ymm4\n\t" \
  "vfmadd231ps %%ymm13, %%ymm14, %%ymm5\n\t" \
  "vbroadcastss 36(%[a]), %%ymm15\n\t" \
  "vfmadd231ps %%ymm12, %%ymm15, %%ymm6\n\t" \
  "vfmadd231ps %%ymm13, %%ymm15, %%ymm7\n\t" \
  "vbroadcastss 40(%[a]), %%ymm14\n\t" \
  "vfmadd231ps %%ymm12, %%ymm14, %%ymm8\n\t" \
  "vfmadd231ps %%ymm13, %%ymm14, %%ymm9\n\t" \
  "vbroadcastss 44(%[a]), %%ymm15\n\t" \
  "vfmadd231ps %%ymm12, %%ymm15, %%ymm10\n\t" \
  "vfmadd231ps %%ymm13, %%ymm15, %%ymm11\n\t" \
  "vmovups 128(%[b]), %%ymm12\n\t" \
  "vmovups 160(%[b]), %%ymm13\n\t" \
  "vbroadcastss 48(%[a]), %%ymm14\n\t" \
  "vfmadd231ps %%ymm12, %%ymm14, %%ymm0\n\t" \
  "vfmadd231ps %%ymm13, %%ymm14, %%ymm1\n\t" \
  "vbroadcastss 52(%[a]), %%ymm15\n\t" \
  "vfmadd231ps %%ymm12, %%ymm15, %%ymm2\n\t" \
  "vfmadd231ps %%ymm13, %%ymm15, %%ymm3\n\t" \
  "vbroadcastss 56(%[a]), %%ymm14\n\t" \
  "vfmadd231ps %%ymm12, %%ymm14, %%ymm4\n\t" \
  "vfmadd231ps %%ymm13, %%ymm14, %%ymm5\n\t" \
  "vbroadcastss 60(%[a]), %%ymm15\n\t" \
  "vfmadd231ps %%ymm12, %%ymm15, %%ymm6\n\t" \
  "vfmadd231ps %%ymm13, %%ymm15, %%ymm7\n\t" \
  "vbroadcastss 64(%[a]), %%ymm14\n\t" \
  "vfmadd231ps %%ymm12, %%ymm14, %%ymm8\n\t" \
  "vfmadd231ps %%ymm13, %%ymm14, %%ymm9\n\t" \
  "vbroadcastss 68(%[a]), %%ymm15\n\t" \
  "vfmadd231ps %%ymm12, %%ymm15, %%ymm10\n\t" \
  "vfmadd231ps %%ymm13, %%ymm15, %%ymm11\n\t" \
  "vmovups 192(%[b]), %%ymm12\n\t" \
  "vmovups 224(%[b]), %%ymm13\n\t" \
  "vbroadcastss 72(%[a]), %%ymm14\n\t" \
  "vfmadd231ps %%ymm12, %%ymm14, %%ymm0\n\t" \
  "vfmadd231ps %%ymm13, %%ymm14, %%ymm1\n\t" \
  "vbroadcastss 76(%[a]), %%ymm15\n\t" \
  "vfmadd231ps %%ymm12, %%ymm15, %%ymm2\n\t" \
  "vfmadd231ps %%ymm13, %%ymm15, %%ymm3\n\t" \
  "vbroadcastss 80(%[a]), %%ymm14\n\t" \
  "vfmadd231ps %%ymm12, %%ymm14, %%ymm4\n\t" \
  "vfmadd231ps %%ymm13, %%ymm14, %%ymm5\n\t" \
  "vbroadcastss 84(%[a]), %%ymm15\n\t" \
  "vfmadd231ps %%ymm12, %%ymm15, %%ymm6\n\t" \
  "vfmadd231ps %%ymm13, %%ymm15, %%ymm7\n\t" \
  "vbroadcastss 88(%[a]), %%ymm14\n\t" \
  "vfmadd231ps %%ymm12, %%ymm14, %%ymm8\n\t" \
  "vfmadd231ps %%ymm13, %%ymm14, %%ymm9\n\t" \
  "vbroadcastss 92(%[a]), %%ymm15\n\t" \
  "vfmadd231ps %%ymm12, %%ymm15, %%ymm10\n\t" \
  "vfmadd231ps %%ymm13, %%ymm15, %%ymm11\n\t" \
  "add $96, %[a]\n\t" \
  "add $256, %[b]\n\t" \
  "dec %[k4]\n\t" \
  "jnz 1b\n\t" \
  "2:\n\t" \
  "test %[kr], %[kr]\n\t" \
  "jz 4f\n\t" \
  "3:\n\t" \
  "vmovups 0(%[b]), %%ymm12\n\t" \
  "vmovups 32(%[b]), %%ymm13\n\t" \
  "vbroadcastss 0(%[a]), %%ymm14\n\t" \
  "vfmadd231ps %%ymm12, %%ymm14, %%ymm0\n\t" \
  "vfmadd231ps %%ymm13, %%ymm14, %%ymm1\n\t" \
  "vbroadcastss 4(%[a]), %%ymm15\n\t" \
  "vfmadd231ps %%ymm12, %%ymm15, %%ymm2\n\t" \
  "vfmadd231ps %%ymm13, %%ymm15, %%ymm3\n\t" \
  "vbroadcastss 8(%[a]), %%ymm14\n\t" \
  "vfmadd231ps %%ymm12, %%ymm14, %%ymm4\n\t" \
  "vfmadd231ps %%ymm13, %%ymm14, %%ymm5\n\t" \
  "vbroadcastss 12(%[a]), %%ymm15\n\t" \
  "vfmadd231ps %%ymm12, %%ymm15, %%ymm6\n\t" \
  "vfmadd231ps %%ymm13, %%ymm15, %%ymm7\n\t" \
  "vbroadcastss 16(%[a]), %%ymm14\n\t" \
  "vfmadd231ps %%ymm12, %%ymm14, %%ymm8\n\t" \
  "vfmadd231ps %%ymm13, %%ymm14, %%ymm9\n\t" \
  "vbroadcastss 20(%[a]), %%ymm15\n\t" \
  "vfmadd231ps %%ymm12, %%ymm15, %%ymm10\n\t" \
  "vfmadd231ps %%ymm13, %%ymm15, %%ymm11\n\t" \
  "add $24, %[a]\n\t" \
  "add $64, %[b]\n\t" \
  "dec %[kr]\n\t" \
  "jnz 3b\n\t"

// The operands and clobbers of the kernels that store or add their tile (6, 4 and 2 rows).
#define ST_TILE_OPERANDS \
  : [a] "+r"(a), [b] "+r"(b), [c] "+r"(c), [k4] "+r"(k4), [kr] "+r"(kr), [cp] "=&r"(cp) \
  : [ldc] "r"(ldc_bytes), [add] "r"(add_flag) \
  : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", \
    "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory"

void micro_kernel_avx2(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add) {
  int64_t k4 = kc / 4, kr = kc % 4;
  const int64_t ldc_bytes = ldc * static_cast<int64_t>(sizeof(float));
  const int64_t add_flag = add ? 1 : 0;
  float* cp;
  asm volatile(
      "mov %[c], %[cp]\n\t"
      "prefetcht0 (%[cp])\n\t"
      "prefetcht0 60(%[cp])\n\t"
      "add %[ldc], %[cp]\n\t"
      "prefetcht0 (%[cp])\n\t"
      "prefetcht0 60(%[cp])\n\t"
      "add %[ldc], %[cp]\n\t"
      "prefetcht0 (%[cp])\n\t"
      "prefetcht0 60(%[cp])\n\t"
      "add %[ldc], %[cp]\n\t"
      "prefetcht0 (%[cp])\n\t"
      "prefetcht0 60(%[cp])\n\t"
      "add %[ldc], %[cp]\n\t"
      "prefetcht0 (%[cp])\n\t"
      "prefetcht0 60(%[cp])\n\t"
      "add %[ldc], %[cp]\n\t"
      "prefetcht0 (%[cp])\n\t"
      "prefetcht0 60(%[cp])\n\t"
      ST_TILE_6X16_SUMS
      "4:\n\t"
      "test %[add], %[add]\n\t"
      "jz 5f\n\t"
      "vaddps (%[c]), %%ymm0, %%ymm0\n\t"
      "vaddps 32(%[c]), %%ymm1, %%ymm1\n\t"
      "vmovups %%ymm0, (%[c])\n\t"
      "vmovups %%ymm1, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vaddps (%[c]), %%ymm2, %%ymm2\n\t"
      "vaddps 32(%[c]), %%ymm3, %%ymm3\n\t"
      "vmovups %%ymm2, (%[c])\n\t"
      "vmovups %%ymm3, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vaddps (%[c]), %%ymm4, %%ymm4\n\t"
      "vaddps 32(%[c]), %%ymm5, %%ymm5\n\t"
      "vmovups %%ymm4, (%[c])\n\t"
      "vmovups %%ymm5, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vaddps (%[c]), %%ymm6, %%ymm6\n\t"
      "vaddps 32(%[c]), %%ymm7, %%ymm7\n\t"
      "vmovups %%ymm6, (%[c])\n\t"
      "vmovups %%ymm7, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vaddps (%[c]), %%ymm8, %%ymm8\n\t"
      "vaddps 32(%[c]), %%ymm9, %%ymm9\n\t"
      "vmovups %%ymm8, (%[c])\n\t"
      "vmovups %%ymm9, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vaddps (%[c]), %%ymm10, %%ymm10\n\t"
      "vaddps 32(%[c]), %%ymm11, %%ymm11\n\t"
      "vmovups %%ymm10, (%[c])\n\t"
      "vmovups %%ymm11, 32(%[c])\n\t"
      "jmp 6f\n\t"
      "5:\n\t"
      "vmovups %%ymm0, (%[c])\n\t"
      "vmovups %%ymm1, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vmovups %%ymm2, (%[c])\n\t"
      "vmovups %%ymm3, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vmovups %%ymm4, (%[c])\n\t"
      "vmovups %%ymm5, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vmovups %%ymm6, (%[c])\n\t"
      "vmovups %%ymm7, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vmovups %%ymm8, (%[c])\n\t"
      "vmovups %%ymm9, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vmovups %%ymm10, (%[c])\n\t"
      "vmovups %%ymm11, 32(%[c])\n\t"
      "6:\n\t"
      ST_TILE_OPERANDS);
}

// The first four rows of the tile (the A panel keeps its 6-row layout).
void micro_kernel_4x16_avx2(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add) {
  int64_t k4 = kc / 4, kr = kc % 4;
  const int64_t ldc_bytes = ldc * static_cast<int64_t>(sizeof(float));
  const int64_t add_flag = add ? 1 : 0;
  float* cp;
  asm volatile(
      "mov %[c], %[cp]\n\t"
      "prefetcht0 (%[cp])\n\t"
      "prefetcht0 60(%[cp])\n\t"
      "add %[ldc], %[cp]\n\t"
      "prefetcht0 (%[cp])\n\t"
      "prefetcht0 60(%[cp])\n\t"
      "add %[ldc], %[cp]\n\t"
      "prefetcht0 (%[cp])\n\t"
      "prefetcht0 60(%[cp])\n\t"
      "add %[ldc], %[cp]\n\t"
      "prefetcht0 (%[cp])\n\t"
      "prefetcht0 60(%[cp])\n\t"
      "vxorps %%ymm0, %%ymm0, %%ymm0\n\t"
      "vxorps %%ymm1, %%ymm1, %%ymm1\n\t"
      "vxorps %%ymm2, %%ymm2, %%ymm2\n\t"
      "vxorps %%ymm3, %%ymm3, %%ymm3\n\t"
      "vxorps %%ymm4, %%ymm4, %%ymm4\n\t"
      "vxorps %%ymm5, %%ymm5, %%ymm5\n\t"
      "vxorps %%ymm6, %%ymm6, %%ymm6\n\t"
      "vxorps %%ymm7, %%ymm7, %%ymm7\n\t"
      "test %[k4], %[k4]\n\t"
      "jz 2f\n\t"
      ".p2align 5\n\t"
      "1:\n\t"
      "prefetcht0 512(%[b])\n\t"
      "prefetcht0 384(%[a])\n\t"
      "vmovups 0(%[b]), %%ymm12\n\t"
      "vmovups 32(%[b]), %%ymm13\n\t"
      "vbroadcastss 0(%[a]), %%ymm14\n\t"
      "vfmadd231ps %%ymm12, %%ymm14, %%ymm0\n\t"
      "vfmadd231ps %%ymm13, %%ymm14, %%ymm1\n\t"
      "vbroadcastss 4(%[a]), %%ymm15\n\t"
      "vfmadd231ps %%ymm12, %%ymm15, %%ymm2\n\t"
      "vfmadd231ps %%ymm13, %%ymm15, %%ymm3\n\t"
      "vbroadcastss 8(%[a]), %%ymm14\n\t"
      "vfmadd231ps %%ymm12, %%ymm14, %%ymm4\n\t"
      "vfmadd231ps %%ymm13, %%ymm14, %%ymm5\n\t"
      "vbroadcastss 12(%[a]), %%ymm15\n\t"
      "vfmadd231ps %%ymm12, %%ymm15, %%ymm6\n\t"
      "vfmadd231ps %%ymm13, %%ymm15, %%ymm7\n\t"
      "vmovups 64(%[b]), %%ymm12\n\t"
      "vmovups 96(%[b]), %%ymm13\n\t"
      "vbroadcastss 24(%[a]), %%ymm14\n\t"
      "vfmadd231ps %%ymm12, %%ymm14, %%ymm0\n\t"
      "vfmadd231ps %%ymm13, %%ymm14, %%ymm1\n\t"
      "vbroadcastss 28(%[a]), %%ymm15\n\t"
      "vfmadd231ps %%ymm12, %%ymm15, %%ymm2\n\t"
      "vfmadd231ps %%ymm13, %%ymm15, %%ymm3\n\t"
      "vbroadcastss 32(%[a]), %%ymm14\n\t"
      "vfmadd231ps %%ymm12, %%ymm14, %%ymm4\n\t"
      "vfmadd231ps %%ymm13, %%ymm14, %%ymm5\n\t"
      "vbroadcastss 36(%[a]), %%ymm15\n\t"
      "vfmadd231ps %%ymm12, %%ymm15, %%ymm6\n\t"
      "vfmadd231ps %%ymm13, %%ymm15, %%ymm7\n\t"
      "vmovups 128(%[b]), %%ymm12\n\t"
      "vmovups 160(%[b]), %%ymm13\n\t"
      "vbroadcastss 48(%[a]), %%ymm14\n\t"
      "vfmadd231ps %%ymm12, %%ymm14, %%ymm0\n\t"
      "vfmadd231ps %%ymm13, %%ymm14, %%ymm1\n\t"
      "vbroadcastss 52(%[a]), %%ymm15\n\t"
      "vfmadd231ps %%ymm12, %%ymm15, %%ymm2\n\t"
      "vfmadd231ps %%ymm13, %%ymm15, %%ymm3\n\t"
      "vbroadcastss 56(%[a]), %%ymm14\n\t"
      "vfmadd231ps %%ymm12, %%ymm14, %%ymm4\n\t"
      "vfmadd231ps %%ymm13, %%ymm14, %%ymm5\n\t"
      "vbroadcastss 60(%[a]), %%ymm15\n\t"
      "vfmadd231ps %%ymm12, %%ymm15, %%ymm6\n\t"
      "vfmadd231ps %%ymm13, %%ymm15, %%ymm7\n\t"
      "vmovups 192(%[b]), %%ymm12\n\t"
      "vmovups 224(%[b]), %%ymm13\n\t"
      "vbroadcastss 72(%[a]), %%ymm14\n\t"
      "vfmadd231ps %%ymm12, %%ymm14, %%ymm0\n\t"
      "vfmadd231ps %%ymm13, %%ymm14, %%ymm1\n\t"
      "vbroadcastss 76(%[a]), %%ymm15\n\t"
      "vfmadd231ps %%ymm12, %%ymm15, %%ymm2\n\t"
      "vfmadd231ps %%ymm13, %%ymm15, %%ymm3\n\t"
      "vbroadcastss 80(%[a]), %%ymm14\n\t"
      "vfmadd231ps %%ymm12, %%ymm14, %%ymm4\n\t"
      "vfmadd231ps %%ymm13, %%ymm14, %%ymm5\n\t"
      "vbroadcastss 84(%[a]), %%ymm15\n\t"
      "vfmadd231ps %%ymm12, %%ymm15, %%ymm6\n\t"
      "vfmadd231ps %%ymm13, %%ymm15, %%ymm7\n\t"
      "add $96, %[a]\n\t"
      "add $256, %[b]\n\t"
      "dec %[k4]\n\t"
      "jnz 1b\n\t"
      "2:\n\t"
      "test %[kr], %[kr]\n\t"
      "jz 4f\n\t"
      "3:\n\t"
      "vmovups 0(%[b]), %%ymm12\n\t"
      "vmovups 32(%[b]), %%ymm13\n\t"
      "vbroadcastss 0(%[a]), %%ymm14\n\t"
      "vfmadd231ps %%ymm12, %%ymm14, %%ymm0\n\t"
      "vfmadd231ps %%ymm13, %%ymm14, %%ymm1\n\t"
      "vbroadcastss 4(%[a]), %%ymm15\n\t"
      "vfmadd231ps %%ymm12, %%ymm15, %%ymm2\n\t"
      "vfmadd231ps %%ymm13, %%ymm15, %%ymm3\n\t"
      "vbroadcastss 8(%[a]), %%ymm14\n\t"
      "vfmadd231ps %%ymm12, %%ymm14, %%ymm4\n\t"
      "vfmadd231ps %%ymm13, %%ymm14, %%ymm5\n\t"
      "vbroadcastss 12(%[a]), %%ymm15\n\t"
      "vfmadd231ps %%ymm12, %%ymm15, %%ymm6\n\t"
      "vfmadd231ps %%ymm13, %%ymm15, %%ymm7\n\t"
      "add $24, %[a]\n\t"
      "add $64, %[b]\n\t"
      "dec %[kr]\n\t"
      "jnz 3b\n\t"
      "4:\n\t"
      "test %[add], %[add]\n\t"
      "jz 5f\n\t"
      "vaddps (%[c]), %%ymm0, %%ymm0\n\t"
      "vaddps 32(%[c]), %%ymm1, %%ymm1\n\t"
      "vmovups %%ymm0, (%[c])\n\t"
      "vmovups %%ymm1, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vaddps (%[c]), %%ymm2, %%ymm2\n\t"
      "vaddps 32(%[c]), %%ymm3, %%ymm3\n\t"
      "vmovups %%ymm2, (%[c])\n\t"
      "vmovups %%ymm3, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vaddps (%[c]), %%ymm4, %%ymm4\n\t"
      "vaddps 32(%[c]), %%ymm5, %%ymm5\n\t"
      "vmovups %%ymm4, (%[c])\n\t"
      "vmovups %%ymm5, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vaddps (%[c]), %%ymm6, %%ymm6\n\t"
      "vaddps 32(%[c]), %%ymm7, %%ymm7\n\t"
      "vmovups %%ymm6, (%[c])\n\t"
      "vmovups %%ymm7, 32(%[c])\n\t"
      "jmp 6f\n\t"
      "5:\n\t"
      "vmovups %%ymm0, (%[c])\n\t"
      "vmovups %%ymm1, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vmovups %%ymm2, (%[c])\n\t"
      "vmovups %%ymm3, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vmovups %%ymm4, (%[c])\n\t"
      "vmovups %%ymm5, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vmovups %%ymm6, (%[c])\n\t"
      "vmovups %%ymm7, 32(%[c])\n\t"
      "6:\n\t"
      ST_TILE_OPERANDS);
}

// The first two rows of the tile (the A panel keeps its 6-row layout).
void micro_kernel_2x16_avx2(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add) {
  int64_t k4 = kc / 4, kr = kc % 4;
  const int64_t ldc_bytes = ldc * static_cast<int64_t>(sizeof(float));
  const int64_t add_flag = add ? 1 : 0;
  float* cp;
  asm volatile(
      "mov %[c], %[cp]\n\t"
      "prefetcht0 (%[cp])\n\t"
      "prefetcht0 60(%[cp])\n\t"
      "add %[ldc], %[cp]\n\t"
      "prefetcht0 (%[cp])\n\t"
      "prefetcht0 60(%[cp])\n\t"
      "vxorps %%ymm0, %%ymm0, %%ymm0\n\t"
      "vxorps %%ymm1, %%ymm1, %%ymm1\n\t"
      "vxorps %%ymm2, %%ymm2, %%ymm2\n\t"
      "vxorps %%ymm3, %%ymm3, %%ymm3\n\t"
      "test %[k4], %[k4]\n\t"
      "jz 2f\n\t"
      ".p2align 5\n\t"
      "1:\n\t"
      "prefetcht0 512(%[b])\n\t"
      "prefetcht0 384(%[a])\n\t"
      "vmovups 0(%[b]), %%ymm12\n\t"
      "vmovups 32(%[b]), %%ymm13\n\t"
      "vbroadcastss 0(%[a]), %%ymm14\n\t"
      "vfmadd231ps %%ymm12, %%ymm14, %%ymm0\n\t"
      "vfmadd231ps %%ymm13, %%ymm14, %%ymm1\n\t"
      "vbroadcastss 4(%[a]), %%ymm15\n\t"
      "vfmadd231ps %%ymm12, %%ymm15, %%ymm2\n\t"
      "vfmadd231ps %%ymm13, %%ymm15, %%ymm3\n\t"
      "vmovups 64(%[b]), %%ymm12\n\t"
      "vmovups 96(%[b]), %%ymm13\n\t"
      "vbroadcastss 24(%[a]), %%ymm14\n\t"
      "vfmadd231ps %%ymm12, %%ymm14, %%ymm0\n\t"
      "vfmadd231ps %%ymm13, %%ymm14, %%ymm1\n\t"
      "vbroadcastss 28(%[a]), %%ymm15\n\t"
      "vfmadd231ps %%ymm12, %%ymm15, %%ymm2\n\t"
      "vfmadd231ps %%ymm13, %%ymm15, %%ymm3\n\t"
      "vmovups 128(%[b]), %%ymm12\n\t"
      "vmovups 160(%[b]), %%ymm13\n\t"
      "vbroadcastss 48(%[a]), %%ymm14\n\t"
      "vfmadd231ps %%ymm12, %%ymm14, %%ymm0\n\t"
      "vfmadd231ps %%ymm13, %%ymm14, %%ymm1\n\t"
      "vbroadcastss 52(%[a]), %%ymm15\n\t"
      "vfmadd231ps %%ymm12, %%ymm15, %%ymm2\n\t"
      "vfmadd231ps %%ymm13, %%ymm15, %%ymm3\n\t"
      "vmovups 192(%[b]), %%ymm12\n\t"
      "vmovups 224(%[b]), %%ymm13\n\t"
      "vbroadcastss 72(%[a]), %%ymm14\n\t"
      "vfmadd231ps %%ymm12, %%ymm14, %%ymm0\n\t"
      "vfmadd231ps %%ymm13, %%ymm14, %%ymm1\n\t"
      "vbroadcastss 76(%[a]), %%ymm15\n\t"
      "vfmadd231ps %%ymm12, %%ymm15, %%ymm2\n\t"
      "vfmadd231ps %%ymm13, %%ymm15, %%ymm3\n\t"
      "add $96, %[a]\n\t"
      "add $256, %[b]\n\t"
      "dec %[k4]\n\t"
      "jnz 1b\n\t"
      "2:\n\t"
      "test %[kr], %[kr]\n\t"
      "jz 4f\n\t"
      "3:\n\t"
      "vmovups 0(%[b]), %%ymm12\n\t"
      "vmovups 32(%[b]), %%ymm13\n\t"
      "vbroadcastss 0(%[a]), %%ymm14\n\t"
      "vfmadd231ps %%ymm12, %%ymm14, %%ymm0\n\t"
      "vfmadd231ps %%ymm13, %%ymm14, %%ymm1\n\t"
      "vbroadcastss 4(%[a]), %%ymm15\n\t"
      "vfmadd231ps %%ymm12, %%ymm15, %%ymm2\n\t"
      "vfmadd231ps %%ymm13, %%ymm15, %%ymm3\n\t"
      "add $24, %[a]\n\t"
      "add $64, %[b]\n\t"
      "dec %[kr]\n\t"
      "jnz 3b\n\t"
      "4:\n\t"
      "test %[add], %[add]\n\t"
      "jz 5f\n\t"
      "vaddps (%[c]), %%ymm0, %%ymm0\n\t"
      "vaddps 32(%[c]), %%ymm1, %%ymm1\n\t"
      "vmovups %%ymm0, (%[c])\n\t"
      "vmovups %%ymm1, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vaddps (%[c]), %%ymm2, %%ymm2\n\t"
      "vaddps 32(%[c]), %%ymm3, %%ymm3\n\t"
      "vmovups %%ymm2, (%[c])\n\t"
      "vmovups %%ymm3, 32(%[c])\n\t"
      "jmp 6f\n\t"
      "5:\n\t"
      "vmovups %%ymm0, (%[c])\n\t"
      "vmovups %%ymm1, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vmovups %%ymm2, (%[c])\n\t"
      "vmovups %%ymm3, 32(%[c])\n\t"
      "6:\n\t"
      ST_TILE_OPERANDS);
}

// The full tile stored with non-temporal stores (never added): for a weight gradient that is
// overwritten, is larger than the caches and is not read again in the call, each row of the tile
// (16 floats, one whole cache line when c and ldc are multiples of 64 bytes, which the caller
// guarantees) goes to memory without being read for ownership first. The same sums as the
// other kernels. The caller fences (sfence) before the result is used.
void micro_kernel_stream_avx2(int kc, const float* a, const float* b, float* c, int64_t ldc) {
  int64_t k4 = kc / 4, kr = kc % 4;
  const int64_t ldc_bytes = ldc * static_cast<int64_t>(sizeof(float));
  asm volatile(
      ST_TILE_6X16_SUMS
      "4:\n\t"
      "vmovntps %%ymm0, (%[c])\n\t"
      "vmovntps %%ymm1, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vmovntps %%ymm2, (%[c])\n\t"
      "vmovntps %%ymm3, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vmovntps %%ymm4, (%[c])\n\t"
      "vmovntps %%ymm5, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vmovntps %%ymm6, (%[c])\n\t"
      "vmovntps %%ymm7, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vmovntps %%ymm8, (%[c])\n\t"
      "vmovntps %%ymm9, 32(%[c])\n\t"
      "add %[ldc], %[c]\n\t"
      "vmovntps %%ymm10, (%[c])\n\t"
      "vmovntps %%ymm11, 32(%[c])\n\t"
      : [a] "+r"(a), [b] "+r"(b), [c] "+r"(c), [k4] "+r"(k4), [kr] "+r"(kr)
      : [ldc] "r"(ldc_bytes)
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
        "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory");
}

#undef ST_TILE_6X16_SUMS
#undef ST_TILE_OPERANDS

}  // namespace st::gemm
