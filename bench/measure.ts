// Typed access to the addon's benchmark measurements (native/addon/bench.cc). Every call blocks
// for the measurement: 2 warm-up runs, then the median of at least `repeats` runs and `minSeconds`.
import { native } from '../src/native.js';

/** n values in [-1, 1) from a linear congruential stream: the benchmarks' inputs, the same on every run. */
export function randomInput(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** The middle value (the upper one of an even count); the input is not reordered. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

export interface Measurement {
  /** Median seconds of one run. */
  seconds: number;
  fastestSeconds: number;
  repeats: number;
}

/**
 * The rate of a measurement's fastest run, from `rate` of its median run: how the machine's limits
 * are read (bench/peak.ts), since a run can only be slowed down, never sped up, by the machine.
 */
export function fastestRate(m: Measurement, rate: number): number {
  return (rate * m.seconds) / m.fastestSeconds;
}

export interface Plan {
  repeats: number;
  minSeconds: number;
}

export type Isa = 'portable' | 'avx2' | 'avx512';
export type Bf16Direction = 'toBfloat16' | 'fromBfloat16';
export type Bf16Impl = 'reference' | Isa;

/** Multiply-add peak on `threads` threads: AVX2 FMA chains, or SSE2 multiply-then-add chains. */
export function measureFmaPeak(isa: Isa, threads: number, plan: Plan): Measurement & { gflops: number } {
  return native.benchFmaPeak(isa, threads, plan.repeats, plan.minSeconds);
}

/** memcpy of `bytes` split over `threads` threads; GB/s of bytes copied. */
export function measureMemcpy(bytes: number, threads: number, plan: Plan): Measurement & { gbps: number } {
  return native.benchMemcpy(bytes, threads, plan.repeats, plan.minSeconds);
}

/** The same copy with non-temporal stores (AVX2 or SSE2 as active); GB/s of bytes copied. */
export function measureStreamCopy(bytes: number, threads: number, plan: Plan): Measurement & { gbps: number } {
  return native.benchStreamCopy(bytes, threads, plan.repeats, plan.minSeconds);
}

/** One bf16 conversion of n elements; GB/s of (bytes read + bytes written) / 2, memcpy's count. */
export function measureBf16(direction: Bf16Direction, n: number, threads: number, impl: Bf16Impl, plan: Plan): Measurement & { gbps: number } {
  return native.benchBf16(direction, n, threads, impl, plan.repeats, plan.minSeconds);
}

/** Repeats for a full run and for `--quick`. */
export function planFor(quick: boolean): Plan {
  return quick ? { repeats: 3, minSeconds: 0 } : { repeats: 11, minSeconds: 0.3 };
}
