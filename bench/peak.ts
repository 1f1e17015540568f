// Measures the machine's limits for BenchContext.peak(): the multiply-add peak of the active
// instruction set, memcpy bandwidth and the bandwidth of a streaming (non-temporal) copy, at each
// thread count asked for.
import { cpuInfo } from '../src/index.js';
import type { MachinePeak } from './suite.js';
import { measureFmaPeak, measureMemcpy, measureStreamCopy, planFor } from './measure.js';

/** Far beyond the last-level cache (32 MiB here), so memcpy measures memory, not cache. */
export function memcpyBytes(quick: boolean): number {
  return quick ? 16 * 2 ** 20 : 64 * 2 ** 20;
}

export function measureMachinePeak(threads: number[], quick: boolean, log: (message: string) => void): MachinePeak {
  // The FMA loop of avx512 is the AVX2 one: on this Zen 4 a 512-bit FMA does two 256-bit FMAs'
  // work at half their rate, so the peak is the same (a CPU with two 512-bit FMA pipes would
  // double it; none here).
  const isa = cpuInfo().isa === 'portable' ? 'portable' : 'avx2';
  const plan = planFor(quick);
  const bytes = memcpyBytes(quick);
  const peak: MachinePeak = {
    isa, fmaGflops: {}, memcpyGbps: {}, fmaSeconds: {}, memcpySeconds: {}, memcpyBytes: bytes, streamCopyGbps: {}, streamCopySeconds: {},
  };
  for (const t of threads) {
    log(`peak: ${isa} multiply-add, ${t} thread(s)`);
    const fma = measureFmaPeak(isa, t, plan);
    peak.fmaGflops[t] = fma.gflops;
    peak.fmaSeconds[t] = fma.seconds;
    log(`peak: memcpy ${bytes / 2 ** 20} MiB, ${t} thread(s)`);
    const copy = measureMemcpy(bytes, t, plan);
    peak.memcpyGbps[t] = copy.gbps;
    peak.memcpySeconds[t] = copy.seconds;
    log(`peak: non-temporal copy ${bytes / 2 ** 20} MiB, ${t} thread(s)`);
    const stream = measureStreamCopy(bytes, t, plan);
    peak.streamCopyGbps[t] = stream.gbps;
    peak.streamCopySeconds[t] = stream.seconds;
  }
  return peak;
}
