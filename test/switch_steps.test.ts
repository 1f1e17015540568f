// The internal step API the mesh layer builds on (src/layers/switch_steps.ts): the padded
// expert-major (E, T/G, C, D) buffer path — route, plan, dispatch, experts on the buffer, combine,
// and back — gives the layer's result; the bindings write every output and reject bad indices.
import { describe, expect, it } from 'vitest';
import { SwitchFeedForward } from 'switch-transformer';
import { native } from '../src/native.js';
import {
  combine, combineBackward, dispatch, dispatchBackward, expertCapacity, expertsBackward, expertsForward, planDispatch, route,
  routerBackward, wireRound,
} from '../src/layers/switch_steps.js';
import { expectAllFinite, expectClose, randomArray, rng } from './switch_helpers.js';

describe('switch steps: the padded (mesh) path equals the layer', () => {
  for (const precision of ['float32', 'bf16-wire'] as const)
    for (const topK of [1, 2] as const)
      it(`${precision}, top-${topK}`, () => {
        const r = rng();
        const T = 24, D = 5, F = 6, E = 4, G = 8, k = topK;
        const opts = { dModel: D, dFF: F, numExperts: E, topK, groupSize: G, capacityFactor: 1.0, minCapacity: 1,
          expertDropout: 0.25, zLossCoef: 0.1, precision, seed: r.seed % 1000 };
        const layer = new SwitchFeedForward(opts);
        for (let i = 0; i < layer.params.router.length; i++) layer.params.router[i] *= 20;
        const x = randomArray(T * D, r), dy = randomArray(T * D, r);
        const out = layer.forward(x, { training: true });
        const back = layer.backward(dy);
        const wire = precision === 'bf16-wire';
        const C = expertCapacity(G, 1.0, E, 1);
        const routing = route(x, layer.params.router, { T, D, E, k, G, C, policy: 'all', threshold: 0.2,
          noTokenLeftBehind: false, jitter: 0, seed: layer.seed, streamBase: 16 });
        const plan = planDispatch(routing, true);
        expect(plan.R).toBe(E * (T / G) * C);
        // Send: the (E, T/G, C, D) buffer (an all-to-all would move expert chunks here).
        const buffer = dispatch(x, plan, T, D, wire);
        const cfg = { E, D, F, activation: 'relu' as const, dropoutRate: 0.25, seed: layer.seed, stream: 16 + 6 };
        const acts = expertsForward(buffer, null, plan.rowChoice, plan.offsets, layer.params.wIn, layer.params.wOut, cfg);
        if (wire) wireRound(acts.expertOut, acts.expertOut);
        const y = combine(acts.expertOut, routing.gate, plan.row, T, k, D);
        expect(Array.from(routing.expertIndex)).toEqual(Array.from(out.expertIndex));
        expectClose(y, out.y, 1e-6, 0, 'y through the padded buffer');
        const { dgate, dExpertOut } = combineBackward(dy, acts.expertOut, routing.gate, plan, T, k, D, wire);
        const { dx, dwRouter } = routerBackward(dgate, routing, layer.params.router, D, 0.01, 0.1);
        const dBuffer = new Float32Array(plan.R * D);
        const { dwIn, dwOut } = expertsBackward(dBuffer, dExpertOut, acts, buffer, null, plan.offsets, layer.params.wIn,
          layer.params.wOut, cfg, false);
        dispatchBackward(dx, dBuffer, plan, T, k, D, wire, true);
        expectClose(dx, back.dx, 1e-5, 0, 'dx');
        expectClose(dwRouter, back.grads.router, 1e-5, 0, 'router');
        expectClose(dwIn, back.grads.wIn, 1e-5, 0, 'wIn');
        expectClose(dwOut, back.grads.wOut, 1e-5, 0, 'wOut');
      });
});

describe('switch steps: a device share of the tokens draws the same random numbers', () => {
  it('jitter and the random policy follow the global token index (tokenOffset)', () => {
    const r = rng();
    const T = 16, D = 4, E = 4, k = 2;
    const x = randomArray(T * D, r), w = randomArray(D * E, r, -3, 3);
    const cfg = { T, D, E, k: k as 2, G: T / 2, C: 4, policy: 'random' as const, threshold: 0.6, noTokenLeftBehind: false,
      jitter: 0.3, seed: 9, streamBase: 32 };
    const whole = route(x, w, cfg);
    for (const half of [0, 1]) {
      const part = route(x.subarray(half * (T / 2) * D, (half + 1) * (T / 2) * D), w,
        { ...cfg, T: T / 2, tokenOffset: half * (T / 2) });
      expect(Array.from(part.u!)).toEqual(Array.from(whole.u!.subarray(half * (T / 2) * D, (half + 1) * (T / 2) * D)));
      expect(Array.from(part.want)).toEqual(Array.from(whole.want.subarray(half * (T / 2) * k, (half + 1) * (T / 2) * k)));
      expect(Array.from(part.slot)).toEqual(Array.from(whole.slot.subarray(half * (T / 2) * k, (half + 1) * (T / 2) * k)));
    }
  });
});

describe('switch bindings', () => {
  it('write every element of poisoned outputs', () => {
    const r = rng();
    const T = 9, D = 3, E = 3, k = 2;
    const x = randomArray(T * D, r), w = randomArray(D * E, r);
    const logits = new Float32Array(T * E).fill(NaN), probs = new Float32Array(T * E).fill(NaN), lse = new Float32Array(T).fill(NaN);
    native.switchRouterForward(logits, probs, lse, x, w, T, D, E);
    [logits, probs, lse].forEach((a, i) => expectAllFinite(a, `router output ${i}`));
    const index = new Int32Array(T * k).fill(-99), gate = new Float32Array(T * k).fill(NaN), want = new Uint8Array(T * k).fill(7);
    native.switchRouterChoose(index, gate, want, probs, T, E, k, 0, 0.2, 1, 2);
    expectAllFinite(gate, 'gate');
    expect(Array.from(index).every((e) => e >= 0 && e < E)).toBe(true);
    const y = new Float32Array(T * D).fill(NaN);
    const row = Int32Array.from({ length: T * k }, (_, c) => (c % 3 === 0 ? -1 : c));
    native.switchCombineForward(y, randomArray(T * k * D, r), gate, row, T, k, D);
    expectAllFinite(y, 'combine');
    const dgate = new Float32Array(T * k).fill(NaN), dOut = new Float32Array(T * k * D).fill(NaN);
    const rowChoice = Int32Array.from({ length: T * k }, (_, i) => (i % 3 === 0 ? -1 : i));
    native.switchCombineBackward(dgate, dOut, randomArray(T * D, r), randomArray(T * k * D, r), gate, rowChoice, T, k, D, false);
    expectAllFinite(dgate, 'dgate');
    expectAllFinite(dOut, 'dExpertOut');
  });

  it('reject bad indices and lengths with coded errors instead of reading out of bounds', () => {
    const T = 4, D = 2, k = 1;
    const y = new Float32Array(T * D), gate = new Float32Array(T);
    expect(() => native.switchCombineForward(y, new Float32Array(2 * D), gate, Int32Array.of(0, 1, 2, -1), T, k, D))
      .toThrow(expect.objectContaining({ code: 'ERR_SWITCH_RANGE', name: 'RangeError' }));
    expect(() => native.switchCombineForward(y, new Float32Array(3), gate, Int32Array.of(0, 0, 0, 0), T, k, D))
      .toThrow(expect.objectContaining({ code: 'ERR_SWITCH_SHAPE' }));
    expect(() => native.switchCombineForward(new Float32Array(3), new Float32Array(D), gate, Int32Array.of(0, 0, 0, 0), T, k, D))
      .toThrow(expect.objectContaining({ code: 'ERR_SWITCH_SHAPE' }));
    expect(() => native.switchDispatchForward(new Float32Array(D), new Float32Array(T * D), Int32Array.of(T), T, D, false))
      .toThrow(expect.objectContaining({ code: 'ERR_SWITCH_RANGE' }));
    expect(() => native.switchExpertsForward(new Float32Array(4), new Float32Array(4), new Float32Array(4), null,
      new Float32Array(8), Int32Array.of(0, 9), null, new Float32Array(4), new Float32Array(4), Int32Array.of(0, 2), 1, 2, 2, 0, 0, 0, 0))
      .toThrow(expect.objectContaining({ code: 'ERR_SWITCH_RANGE' }));
    expect(() => native.switchExpertsForward(new Float32Array(4), new Float32Array(4), new Float32Array(4), null,
      new Float32Array(8), null, null, new Float32Array(4), new Float32Array(4), Int32Array.of(0, 3), 1, 2, 2, 0, 0, 0, 0))
      .toThrow(expect.objectContaining({ code: 'ERR_SWITCH_SHAPE' }));
    // hPre may be left out only where the relu folds into the matmul (relu, no dropout).
    const noHPre = (activation: number, rate: number) => () => native.switchExpertsForward(new Float32Array(4), null,
      new Float32Array(4), rate > 0 ? new Uint8Array(4) : null, new Float32Array(8), Int32Array.of(0, 1), null,
      new Float32Array(4), new Float32Array(4), Int32Array.of(0, 2), 1, 2, 2, activation, rate, 0, 0);
    expect(noHPre(1, 0)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_ARG_TYPE', name: 'TypeError', message: expect.stringContaining('hPre') }));
    expect(noHPre(0, 0.5)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_ARG_TYPE', message: expect.stringContaining('hPre') }));
    expect(noHPre(0, 0)).not.toThrow();
    expect(() => native.switchExpertsBackward(new Float32Array(8), new Float32Array(4), new Float32Array(4), new Float32Array(4),
      new Float32Array(4), null, new Float32Array(4), null, new Float32Array(8), Int32Array.of(0, 1), new Float32Array(4),
      new Float32Array(4), Int32Array.of(0, 2), 1, 2, 2, 1, 0, true))
      .toThrow(expect.objectContaining({ code: 'ERR_SWITCH_ARG_TYPE', message: expect.stringContaining('hPre') }));
    expect(() => native.switchSlots(new Int32Array(4), new Int32Array(2), Int32Array.of(0, 1, 2, 0), new Float32Array(4),
      new Uint8Array(4), new Float32Array(8), 4, 1, 4, 2, 2, false)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_RANGE' }));
    expect(() => native.switchSlots(new Int32Array(4), new Int32Array(2), new Int32Array(4), new Float32Array(4),
      new Uint8Array(4), new Float32Array(8), 4, 1, 3, 2, 2, false)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_SHAPE' }));
    expect(() => native.switchRouterForward(new Float64Array(4), new Float32Array(4), new Float32Array(2), new Float32Array(4),
      new Float32Array(4), 2, 2, 2)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_ARG_TYPE', name: 'TypeError' }));
  });

  it('switchGroupedMatmul finishes with the relu epilogue exactly as a separate pass would', () => {
    const r = rng();
    // Groups of 0, 3, 140 (past 128 rows: the general driver) and 7 rows, both weight layouts.
    const offsets = Int32Array.of(0, 0, 3, 143, 150), E = 4, K = 37, N = 21, R = 150;
    for (const transW of [false, true]) {
      const x = randomArray(R * K, r), w = randomArray(E * K * N, r);
      const plain = new Float32Array(R * N).fill(NaN);
      native.switchGroupedMatmul(plain, x, w, offsets, null, null, null, E, K, N, transW, false);
      expectAllFinite(plain, 'product');
      const relu = new Float32Array(R * N).fill(NaN);
      native.switchGroupedMatmul(relu, x, w, offsets, null, null, null, E, K, N, transW, false, 1);
      expect(relu).toEqual(plain.map((v) => (v > 0 ? v : 0)));
      expect(relu.some((v) => v === 0) && relu.some((v) => v > 0)).toBe(true);
    }
    const call = (...rest: unknown[]) => () => native.switchGroupedMatmul(new Float32Array(R * N), new Float32Array(R * K),
      new Float32Array(E * K * N), offsets, null, ...rest);
    expect(call(null, null, E, K, N, false, false, 2)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_RANGE', message: expect.stringContaining('epilogue') }));
    expect(call(null, null, E, K, N, false, false, 'relu')).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_ARG_TYPE', message: expect.stringContaining('epilogue') }));
    expect(call(Int32Array.from({ length: R }, (_, i) => i), null, E, K, N, false, false, 1))
      .toThrow(expect.objectContaining({ code: 'ERR_SWITCH_RANGE', message: expect.stringContaining('scatter') }));
  });

  it('reuses gradient buffers only when asked', () => {
    const x = randomArray(8 * 4, rng()), dy = randomArray(8 * 4, rng());
    const fresh = new SwitchFeedForward({ dModel: 4, dFF: 4, numExperts: 2, seed: 3 });
    const reused = new SwitchFeedForward({ dModel: 4, dFF: 4, numExperts: 2, seed: 3, reuseGradients: true });
    fresh.forward(x, { training: true });
    reused.forward(x, { training: true });
    const a1 = fresh.backward(dy), b1 = reused.backward(dy);
    expectClose(b1.grads.wIn, a1.grads.wIn, 0, 0, 'same gradient');
    expectClose(b1.dx, a1.dx, 0, 0, 'same dx');
    const a2 = fresh.backward(dy), b2 = reused.backward(dy);
    expect(a2.grads.wIn.buffer).not.toBe(a1.grads.wIn.buffer);
    expect(b2.grads.wIn.buffer).toBe(b1.grads.wIn.buffer);
    expectClose(b2.grads.router, a2.grads.router, 0, 0, 'second backward');
  });
});
