// AdamW, Adafactor, the schedules and clipping against plain reference computations written
// from the papers' formulas (sums rather than means for Adafactor's factored moments).
import { describe, expect, it } from 'vitest';
import { AdamW, Adafactor, clipGradientNorm, constantWithWarmup, inverseSqrt, createOptimizer, Random } from 'switch-transformer';
import { relError } from './model-helpers.js';

const random = new Random(Date.now() >>> 0);

function param(name: string, shape: number[]) {
  const n = shape.reduce((a, b) => a * b, 1);
  return {
    name, shape,
    data: Float32Array.from({ length: n }, () => random.normal()),
    grad: new Float32Array(n),
  };
}

function freshGrads(ps: ReturnType<typeof param>[]) {
  for (const p of ps) for (let i = 0; i < p.grad.length; i++) p.grad[i] = random.normal() * (0.1 + i % 3);
}

describe('AdamW', () => {
  it('matches the reference update over several steps', () => {
    const ps = [param('w', [3, 4]), param('b', [5])];
    const ref = ps.map((p) => ({ w: Array.from(p.data), m: new Array(p.data.length).fill(0), v: new Array(p.data.length).fill(0) }));
    const opt = new AdamW({ beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1 });
    const lrs = [1e-2, 5e-3, 2e-2, 1e-3];
    lrs.forEach((lr, s) => {
      freshGrads(ps);
      ps.forEach((p, j) => {
        const r = ref[j];
        for (let i = 0; i < r.w.length; i++) {
          const g = p.grad[i];
          r.w[i] -= lr * 0.1 * r.w[i];
          r.m[i] = 0.9 * r.m[i] + 0.1 * g;
          r.v[i] = 0.99 * r.v[i] + 0.01 * g * g;
          const mhat = r.m[i] / (1 - 0.9 ** (s + 1)), vhat = r.v[i] / (1 - 0.99 ** (s + 1));
          r.w[i] -= lr * mhat / (Math.sqrt(vhat) + 1e-8);
        }
      });
      opt.step(ps, lr);
    });
    ps.forEach((p, j) => expect(relError(p.data, ref[j].w)).toBeLessThan(1e-5));
    expect(opt.stepCount).toBe(4);
  });

  it('state round-trips into an equal continuation', () => {
    const a = [param('w', [4, 2])];
    const b = [{ ...a[0], data: Float32Array.from(a[0].data), grad: a[0].grad }];
    const o1 = new AdamW();
    freshGrads(a);
    o1.step(a, 1e-2);
    b[0].data.set(a[0].data);
    const o2 = new AdamW();
    o2.loadState(o1.state());
    freshGrads(a);
    o1.step(a, 1e-2);
    o2.step(b, 1e-2);
    expect(Array.from(b[0].data)).toEqual(Array.from(a[0].data));
  });
});

describe('Adafactor', () => {
  it.each([[false], [true]])('matches the reference (factored matrices, expert stacks and vectors), momentum %s', (momentum) => {
    const ps = [param('m', [3, 5]), param('e', [2, 4, 3]), param('v', [6])];
    const clone = ps.map((p) => ({ ...p, data: Float32Array.from(p.data) }));
    const beta1 = momentum ? 0.9 : 0;
    const opt = new Adafactor({ beta1 });
    // reference state
    const st = ps.map((p) => {
      const dims = p.shape;
      if (dims.length >= 2) {
        const rows = dims.at(-2)!, cols = dims.at(-1)!, mats = p.data.length / (rows * cols);
        return { R: Array.from({ length: mats }, () => new Array(rows).fill(0)), C: Array.from({ length: mats }, () => new Array(cols).fill(0)), m: new Array(p.data.length).fill(0), v: [] as number[] };
      }
      return { R: [], C: [], m: new Array(p.data.length).fill(0), v: new Array(p.data.length).fill(0) };
    });
    for (let t = 1; t <= 4; t++) {
      freshGrads(ps);
      const lr = 0.01 * t;
      const beta2 = 1 - t ** -0.8;
      ps.forEach((p, j) => {
        const w = clone[j].data, g = p.grad, s = st[j], n = g.length;
        const u = new Array(n).fill(0);
        if (p.shape.length >= 2) {
          const rows = p.shape.at(-2)!, cols = p.shape.at(-1)!;
          for (let m = 0; m < n / (rows * cols); m++) {
            // R ← β2 R + (1 − β2)(G² + ε1) 1, C ← β2 C + (1 − β2) 1ᵀ(G² + ε1), V̂ = R C / (1ᵀ R)  (row/column sums)
            for (let r = 0; r < rows; r++) {
              let sum = 0;
              for (let c = 0; c < cols; c++) sum += g[m * rows * cols + r * cols + c] ** 2 + 1e-30;
              s.R[m][r] = beta2 * s.R[m][r] + (1 - beta2) * sum;
            }
            for (let c = 0; c < cols; c++) {
              let sum = 0;
              for (let r = 0; r < rows; r++) sum += g[m * rows * cols + r * cols + c] ** 2 + 1e-30;
              s.C[m][c] = beta2 * s.C[m][c] + (1 - beta2) * sum;
            }
            const total = s.R[m].reduce((a: number, b: number) => a + b, 0);
            for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
              const i = m * rows * cols + r * cols + c;
              u[i] = g[i] / Math.sqrt((s.R[m][r] * s.C[m][c]) / total);
            }
          }
        } else {
          for (let i = 0; i < n; i++) {
            s.v[i] = beta2 * s.v[i] + (1 - beta2) * (g[i] ** 2 + 1e-30);
            u[i] = g[i] / Math.sqrt(s.v[i]);
          }
        }
        const rmsU = Math.sqrt(u.reduce((a, b) => a + b * b, 0) / n);
        const rmsW = Math.sqrt(Array.from(w).reduce((a, b) => a + b * b, 0) / n);
        const alpha = lr * Math.max(1e-3, rmsW);
        for (let i = 0; i < n; i++) {
          const step = alpha * u[i] / Math.max(1, rmsU);
          if (momentum) { s.m[i] = 0.9 * s.m[i] + 0.1 * step; w[i] -= s.m[i]; } else w[i] -= step;
        }
      });
      opt.step(ps, lr);
    }
    ps.forEach((p, j) => expect(relError(p.data, clone[j].data), p.name).toBeLessThan(1e-5));
    // Factored state is O(rows + cols), not O(rows · cols).
    expect(opt.state().tensors['m.row']).toHaveLength(3);
    expect(opt.state().tensors['e.col']).toHaveLength(6);
    expect(opt.state().tensors['m.v']).toBeUndefined();
  });

  it('rejects bad options', () => {
    expect(() => new Adafactor({ decayRate: 0 })).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_OPTION' }));
    expect(() => createOptimizer('sgd' as 'adamw')).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_OPTION' }));
    expect(() => new AdamW().step([], NaN)).toThrow(RangeError);
  });
});

describe('per-parameter learning-rate scale (lrScale)', () => {
  it.each([['adamw'], ['adafactor']] as const)('%s: a parameter with lrScale s steps as it would alone at lr · s', (name) => {
    const scale = 0.3;
    const ps = [param('w', [3, 4]), param('r', [4, 2])];
    const scaled = [ps[0], { ...ps[1], lrScale: scale }];
    const alone = { ...ps[1], data: Float32Array.from(ps[1].data) };
    const rest = { ...ps[0], data: Float32Array.from(ps[0].data) };
    const opt = createOptimizer(name, { weightDecay: 0.1 });
    const optAlone = createOptimizer(name, { weightDecay: 0.1 }), optRest = createOptimizer(name, { weightDecay: 0.1 });
    for (const lr of [1e-2, 3e-3, 2e-2]) {
      freshGrads(ps);
      opt.step(scaled, lr);
      optAlone.step([alone], lr * scale);
      optRest.step([rest], lr);
    }
    expect(Array.from(ps[1].data)).toEqual(Array.from(alone.data));
    expect(Array.from(ps[0].data)).toEqual(Array.from(rest.data));  // the others are untouched by it
  });
});

describe('schedules', () => {
  it('constant with warm-up', () => {
    const s = constantWithWarmup({ lr: 1e-3, warmupSteps: 4 });
    expect([0, 1, 2, 3, 4, 100].map(s)).toEqual([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3]);
    expect(constantWithWarmup({ lr: 0.5 })(0)).toBe(0.5);
  });
  it('inverse square root after warm-up', () => {
    const s = inverseSqrt({ lr: 0.01, warmupSteps: 100 });
    expect(s(0)).toBeCloseTo(1e-4, 12);
    expect(s(99)).toBeCloseTo(0.01, 12);
    expect(s(399)).toBeCloseTo(0.005, 12);  // 0.01 · sqrt(100 / 400)
    expect(() => inverseSqrt({ lr: 1, warmupSteps: -1 })).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_OPTION' }));
  });
});

describe('global-norm clipping', () => {
  it('scales all gradients together when the norm exceeds the limit', () => {
    const a = Float32Array.of(3, 0), b = Float32Array.of(0, 4);
    expect(clipGradientNorm([a, b], 1)).toBeCloseTo(5, 6);
    expect(a[0]).toBeCloseTo(0.6, 5);
    expect(b[1]).toBeCloseTo(0.8, 5);
    const c = Float32Array.of(0.3, 0.4);
    expect(clipGradientNorm([c], 1)).toBeCloseTo(0.5, 6);
    expect(Array.from(c)).toEqual([Math.fround(0.3), Math.fround(0.4)]);
  });
});
