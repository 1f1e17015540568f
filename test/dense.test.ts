// DenseFeedForward against a plain reference, finite differences and tfjs-core autograd.
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import '@tensorflow/tfjs-backend-cpu';
import { DenseFeedForward, type FeedForwardLayer } from 'switch-transformer';
import { act, randomKey, randomUniform } from './switch_reference.js';
import { expectClose, randomArray, rng } from './switch_helpers.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

function reference(x: ArrayLike<number>, wIn: ArrayLike<number>, wOut: ArrayLike<number>, D: number, F: number,
  kind: 'relu' | 'gelu', rate: number, seed: number, call: number): Float64Array {
  const T = x.length / D;
  const y = new Float64Array(T * D);
  const key = randomKey(seed, call * 16 + 6);
  for (let t = 0; t < T; t++) {
    const h = new Float64Array(F);
    for (let f = 0; f < F; f++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += x[t * D + d] * wIn[d * F + f];
      h[f] = act(kind, s);
      if (rate > 0) h[f] = randomUniform(key, t * F + f) >= rate ? h[f] / (1 - rate) : 0;
    }
    for (let d = 0; d < D; d++) {
      let s = 0;
      for (let f = 0; f < F; f++) s += h[f] * wOut[f * D + d];
      y[t * D + d] = s;
    }
  }
  return y;
}

const shapes: [string, number, number, number, 'relu' | 'gelu', number][] = [
  ['relu', 7, 5, 9, 'relu', 0],
  ['gelu', 6, 4, 3, 'gelu', 0],
  ['one token', 1, 5, 6, 'relu', 0],
  ['D = 1', 5, 1, 4, 'gelu', 0],
  ['dropout', 8, 4, 6, 'relu', 0.3],
];

function nearZeroPreActivation(x: Float32Array, wIn: Float32Array, T: number, D: number, F: number, margin: number): boolean {
  for (let t = 0; t < T; t++) {
    for (let f = 0; f < F; f++) {
      let h = 0;
      for (let d = 0; d < D; d++) h += x[t * D + d] * wIn[d * F + f];
      if (Math.abs(h) < margin) return true;
    }
  }
  return false;
}

describe('DenseFeedForward', () => {
  for (const [name, T, D, F, kind, rate] of shapes)
    it(`${name}: forward, finite differences, tfjs autograd`, () => {
      const r = rng();
      const layer: FeedForwardLayer & DenseFeedForward = new DenseFeedForward({ dModel: D, dFF: F, activation: kind, dropout: rate, seed: r.seed % 1000 });
      for (let i = 0; i < layer.params.wIn.length; i++) layer.params.wIn[i] *= 5;
      // Central differences with step 1e-6 are only valid away from relu's kink: redraw inputs whose
      // hidden pre-activations come within 1e-4 of zero.
      let x = randomArray(T * D, r);
      for (let tries = 0; kind === 'relu' && nearZeroPreActivation(x, layer.params.wIn, T, D, F, 1e-4); tries++) {
        if (tries === 50) throw new Error(`${name}: no input away from the relu kink in 50 draws (seed ${r.seed})`);
        x = randomArray(T * D, r);
      }
      const dy = randomArray(T * D, r);
      const out = layer.forward(x, { training: true });
      expect(out.auxLoss).toBe(0);
      expectClose(out.y, reference(x, layer.params.wIn, layer.params.wOut, D, F, kind, rate, layer.seed, 1), 2e-5, 1e-8, `${name} y (seed ${r.seed})`);
      if (rate === 0) expectClose(layer.evaluate(x).y, out.y, 0, 0, 'evaluate = training without dropout');
      const { dx, grads } = layer.backward(dy);
      const p = { x: Float64Array.from(x), wIn: Float64Array.from(layer.params.wIn), wOut: Float64Array.from(layer.params.wOut) };
      const objective = () => {
        const y = reference(p.x, p.wIn, p.wOut, D, F, kind, rate, layer.seed, 1);
        let s = 0;
        for (let i = 0; i < y.length; i++) s += y[i] * dy[i];
        return s;
      };
      const fdOf = (a: Float64Array) => Float64Array.from(a, (v, i) => {
        a[i] = v + 1e-6; const up = objective();
        a[i] = v - 1e-6; const down = objective();
        a[i] = v;
        return (up - down) / 2e-6;
      });
      expectClose(dx, fdOf(p.x), 1e-3, 1e-7, `${name} dx`);
      expectClose(grads.wIn, fdOf(p.wIn), 1e-3, 1e-7, `${name} dwIn`);
      expectClose(grads.wOut, fdOf(p.wOut), 1e-3, 1e-7, `${name} dwOut`);
      // tfjs autograd with the dropout mask as a constant.
      const key = randomKey(layer.seed, 22);
      const mask = Float32Array.from({ length: T * F }, (_, i) => (rate > 0 ? (randomUniform(key, i) >= rate ? 1 / (1 - rate) : 0) : 1));
      const gelu = (h: tf.Tensor) => tf.mul(tf.mul(0.5, h),
        tf.add(1, tf.tanh(tf.mul(Math.sqrt(2 / Math.PI), tf.add(h, tf.mul(0.044715, tf.pow(h, 3)))))));
      const g = tf.grads((xt: tf.Tensor, wi: tf.Tensor, wo: tf.Tensor) => {
        const hPre = tf.matMul(xt as tf.Tensor2D, wi as tf.Tensor2D);
        const h = tf.mul(kind === 'gelu' ? gelu(hPre) : tf.relu(hPre), tf.tensor2d(mask, [T, F]));
        return tf.sum(tf.mul(tf.matMul(h, wo as tf.Tensor2D), tf.tensor2d(dy, [T, D]))) as tf.Scalar;
      })([tf.tensor2d(x, [T, D]), tf.tensor2d(layer.params.wIn, [D, F]), tf.tensor2d(layer.params.wOut, [F, D])]);
      expectClose(dx, g[0].dataSync(), 1e-5, 1e-8, `${name} dx vs tfjs`);
      expectClose(grads.wIn, g[1].dataSync(), 1e-5, 1e-8, `${name} dwIn vs tfjs`);
      expectClose(grads.wOut, g[2].dataSync(), 1e-5, 1e-8, `${name} dwOut vs tfjs`);
    });

  it('rejects bad options and inputs', () => {
    expect(() => new DenseFeedForward({ dModel: 0, dFF: 2 })).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_OPTION' }));
    expect(() => new DenseFeedForward({ dModel: 2, dFF: 2, dropout: 1 })).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_OPTION' }));
    expect(() => new DenseFeedForward({ dModel: 2, dFF: 2, numExperts: 2 } as never)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_OPTION' }));
    const layer = new DenseFeedForward({ dModel: 2, dFF: 3 });
    expect(() => layer.forward(new Float32Array(3))).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_SHAPE' }));
    expect(() => layer.forward(Float32Array.of(1, NaN))).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_NAN' }));
    expect(() => layer.backward(new Float32Array(2))).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_STATE' }));
    layer.forward(Float32Array.of(1, 2), { training: true });
    expect(() => layer.backward(new Float32Array(4))).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_SHAPE' }));
    expect(() => { layer.trainingCalls = -1; }).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_OPTION' }));
  });

  it('trainingCalls keys the dropout mask: setting it replays a call', () => {
    const key = randomKey(11, 5);
    const x = Float32Array.from({ length: 8 * 6 }, (_, i) => 2 * randomUniform(key, i) - 1);
    const a = new DenseFeedForward({ dModel: 6, dFF: 10, dropout: 0.5, seed: 4 }), b = new DenseFeedForward({ dModel: 6, dFF: 10, dropout: 0.5, seed: 4 });
    a.forward(x, { training: true });
    const second = a.forward(x, { training: true }).y;
    expect(a.trainingCalls).toBe(2);
    expect(Buffer.from(b.forward(x, { training: true }).y.buffer).equals(Buffer.from(second.buffer))).toBe(false);
    b.trainingCalls = 1;
    expect(Buffer.from(b.forward(x, { training: true }).y.buffer).equals(Buffer.from(second.buffer))).toBe(true);
  });
});
