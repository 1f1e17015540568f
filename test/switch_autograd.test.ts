// SwitchFeedForward's backward against tfjs-core autograd: the same computation built from tfjs
// ops with the routing (choices, kept, dropout masks, jitter) as constants and the gates through
// the softmax, the aux losses included, and the bf16 wire as straight-through rounding ops.
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import '@tensorflow/tfjs-backend-cpu';
import { SwitchFeedForward, type SwitchFeedForwardOptions } from 'switch-transformer';
import { bf16, randomKey, randomUniform } from './switch_reference.js';
import { expectClose, randomArray, rng } from './switch_helpers.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const roundArray = (a: ArrayLike<number>) => Float32Array.from(a, bf16);
/** Rounds in the forward, passes the gradient straight through. */
const wireForward = tf.customGrad((v: tf.Tensor, save: tf.GradSaveFunc) => {
  save([]);
  return { value: tf.tensor(roundArray(v.dataSync()), v.shape), gradFunc: (dy: tf.Tensor) => dy };
}) as (v: tf.Tensor) => tf.Tensor;
/** Identity in the forward, rounds the gradient: a wire crossed by the backward. */
const wireBackward = tf.customGrad((v: tf.Tensor, save: tf.GradSaveFunc) => {
  save([]);
  return { value: tf.clone(v), gradFunc: (dy: tf.Tensor) => tf.tensor(roundArray(dy.dataSync()), dy.shape) };
}) as (v: tf.Tensor) => tf.Tensor;

function gelu(v: tf.Tensor): tf.Tensor {
  const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(v, tf.mul(0.044715, tf.pow(v, 3))));
  return tf.mul(tf.mul(0.5, v), tf.add(1, tf.tanh(inner)));
}

interface Case { name: string; T: number; options: SwitchFeedForwardOptions; routerScale: number }
const base = { dModel: 5, dFF: 7, numExperts: 4 };
const cases: Case[] = [
  { name: 'top-1 with z-loss', T: 12, options: { ...base, zLossCoef: 0.3, loadBalanceCoef: 0.5 }, routerScale: 10 },
  { name: 'top-1 groups and drops', T: 16, options: { ...base, groupSize: 8, capacityFactor: 0.5, minCapacity: 1, loadBalanceCoef: 0.5 }, routerScale: 20 },
  { name: 'top-2 all', T: 12, options: { ...base, topK: 2, loadBalanceCoef: 0.5 }, routerScale: 10 },
  { name: 'top-2 threshold', T: 12, options: { ...base, topK: 2, secondExpertPolicy: 'threshold', secondExpertThreshold: 0.3 }, routerScale: 30 },
  { name: 'gelu, jitter, dropout', T: 12, options: { ...base, activation: 'gelu', jitter: 0.2, expertDropout: 0.3, zLossCoef: 0.1 }, routerScale: 10 },
  { name: 'no token left behind', T: 16, options: { ...base, capacityFactor: 0.75, minCapacity: 1, noTokenLeftBehind: true }, routerScale: 20 },
  { name: 'bf16-wire top-1', T: 12, options: { ...base, precision: 'bf16-wire', zLossCoef: 0.1 }, routerScale: 10 },
  { name: 'bf16-wire top-2 gelu', T: 12, options: { ...base, topK: 2, precision: 'bf16-wire', activation: 'gelu' }, routerScale: 10 },
];

describe('SwitchFeedForward backward matches tfjs-core autograd', () => {
  for (const c of cases) {
    it(c.name, () => {
      const r = rng();
      const layer = new SwitchFeedForward({ ...c.options, seed: r.seed % 1000 });
      for (let i = 0; i < layer.params.router.length; i++) layer.params.router[i] *= c.routerScale;
      for (let i = 0; i < layer.params.wIn.length; i++) layer.params.wIn[i] *= 5;
      const { dModel: D, dFF: F, numExperts: E } = c.options;
      const k = c.options.topK ?? 1, T = c.T, G = c.options.groupSize ?? T;
      const x = randomArray(T * D, r), dy = randomArray(T * D, r);
      const out = layer.forward(x, { training: true });
      const { dx, grads } = layer.backward(dy);
      const wire = c.options.precision === 'bf16-wire';
      const rate = c.options.expertDropout ?? 0, eps = c.options.jitter ?? 0;
      // Call 1's random streams (switch_random.h): jitter 16 + 4, dropout 16 + 6.
      const u = new Float32Array(T * D);
      const jitterKey = randomKey(layer.seed, 20);
      for (let i = 0; i < u.length; i++)
        u[i] = Math.fround(Math.fround(1 - eps) + Math.fround(Math.fround(2 * eps) * randomUniform(jitterKey, i)));
      const dropKey = randomKey(layer.seed, 22);
      const lbCoef = c.options.loadBalanceCoef ?? 0.01, zCoef = c.options.zLossCoef ?? 0;

      const objective = (xt: tf.Tensor, wr: tf.Tensor, wIn: tf.Tensor, wOut: tf.Tensor) => {
        const logits = tf.matMul(eps > 0 ? tf.mul(xt, tf.tensor2d(u, [T, D])) : xt, wr);
        const p = tf.softmax(logits);
        const pick = (j: number) => tf.sum(tf.mul(p, tf.oneHot(tf.tensor1d(Int32Array.from({ length: T }, (_, t) => out.expertIndex[t * k + j]), 'int32'), E)), 1);
        let gates: tf.Tensor[];
        if (k === 1) gates = [pick(0)];
        else {
          const p1 = pick(0), p2 = pick(1), s = tf.add(tf.add(p1, p2), 1e-9);
          gates = [tf.div(p1, s), tf.div(p2, s)];
        }
        let y: tf.Tensor = tf.zeros([T, D]);
        for (let j = 0; j < k; j++) {
          const idx = tf.tensor1d(Int32Array.from({ length: T }, (_, t) => out.expertIndex[t * k + j]), 'int32');
          const xe = wire ? wireForward(wireBackward(xt)) : xt;
          const hPre = tf.matMul(tf.reshape(xe, [T, 1, D]), tf.gather(wIn, idx));
          let h = c.options.activation === 'gelu' ? gelu(hPre) : tf.relu(hPre);
          if (rate > 0) {
            const mask = Float32Array.from({ length: T * F }, (_, i) => {
              const t = Math.floor(i / F), f = i % F;
              return randomUniform(dropKey, (t * k + j) * F + f) >= rate ? 1 / (1 - rate) : 0;
            });
            h = tf.mul(h, tf.tensor3d(mask, [T, 1, F]));
          }
          let o = tf.reshape(tf.matMul(h, tf.gather(wOut, idx)), [T, D]);
          if (wire) o = wireBackward(wireForward(o));
          const kept = tf.tensor2d(Float32Array.from({ length: T }, (_, t) => out.kept[t * k + j]), [T, 1]);
          y = tf.add(y, tf.mul(tf.mul(kept, tf.reshape(gates[j], [T, 1])), o));
        }
        // Eq. 4-6 with f from the first choice (argmax) before drops and rerouting, a constant.
        const first = tf.argMax(p, 1);
        const f = tf.mean(tf.reshape(tf.oneHot(first, E), [T / G, G, E]), 1);
        const P = tf.mean(tf.reshape(p, [T / G, G, E]), 1);
        const lb = tf.mean(tf.mul(E, tf.sum(tf.mul(f, P), 1)));
        const z = tf.mean(tf.square(tf.logSumExp(logits, 1)));
        return tf.add(tf.sum(tf.mul(y, tf.tensor2d(dy, [T, D]))), tf.add(tf.mul(lbCoef, lb), tf.mul(zCoef, z))) as tf.Scalar;
      };
      const args = [tf.tensor2d(x, [T, D]), tf.tensor2d(layer.params.router, [D, E]), tf.tensor3d(layer.params.wIn, [E, D, F]),
        tf.tensor3d(layer.params.wOut, [E, F, D])];
      const { value, grads: tg } = tf.valueAndGrads(objective)(args);
      let dotY = 0;
      for (let i = 0; i < out.y.length; i++) dotY += out.y[i] * dy[i];
      expect(value.dataSync()[0]).toBeCloseTo(dotY + out.auxLoss, 4);
      const names = ['dx', 'router', 'wIn', 'wOut'];
      const mine = [dx, grads.router, grads.wIn, grads.wOut];
      for (let i = 0; i < 4; i++) {
        const theirs = tg[i].dataSync() as Float32Array;
        if (!wire) {
          expectClose(mine[i], theirs, 1e-4, 1e-7, `${c.name} ${names[i]} (seed ${r.seed})`);
        } else {
          // A float32 difference may tip a bf16 rounding either way: rare elements may differ by
          // one bf16 step, nearly all must agree to float32 accuracy. Each element of the router's
          // gradient sums over every token, so one tipped rounding anywhere moves all of them by
          // about one bf16 step of that token's share: they must agree to that (1e-3 of the scale).
          expectClose(mine[i], theirs, 2e-2, 1e-6, `${c.name} ${names[i]} (seed ${r.seed})`);
          let scale = 0;
          for (const v of theirs) scale = Math.max(scale, Math.abs(v));
          const tolerance = (names[i] === 'router' ? 1e-3 : 1e-5) * scale + 1e-8;
          let close = 0;
          for (let q = 0; q < theirs.length; q++) if (Math.abs(mine[i][q] - theirs[q]) <= tolerance) close++;
          expect(close / theirs.length, `${c.name} ${names[i]} (seed ${r.seed}): share matching to float32`).toBeGreaterThan(0.95);
        }
      }
      tf.dispose([...args, ...tg, value]);
    });
  }
});
