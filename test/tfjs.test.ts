// The switch-transformer/tfjs entry: the layers as tfjs ops whose gradients tf.grad sees.
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import '@tensorflow/tfjs-backend-cpu';
import { SwitchFeedForward, DenseFeedForward, switchFeedForward, switchVariables, denseFeedForward, denseVariables } from 'switch-transformer/tfjs';
import { expectClose, randomArray, rng } from './switch_helpers.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const options = { dModel: 6, dFF: 8, numExperts: 4, topK: 2 as const, zLossCoef: 0.2, loadBalanceCoef: 0.3, seed: 5 };

describe('switchFeedForward (tfjs op)', () => {
  for (const auxWeight of [1, 3, 0])
    it(`tf.grads matches the layer's backward (aux weight ${auxWeight})`, () => {
      const r = rng();
      const T = 12;
      const x = randomArray(T * options.dModel, r), dy = randomArray(T * options.dModel, r);
      const layer = new SwitchFeedForward(options);
      for (let i = 0; i < layer.params.router.length; i++) layer.params.router[i] *= 10;
      const twin = new SwitchFeedForward(options);
      twin.params.router.set(layer.params.router);
      const v = switchVariables(layer);
      const loss = (xt: tf.Tensor, rt: tf.Tensor, wi: tf.Tensor, wo: tf.Tensor) => {
        const { y, auxLoss } = switchFeedForward(layer, xt, rt, wi, wo, { training: true });
        const main = tf.sum(tf.mul(y, tf.tensor2d(dy, [T, options.dModel])));
        return (auxWeight === 0 ? main : tf.add(main, tf.mul(auxWeight, auxLoss))) as tf.Scalar;
      };
      const { value, grads } = tf.valueAndGrads(loss)([tf.tensor2d(x, [T, options.dModel]), v.router, v.wIn, v.wOut]);
      const out = twin.forward(x, { training: true });
      const back = twin.backwardScaled(dy, auxWeight);
      let expected = auxWeight * out.auxLoss;
      for (let i = 0; i < out.y.length; i++) expected += out.y[i] * dy[i];
      expect(value.dataSync()[0]).toBeCloseTo(expected, 4);
      expectClose(grads[0].dataSync(), back.dx, 1e-6, 0, 'dx');
      expectClose(grads[1].dataSync(), back.grads.router, 1e-6, 0, 'router');
      expectClose(grads[2].dataSync(), back.grads.wIn, 1e-6, 0, 'wIn');
      expectClose(grads[3].dataSync(), back.grads.wOut, 1e-6, 0, 'wOut');
      if (auxWeight !== 1) {
        // The aux weight reaches the router gradient: it differs from the weight-1 gradient.
        const one = twin.backwardScaled(dy, 1);
        expect(Array.from(one.grads.router)).not.toEqual(Array.from(grads[1].dataSync()));
      }
      tf.dispose([value, ...grads, v.router, v.wIn, v.wOut]);
    });

  it('trains with a tfjs optimizer', () => {
    // The target is of the inputs' scale, so the squared error (not the load-balancing loss, whose
    // floor is its coefficient) is most of the loss. Adam with 0.05 for 30 steps brings it to at most
    // 0.65 of its start over seeds 1..300; an SGD step on a 0.1-scale init barely moves it.
    const r = rng();
    const T = 16;
    const layer = new SwitchFeedForward({ dModel: 4, dFF: 8, numExperts: 2, seed: r.seed });
    const v = switchVariables(layer);
    const router0 = v.router.dataSync().slice();
    const x = tf.tensor2d(randomArray(T * 4, r), [T, 4]);
    const target = tf.tensor2d(randomArray(T * 4, r), [T, 4]);
    const opt = tf.train.adam(0.05);
    const step = () => opt.minimize(() => {
      const { y, auxLoss } = switchFeedForward(layer, x, v.router, v.wIn, v.wOut, { training: true });
      return tf.add(tf.mean(tf.square(tf.sub(y, target))), auxLoss) as tf.Scalar;
    }, true)!.dataSync()[0];
    const first = step();
    let last = first;
    for (let i = 0; i < 30; i++) last = step();
    expect(last, `seed ${r.seed}`).toBeLessThan(0.8 * first);
    expect(Array.from(v.router.dataSync()), 'the router is trained too').not.toEqual(Array.from(router0));
    tf.dispose([x, target, v.router, v.wIn, v.wOut]);
  });

  it('rejects a tensor of the wrong shape or dtype', () => {
    const layer = new SwitchFeedForward({ dModel: 4, dFF: 4, numExperts: 2 });
    const v = switchVariables(layer);
    expect(() => switchFeedForward(layer, tf.zeros([3, 5]), v.router, v.wIn, v.wOut)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_SHAPE' }));
    expect(() => switchFeedForward(layer, tf.zeros([3, 4], 'int32'), v.router, v.wIn, v.wOut)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_ARG_TYPE' }));
  });
});

describe('denseFeedForward (tfjs op)', () => {
  it('tf.grads matches the layer and a tfjs-built dense layer', () => {
    const r = rng();
    const T = 5, D = 3, F = 7;
    const layer = new DenseFeedForward({ dModel: D, dFF: F, activation: 'gelu' });
    const v = denseVariables(layer);
    const x = tf.tensor2d(randomArray(T * D, r), [T, D]);
    const dy = tf.tensor2d(randomArray(T * D, r), [T, D]);
    const mine = tf.grads((xt: tf.Tensor, wi: tf.Tensor, wo: tf.Tensor) =>
      tf.sum(tf.mul(denseFeedForward(layer, xt, wi, wo, { training: true }), dy)) as tf.Scalar)([x, v.wIn, v.wOut]);
    const gelu = (h: tf.Tensor) => tf.mul(tf.mul(0.5, h),
      tf.add(1, tf.tanh(tf.mul(Math.sqrt(2 / Math.PI), tf.add(h, tf.mul(0.044715, tf.pow(h, 3)))))));
    const theirs = tf.grads((xt: tf.Tensor, wi: tf.Tensor, wo: tf.Tensor) =>
      tf.sum(tf.mul(tf.matMul(gelu(tf.matMul(xt as tf.Tensor2D, wi as tf.Tensor2D)), wo as tf.Tensor2D), dy)) as tf.Scalar)([x, v.wIn, v.wOut]);
    for (let i = 0; i < 3; i++) expectClose(mine[i].dataSync(), theirs[i].dataSync(), 1e-5, 1e-8, `dense grad ${i}`);
  });
});
