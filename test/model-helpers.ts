// Shared by the model and training tests: a plain dense feed-forward layer implementing the
// FeedForwardLayer interface (the reference the model is checked with), and small array helpers.
import { beforeEach } from 'vitest';
import type { FeedForwardLayer, FeedForwardOutput, FeedForwardBackward } from '../src/layers/types.js';
import { Random, truncatedNormal, type FeedForwardFactory } from 'switch-transformer';

/** y = relu(x · wIn) · wOut, wIn: (D, F), wOut: (F, D); optionally asynchronous like a mesh layer. */
export class ReferenceDenseLayer implements FeedForwardLayer {
  readonly params: { wIn: Float32Array; wOut: Float32Array };
  private x?: Float32Array;
  private hidden?: Float32Array;
  /**
   * (T, F) which relu inputs of the last forward (training or not) were > 0. The loss is smooth
   * in the weights only while this pattern stays the same, so a finite-difference probe is valid
   * only where the pattern at w ± h equals the one at w.
   */
  activePattern = new Uint8Array(0);

  constructor(readonly D: number, readonly F: number, seed: number, readonly asynchronous = false) {
    const random = new Random(seed);
    this.params = {
      wIn: truncatedNormal(new Float32Array(D * F), D, 0.1, random),
      wOut: truncatedNormal(new Float32Array(F * D), F, 0.1, random),
    };
  }

  forward(x: Float32Array, options: { training?: boolean } = {}): FeedForwardOutput | Promise<FeedForwardOutput> {
    const { D, F } = this;
    const T = x.length / D;
    const { wIn, wOut } = this.params;
    const hidden = new Float32Array(T * F);
    const y = new Float32Array(T * D);
    const active = new Uint8Array(T * F);
    this.activePattern = active;
    for (let t = 0; t < T; t++) {
      for (let f = 0; f < F; f++) {
        let s = 0;
        for (let d = 0; d < D; d++) s += x[t * D + d] * wIn[d * F + f];
        hidden[t * F + f] = Math.max(0, s);
        active[t * F + f] = s > 0 ? 1 : 0;
      }
      for (let d = 0; d < D; d++) {
        let s = 0;
        for (let f = 0; f < F; f++) s += hidden[t * F + f] * wOut[f * D + d];
        y[t * D + d] = s;
      }
    }
    if (options.training) {
      // backward() belongs to the last training forward
      this.x = x;
      this.hidden = hidden;
    }
    const out = { y, auxLoss: 0, loadBalanceLoss: 0, zLoss: 0 };
    return this.asynchronous ? Promise.resolve(out) : out;
  }

  backward(dy: Float32Array): FeedForwardBackward | Promise<FeedForwardBackward> {
    const { D, F } = this;
    const x = this.x!, hidden = this.hidden!;
    const T = x.length / D;
    const { wIn, wOut } = this.params;
    const dx = new Float32Array(T * D), dwIn = new Float32Array(D * F), dwOut = new Float32Array(F * D);
    for (let t = 0; t < T; t++) {
      for (let f = 0; f < F; f++) {
        let dh = 0;
        for (let d = 0; d < D; d++) {
          dh += dy[t * D + d] * wOut[f * D + d];
          dwOut[f * D + d] += hidden[t * F + f] * dy[t * D + d];
        }
        if (hidden[t * F + f] <= 0) continue;
        for (let d = 0; d < D; d++) {
          dx[t * D + d] += dh * wIn[d * F + f];
          dwIn[d * F + f] += x[t * D + d] * dh;
        }
      }
    }
    const out = { dx, grads: { wIn: dwIn, wOut: dwOut } };
    return this.asynchronous ? Promise.resolve(out) : out;
  }
}

/** Every block gets a reference dense layer (the model sees no Switch layer). */
export const referenceFactory = (asynchronous = false): FeedForwardFactory => (spec) =>
  new ReferenceDenseLayer(spec.dModel, spec.dFF, spec.seed, asynchronous);

/**
 * A test file's random stream from a fresh seed (MODEL_TEST_SEED replays one: run the whole file,
 * the tests draw from it in order); a failing test prints the seed.
 */
export function fileRandom(): { seed: number; random: Random } {
  const seed = Number(process.env.MODEL_TEST_SEED ?? (Date.now() >>> 0)) >>> 0;
  beforeEach((context) => {
    context.onTestFailed(() => console.error(`${context.task.name}: this file's random inputs replay with MODEL_TEST_SEED=${seed}`));
  });
  return { seed, random: new Random(seed) };
}

export function randn(n: number, random: Random, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = random.normal() * scale;
  return a;
}

export function poisoned(n: number): Float32Array {
  return new Float32Array(n).fill(NaN);
}

/** max |a − b| / (max |b| + tiny): a scale-aware error over a whole array. */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 1e-12;
  for (let i = 0; i < b.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    num = Number.isNaN(d) ? Infinity : Math.max(num, d);
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / den;
}

/** max |a − b| over the array. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < b.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    m = Number.isNaN(d) ? Infinity : Math.max(m, d);
  }
  return m;
}

export function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
