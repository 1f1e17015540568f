// The device program of the `collectives` suite: times one collective inside the device
// processes (after untimed warm-up calls: a barrier, then the collective, per repeat) and returns
// every repeat's seconds.
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
  /** Send buffers from `device.alloc` (the shared heap: an all-to-all is then read in place). */
  sendInHeap?: boolean;
  /** All-to-all only: time the repeats in a loop inside native code (Device.benchAllToAll), not per JavaScript call. */
  nativeLoop?: boolean;
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
    const run = args.op === 'allToAll'
      ? () => device.allToAll(send, recv, { wire: args.wire })
      : () => device.allReduce(send, recv, { wire: args.wire });
    // Warm up (page faults, caches), then estimate the time of one call for the counts below.
    for (let i = 0; i < 3; i++) run();
    const estimate = (): number => {
      device.barrier();
      const t0 = performance.now();
      run();
      return Math.max(1e-6, (performance.now() - t0) / 1000);
    };
    // Every device must run the same number of calls: rank 0's estimates decide, broadcast.
    const rankZeros = (seconds: number): number => {
      const value = new Float32Array([seconds]);
      device.broadcast(value, { root: 0, wire: 'float32' });
      return value[0];
    };
    // Before the timed repeats, the budget again in untimed calls (at most 20,000), so that the
    // timed ones run the optimised code of a warm JIT, as a training loop's calls do (after a few
    // calls the loop is still in V8's interpreter, which on a 1 KiB all-to-all costs more than
    // the collective).
    const plan = (seconds: number): [repeats: number, warmups: number] => {
      const calls = Math.round(args.budgetSeconds / seconds);
      return [Math.min(args.maxRepeats, Math.max(args.minRepeats, calls)), Math.min(20_000, Math.max(3, calls))];
    };
    const first = rankZeros(estimate());
    let [repeats, warmups] = plan(first);
    for (let i = 0; i < warmups; i++) run();
    // Again when the call got at least twice as fast: a call after three can still be cold
    // (first-use paths, the interpreter). On 4 devices a 1 KiB all-to-all that takes 5 µs warm
    // read 10 µs to 1.5 ms there, and the warm-up it paid for was as short as 150 calls.
    const second = rankZeros(estimate());
    if (second < first / 2) {
      [repeats, warmups] = plan(second);
      for (let i = 0; i < warmups; i++) run();
    }
    if (args.nativeLoop && args.op === 'allToAll') {
      times.push(Array.from(device.benchAllToAll(send, recv, repeats, { wire: args.wire })));
      continue;
    }
    const mine: number[] = [];
    for (let it = 0; it < repeats; it++) {
      device.barrier();
      const start = performance.now();
      run();
      mine.push((performance.now() - start) / 1000);
    }
    times.push(mine);
  }
  return { rank: device.rank, times };
}
