// The Switch and dense layers on a device mesh (SPEC §3) against the single-device layers on the
// same global batch: expert + data on 2 and 4 devices, expert + model + data on { data: 2, model: 2 },
// dense model and model + data. With the float32 wire everything matches to float32 rounding; with
// the bf16 wire (or precision 'bf16-wire') the single-device layer runs in precision 'bf16-wire'.
// Several cases share one launch: a process start costs more than the cases.
import { describe, expect, it } from 'vitest';
import { DenseFeedForward, launchMesh, singleDevice, SwitchFeedForward } from 'switch-transformer';
import { expectClose, randomArray, rng } from './switch_helpers.js';

const PROGRAM = new URL('./fixtures/switch-mesh.mjs', import.meta.url);

interface Case {
  kind: 'switch' | 'dense' | 'errors';
  opts?: Record<string, unknown> & { dModel: number; dFF: number; numExperts?: number };
  x?: Float32Array;
  dy?: Float32Array;
  routerScale?: number;
  /** (D, E) router weights to set on every device and on the single layer. */
  router?: Float32Array;
  steps?: number;
}
interface Step {
  y: Float32Array; auxLoss: number; loadBalanceLoss: number; zLoss: number; expertIndex: Int32Array; kept: Uint8Array;
  gate: Float32Array; dx: Float32Array; grads: Record<string, Float32Array>;
}
interface DeviceCase { params: Record<string, Float32Array>; steps: Step[]; evalY: Float32Array; evalKept: Uint8Array; evalAux: number }
interface Report { rank: number; coords: Record<string, number>; axes: Record<string, number>; out: (DeviceCase & Record<string, unknown>)[] }

function switchCase(r: ReturnType<typeof rng>, n: number, T: number, opts: Case['opts'], extra: Partial<Case> = {}): Case {
  const D = opts!.dModel;
  return { kind: 'switch', opts, x: randomArray(n * T * D, r), dy: randomArray(n * T * D, r), ...extra };
}

/** Rows of `a` (blocks of `rows` elements) from the devices of model coordinate 0, in data order. */
function concat(parts: Float32Array[] | Uint8Array[] | Int32Array[]): number[] {
  return parts.flatMap((p) => Array.from(p));
}

/** The full (E, A, Bdim) weight from the devices' (El, a, b) slices: experts along data, `split` dim along model. */
function assemble(reports: Report[], i: number, get: (c: DeviceCase) => Float32Array, E: number, A: number, Bdim: number,
  splitInner: boolean): Float32Array {
  const full = new Float32Array(E * A * Bdim).fill(NaN);
  const n = reports[0].axes.data ?? 1, m = reports[0].axes.model ?? 1;
  const El = E / n;
  for (const rep of reports) {
    const w = get(rep.out[i]);
    const cd = rep.coords.data ?? 0, cm = rep.coords.model ?? 0;
    const a = splitInner ? A : A / m, b = splitInner ? Bdim / m : Bdim;
    for (let e = 0; e < El; e++)
      for (let ai = 0; ai < a; ai++)
        for (let bi = 0; bi < b; bi++) {
          const ga = splitInner ? ai : cm * a + ai, gb = splitInner ? cm * b + bi : bi;
          full[((cd * El + e) * A + ga) * Bdim + gb] = w[(e * a + ai) * b + bi];
        }
  }
  return full;
}

function checkSwitch(reports: Report[], i: number, c: Case, meshWire: 'float32' | 'bf16'): void {
  const n = reports[0].axes.data ?? 1;
  const o = c.opts!;
  const D = o.dModel, F = o.dFF, E = o.numExperts!;
  const T = c.x!.length / D / n;
  const precision = (o.precision as string | undefined) ?? (meshWire === 'bf16' ? 'bf16-wire' : 'float32');
  const bf16 = precision === 'bf16-wire';
  const what = `case ${i} (${JSON.stringify({ ...o, precision })})`;
  // One device's loss is its own groups' mean; the single layer's is the mean over all n·T/G groups:
  // n × the coefficients makes its gradient the sum of the devices' (SPEC §1.8-1.10).
  const single = new SwitchFeedForward({
    ...(o as { dModel: number; dFF: number; numExperts: number }), groupSize: (o.groupSize as number | undefined) ?? T,
    precision: precision as 'float32' | 'bf16-wire',
    loadBalanceCoef: ((o.loadBalanceCoef as number | undefined) ?? 0.01) * n, zLossCoef: ((o.zLossCoef as number | undefined) ?? 0) * n,
  });
  if (c.routerScale) for (let j = 0; j < single.params.router.length; j++) single.params.router[j] *= c.routerScale;
  if (c.router) single.params.router.set(c.router);
  const byData = reports.filter((r) => (r.coords.model ?? 0) === 0).sort((a, b) => (a.coords.data ?? 0) - (b.coords.data ?? 0));
  expect(byData.length).toBe(n);
  // Same seed, same weights: each device holds slices of the single layer's.
  if (!c.router) for (const rep of reports) expect(Array.from(rep.out[i].params.router)).toEqual(Array.from(single.params.router));
  expect(Array.from(assemble(reports, i, (d) => d.params.wIn, E, D, F, true))).toEqual(Array.from(single.params.wIn));
  expect(Array.from(assemble(reports, i, (d) => d.params.wOut, E, F, D, false))).toEqual(Array.from(single.params.wOut));
  const tol = bf16 ? 2e-5 : 1e-5;
  for (let s = 0; s < (c.steps ?? 1); s++) {
    const ref = single.forward(c.x!, { training: true });
    const back = single.backward(c.dy!);
    const steps = byData.map((r) => r.out[i].steps[s]);
    const at = `${what} step ${s}`;
    // Replicas along model compute the same values for the same tokens.
    for (const rep of reports) {
      const twin = byData[rep.coords.data ?? 0].out[i].steps[s];
      expect(Array.from(rep.out[i].steps[s].y), `${at}: model replicas agree`).toEqual(Array.from(twin.y));
      expectClose(rep.out[i].steps[s].dx, twin.dx, 1e-6, 0, `${at}: model replicas' dx`);
    }
    expect(concat(steps.map((p) => p.expertIndex)), `${at}: expertIndex`).toEqual(Array.from(ref.expertIndex));
    expect(concat(steps.map((p) => p.kept)), `${at}: kept`).toEqual(Array.from(ref.kept));
    // Router weights scaled ×20 crowd the tokens onto few experts: capacity must drop some.
    if ((c.routerScale ?? 0) >= 20) expect(Array.from(ref.kept).includes(0), `${at}: some choices dropped`).toBe(true);
    expectClose(Float32Array.from(concat(steps.map((p) => p.gate))), ref.gate, 1e-6, 0, `${at}: gate`);
    expectClose(Float32Array.from(concat(steps.map((p) => p.y))), ref.y, tol, 0, `${at}: y`);
    const mean = (f: (p: Step) => number) => steps.reduce((acc, p) => acc + f(p), 0) / n;
    expect(mean((p) => p.loadBalanceLoss)).toBeCloseTo(ref.loadBalanceLoss, 5);
    expect(mean((p) => p.zLoss)).toBeCloseTo(ref.zLoss, 4);
    expect(mean((p) => p.auxLoss) * n).toBeCloseTo(ref.auxLoss, 5);
    expectClose(Float32Array.from(concat(steps.map((p) => p.dx))), back.dx, 5 * tol, 0, `${at}: dx`);
    const router = new Float32Array(D * E);
    for (const p of steps) for (let j = 0; j < router.length; j++) router[j] += p.grads.router[j];
    expectClose(router, back.grads.router, 5 * tol, 0, `${at}: router gradient (Σ over devices)`);
    const wIn = assemble(reports, i, (d) => d.steps[s].grads.wIn, E, D, F, true);
    const wOut = assemble(reports, i, (d) => d.steps[s].grads.wOut, E, F, D, false);
    expectClose(wIn, back.grads.wIn, 5 * tol, 0, `${at}: wIn gradient`);
    expectClose(wOut, back.grads.wOut, 5 * tol, 0, `${at}: wOut gradient`);
  }
  const ev = single.forward(c.x!, { training: false });
  expect(concat(byData.map((r) => r.out[i].evalKept)), `${what}: eval kept`).toEqual(Array.from(ev.kept));
  expectClose(Float32Array.from(concat(byData.map((r) => r.out[i].evalY))), ev.y, tol, 0, `${what}: eval y`);
}

function checkDense(reports: Report[], i: number, c: Case): void {
  const n = reports[0].axes.data ?? 1;
  const o = c.opts!;
  const D = o.dModel, F = o.dFF;
  const single = new DenseFeedForward(o as { dModel: number; dFF: number });
  const byData = reports.filter((r) => (r.coords.model ?? 0) === 0).sort((a, b) => (a.coords.data ?? 0) - (b.coords.data ?? 0));
  // The devices of data coordinate cd, as if alone: their slices make one whole layer.
  const replica = (cd: number) => reports.filter((r) => (r.coords.data ?? 0) === cd)
    .map((r) => ({ ...r, axes: { ...r.axes, data: 1 }, coords: { ...r.coords, data: 0 } }));
  for (let cd = 0; cd < n; cd++) {
    expect(Array.from(assemble(replica(cd), i, (d) => d.params.wIn, 1, D, F, true))).toEqual(Array.from(single.params.wIn));
    expect(Array.from(assemble(replica(cd), i, (d) => d.params.wOut, 1, F, D, false))).toEqual(Array.from(single.params.wOut));
  }
  const ref = single.forward(c.x!, { training: true });
  const back = single.backward(c.dy!);
  const steps = byData.map((r) => r.out[i].steps[0]);
  expectClose(Float32Array.from(concat(steps.map((p) => p.y))), ref.y, 1e-5, 0, 'dense y');
  expectClose(Float32Array.from(concat(steps.map((p) => p.dx))), back.dx, 1e-5, 0, 'dense dx');
  // The weight gradients of the replicas along data sum to the single layer's (the trainer's all-reduce).
  const sum = (name: 'wIn' | 'wOut', A: number, B: number, inner: boolean) => {
    const total = new Float32Array(A * B);
    for (let cd = 0; cd < n; cd++) {
      const part = assemble(replica(cd), i, (d) => d.steps[0].grads[name], 1, A, B, inner);
      for (let j = 0; j < total.length; j++) total[j] += part[j];
    }
    return total;
  };
  expectClose(sum('wIn', D, F, true), back.grads.wIn, 1e-5, 0, 'dense wIn gradient');
  expectClose(sum('wOut', F, D, false), back.grads.wOut, 1e-5, 0, 'dense wOut gradient');
  expectClose(Float32Array.from(concat(byData.map((r) => r.out[i].evalY))), single.forward(c.x!).y, 1e-5, 0, 'dense eval y');
}

async function run(devices: number, axes: Record<string, number>, wire: 'float32' | 'bf16', cases: Case[]): Promise<Report[]> {
  return (await launchMesh(PROGRAM, { devices, axes, wire, timeoutMs: 60000, threadsPerDevice: 1, args: { cases } })) as Report[];
}

/** Router weights (D, E) that send every positive token to expert 0. */
function allOnExpertZero(D: number, E: number): Float32Array {
  const w = new Float32Array(D * E).fill(-1);
  for (let d = 0; d < D; d++) w[d * E] = 1;
  return w;
}

function checkErrors(reports: Report[], i: number, modelAxis: boolean): void {
  for (const rep of reports) {
    const e = rep.out[i] as unknown as Record<string, unknown>;
    expect(e.experts).toBe((rep.axes.data ?? 1) > 1 ? 'RangeError:ERR_SWITCH_OPTION' : 'no error');
    expect(e.dff).toBe(modelAxis ? 'RangeError:ERR_SWITCH_OPTION' : 'no error');
    expect(e.mesh).toBe('TypeError:ERR_SWITCH_ARG_TYPE');
    expect(e.dense).toMatch(/ERR_SWITCH_OPTION/);
    expect(e.backward).toBe('Error:ERR_SWITCH_STATE');
    expect(e.instance).toBe(true);
  }
}

describe('mesh Switch layer equals the single-device layer on the global batch', () => {
  it('expert + data on 2 devices: float32 and bf16-wire, top-1 and top-2, capacity drops, dropout, jitter, z-loss', async () => {
    const r = rng();
    const base = { dModel: 6, dFF: 8, numExperts: 4, seed: r.seed % 997 };
    const cases: Case[] = [
      switchCase(r, 2, 16, { ...base, capacityFactor: 1.0, minCapacity: 1, zLossCoef: 0.1 }, { routerScale: 20, steps: 2 }),
      switchCase(r, 2, 16, { ...base, topK: 2, groupSize: 8, minCapacity: 1, expertDropout: 0.25, jitter: 0.1,
        activation: 'gelu' }, { routerScale: 10 }),
      switchCase(r, 2, 12, { ...base, precision: 'bf16-wire', capacityFactor: 1.0, minCapacity: 1 }, { routerScale: 20 }),
      switchCase(r, 2, 8, { ...base, topK: 2, precision: 'bf16-wire', secondExpertPolicy: 'random', minCapacity: 2,
        expertDropout: 0.1 }, { routerScale: 5 }),
      // Every token on expert 0: the other device's experts receive nothing, most tokens are dropped.
      { ...switchCase(r, 2, 8, { ...base, minCapacity: 2, capacityFactor: 1.0 }), router: allOnExpertZero(6, 4) },
      // One token per device.
      switchCase(r, 2, 1, { ...base, topK: 2, minCapacity: 1 }),
      { kind: 'errors' },
    ];
    cases[4].x = cases[4].x!.map(Math.abs);
    const reports = await run(2, { data: 2 }, 'float32', cases);
    cases.forEach((c, i) => (c.kind === 'errors' ? checkErrors(reports, i, false) : checkSwitch(reports, i, c, 'float32')));
  }, 60000);

  it('expert + data on 4 devices, bf16 wire by default: one and two experts per device', async () => {
    const r = rng();
    const cases: Case[] = [
      switchCase(r, 4, 8, { dModel: 5, dFF: 6, numExperts: 4, capacityFactor: 1.0, minCapacity: 1, seed: 3 }, { routerScale: 20 }),
      switchCase(r, 4, 8, { dModel: 4, dFF: 4, numExperts: 8, topK: 2, minCapacity: 1, seed: 4 }, { routerScale: 10 }),
      switchCase(r, 4, 8, { dModel: 4, dFF: 4, numExperts: 8, precision: 'float32', seed: 5 }, { routerScale: 10 }),
    ];
    const reports = await run(4, { data: 4 }, 'bf16', cases);
    cases.forEach((c, i) => checkSwitch(reports, i, c, 'bf16'));
  }, 60000);

  it('expert + model + data on { data: 2, model: 2 } and dense model + data', async () => {
    const r = rng();
    const cases: Case[] = [
      switchCase(r, 2, 12, { dModel: 6, dFF: 8, numExperts: 4, capacityFactor: 1.0, minCapacity: 1, zLossCoef: 0.05, seed: 7 },
        { routerScale: 20, steps: 2 }),
      switchCase(r, 2, 8, { dModel: 4, dFF: 6, numExperts: 2, topK: 2, precision: 'bf16-wire', seed: 8 }, { routerScale: 5 }),
      { kind: 'dense', opts: { dModel: 5, dFF: 8, seed: 9, activation: 'gelu' }, x: randomArray(2 * 6 * 5, r), dy: randomArray(2 * 6 * 5, r) },
      { kind: 'errors' },
    ];
    const reports = await run(4, { data: 2, model: 2 }, 'float32', cases);
    cases.forEach((c, i) => {
      if (c.kind === 'errors') checkErrors(reports, i, true);
      else if (c.kind === 'dense') checkDense(reports, i, c);
      else checkSwitch(reports, i, c, 'float32');
    });
  }, 60000);

  it('dense model parallelism and experts with d_ff split on { model: 2 }', async () => {
    const r = rng();
    const cases: Case[] = [
      { kind: 'dense', opts: { dModel: 4, dFF: 6, seed: 2 }, x: randomArray(7 * 4, r), dy: randomArray(7 * 4, r) },
      switchCase(r, 1, 8, { dModel: 4, dFF: 6, numExperts: 3, minCapacity: 1, capacityFactor: 1.0, seed: 6 }, { routerScale: 20 }),
    ];
    const reports = await run(2, { model: 2 }, 'float32', cases);
    checkDense(reports, 0, cases[0]);
    checkSwitch(reports, 1, cases[1], 'float32');
  }, 60000);

  it('runs in-process on a mesh of one device, equal to the single layer', async () => {
    const r = rng();
    const device = singleDevice({ wire: 'bf16' });
    const opts = { dModel: 4, dFF: 6, numExperts: 3, topK: 2 as const, minCapacity: 1, seed: 11 };
    const mesh = new SwitchFeedForward({ ...opts, mesh: device });
    const single = new SwitchFeedForward({ ...opts, precision: 'bf16-wire' });
    expect(mesh).toBeInstanceOf(SwitchFeedForward);
    const x = randomArray(10 * 4, r), dy = randomArray(10 * 4, r);
    const a = await mesh.forward(x, { training: true }), b = single.forward(x, { training: true });
    expectClose(a.y, b.y, 1e-6, 0, 'y');
    const ga = await mesh.backward(dy), gb = single.backward(dy);
    expectClose(ga.dx, gb.dx, 1e-5, 0, 'dx');
    expectClose(ga.grads.wIn, gb.grads.wIn, 1e-5, 0, 'wIn');
    expectClose(ga.grads.router, gb.grads.router, 1e-5, 0, 'router');
  });
});
