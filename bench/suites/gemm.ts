// Suite `gemm`: the float32 matmul at the expert shapes, the grouped expert matmul (E = 8, 64) on
// the same total work as a plain matmul, gather-then-matmul for comparison, the portable path
// against the scalar reference, and with `--compare blas` the system BLAS's cblas_sgemm (OpenBLAS,
// BLIS; loaded at run time when present) on the same shapes in the same run.
// M × K × N: C (M, N) = A (M, K) · B (K, N). Timing is done in C++ (median of repeats after warm-up).
import { native } from '../../src/native.js';
import type { BenchContext, BenchRecord, Suite } from '../suite.js';

interface Timing {
  seconds: number;
  minSeconds: number;
  repeats: number;
}

/** The expert shapes M × K × N of the issue: token blocks times d_model × d_ff and back. */
export const expertShapes: Array<[number, number, number]> = [
  [64, 256, 1024],
  [256, 512, 2048],
  [256, 2048, 512],
  [1024, 768, 3072],
  [1024, 3072, 768],
  [4096, 1024, 4096],
];

/**
 * Grouped shapes: M routed rows in total, each of E experts with its own (K, N) weight. All E
 * weights must fit in memory (E = 64 at 4096 × 1024 × 4096 would need 4 GB), so these are the
 * Switch layer's two expert products at T = 4096 tokens, d_model = 512, d_ff = 2048.
 */
export const groupedShapes: Array<[number, number, number]> = [
  [4096, 512, 2048],
  [4096, 2048, 512],
];

const gflops = (m: number, k: number, n: number, seconds: number) => (2 * m * k * n) / seconds / 1e9;
const shapeName = (m: number, k: number, n: number) => `${m}x${k}x${n}`;
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

export const gemmSuite: Suite = {
  name: 'gemm',
  description:
    'float32 matmul at the expert shapes, grouped expert matmul (E = 8, 64) vs plain matmul and gather-then-matmul, ' +
    'portable path vs scalar reference; --compare blas adds OpenBLAS / BLIS cblas_sgemm',
  async run(ctx: BenchContext): Promise<BenchRecord[]> {
    const peak = await ctx.peak();
    const records: BenchRecord[] = [];
    const settings = ctx.quick ? { warmup: 1, repeats: 3, minSeconds: 0.05 } : { warmup: 2, repeats: 7, minSeconds: 0.3 };
    const percent = (g: number, threads: number) => {
      const p = peak.fmaGflops[threads];
      return p ? (100 * g) / p : undefined;
    };
    const blas: Array<{ name: string; library: string }> = ctx.compare.includes('blas') ? native.blasLibraries() : [];
    if (ctx.compare.includes('blas') && blas.length === 0) ctx.log('gemm: --compare blas: no system BLAS found (libopenblas.so.0, libblis.so.4)');

    // The sides of each ratio are measured in alternating rounds (ours, then each baseline, again and
    // again), each ratio is taken within a round and the median over rounds is reported: a slow spell
    // of this shared machine then lands on both sides of a ratio instead of on one.
    const rounds = ctx.quick ? 1 : 3;
    const roundSettings = { ...settings, minSeconds: settings.minSeconds / rounds };
    const shapes = ctx.quick ? expertShapes.slice(0, 2) : expertShapes;
    for (const [m, k, n] of shapes) {
      for (const threads of ctx.threads) {
        ctx.log(`gemm: matmul ${shapeName(m, k, n)} on ${threads} thread(s)${blas.length ? `, ${rounds} rounds with ${blas.map((b) => b.name).join(', ')}` : ''}`);
        const ours: number[] = [], theirs: number[][] = blas.map(() => []), best: number[] = [];
        for (let r = 0; r < rounds; r++) {
          const t: Timing = native.benchMatmul({ m, k, n, threads, ...roundSettings });
          ours.push(t.seconds);
          let bestSeconds = Infinity;
          blas.forEach((lib, i) => {
            const tb: Timing = native.benchBlasSgemm({ library: lib.name, m, k, n, threads, ...roundSettings });
            theirs[i].push(tb.seconds);
            bestSeconds = Math.min(bestSeconds, tb.seconds);
          });
          best.push(bestSeconds);
        }
        const seconds = median(ours), g = gflops(m, k, n, seconds);
        const record: BenchRecord = {
          suite: 'gemm', name: 'matmul', shape: shapeName(m, k, n), threads, seconds, gflops: g,
          percentOfPeak: percent(g, threads),
        };
        records.push(record);
        blas.forEach((lib, i) => {
          const sb = median(theirs[i]), gb = gflops(m, k, n, sb);
          record[`vs_${lib.name}`] = median(ours.map((o, r) => theirs[i][r] / o));
          records.push({
            suite: 'gemm', name: `cblas_sgemm (${lib.name})`, shape: shapeName(m, k, n), threads, seconds: sb,
            gflops: gb, percentOfPeak: percent(gb, threads), library: lib.library,
          });
        });
        // Our rate over the better BLAS's in the same round, median over rounds (the target is >= 1).
        if (blas.length > 0) {
          const perRound = ours.map((o, r) => best[r] / o);
          record.blasRatio = median(perRound);
          record.blasRatioRounds = perRound.map((x) => +x.toFixed(3));
        }
      }
    }

    const gShapes = ctx.quick ? groupedShapes.slice(0, 1) : groupedShapes;
    const variants = ['grouped', 'grouped-scatter', 'gather-then-matmul'] as const;
    for (const [m, k, n] of gShapes) {
      for (const threads of ctx.threads) {
        for (const experts of [8, 64]) {
          ctx.log(`gemm: grouped E=${experts} ${shapeName(m, k, n)} on ${threads} thread(s), ${rounds} rounds with the plain matmul`);
          const plain: number[] = [], times: number[][] = variants.map(() => []);
          for (let r = 0; r < rounds; r++) {
            plain.push((native.benchMatmul({ m, k, n, threads, ...roundSettings }) as Timing).seconds);
            variants.forEach((variant, i) =>
              times[i].push((native.benchGroupedMatmul({ m, k, n, threads, experts, variant, ...roundSettings }) as Timing).seconds));
          }
          variants.forEach((variant, i) => {
            const seconds = median(times[i]), g = gflops(m, k, n, seconds);
            records.push({
              suite: 'gemm', name: `${variant} E=${experts}`, shape: `${shapeName(m, k, n)} E=${experts}`, threads,
              seconds, gflops: g, percentOfPeak: percent(g, threads),
              // The grouped rate over the plain matmul's on the same total work, within a round, median over rounds.
              ratioToMatmul: median(plain.map((p, r) => p / times[i][r])),
            });
          });
        }
      }
    }

    // The portable (SSE2) path against the scalar definition, one thread.
    const best = native.cpuInfo().isa;
    const [pm, pk, pn] = [64, 256, 1024];
    try {
      native.setIsa('portable');
      ctx.log('gemm: portable path vs scalar reference');
      const portable: Timing = native.benchMatmul({ m: pm, k: pk, n: pn, threads: 1, ...settings });
      const reference: Timing = native.benchMatmulReference({ m: pm, k: pk, n: pn, threads: 1, ...settings });
      const g = gflops(pm, pk, pn, portable.seconds);
      records.push({
        suite: 'gemm', name: 'matmul (portable)', shape: shapeName(pm, pk, pn), threads: 1, seconds: portable.seconds,
        gflops: g, percentOfPeak: percent(g, 1), speedupOverReference: reference.seconds / portable.seconds,
      });
      records.push({
        suite: 'gemm', name: 'matmul_reference (scalar)', shape: shapeName(pm, pk, pn), threads: 1,
        seconds: reference.seconds, gflops: gflops(pm, pk, pn, reference.seconds),
        percentOfPeak: percent(gflops(pm, pk, pn, reference.seconds), 1),
      });
    } finally {
      native.setIsa(best);
    }
    return records;
  },
};

export default gemmSuite;
