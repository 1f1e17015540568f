// Suite `peak`: this machine's limits, which every other suite reports its percentage of:
// the multiply-add peak (GFLOP/s) and memcpy bandwidth (GB/s of bytes copied), 1 and all threads,
// and for reference a copy with non-temporal stores (its % is of memcpy). Each limit is the fastest
// of its repeats (bench/peak.ts): its `median` column is that run's time.
import { cpuInfo } from '../../src/index.js';
import type { BenchRecord, Suite } from '../suite.js';
import { fastestRate, measureFmaPeak, planFor } from '../measure.js';

export const peakSuite: Suite = {
  name: 'peak',
  description: 'FMA peak GFLOP/s and memcpy GB/s (and a non-temporal copy) of this machine, 1 and all threads',
  async run(ctx) {
    const peak = await ctx.peak();
    const info = cpuInfo();
    const records: BenchRecord[] = [];
    for (const threads of ctx.threads) {
      const fma = peak.fmaGflops[threads];
      records.push({
        suite: 'peak', name: `fma ${peak.isa}`, shape: peak.isa === 'avx2' ? '12 chains x 8 floats' : '12 chains x 4 floats',
        threads, seconds: peak.fmaSeconds[threads], gflops: fma, percentOfPeak: 100,
      });
      // The portable path's mul+add loop, as a fraction of the real peak (what SSE2 code can reach).
      if (peak.isa === 'avx2' && info.bestIsa !== 'portable') {
        ctx.log(`peak: portable mul+add, ${threads} thread(s)`);
        // Its fastest run too, like the peak it is a fraction of.
        const sse2 = measureFmaPeak('portable', threads, planFor(ctx.quick));
        const gflops = fastestRate(sse2, sse2.gflops);
        records.push({
          suite: 'peak', name: 'mul+add portable', shape: '12 chains x 4 floats', threads,
          seconds: sse2.fastestSeconds, gflops, percentOfPeak: (100 * gflops) / fma,
        });
      }
      records.push({
        suite: 'peak', name: 'memcpy', shape: `${peak.memcpyBytes / 2 ** 20} MiB`, threads,
        seconds: peak.memcpySeconds[threads], gbps: peak.memcpyGbps[threads], percentOfPeak: 100,
        counts: 'bytes copied',
      });
      // glibc's memcpy writes through the cache below its non-temporal threshold (240 MiB here),
      // so each destination line is read before it is written; a streaming copy skips that read.
      records.push({
        suite: 'peak', name: 'copy non-temporal', shape: `${peak.memcpyBytes / 2 ** 20} MiB`, threads,
        seconds: peak.streamCopySeconds[threads], gbps: peak.streamCopyGbps[threads],
        percentOfPeak: (100 * peak.streamCopyGbps[threads]) / peak.memcpyGbps[threads],
        counts: 'bytes copied',
      });
    }
    return records;
  },
};
