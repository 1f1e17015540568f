// Measures the machine's limits for BenchContext.peak(): the multiply-add peak of the active
// instruction set, memcpy bandwidth and the bandwidth of a streaming (non-temporal) copy, at each
// thread count asked for.
import { cpuInfo } from '../src/index.js';
import type { MachinePeak } from './suite.js';
import { fastestRate, measureFmaPeak, measureMemcpy, measureStreamCopy, planFor } from './measure.js';

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
  // A limit is the fastest of the repeats, not their median (fastestRate): a limit read low
  // inflates every percentage of the run measured against it (a 2-thread peak taken while one
  // core was busy elsewhere once read 116 GFLOP/s, and the layer suite's step then "177 %" of it).
  for (const t of threads) {
    log(`peak: ${isa} multiply-add, ${t} thread(s)`);
    const fma = measureFmaPeak(isa, t, plan);
    peak.fmaGflops[t] = fastestRate(fma, fma.gflops);
    peak.fmaSeconds[t] = fma.fastestSeconds;
    log(`peak: memcpy ${bytes / 2 ** 20} MiB, ${t} thread(s)`);
    const copy = measureMemcpy(bytes, t, plan);
    peak.memcpyGbps[t] = fastestRate(copy, copy.gbps);
    peak.memcpySeconds[t] = copy.fastestSeconds;
    log(`peak: non-temporal copy ${bytes / 2 ** 20} MiB, ${t} thread(s)`);
    const stream = measureStreamCopy(bytes, t, plan);
    peak.streamCopyGbps[t] = fastestRate(stream, stream.gbps);
    peak.streamCopySeconds[t] = stream.fastestSeconds;
  }
  return peak;
}
