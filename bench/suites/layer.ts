// Suite `layer`: the Switch feed-forward layer's forward and forward+backward tokens/s at the
// paper-sized shapes of issue 3, the share of the time spent outside the expert matmuls
// (routing, dispatch, activation, combine, allocation), the dense layer of the same D, F, T, and
// with `--compare torch` the PyTorch baseline (bench/reference/switch_layer_torch.py).
// T = tokens, D = d_model, F = d_ff, E = experts, R = rows (kept choices).
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import type { BenchContext, BenchRecord, Suite } from '../suite.js';
import { DenseFeedForward, SwitchFeedForward, setNumThreads } from '../../src/index.js';
import { native } from '../../src/native.js';
import { randomInput } from '../measure.js';
import {
  combine, combineBackward, dispatchBackward, expertCapacity, planDispatch, route, routerBackward, Workspace,
} from '../../src/layers/switch_steps.js';

export interface LayerShape {
  T: number;
  D: number;
  F: number;
  E: number;
  cf: number;
}

/** Median wall seconds of fn over `repeats` runs after `warmup` untimed ones. */
export function medianSeconds(fn: () => void, warmup: number, repeats: number): number {
  for (let i = 0; i < warmup; i++) fn();
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    fn();
    times.push((performance.now() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** switchGroupedMatmul's epilogue code for relu (gemm.h). */
const EPILOGUE_RELU = 1;

export interface SwitchTiming {
  forward: number;
  forwardBackward: number;
  /** The six expert matmuls of a training step (2 forward, 4 backward) with the same routing. */
  matmulsForwardBackward: number;
  matmulsForward: number;
  /** Each expert matmul of the step timed alone: up, down, dh, dwOut, dwIn, dx. */
  matmuls: Record<string, number>;
  rows: number;
  capacity: number;
  /** Each step outside the expert matmuls timed on its own (seconds), and their sum. */
  steps: Record<string, number>;
  stepsOutsideMatmuls: number;
  /** The layer and inputs timed, for further rounds (the torch comparison). */
  layer: SwitchFeedForward;
  x: Float32Array;
  dy: Float32Array;
}

/** Times the layer and its expert matmuls alone on the same routing. */
export function timeSwitch(shape: LayerShape, warmup: number, repeats: number, withForward = true): SwitchTiming {
  const { T, D, F, E, cf } = shape;
  // A training loop applies gradients right away: reuse their buffers instead of fresh E·D·F arrays per step.
  const layer = new SwitchFeedForward({ dModel: D, dFF: F, numExperts: E, capacityFactor: cf, seed: 1, reuseGradients: true });
  const x = randomInput(T * D, 7), dy = randomInput(T * D, 8);
  const forward = withForward ? medianSeconds(() => layer.forward(x, { training: true }), warmup, repeats) : NaN;
  const forwardBackward = medianSeconds(() => {
    layer.forward(x, { training: true });
    layer.backward(dy);
  }, warmup, repeats);
  // The same routing, then the grouped matmuls alone on preallocated buffers.
  const C = expertCapacity(T, cf, E, 4);
  const routing = route(x, layer.params.router, {
    T, D, E, k: 1, G: T, C, policy: 'all', threshold: 0.2, noTokenLeftBehind: false, jitter: 0, seed: 1, streamBase: 16,
  });
  const plan = planDispatch(routing);
  const R = plan.R;
  const h = randomInput(R * F, 9), out = new Float32Array(R * D);
  const dOut = randomInput(R * D, 10), dh = randomInput(R * F, 11), dx = new Float32Array(T * D);
  const dxRows = randomInput(R * D, 12);
  const dwIn = new Float32Array(E * D * F), dwOut = new Float32Array(E * F * D);
  const { wIn, wOut } = layer.params;
  // The layer's relu (no dropout) is the up product's epilogue (h written directly): timed as it runs.
  const up = () => native.switchGroupedMatmul(h, x, wIn, plan.offsets, plan.rowToken, null, null, E, D, F, false, false,
    EPILOGUE_RELU);
  const down = () => native.switchGroupedMatmul(out, h, wOut, plan.offsets, null, null, null, E, F, D, false, false);
  const matmulsForward = withForward ? medianSeconds(() => { up(); down(); }, warmup, repeats) : NaN;
  const backwardMatmuls: Record<string, () => void> = {
    dh: () => native.switchGroupedMatmul(dh, dOut, wOut, plan.offsets, null, null, null, E, D, F, true, false),
    dwOut: () => native.switchGroupedMatmulWeightGrad(dwOut, h, dOut, plan.offsets, null, E, F, D),
    dwIn: () => native.switchGroupedMatmulWeightGrad(dwIn, x, dh, plan.offsets, plan.rowToken, E, D, F),
    // dx per row, as the layer computes it (then dispatchBackward, a step outside the matmuls).
    dx: () => native.switchGroupedMatmul(dxRows, dh, wIn, plan.offsets, null, null, null, E, F, D, true, false),
  };
  const matmulsForwardBackward = medianSeconds(() => {
    up();
    down();
    backwardMatmuls.dh();
    backwardMatmuls.dwOut();
    backwardMatmuls.dwIn();
    backwardMatmuls.dx();
  }, warmup, repeats);
  // Each of the six alone (seconds): where the expert matmuls' time goes.
  const matmuls: Record<string, number> = { up: medianSeconds(up, warmup, repeats), down: medianSeconds(down, warmup, repeats) };
  for (const [name, fn] of Object.entries(backwardMatmuls)) matmuls[name] = medianSeconds(fn, warmup, repeats);
  // The steps outside the expert matmuls, one by one, on reused buffers as the layer runs them.
  const ws = new Workspace(true);
  const routeCfg = { T, D, E, k: 1 as const, G: T, C, policy: 'all' as const, threshold: 0.2, noTokenLeftBehind: false,
    jitter: 0, seed: 1, streamBase: 16 };
  const gate = routing.gate;
  const steps: Record<string, number> = {
    route: medianSeconds(() => route(x, layer.params.router, routeCfg, ws), warmup, repeats),
    plan: medianSeconds(() => planDispatch(routing, false, ws), warmup, repeats),
    combine: medianSeconds(() => combine(out, gate, plan.row, T, 1, D), warmup, repeats),
    combineBackward: medianSeconds(() => combineBackward(dy, out, gate, plan, T, 1, D, false, ws), warmup, repeats),
    // relu's derivative read off h (the forward keeps no h_pre).
    activationBackward: medianSeconds(() => native.switchActivationBackward(dh, dh, h, null, R, F, 0, 0), warmup, repeats),
    routerBackward: medianSeconds(() => routerBackward(new Float32Array(T), routing, layer.params.router, D, 0.01, 0, ws, ws), warmup, repeats),
    dispatchBackward: medianSeconds(() => dispatchBackward(dx, dxRows, plan, T, 1, D, false, true), warmup, repeats),
  };
  const stepsOutsideMatmuls = Object.values(steps).reduce((a, b) => a + b, 0);
  return { forward, forwardBackward, matmulsForwardBackward, matmulsForward, matmuls, rows: R, capacity: C, steps, stepsOutsideMatmuls,
    layer, x, dy };
}

export function timeDense(shape: LayerShape, warmup: number, repeats: number):
  { forward: number; forwardBackward: number; layer: DenseFeedForward; x: Float32Array; dy: Float32Array } {
  const { T, D, F } = shape;
  const layer = new DenseFeedForward({ dModel: D, dFF: F, seed: 1, reuseGradients: true });
  const x = randomInput(T * D, 7), dy = randomInput(T * D, 8);
  const forward = medianSeconds(() => layer.forward(x, { training: true }), warmup, repeats);
  const forwardBackward = medianSeconds(() => {
    layer.forward(x, { training: true });
    layer.backward(dy);
  }, warmup, repeats);
  return { forward, forwardBackward, layer, x, dy };
}

function torchScript(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, 'bench', 'reference', 'switch_layer_torch.py');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  return null;
}

/**
 * The PyTorch baseline as a long-lived process (switch_layer_torch.py --serve): the layer is built
 * once and each request times `repeats` steps. Waiting for a request, it sleeps (OMP_WAIT_POLICY
 * PASSIVE), so the two sides never share the cores.
 */
export class TorchLayer {
  private readonly child: ChildProcess;
  private readonly pending: { resolve: (line: string) => void; reject: (e: Error) => void }[] = [];
  private stderr = '';
  private exited: Error | null = null;

  private constructor(child: ChildProcess) {
    this.child = child;
    createInterface({ input: child.stdout! }).on('line', (line) => this.pending.shift()?.resolve(line));
    child.stderr!.on('data', (d: Buffer) => { this.stderr = (this.stderr + d.toString()).slice(-2000); });
    child.on('exit', (code, signal) => {
      this.exited = new Error(`torch baseline exited (${signal ?? code}): ${this.stderr.trim().split('\n').pop() ?? ''}`);
      for (const p of this.pending.splice(0)) p.reject(this.exited);
    });
  }

  /** Starts the baseline at this shape, or returns null when torch is not installed. */
  static start(shape: LayerShape, threads: number, dense: boolean): TorchLayer | null {
    const script = torchScript();
    if (!script) return null;
    const args = [script, '--serve', '--T', `${shape.T}`, '--D', `${shape.D}`, '--F', `${shape.F}`, '--E', `${shape.E}`,
      '--cf', `${shape.cf}`, '--threads', `${threads}`];
    if (dense) args.push('--dense');
    const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
    const child = spawn(python, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, OMP_WAIT_POLICY: 'PASSIVE', OMP_NUM_THREADS: `${threads}`, MKL_NUM_THREADS: `${threads}` },
    });
    return new TorchLayer(child);
  }

  /** Median seconds of `repeats` forward+backward steps, and the rows its router kept. */
  time(repeats: number): Promise<{ seconds: number; rows: number }> {
    if (this.exited) return Promise.reject(this.exited);
    return new Promise<string>((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.child.stdin!.write(`forward-backward ${repeats}\n`);
    }).then((line) => JSON.parse(line) as { seconds: number; rows: number });
  }

  close(): void {
    this.child.stdin!.end();
    if (!this.exited) this.child.kill();
  }
}

export interface InterleavedComparison {
  /** Median over rounds of torch seconds / our seconds, each round timing both sides back to back. */
  speedup: number;
  rounds: number[];
  oursSeconds: number;
  torchSeconds: number;
  torchRows: number;
}

/**
 * Alternates rounds of `ours` (median of `repeats` steps) and the torch baseline (the same), so a
 * slow spell of a shared machine falls on both sides of each round's ratio; the first round of
 * each side is a warm-up.
 */
export async function interleavedTorch(ours: () => void, torch: Pick<TorchLayer, 'time'>, rounds: number, repeats: number): Promise<InterleavedComparison> {
  ours();
  await torch.time(1);
  const ratios: number[] = [], oursTimes: number[] = [], torchTimes: number[] = [];
  let torchRows = 0;
  for (let r = 0; r < rounds; r++) {
    const o = medianSeconds(ours, 0, repeats);
    const t = await torch.time(repeats);
    oursTimes.push(o);
    torchTimes.push(t.seconds);
    torchRows = t.rows;
    ratios.push(t.seconds / o);
  }
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  return { speedup: median(ratios), rounds: ratios, oursSeconds: median(oursTimes), torchSeconds: median(torchTimes), torchRows };
}

/** The interleaved comparison at one shape, or null (logged) when torch is missing or fails. */
export async function compareWithTorch(shape: LayerShape, threads: number, dense: boolean, repeats: number, ctx: BenchContext,
  ours: () => void): Promise<InterleavedComparison | null> {
  const torch = TorchLayer.start(shape, threads, dense);
  if (!torch) {
    ctx.log('torch baseline: bench/reference/switch_layer_torch.py not found');
    return null;
  }
  try {
    return await interleavedTorch(ours, torch, ctx.quick ? 2 : 5, repeats);
  } catch (e) {
    ctx.log(`torch baseline failed: ${(e as Error).message}`);
    return null;
  } finally {
    torch.close();
  }
}

export function torchFields(c: InterleavedComparison | null): Record<string, unknown> {
  if (!c) return {};
  return { torchSeconds: c.torchSeconds, speedupOverTorch: c.speedup, speedupRounds: c.rounds.map((r) => +r.toFixed(3)),
    oursSecondsInRounds: c.oursSeconds, torchRows: c.torchRows };
}

export const layerShapes: LayerShape[] = [
  { T: 2048, D: 512, F: 2048, E: 8, cf: 1.25 },
  { T: 4096, D: 768, F: 3072, E: 16, cf: 1.0 },
  { T: 1024, D: 256, F: 1024, E: 64, cf: 2.0 },
];

export const quickShapes: LayerShape[] = [
  { T: 512, D: 128, F: 512, E: 8, cf: 1.25 },
  { T: 256, D: 64, F: 256, E: 64, cf: 2.0 },
];

export function shapeName(s: LayerShape): string {
  return `T=${s.T} D=${s.D} F=${s.F} E=${s.E} cf=${s.cf}`;
}

/** Expert-matmul flops of one training step: 2 matmuls forward, 4 backward, 2·R·D·F each. */
export function stepFlops(rows: number, D: number, F: number): number {
  return 12 * rows * D * F;
}

export const layerSuite: Suite = {
  name: 'layer',
  description: 'Switch layer forward and forward+backward tokens/s, share outside the expert matmuls, dense layer, torch baseline',
  async run(ctx: BenchContext): Promise<BenchRecord[]> {
    const records: BenchRecord[] = [];
    const shapes = ctx.quick ? quickShapes : layerShapes;
    const warmup = 1, repeats = ctx.quick ? 3 : 5;
    const peak = await ctx.peak();
    const withTorch = ctx.compare.includes('torch');
    for (const threads of ctx.threads) {
      setNumThreads(threads);
      const fma = peak.fmaGflops[threads];
      for (const shape of shapes) {
        const name = shapeName(shape);
        ctx.log(`layer: ${name}, ${threads} thread(s)`);
        const s = timeSwitch(shape, warmup, repeats);
        const gflops = stepFlops(s.rows, shape.D, shape.F) / s.forwardBackward / 1e9;
        const outside = Math.max(0, s.forwardBackward - s.matmulsForwardBackward);
        const base: BenchRecord = { suite: 'layer', name: 'switch forward+backward', shape: name, threads, seconds: s.forwardBackward };
        records.push({ suite: 'layer', name: 'switch forward', shape: name, threads, seconds: s.forward,
          tokensPerSecond: shape.T / s.forward,
          outsideMatmulsShare: Math.max(0, s.forward - s.matmulsForward) / s.forward });
        const torch = withTorch ? await compareWithTorch(shape, threads, false, repeats, ctx, () => {
          s.layer.forward(s.x, { training: true });
          s.layer.backward(s.dy);
        }) : null;
        records.push({
          ...base, tokensPerSecond: shape.T / s.forwardBackward, gflops,
          percentOfPeak: fma ? (100 * gflops) / fma : undefined,
          expertMatmulsSeconds: s.matmulsForwardBackward,
          outsideMatmulsSeconds: outside,
          outsideMatmulsShare: outside / s.forwardBackward,
          rateOfOwnMatmuls: s.matmulsForwardBackward / s.forwardBackward,
          // Independent of how fast the matmuls are: the steps outside them, timed one by one.
          stepsOutsideMatmulsSeconds: s.stepsOutsideMatmuls,
          steps: s.steps,
          matmuls: s.matmuls,
          capacity: s.capacity, rows: s.rows,
          ...torchFields(torch),
        });
        const dense = timeDense(shape, warmup, repeats);
        const denseTorch = withTorch ? await compareWithTorch(shape, threads, true, repeats, ctx, () => {
          dense.layer.forward(dense.x, { training: true });
          dense.layer.backward(dense.dy);
        }) : null;
        records.push({
          suite: 'layer', name: 'dense forward+backward', shape: `T=${shape.T} D=${shape.D} F=${shape.F}`, threads,
          seconds: dense.forwardBackward, tokensPerSecond: shape.T / dense.forwardBackward,
          gflops: stepFlops(shape.T, shape.D, shape.F) / dense.forwardBackward / 1e9,
          ...torchFields(denseTorch),
        });
      }
    }
    return records;
  },
};

export default layerSuite;
