// SwitchFeedForward against the independent reference of SPEC §1 (test/switch_reference.ts):
// forward over a shape table, gradients against finite differences in float64, options and inputs.
import { describe, expect, it } from 'vitest';
import { SwitchFeedForward, setNumThreads, cpuInfo, type SwitchFeedForwardOptions } from 'switch-transformer';
import { defaults, referenceForward, referenceObjective, type RefOptions } from './switch_reference.js';
import { expectClose, randomArray, rng } from './switch_helpers.js';

interface Case {
  name: string;
  T: number;
  options: SwitchFeedForwardOptions;
  training: boolean;
  /** Multiplies the router weights: sharper routing than the small initialisation gives. */
  routerScale?: number;
  /** Makes every token prefer this expert. */
  allOn?: number;
  expectDrops?: boolean;
}

const base = { dModel: 6, dFF: 10, numExperts: 4 };
const cases: Case[] = [
  { name: 'top-1 training', T: 16, options: { ...base }, training: true, routerScale: 10 },
  { name: 'top-1 evaluation', T: 16, options: { ...base }, training: false, routerScale: 10 },
  { name: 'one expert', T: 8, options: { ...base, numExperts: 1, minCapacity: 2, capacityFactor: 0.5 }, training: true, expectDrops: true },
  { name: 'one token', T: 1, options: { ...base }, training: true, routerScale: 10 },
  { name: 'all tokens on one expert', T: 12, options: { ...base, minCapacity: 0, capacityFactor: 1 }, training: true, allOn: 2, expectDrops: true },
  { name: 'capacity zero', T: 8, options: { ...base, minCapacity: 0, capacityFactor: 0.1, loadBalanceCoef: 0.5 }, training: true, routerScale: 10, expectDrops: true },
  { name: 'capacity below demand', T: 32, options: { ...base, capacityFactor: 0.5, minCapacity: 1 }, training: true, routerScale: 20, expectDrops: true },
  { name: 'several groups', T: 24, options: { ...base, groupSize: 8, minCapacity: 1, capacityFactor: 1 }, training: true, routerScale: 20 },
  { name: 'top-2 all', T: 16, options: { ...base, topK: 2, minCapacity: 2, capacityFactor: 1.5 }, training: true, routerScale: 20 },
  { name: 'top-2 none', T: 16, options: { ...base, topK: 2, secondExpertPolicy: 'none' }, training: true, routerScale: 20 },
  { name: 'top-2 threshold', T: 16, options: { ...base, topK: 2, secondExpertPolicy: 'threshold', secondExpertThreshold: 0.3 }, training: true, routerScale: 30 },
  { name: 'top-2 random', T: 16, options: { ...base, topK: 2, secondExpertPolicy: 'random', secondExpertThreshold: 0.6 }, training: true, routerScale: 30 },
  { name: 'top-2 random in evaluation', T: 16, options: { ...base, topK: 2, secondExpertPolicy: 'random', secondExpertThreshold: 0.6 }, training: false, routerScale: 30 },
  { name: 'gelu', T: 12, options: { ...base, activation: 'gelu' }, training: true, routerScale: 10 },
  { name: 'bf16-wire', T: 16, options: { ...base, precision: 'bf16-wire' }, training: true, routerScale: 10 },
  { name: 'bf16-wire top-2 gelu', T: 16, options: { ...base, topK: 2, precision: 'bf16-wire', activation: 'gelu' }, training: false, routerScale: 10 },
  { name: 'D = 1', T: 10, options: { dModel: 1, dFF: 3, numExperts: 3 }, training: true, routerScale: 10 },
  { name: 'jitter and dropout', T: 16, options: { ...base, jitter: 0.3, expertDropout: 0.4 }, training: true, routerScale: 10 },
  { name: 'z-loss', T: 16, options: { ...base, zLossCoef: 0.5, loadBalanceCoef: 0.2 }, training: true, routerScale: 10 },
  // C · E = T and every expert is among a token's top 4: rerouting places every token.
  { name: 'no token left behind', T: 32, options: { ...base, capacityFactor: 1, minCapacity: 1, noTokenLeftBehind: true }, training: true, routerScale: 20, expectDrops: false },
  { name: 'no token left behind, capacity short', T: 32, options: { ...base, numExperts: 6, capacityFactor: 0.75, minCapacity: 1, noTokenLeftBehind: true, loadBalanceCoef: 0.3 }, training: true, routerScale: 20 },
];

function refOptions(o: SwitchFeedForwardOptions): RefOptions {
  return defaults({
    D: o.dModel, F: o.dFF, E: o.numExperts, k: o.topK ?? 1, capacityFactor: o.capacityFactor, evalCapacityFactor: o.evalCapacityFactor,
    minCapacity: o.minCapacity, groupSize: o.groupSize, activation: o.activation, loadBalanceCoef: o.loadBalanceCoef,
    zLossCoef: o.zLossCoef, jitter: o.jitter, expertDropout: o.expertDropout, policy: o.secondExpertPolicy,
    threshold: o.secondExpertThreshold, precision: o.precision, seed: o.seed, noTokenLeftBehind: o.noTokenLeftBehind,
  });
}

// defaults() spreads undefined over the defaults: drop the undefined keys first.
function clean<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function setup(c: Case, seedOffset = 0) {
  const r = rng();
  const layer = new SwitchFeedForward({ ...c.options, seed: (r.seed + seedOffset) % 1000 });
  const D = c.options.dModel, E = c.options.numExperts;
  let x = randomArray(c.T * D, r);
  if (c.routerScale) for (let i = 0; i < layer.params.router.length; i++) layer.params.router[i] *= c.routerScale;
  if (c.allOn !== undefined) {
    x = randomArray(c.T * D, r, 0.5, 1);
    layer.params.router.set(randomArray(D * E, r, -0.1, 0));
    for (let d = 0; d < D; d++) layer.params.router[d * E + c.allOn] = 1;
  }
  for (let i = 0; i < layer.params.wIn.length; i++) layer.params.wIn[i] *= 5;
  const o = refOptions(clean({ ...c.options, seed: layer.seed }));
  return { r, layer, x, o: clean(o) as RefOptions };
}

describe('SwitchFeedForward forward matches the SPEC §1 reference', () => {
  for (const c of cases) {
    it(c.name, () => {
      const { r, layer, x, o } = setup(c);
      const out = layer.forward(x, { training: c.training });
      const ref = referenceForward(x, layer.params.router, layer.params.wIn, layer.params.wOut, defaults(o), c.training,
        c.training ? 1 : 0);
      const msg = `${c.name} (seed ${r.seed})`;
      expect(Array.from(out.expertIndex), `${msg}: expertIndex`).toEqual(Array.from(ref.expertIndex));
      expect(Array.from(out.kept), `${msg}: kept`).toEqual(Array.from(ref.kept));
      expectClose(out.gate, ref.gate, 1e-5, 1e-7, `${msg}: gate`);
      const wire = c.options.precision === 'bf16-wire';
      // bf16 rounding of a float32 vs a float64 value may differ by one bf16 step (2^-8 relative).
      expectClose(out.y, ref.y, wire ? 1e-2 : 2e-5, 1e-7, `${msg}: y`);
      expect(out.loadBalanceLoss, `${msg}: lb`).toBeCloseTo(ref.loadBalanceLoss, 5);
      expect(out.zLoss, `${msg}: z`).toBeCloseTo(ref.zLoss, 4);
      expect(out.auxLoss, `${msg}: aux`).toBeCloseTo(ref.auxLoss, 5);
      expect(out.stats.capacity).toBe(ref.capacity);
      expect(out.stats.routerEntropy).toBeCloseTo(ref.routerEntropy, 5);
      expect(layer.stats).toBe(out.stats);
      const T = c.T, k = c.options.topK ?? 1;
      let noneKept = 0;
      for (let t = 0; t < T; t++) if (!Array.from(out.kept.subarray(t * k, t * k + k)).some(Boolean)) noneKept++;
      expect(out.stats.droppedFraction).toBeCloseTo(noneKept / T, 10);
      if (c.expectDrops === true) expect(noneKept, `${msg}: drops expected`).toBeGreaterThan(0);
      if (c.expectDrops === false) expect(noneKept, `${msg}: no drops expected`).toBe(0);
      // A token nobody kept gets y = 0 (the residual carries it).
      for (let t = 0; t < T; t++)
        if (!Array.from(out.kept.subarray(t * k, t * k + k)).some(Boolean))
          expect(Array.from(out.y.subarray(t * c.options.dModel, (t + 1) * c.options.dModel)).every((v) => v === 0)).toBe(true);
      const perExpert = out.stats.tokensPerExpert;
      expect(perExpert.reduce((a, b) => a + b, 0)).toBe(T);
    });
  }

  it('the capacity follows SPEC §1.4 in training and evaluation', () => {
    const layer = new SwitchFeedForward({ dModel: 2, dFF: 2, numExperts: 8, groupSize: 64, capacityFactor: 1.0, evalCapacityFactor: 2.0 });
    expect(layer.capacity(128, true)).toBe(8);
    expect(layer.capacity(128, false)).toBe(16);
    const small = new SwitchFeedForward({ dModel: 2, dFF: 2, numExperts: 8 });
    expect(small.capacity(8, true)).toBe(4);   // minCapacity
    const x = randomArray(128 * 2, rng());
    expect(layer.forward(x, { training: true }).stats.capacity).toBe(8);
    expect(layer.forward(x).stats.capacity).toBe(16);
  });

  it('top-1 gates are the raw probabilities and top-2 gates are normalised with 1e-9', () => {
    const { layer, x } = setup({ name: '', T: 8, options: { ...base, topK: 2 }, training: false, routerScale: 10 });
    const out = layer.forward(x);
    for (let t = 0; t < 8; t++) expect(out.gate[2 * t] + out.gate[2 * t + 1]).toBeCloseTo(1, 6);
    const one = new SwitchFeedForward({ ...base, seed: 3 });
    const o1 = one.forward(x);
    for (let t = 0; t < 8; t++) expect(o1.gate[t]).toBeLessThan(1);
  });
});

/** A fresh input with the case's distribution. */
function setupInput(c: Case, r: { next(): number }, n: number): Float32Array {
  return c.allOn !== undefined ? randomArray(n, r, 0.5, 1) : randomArray(n, r);
}

/** Whether a kept choice's hidden pre-activation x_t · W_in[e][:, f] lies within `margin` of zero. */
function nearReluKink(x: Float32Array, wIn: Float32Array, out: { expertIndex: Int32Array; kept: Uint8Array },
  c: Case, margin: number): boolean {
  const D = c.options.dModel, F = c.options.dFF, k = c.options.topK ?? 1;
  for (let t = 0; t < c.T; t++) {
    for (let j = 0; j < k; j++) {
      if (!out.kept[t * k + j]) continue;
      const e = out.expertIndex[t * k + j];
      for (let f = 0; f < F; f++) {
        let h = 0;
        for (let d = 0; d < D; d++) h += x[t * D + d] * wIn[(e * D + d) * F + f];
        if (Math.abs(h) < margin) return true;
      }
    }
  }
  return false;
}

describe('SwitchFeedForward backward matches finite differences (float64 reference)', () => {
  const gradCases = cases.filter((c) => c.training && c.options.precision !== 'bf16-wire' && c.T <= 24);
  for (const c of gradCases) {
    it(c.name, () => {
      const { r, layer, o, x: firstInput } = setup(c);
      let x = firstInput;
      const calls = layer.trainingCalls;
      let out = layer.forward(x, { training: true });
      // Central differences with step 1e-6 are only valid away from relu's kink: redraw inputs whose
      // kept hidden pre-activations come within 1e-4 of zero (the float32 forward's error is ~1e-7).
      for (let tries = 0; c.options.activation !== 'gelu' && nearReluKink(x, layer.params.wIn, out, c, 1e-4); tries++) {
        if (tries === 50) throw new Error(`${c.name}: no input away from the relu kink in 50 draws (seed ${r.seed})`);
        x = setupInput(c, r, x.length);
        layer.trainingCalls = calls;
        out = layer.forward(x, { training: true });
      }
      const dy = randomArray(x.length, r);
      const { dx, grads } = layer.backward(dy);
      const fixed = { expertIndex: out.expertIndex, kept: out.kept };
      const p = {
        x: Float64Array.from(x), router: Float64Array.from(layer.params.router),
        wIn: Float64Array.from(layer.params.wIn), wOut: Float64Array.from(layer.params.wOut),
      };
      const objective = () => referenceObjective(p.x, p.router, p.wIn, p.wOut, dy, defaults(o), 1, fixed);
      const check = (name: keyof typeof p, got: Float32Array) => {
        const a = p[name];
        const fd = new Float64Array(a.length);
        const eps = 1e-6;
        for (let i = 0; i < a.length; i++) {
          const v = a[i];
          a[i] = v + eps;
          const up = objective();
          a[i] = v - eps;
          const down = objective();
          a[i] = v;
          fd[i] = (up - down) / (2 * eps);
        }
        expectClose(got, fd, 2e-3, 1e-6, `${c.name} d${name} (seed ${r.seed})`);
      };
      check('x', dx);
      check('router', grads.router);
      check('wIn', grads.wIn);
      check('wOut', grads.wOut);
    });
  }
});

describe('SwitchFeedForward behaviour', () => {
  it('is reproducible from its seed and bit-identical for any thread count', () => {
    const opts: SwitchFeedForwardOptions = { ...base, topK: 2, jitter: 0.2, expertDropout: 0.3, seed: 42, secondExpertPolicy: 'random' };
    const x = randomArray(32 * 6, rng());
    const dy = randomArray(32 * 6, rng());
    const threads = cpuInfo().threads;
    const run = (n: number) => {
      setNumThreads(n);
      const layer = new SwitchFeedForward(opts);
      const out = layer.forward(x, { training: true });
      const back = layer.backward(dy);
      return { layer, out, back };
    };
    // The arrays' own bytes (the weights are views into 64-byte aligned memory, their .buffer larger).
    const bits = (v: Float32Array) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    const a = run(1), b = run(Math.max(2, threads));
    setNumThreads(threads);
    expect(bits(a.layer.params.wIn).equals(bits(b.layer.params.wIn))).toBe(true);
    expect(bits(a.out.y).equals(bits(b.out.y))).toBe(true);
    expect(bits(a.back.dx).equals(bits(b.back.dx))).toBe(true);
    expect(bits(a.back.grads.wIn).equals(bits(b.back.grads.wIn))).toBe(true);
    expect(bits(a.back.grads.router).equals(bits(b.back.grads.router))).toBe(true);
    const other = new SwitchFeedForward({ ...opts, seed: 43 });
    expect(bits(other.params.wIn).equals(bits(a.layer.params.wIn))).toBe(false);
    // Each training call draws fresh jitter and dropout: two calls differ, evaluation does not.
    const second = a.layer.forward(x, { training: true });
    expect(bits(second.y).equals(bits(a.out.y))).toBe(false);
    const e1 = a.layer.forward(x), e2 = a.layer.evaluate(x);
    expect(bits(e1.y).equals(bits(e2.y))).toBe(true);
  });

  it('reads inputs in place from views with an offset', () => {
    const layer = new SwitchFeedForward({ ...base, topK: 2 });
    const big = randomArray(20 * 6, rng());
    const view = big.subarray(3 * 6, 11 * 6);
    const a = layer.forward(view, { training: true });
    const ga = layer.backward(view);
    const copy = Float32Array.from(view);
    const b = layer.forward(copy, { training: true });
    const gb = layer.backward(copy);
    expectClose(a.y, b.y, 0, 0, 'y from a view');
    expectClose(ga.dx, gb.dx, 0, 0, 'dx from a view');
  });

  it('initialises with a truncated normal of σ = sqrt(0.1 / fan_in)', () => {
    const layer = new SwitchFeedForward({ dModel: 64, dFF: 128, numExperts: 8, seed: 7 });
    const check = (a: Float32Array, fanIn: number) => {
      const sigma = Math.sqrt(0.1 / fanIn);
      let sum = 0, sq = 0, max = 0;
      for (const v of a) { sum += v; sq += v * v; max = Math.max(max, Math.abs(v)); }
      const mean = sum / a.length, std = Math.sqrt(sq / a.length - mean * mean);
      expect(max).toBeLessThanOrEqual(2 * sigma * (1 + 1e-6));
      expect(Math.abs(mean)).toBeLessThan(0.02 * sigma);
      // A normal truncated at ±2σ has standard deviation 0.8796σ.
      expect(std / sigma).toBeGreaterThan(0.86);
      expect(std / sigma).toBeLessThan(0.90);
    };
    check(layer.params.router, 64);
    check(layer.params.wIn, 64);
    check(layer.params.wOut, 128);
    const scaled = new SwitchFeedForward({ dModel: 64, dFF: 128, numExperts: 8, seed: 7, initScale: 0.4 });
    expect(scaled.params.wIn[5] / layer.params.wIn[5]).toBeCloseTo(2, 5);
  });

  it('the bf16 wire rounds the expert input and output and the backward wires', () => {
    const c: Case = { name: '', T: 16, options: { ...base, precision: 'bf16-wire' }, training: true, routerScale: 10 };
    const { layer, x } = setup(c);
    const f32 = new SwitchFeedForward({ ...c.options, precision: 'float32', seed: layer.seed });
    f32.params.router.set(layer.params.router);
    f32.params.wIn.set(layer.params.wIn);
    const a = layer.forward(x, { training: true }), b = f32.forward(x, { training: true });
    expect(Array.from(a.expertIndex)).toEqual(Array.from(b.expertIndex));  // the router sees float32 x
    expect(Buffer.from(a.y.buffer).equals(Buffer.from(b.y.buffer))).toBe(false);
    expectClose(a.y, b.y, 2e-2, 1e-6, 'bf16 close to float32');
  });

  it('an evaluation forward keeps no backward state and does not disturb the training one', () => {
    const layer = new SwitchFeedForward({ ...base });
    const x = randomArray(8 * 6, rng());
    layer.forward(x);
    expect(() => layer.backward(x)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_STATE' }));
    layer.forward(x, { training: true });
    const g1 = layer.backward(x);
    layer.forward(randomArray(4 * 6, rng()));
    const g2 = layer.backward(x);
    expect(Buffer.from(g1.dx.buffer).equals(Buffer.from(g2.dx.buffer))).toBe(true);
  });

  it('trainingCalls is the state of the random streams: setting it replays the same jitter and dropout', () => {
    const options = { ...base, jitter: 0.3, expertDropout: 0.4, capacityFactor: 4 };
    const x = randomArray(8 * 6, rng());
    const a = new SwitchFeedForward(options), b = new SwitchFeedForward(options);
    expect(a.trainingCalls).toBe(0);
    a.forward(x, { training: true });
    a.forward(x);                                  // evaluation calls do not count
    expect(a.trainingCalls).toBe(1);
    const second = a.forward(x, { training: true }).y;
    expect(a.trainingCalls).toBe(2);
    const fresh = b.forward(x, { training: true }).y;
    expect(Buffer.from(fresh.buffer).equals(Buffer.from(second.buffer))).toBe(false);  // the draws differ per call
    b.trainingCalls = 1;
    expect(Buffer.from(b.forward(x, { training: true }).y.buffer).equals(Buffer.from(second.buffer))).toBe(true);
    for (const bad of [-1, 1.5, NaN, 2 ** 31])
      expect(() => { b.trainingCalls = bad; }).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_OPTION' }));
  });
});

describe('SwitchFeedForward rejects bad options and inputs with coded errors', () => {
  const bad: [string, object][] = [
    ['dModel 0', { ...base, dModel: 0 }],
    ['dFF fractional', { ...base, dFF: 1.5 }],
    ['numExperts missing', { dModel: 2, dFF: 2 }],
    ['topK 3', { ...base, topK: 3 }],
    ['topK 2 with one expert', { ...base, numExperts: 1, topK: 2 }],
    ['capacityFactor 0', { ...base, capacityFactor: 0 }],
    ['evalCapacityFactor NaN', { ...base, evalCapacityFactor: NaN }],
    ['minCapacity -1', { ...base, minCapacity: -1 }],
    ['groupSize 0', { ...base, groupSize: 0 }],
    ['activation', { ...base, activation: 'tanh' }],
    ['loadBalanceCoef negative', { ...base, loadBalanceCoef: -1 }],
    ['jitter 1', { ...base, jitter: 1 }],
    ['expertDropout 1', { ...base, expertDropout: 1 }],
    ['policy', { ...base, topK: 2, secondExpertPolicy: 'sometimes' }],
    ['threshold 0', { ...base, topK: 2, secondExpertThreshold: 0 }],
    ['precision', { ...base, precision: 'fp16' }],
    ['seed negative', { ...base, seed: -1 }],
    ['noTokenLeftBehind with top-2', { ...base, topK: 2, noTokenLeftBehind: true }],
    ['unknown option', { ...base, capacity_factor: 1 }],
  ];
  for (const [name, options] of bad)
    it(name, () => {
      expect(() => new SwitchFeedForward(options as SwitchFeedForwardOptions))
        .toThrow(expect.objectContaining({ code: 'ERR_SWITCH_OPTION' }));
    });

  it('bad inputs', () => {
    const layer = new SwitchFeedForward({ ...base, groupSize: 4 });
    expect(() => layer.forward(new Float32Array(7))).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_SHAPE', name: 'RangeError' }));
    expect(() => layer.forward(new Float32Array(0))).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_SHAPE' }));
    expect(() => layer.forward(randomArray(6 * 6, rng()))).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_SHAPE' }));
    expect(() => layer.forward([1, 2] as unknown as Float32Array)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_ARG_TYPE', name: 'TypeError' }));
    const x = randomArray(8 * 6, rng());
    x[13] = NaN;
    expect(() => layer.forward(x)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_NAN' }));
    x[13] = Infinity;
    expect(() => layer.forward(x)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_NAN' }));
    expect(() => layer.backward(randomArray(8 * 6, rng()))).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_STATE' }));
    layer.forward(randomArray(8 * 6, rng()), { training: true });
    expect(() => layer.backward(randomArray(4 * 6, rng()))).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_SHAPE' }));
    const dy = randomArray(8 * 6, rng());
    dy[0] = NaN;
    expect(() => layer.backward(dy)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_NAN' }));
    (layer.params as Record<string, Float32Array>).wIn = new Float32Array(3);
    expect(() => layer.forward(randomArray(8 * 6, rng()))).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_SHAPE' }));
    expect(() => layer.forward(randomArray(8 * 6, rng()), { training: 'yes' as unknown as boolean }))
      .toThrow(expect.objectContaining({ code: 'ERR_SWITCH_OPTION' }));
  });
});
