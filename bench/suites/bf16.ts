// Suite `bf16`: both conversions on 64 MiB of float32 (16 Mi elements), the AVX2 and portable paths
// and the scalar reference, 1 and all threads. GB/s count (bytes read + bytes written) / 2, the same
// count as memcpy's bytes copied, so `% of peak` is the share of memcpy bandwidth at that thread
// count. In-cache rows (256 KiB, one thread: below two chunks the kernels do not split) show the
// compute-bound speed-up over the reference, which at 64 MiB the memory bandwidth hides.
import { cpuInfo } from '../../src/index.js';
import type { BenchRecord, Suite } from '../suite.js';
import { measureBf16, planFor, type Bf16Direction, type Bf16Impl } from '../measure.js';

const DIRECTIONS: Bf16Direction[] = ['toBfloat16', 'fromBfloat16'];

export const bf16Suite: Suite = {
  name: 'bf16',
  description: 'toBfloat16/fromBfloat16 on 64 MiB (avx2, portable, scalar reference), GB/s and % of memcpy',
  async run(ctx) {
    const peak = await ctx.peak();
    const plan = planFor(ctx.quick);
    const impls: Bf16Impl[] = cpuInfo().bestIsa === 'avx2' ? ['reference', 'portable', 'avx2'] : ['reference', 'portable'];
    const large = ctx.quick ? 2 ** 20 : 16 * 2 ** 20;
    const small = 2 ** 16;
    const records: BenchRecord[] = [];
    const shape = (n: number) => `${(4 * n) / 2 ** 20} MiB f32 <-> ${(2 * n) / 2 ** 20} MiB bf16`;
    for (const direction of DIRECTIONS) {
      for (const [n, threadCounts, where] of [[large, ctx.threads, ''], [small, [1], ' in-cache']] as const) {
        for (const threads of threadCounts) {
          let reference = 0;
          for (const impl of impls) {
            ctx.log(`bf16: ${direction}${where} ${impl}, ${threads} thread(s)`);
            const m = measureBf16(direction, n, threads, impl, plan);
            if (impl === 'reference') reference = m.gbps;
            const memcpy = peak.memcpyGbps[threads] ?? peak.memcpyGbps[1];
            records.push({
              suite: 'bf16', name: `${direction}${where} ${impl}`, shape: shape(n), threads,
              seconds: m.seconds, gbps: m.gbps,
              // In cache memcpy is no limit to compare with; the ratio to the reference says it all.
              percentOfPeak: where ? undefined : (100 * m.gbps) / memcpy,
              vsReference: m.gbps / reference,
              counts: '(read + written) / 2',
            });
          }
        }
      }
    }
    return records;
  },
};
