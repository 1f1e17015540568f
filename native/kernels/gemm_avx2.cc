// AVX2 + FMA micro-kernels of the matmul (gemm_kernels.h): the 6 × 16 register tile, and 4 × 16
// and 2 × 16 variants for the last rows of a matrix or of an expert's group (every expert shape
// here has M ≡ 4 mod 6; a group of the Switch layer leaves any remainder). Compiled with -mavx2 -mfma; called only when active_isa() >= Isa::avx2.
//
// Written as inline assembly because the tile uses all 16 ymm registers (12 accumulators, two B
// vectors, two A broadcasts) and compilers given the same loop as intrinsics spill accumulators
// to the stack, which costs about a third of the peak. Each k step: two B loads, six broadcasts,
// twelve independent FMAs (enough to cover the FMA latency on two pipes); unrolled by four. The C
// tile is prefetched first: its rows are far apart and would otherwise miss at the very end.
// Every kernel here (the 6-, 4- and 2-row tiles, and the 6-row tiles with side jobs: packing,
// copying or prefetching B between their FMAs) sums each output element in the same order, so they
// give the same bits.
//
// Generated: one k step is, per row r, `vbroadcastss a[k·6 + r]; vfmadd231ps b0; vfmadd231ps b1`.
#include <cstdint>

#include "gemm_kernels.h"

namespace st::gemm {

// One k step of a tile: B's 16 columns into ymm12 | ymm13 (byte offsets o0, o1), then per row the
// broadcast of A's element (byte offset a_off, into ymm bc) and two FMAs into ymm r0 | r1.
#define ST_LOAD_B(o0, o1) \
  "vmovups " #o0 "(%[b]), %%ymm12\n\t" \
  "vmovups " #o1 "(%[b]), %%ymm13\n\t"
#define ST_FMA_ROW(a_off, bc, r0, r1) \
  "vbroadcastss " #a_off "(%[a]), %%ymm" #bc "\n\t" \
  "vfmadd231ps %%ymm12, %%ymm" #bc ", %%ymm" #r0 "\n\t" \
  "vfmadd231ps %%ymm13, %%ymm" #bc ", %%ymm" #r1 "\n\t"
// One k step of a 2-, 4- or 6-row tile: A's elements from byte offset a, B's from byte offset b.
#define ST_K_STEP_2(a, b) ST_LOAD_B(b, b + 32) ST_FMA_ROW(a, 14, 0, 1) ST_FMA_ROW(a + 4, 15, 2, 3)
#define ST_K_STEP_4(a, b) ST_K_STEP_2(a, b) ST_FMA_ROW(a + 8, 14, 4, 5) ST_FMA_ROW(a + 12, 15, 6, 7)
#define ST_K_STEP_6(a, b) ST_K_STEP_4(a, b) ST_FMA_ROW(a + 16, 14, 8, 9) ST_FMA_ROW(a + 20, 15, 10, 11)

// The twelve accumulators of the 6 × 16 tile zeroed.
#define ST_ZERO_6X16 \
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
  "vxorps %%ymm11, %%ymm11, %%ymm11\n\t"

// The 6 × 16 tile's sums into ymm0–ymm11 (zeroed first; k4 unrolled steps of four, then kr single
// steps), shared by the kernel that stores or adds the tile and the one that streams it out.
#define ST_TILE_6X16_SUMS ST_TILE_6X16_SUMS_WITH("", "4f")
// JOB: instructions run once per four k steps, between the FMAs (a side job of the tile); DONE: the
// label to go on at when no single k steps are left (the code after the macro, or the write-back).
#define ST_TILE_6X16_SUMS_WITH(JOB, DONE) \
  ST_ZERO_6X16 \
  "test %[k4], %[k4]\n\t" \
  "jz 2f\n\t" \
  ".p2align 5\n\t" \
  "1:\n\t" \
  "prefetcht0 512(%[b])\n\t" \
  "prefetcht0 384(%[a])\n\t" \
  ST_K_STEP_6(0, 0) \
  ST_K_STEP_6(24, 64) \
  JOB \
  ST_K_STEP_6(48, 128) \
  ST_K_STEP_6(72, 192) \
  "add $96, %[a]\n\t" \
  "add $256, %[b]\n\t" \
  "dec %[k4]\n\t" \
  "jnz 1b\n\t" \
  "2:\n\t" \
  "test %[kr], %[kr]\n\t" \
  "jz " DONE "\n\t" \
  "3:\n\t" \
  ST_K_STEP_6(0, 0) \
  "add $24, %[a]\n\t" \
  "add $64, %[b]\n\t" \
  "dec %[kr]\n\t" \
  "jnz 3b\n\t"

// One row of the tile written back (ymm r0 | r1 = its 16 columns): added to C, stored, or streamed.
#define ST_ADD_ROW(r0, r1) \
  "vaddps (%[c]), %%ymm" #r0 ", %%ymm" #r0 "\n\t" \
  "vaddps 32(%[c]), %%ymm" #r1 ", %%ymm" #r1 "\n\t" \
  ST_STORE_ROW(r0, r1)
#define ST_STORE_ROW(r0, r1) \
  "vmovups %%ymm" #r0 ", (%[c])\n\t" \
  "vmovups %%ymm" #r1 ", 32(%[c])\n\t"
#define ST_STREAM_ROW(r0, r1) \
  "vmovntps %%ymm" #r0 ", (%[c])\n\t" \
  "vmovntps %%ymm" #r1 ", 32(%[c])\n\t"
#define ST_NEXT_ROW "add %[ldc], %[c]\n\t"

// Every kernel here uses all sixteen ymm registers.
#define ST_YMM_CLOBBERS \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", \
  "xmm13", "xmm14", "xmm15", "cc", "memory"
// The operands and clobbers of the kernels that store or add their tile (6, 4 and 2 rows).
#define ST_TILE_OPERANDS \
  : [a] "+r"(a), [b] "+r"(b), [c] "+r"(c), [k4] "+r"(k4), [kr] "+r"(kr), [cp] "=&r"(cp) \
  : [ldc] "r"(ldc_bytes), [add] "r"(add_flag) \
  : ST_YMM_CLOBBERS

// One C row prefetched (its 16 floats may straddle two lines), and the step to the next row.
#define ST_PREFETCH_C_ROW \
  "prefetcht0 (%[cp])\n\t" \
  "prefetcht0 60(%[cp])\n\t"
#define ST_NEXT_C_ROW "add %[ldc], %[cp]\n\t"

// The six C rows of a 6 × 16 tile prefetched (they are far apart and needed only at the end).
#define ST_PREFETCH_C_6X16 \
  "mov %[c], %[cp]\n\t" \
  ST_PREFETCH_C_ROW ST_NEXT_C_ROW \
  ST_PREFETCH_C_ROW ST_NEXT_C_ROW \
  ST_PREFETCH_C_ROW ST_NEXT_C_ROW \
  ST_PREFETCH_C_ROW ST_NEXT_C_ROW \
  ST_PREFETCH_C_ROW ST_NEXT_C_ROW \
  ST_PREFETCH_C_ROW

// The 6 × 16 tile in ymm0–ymm11 added to C (add set) or stored.
#define ST_TILE_6X16_WRITE \
  "4:\n\t" \
  "cmpq $0, %[add]\n\t" \
  "jz 5f\n\t" \
  ST_ADD_ROW(0, 1) \
  ST_NEXT_ROW \
  ST_ADD_ROW(2, 3) \
  ST_NEXT_ROW \
  ST_ADD_ROW(4, 5) \
  ST_NEXT_ROW \
  ST_ADD_ROW(6, 7) \
  ST_NEXT_ROW \
  ST_ADD_ROW(8, 9) \
  ST_NEXT_ROW \
  ST_ADD_ROW(10, 11) \
  "jmp 6f\n\t" \
  "5:\n\t" \
  ST_STORE_ROW(0, 1) \
  ST_NEXT_ROW \
  ST_STORE_ROW(2, 3) \
  ST_NEXT_ROW \
  ST_STORE_ROW(4, 5) \
  ST_NEXT_ROW \
  ST_STORE_ROW(6, 7) \
  ST_NEXT_ROW \
  ST_STORE_ROW(8, 9) \
  ST_NEXT_ROW \
  ST_STORE_ROW(10, 11) \
  "6:\n\t"

void micro_kernel_avx2(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add) {
  int64_t k4 = kc / 4, kr = kc % 4;
  const int64_t ldc_bytes = ldc * static_cast<int64_t>(sizeof(float));
  const int64_t add_flag = add ? 1 : 0;
  float* cp;
  asm volatile(
      ST_PREFETCH_C_6X16
      ST_TILE_6X16_SUMS
      ST_TILE_6X16_WRITE
      ST_TILE_OPERANDS);
}

// The full tile with a side job: rows [0, pf_rows) of a strided source (row i at pf + i·pf_ld floats,
// 16 floats) prefetched into L2, one row every four k steps. The driver hands each call a slice of
// the next B panel's source this way: spread between the FMAs the prefetches cost nothing, where
// issued in a burst between calls they stalled the core (waiting for free miss buffers) for ~3 %
// of the up product.
#define ST_PREFETCH_ROW \
  "test %[pn], %[pn]\n\t" \
  "jz 7f\n\t" \
  "prefetcht1 (%[pp])\n\t" \
  "prefetcht1 60(%[pp])\n\t" \
  "add %[pld], %[pp]\n\t" \
  "dec %[pn]\n\t" \
  "7:\n\t"
void micro_kernel_prefetching_avx2(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add,
                                   const float* pf, int64_t pf_ld, int64_t pf_rows) {
  int64_t k4 = kc / 4, kr = kc % 4;
  const int64_t ldc_bytes = ldc * static_cast<int64_t>(sizeof(float));
  const int64_t pf_ld_bytes = pf_ld * static_cast<int64_t>(sizeof(float));
  const int64_t add_flag = add ? 1 : 0;
  float* cp;
  asm volatile(
      ST_PREFETCH_C_6X16
      ST_TILE_6X16_SUMS_WITH(ST_PREFETCH_ROW, "8f")
      // Rows left when the tile had fewer groups of four k steps than rows to prefetch.
      "8:\n\t"
      "test %[pn], %[pn]\n\t"
      "jz 4f\n\t"
      "prefetcht1 (%[pp])\n\t"
      "prefetcht1 60(%[pp])\n\t"
      "add %[pld], %[pp]\n\t"
      "dec %[pn]\n\t"
      "jmp 8b\n\t"
      ST_TILE_6X16_WRITE
      : [a] "+r"(a), [b] "+r"(b), [c] "+r"(c), [k4] "+r"(k4), [kr] "+r"(kr), [cp] "=&r"(cp), [pp] "+r"(pf),
        [pn] "+r"(pf_rows)
      : [ldc] "r"(ldc_bytes), [add] "rm"(add_flag), [pld] "r"(pf_ld_bytes)
      : ST_YMM_CLOBBERS);
}

// The full tile with two side jobs, one step of each every four k steps: rows [0, copy_rows) of the
// next B panel copied from their source (row i at src + i·ld, 16 floats) into its packed slot (dst +
// i·16), and rows [0, pf_rows) of the panel after it (pf + i·ld) prefetched into L2. The copy moves
// through ymm14 | ymm15 between two k steps, whose broadcasts reload them.
#define ST_COPY_AND_PREFETCH_ROW \
  "test %[cn], %[cn]\n\t" \
  "jz 7f\n\t" \
  "vmovups (%[s]), %%ymm14\n\t" \
  "vmovups 32(%[s]), %%ymm15\n\t" \
  "vmovups %%ymm14, (%[d])\n\t" \
  "vmovups %%ymm15, 32(%[d])\n\t" \
  "add %[ld], %[s]\n\t" \
  "add $64, %[d]\n\t" \
  "dec %[cn]\n\t" \
  "7:\n\t" \
  "test %[pn], %[pn]\n\t" \
  "jz 8f\n\t" \
  "prefetcht1 (%[pp])\n\t" \
  "prefetcht1 60(%[pp])\n\t" \
  "add %[ld], %[pp]\n\t" \
  "dec %[pn]\n\t" \
  "8:\n\t"
void micro_kernel_copying_avx2(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add,
                               const float* src, int64_t ld, float* dst, int64_t copy_rows, const float* pf,
                               int64_t pf_rows) {
  int64_t k4 = kc / 4, kr = kc % 4;
  const int64_t ldc_bytes = ldc * static_cast<int64_t>(sizeof(float));
  const int64_t ld_bytes = ld * static_cast<int64_t>(sizeof(float));
  const int64_t add_flag = add ? 1 : 0;
  // The C rows are far apart and needed only at the end (no register to spare for it in the asm).
  for (int r = 0; r < MR; ++r) {
    __builtin_prefetch(c + r * ldc);
    __builtin_prefetch(c + r * ldc + 15);
  }
  asm volatile(
      ST_TILE_6X16_SUMS_WITH(ST_COPY_AND_PREFETCH_ROW, "9f")
      // What is left when the tile had fewer groups of four k steps than rows.
      "9:\n\t"
      "mov %[cn], %[k4]\n\t"
      "or %[pn], %[k4]\n\t"
      "jz 4f\n\t"
      ST_COPY_AND_PREFETCH_ROW
      "jmp 9b\n\t"
      ST_TILE_6X16_WRITE
      : [a] "+r"(a), [b] "+r"(b), [c] "+r"(c), [k4] "+r"(k4), [kr] "+r"(kr), [s] "+r"(src), [d] "+r"(dst),
        [cn] "+r"(copy_rows), [pp] "+r"(pf), [pn] "+r"(pf_rows)
      : [ldc] "r"(ldc_bytes), [add] "m"(add_flag), [ld] "r"(ld_bytes)
      : ST_YMM_CLOBBERS);
}

// The full tile packing its B panel as it goes (gemm_kernels.h): at each k step the 16 columns come
// from their source row instead of the packed panel, are used by the FMAs from the registers and are
// stored into the packed panel for the tile's other calls. Two loads and two stores more per k step
// on ports the FMA-bound loop leaves idle, instead of a separate pass that copies the panel.
// ST_COPY_B_*: row k of the source into ymm12 | ymm13 and out to byte offset o of the packed panel.
#define ST_STORE_PACKED_B(o) \
  "vmovups %%ymm12, " #o "(%[b])\n\t" \
  "vmovups %%ymm13, " #o " + 32(%[b])\n\t"
// Strided source (row k at s + k·ld bytes); the row eight steps ahead is prefetched into L1 (a
// prefetch past the matrix does not fault).
#define ST_COPY_B_STRIDED(o) \
  "vmovups (%[s]), %%ymm12\n\t" \
  "vmovups 32(%[s]), %%ymm13\n\t" \
  "prefetcht0 (%[s], %[ld], 8)\n\t" \
  "prefetcht0 60(%[s], %[ld], 8)\n\t" \
  "add %[ld], %[s]\n\t" \
  ST_STORE_PACKED_B(o)
// Gathered source (row k at s + rows[k]·ld bytes; i = byte offset of rows[k] from %[rows]).
#define ST_COPY_B_GATHERED(o, i) \
  "movslq " #i "(%[rows]), %[cp]\n\t" \
  "imul %[ld], %[cp]\n\t" \
  "vmovups (%[s], %[cp]), %%ymm12\n\t" \
  "vmovups 32(%[s], %[cp]), %%ymm13\n\t" \
  ST_STORE_PACKED_B(o)
// One k step of the 6-row tile with B already in ymm12 | ymm13 (A's elements from byte offset a).
#define ST_FMA_ROWS_6(a) \
  ST_FMA_ROW(a, 14, 0, 1) ST_FMA_ROW(a + 4, 15, 2, 3) ST_FMA_ROW(a + 8, 14, 4, 5) \
  ST_FMA_ROW(a + 12, 15, 6, 7) ST_FMA_ROW(a + 16, 14, 8, 9) ST_FMA_ROW(a + 20, 15, 10, 11)
// The sums of ST_TILE_6X16_SUMS with each k step's B from COPY(byte offset in the packed panel, k
// step of the four); ADVANCE4 / ADVANCE1 move the source past four / one k steps.
#define ST_TILE_6X16_SUMS_COPYING(COPY0, COPY1, COPY2, COPY3, ADVANCE4, ADVANCE1) \
  ST_ZERO_6X16 \
  "test %[k4], %[k4]\n\t" \
  "jz 2f\n\t" \
  ".p2align 5\n\t" \
  "1:\n\t" \
  "prefetcht0 384(%[a])\n\t" \
  COPY0 ST_FMA_ROWS_6(0) \
  COPY1 ST_FMA_ROWS_6(24) \
  COPY2 ST_FMA_ROWS_6(48) \
  COPY3 ST_FMA_ROWS_6(72) \
  "add $96, %[a]\n\t" \
  "add $256, %[b]\n\t" \
  ADVANCE4 \
  "dec %[k4]\n\t" \
  "jnz 1b\n\t" \
  "2:\n\t" \
  "test %[kr], %[kr]\n\t" \
  "jz 4f\n\t" \
  "3:\n\t" \
  COPY0 ST_FMA_ROWS_6(0) \
  "add $24, %[a]\n\t" \
  "add $64, %[b]\n\t" \
  ADVANCE1 \
  "dec %[kr]\n\t" \
  "jnz 3b\n\t"

void micro_kernel_pack_b_avx2(int kc, const float* a, const float* src, int64_t ld, const int32_t* rows, float* b,
                              float* c, int64_t ldc, bool add) {
  int64_t k4 = kc / 4, kr = kc % 4;
  const int64_t ldc_bytes = ldc * static_cast<int64_t>(sizeof(float));
  const int64_t ld_bytes = ld * static_cast<int64_t>(sizeof(float));
  const int64_t add_flag = add ? 1 : 0;
  float* cp;
  if (!rows) {
    asm volatile(
        ST_PREFETCH_C_6X16
        ST_TILE_6X16_SUMS_COPYING(ST_COPY_B_STRIDED(0), ST_COPY_B_STRIDED(64), ST_COPY_B_STRIDED(128),
                                  ST_COPY_B_STRIDED(192), "", "")
        ST_TILE_6X16_WRITE
        : [a] "+r"(a), [b] "+r"(b), [c] "+r"(c), [k4] "+r"(k4), [kr] "+r"(kr), [cp] "=&r"(cp), [s] "+r"(src)
        : [ldc] "r"(ldc_bytes), [add] "rm"(add_flag), [ld] "r"(ld_bytes)
        : ST_YMM_CLOBBERS);
    return;
  }
  asm volatile(
      ST_PREFETCH_C_6X16
      ST_TILE_6X16_SUMS_COPYING(ST_COPY_B_GATHERED(0, 0), ST_COPY_B_GATHERED(64, 4), ST_COPY_B_GATHERED(128, 8),
                                ST_COPY_B_GATHERED(192, 12), "add $16, %[rows]\n\t", "add $4, %[rows]\n\t")
      ST_TILE_6X16_WRITE
      : [a] "+r"(a), [b] "+r"(b), [c] "+r"(c), [k4] "+r"(k4), [kr] "+r"(kr), [cp] "=&r"(cp), [rows] "+r"(rows)
      : [ldc] "r"(ldc_bytes), [add] "rm"(add_flag), [ld] "r"(ld_bytes), [s] "r"(src)
      : ST_YMM_CLOBBERS);
}

// The first four rows of the tile (the A panel keeps its 6-row layout).
void micro_kernel_4x16_avx2(int kc, const float* a, const float* b, float* c, int64_t ldc, bool add) {
  int64_t k4 = kc / 4, kr = kc % 4;
  const int64_t ldc_bytes = ldc * static_cast<int64_t>(sizeof(float));
  const int64_t add_flag = add ? 1 : 0;
  float* cp;
  asm volatile(
      "mov %[c], %[cp]\n\t"
      ST_PREFETCH_C_ROW ST_NEXT_C_ROW
      ST_PREFETCH_C_ROW ST_NEXT_C_ROW
      ST_PREFETCH_C_ROW ST_NEXT_C_ROW
      ST_PREFETCH_C_ROW
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
      ST_K_STEP_4(0, 0)
      ST_K_STEP_4(24, 64)
      ST_K_STEP_4(48, 128)
      ST_K_STEP_4(72, 192)
      "add $96, %[a]\n\t"
      "add $256, %[b]\n\t"
      "dec %[k4]\n\t"
      "jnz 1b\n\t"
      "2:\n\t"
      "test %[kr], %[kr]\n\t"
      "jz 4f\n\t"
      "3:\n\t"
      ST_K_STEP_4(0, 0)
      "add $24, %[a]\n\t"
      "add $64, %[b]\n\t"
      "dec %[kr]\n\t"
      "jnz 3b\n\t"
      "4:\n\t"
      "test %[add], %[add]\n\t"
      "jz 5f\n\t"
      ST_ADD_ROW(0, 1)
      ST_NEXT_ROW
      ST_ADD_ROW(2, 3)
      ST_NEXT_ROW
      ST_ADD_ROW(4, 5)
      ST_NEXT_ROW
      ST_ADD_ROW(6, 7)
      "jmp 6f\n\t"
      "5:\n\t"
      ST_STORE_ROW(0, 1)
      ST_NEXT_ROW
      ST_STORE_ROW(2, 3)
      ST_NEXT_ROW
      ST_STORE_ROW(4, 5)
      ST_NEXT_ROW
      ST_STORE_ROW(6, 7)
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
      ST_PREFETCH_C_ROW ST_NEXT_C_ROW
      ST_PREFETCH_C_ROW
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
      ST_K_STEP_2(0, 0)
      ST_K_STEP_2(24, 64)
      ST_K_STEP_2(48, 128)
      ST_K_STEP_2(72, 192)
      "add $96, %[a]\n\t"
      "add $256, %[b]\n\t"
      "dec %[k4]\n\t"
      "jnz 1b\n\t"
      "2:\n\t"
      "test %[kr], %[kr]\n\t"
      "jz 4f\n\t"
      "3:\n\t"
      ST_K_STEP_2(0, 0)
      "add $24, %[a]\n\t"
      "add $64, %[b]\n\t"
      "dec %[kr]\n\t"
      "jnz 3b\n\t"
      "4:\n\t"
      "test %[add], %[add]\n\t"
      "jz 5f\n\t"
      ST_ADD_ROW(0, 1)
      ST_NEXT_ROW
      ST_ADD_ROW(2, 3)
      "jmp 6f\n\t"
      "5:\n\t"
      ST_STORE_ROW(0, 1)
      ST_NEXT_ROW
      ST_STORE_ROW(2, 3)
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
      ST_STREAM_ROW(0, 1)
      ST_NEXT_ROW
      ST_STREAM_ROW(2, 3)
      ST_NEXT_ROW
      ST_STREAM_ROW(4, 5)
      ST_NEXT_ROW
      ST_STREAM_ROW(6, 7)
      ST_NEXT_ROW
      ST_STREAM_ROW(8, 9)
      ST_NEXT_ROW
      ST_STREAM_ROW(10, 11)
      : [a] "+r"(a), [b] "+r"(b), [c] "+r"(c), [k4] "+r"(k4), [kr] "+r"(kr)
      : [ldc] "r"(ldc_bytes)
      : ST_YMM_CLOBBERS);
}

#undef ST_TILE_6X16_SUMS
#undef ST_TILE_6X16_SUMS_WITH
#undef ST_PREFETCH_ROW
#undef ST_COPY_AND_PREFETCH_ROW
#undef ST_TILE_6X16_SUMS_COPYING
#undef ST_TILE_6X16_WRITE
#undef ST_PREFETCH_C_6X16
#undef ST_STORE_PACKED_B
#undef ST_COPY_B_STRIDED
#undef ST_COPY_B_GATHERED
#undef ST_FMA_ROWS_6
#undef ST_TILE_OPERANDS
#undef ST_ADD_ROW
#undef ST_STORE_ROW
#undef ST_STREAM_ROW
#undef ST_NEXT_ROW
#undef ST_K_STEP_6
#undef ST_K_STEP_4
#undef ST_K_STEP_2
#undef ST_LOAD_B
#undef ST_FMA_ROW

}  // namespace st::gemm
