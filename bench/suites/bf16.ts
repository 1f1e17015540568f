// Suite `bf16`: both conversions on 64 MiB of float32 (16 Mi elements), the AVX2 and portable paths
// and the scalar reference, 1 and all threads. GB/s count (bytes read + bytes written) / 2, the same
// count as memcpy's bytes copied, so `% of peak` is the share of memcpy bandwidth at that thread
// count; `pctOfStreamCopy` is the share of a copy with non-temporal stores (how these kernels write
// large outputs), the stricter limit. The machine is shared and its load drifts, so the
// measurements of one thread count (memcpy and the copy included) run in interleaved rounds and
// each reports the median over rounds: the ratios are side by side.
// In-cache rows (256 KiB, one thread: below two chunks the kernels do not split) show the
// compute-bound speed-up over the reference, which memory bandwidth hides at 64 MiB; their `% of
// peak` is of a memcpy of the same 256 KiB, in cache too.
import { cpuInfo } from '../../src/index.js';
import type { BenchRecord, Suite } from '../suite.js';
import { measureBf16, measureMemcpy, measureStreamCopy, type Bf16Direction, type Bf16Impl, type Measurement, median } from '../measure.js';
import { memcpyBytes } from '../peak.js';

const DIRECTIONS: Bf16Direction[] = ['toBfloat16', 'fromBfloat16'];

export const bf16Suite: Suite = {
  name: 'bf16',
  description: 'toBfloat16/fromBfloat16 on 64 MiB (avx512, avx2, portable, scalar reference), GB/s and % of memcpy',
  async run(ctx) {
    const best = cpuInfo().bestIsa;
    const impls: Bf16Impl[] = ['reference', 'portable', ...(best !== 'portable' ? ['avx2' as const] : []), ...(best === 'avx512' ? ['avx512' as const] : [])];
    const rounds = ctx.quick ? 1 : 5;
    const plan = ctx.quick ? { repeats: 3, minSeconds: 0 } : { repeats: 5, minSeconds: 0.05 };
    const large = ctx.quick ? 2 ** 20 : 16 * 2 ** 20;
    const small = 2 ** 16;
    const copyBytes = memcpyBytes(ctx.quick);
    const shape = (n: number) => `${(4 * n) / 2 ** 20} MiB f32 <-> ${(2 * n) / 2 ** 20} MiB bf16`;
    const records: BenchRecord[] = [];

    for (const [n, threadCounts, where] of [[large, ctx.threads, ''], [small, [1], ' in-cache']] as const) {
      for (const threads of threadCounts) {
        // Every measurement of this thread count, run once per round in turn.
        const tasks: Array<{ key: string; run: () => Measurement & { gbps: number } }> = [];
        // In cache, the limit to compare with is memcpy of the same size in cache.
        const bytes = where ? 4 * n : copyBytes;
        tasks.push({ key: 'memcpy', run: () => measureMemcpy(bytes, threads, plan) });
        if (!where) tasks.push({ key: 'stream', run: () => measureStreamCopy(bytes, threads, plan) });
        for (const direction of DIRECTIONS)
          for (const impl of impls) tasks.push({ key: `${direction} ${impl}`, run: () => measureBf16(direction, n, threads, impl, plan) });
        const gbps = new Map<string, number[]>();
        const seconds = new Map<string, number[]>();
        for (let round = 0; round < rounds; round++) {
          ctx.log(`bf16: ${shape(n)}, ${threads} thread(s), round ${round + 1}/${rounds}`);
          for (const task of tasks) {
            const m = task.run();
            gbps.set(task.key, [...(gbps.get(task.key) ?? []), m.gbps]);
            seconds.set(task.key, [...(seconds.get(task.key) ?? []), m.seconds]);
          }
        }
        const rate = (key: string) => median(gbps.get(key)!);
        for (const direction of DIRECTIONS) {
          const reference = rate(`${direction} reference`);
          for (const impl of impls) {
            const key = `${direction} ${impl}`;
            records.push({
              suite: 'bf16', name: `${direction}${where} ${impl}`, shape: shape(n), threads,
              seconds: median(seconds.get(key)!), gbps: rate(key),
              percentOfPeak: (100 * rate(key)) / rate('memcpy'),
              pctOfStreamCopy: where ? undefined : (100 * rate(key)) / rate('stream'),
              vsReference: rate(key) / reference,
              memcpyGbps: rate('memcpy'),
              counts: '(read + written) / 2',
            });
          }
        }
      }
    }
    return records;
  },
};
