// The device program of the `collectives` suite: times one collective inside the device
// processes (after untimed warm-up calls: a barrier, then the collective, per repeat) and returns
// every repeat's seconds.
import { fromBfloat16, roundBfloat16, toBfloat16 } from '../../src/bf16.js';
import type { Device, Wire } from '../../src/mesh/device.js';

export interface CollectivesBenchArgs {
  op: 'allToAll' | 'allReduce';
  wire: Wire;
  /** Bytes of float32 payload per peer (all-to-all) or of the whole buffer (all-reduce). */
  sizes: number[];
  /** Time budget per size, seconds (repeats = clamp(budget / estimate, minRepeats, maxRepeats)). */
  budgetSeconds: number;
  minRepeats: number;
  maxRepeats: number;
  /** Untimed warm-up per size, seconds (default: budgetSeconds), in at most maxWarmups calls (default 20,000). */
  warmupSeconds?: number;
  maxWarmups?: number;
  /** Send buffers from `device.alloc` (the shared heap: an all-to-all is then read in place). */
  sendInHeap?: boolean;
  /** All-to-all only: time the repeats in a loop inside native code (Device.benchAllToAll), not per JavaScript call. */
  nativeLoop?: boolean;
  /**
   * All-to-all only: no collective, each device's share of a bf16 wire's conversions alone (its
   * P − 1 outgoing chunks rounded to 16-bit words, as many incoming chunks widened, its own chunk
   * rounded in one copy), for the floor of a bf16 wire on one host.
   */
  roundingOnly?: boolean;
}

export interface CollectivesBenchResult {
  rank: number;
  /** Per size: every timed repeat's seconds. */
  times: number[][];
}

export default function collectivesProgram(device: Device, args: CollectivesBenchArgs): CollectivesBenchResult {
  const P = device.size;
  const times: number[][] = [];
  for (const bytes of args.sizes) {
    const n = Math.max(1, Math.floor(bytes / 4));
    const total = args.op === 'allToAll' ? n * P : n;
    const send = args.sendInHeap ? device.alloc(total) : new Float32Array(total);
    for (let i = 0; i < total; i++) send[i] = (device.rank + 1) * 0.25 + (i % 1000) * 1e-3;
    const recv = new Float32Array(total);
    const run = args.roundingOnly ? roundingOnly(device, send, recv, n)
      : args.op === 'allToAll' ? () => device.allToAll(send, recv, { wire: args.wire })
      : () => device.allReduce(send, recv, { wire: args.wire });
    // One function times every call, the warm-up's included, so that the timed loop itself runs
    // as V8's optimised code, as a training loop's calls do. (A loop timed while still in the
    // interpreter added 0.2–0.4 µs to a 2-device 1 KiB all-to-all of ~0.4 µs, and ~3 µs on 4.)
    const timeCalls = (count: number): number[] => {
      const seconds = new Array<number>(count);
      for (let i = 0; i < count; i++) {
        device.barrier();
        const start = performance.now();
        run();
        seconds[i] = (performance.now() - start) / 1000;
      }
      return seconds;
    };
    // Warm up (page faults, caches), then estimate the time of one call for the counts below.
    timeCalls(3);
    const estimate = (): number => Math.max(1e-6, timeCalls(1)[0]);
    // Every device must run the same number of calls: rank 0's estimates decide, broadcast.
    const rankZeros = (seconds: number): number => {
      const value = new Float32Array([seconds]);
      device.broadcast(value, { root: 0, wire: 'float32' });
      return value[0];
    };
    // Before the timed repeats, the warm-up budget in untimed calls (at most 20,000), so that the
    // timed ones run the optimised code of a warm JIT (after a few calls the loop is still in V8's
    // interpreter, which on a 1 KiB all-to-all costs more than the collective).
    const plan = (seconds: number): [repeats: number, warmups: number] => {
      const calls = Math.round(args.budgetSeconds / seconds);
      const warmups = Math.round((args.warmupSeconds ?? args.budgetSeconds) / seconds);
      return [Math.min(args.maxRepeats, Math.max(args.minRepeats, calls)), Math.min(args.maxWarmups ?? 20_000, Math.max(3, warmups))];
    };
    const first = rankZeros(estimate());
    let [repeats, warmups] = plan(first);
    timeCalls(warmups);
    // Again when the call got at least twice as fast: a call after three can still be cold
    // (first-use paths, the interpreter). On 4 devices a 1 KiB all-to-all that takes 5 µs warm
    // read 10 µs to 1.5 ms there, and the warm-up it paid for was as short as 150 calls.
    const second = rankZeros(estimate());
    if (second < first / 2) {
      [repeats, warmups] = plan(second);
      timeCalls(warmups);
    }
    if (args.nativeLoop && args.op === 'allToAll') {
      times.push(Array.from(device.benchAllToAll(send, recv, repeats, { wire: args.wire })));
      continue;
    }
    times.push(timeCalls(repeats));
  }
  return { rank: device.rank, times };
}

/** The conversions of a bf16 all-to-all of (P, n) send and recv, with no peers (see roundingOnly). */
function roundingOnly(device: Device, send: Float32Array, recv: Float32Array, n: number): () => void {
  const P = device.size, self = device.rank;
  const words = new Uint16Array(n * P);
  const chunks = Array.from({ length: P }, (_, p) => ({
    send: send.subarray(p * n, (p + 1) * n), words: words.subarray(p * n, (p + 1) * n), recv: recv.subarray(p * n, (p + 1) * n),
  }));
  return () => {
    for (let p = 0; p < P; p++) {
      if (p === self) roundBfloat16(chunks[p].send, chunks[p].recv);
      else toBfloat16(chunks[p].send, chunks[p].words);
    }
    for (let p = 0; p < P; p++) if (p !== self) fromBfloat16(chunks[p].words, chunks[p].recv);
  };
}
