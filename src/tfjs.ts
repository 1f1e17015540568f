// switch-transformer/tfjs: the Switch and dense feed-forward layers as tfjs-core ops with custom
// gradients, for models built in TensorFlow.js. Tensors in, tensors out; tf.grad and optimizers
// work through them. The native kernels do the work on the tensors' float32 data.
// T = tokens, D = d_model, F = d_ff, E = experts.
import * as tf from '@tensorflow/tfjs-core';
import { SwitchFeedForward } from './layers/switch.js';
import { DenseFeedForward } from './layers/dense.js';
import { typeError } from './errors.js';

export { SwitchFeedForward, DenseFeedForward };

export interface SwitchOpOutput {
  /** (T, D) */
  y: tf.Tensor2D;
  /** loadBalanceCoef · lb + zLossCoef · z: add it to the loss. */
  auxLoss: tf.Scalar;
}

function data(t: tf.Tensor, name: string): Float32Array {
  if (t.dtype !== 'float32') throw typeError('ERR_SWITCH_ARG_TYPE', `tensor '${name}' must be float32, got ${t.dtype}`);
  return t.dataSync() as Float32Array;
}

/** The layer's parameters as tf.Variables (router (D, E), wIn (E, D, F), wOut (E, F, D)). */
export function switchVariables(layer: SwitchFeedForward): { router: tf.Variable; wIn: tf.Variable; wOut: tf.Variable } {
  const { dModel: D, dFF: F, numExperts: E } = layer;
  return {
    router: tf.variable(tf.tensor2d(layer.params.router, [D, E])),
    wIn: tf.variable(tf.tensor3d(layer.params.wIn, [E, D, F])),
    wOut: tf.variable(tf.tensor3d(layer.params.wOut, [E, F, D])),
  };
}

/**
 * The Switch layer as a tfjs op: y, auxLoss = op(x, router, wIn, wOut). The parameter tensors are
 * copied into the layer's params on each call; the gradient flows to all four inputs (routing is a
 * constant, the gates are differentiable through the softmax, as SPEC §1.11).
 */
export function switchFeedForward(layer: SwitchFeedForward, x: tf.Tensor, router: tf.Tensor, wIn: tf.Tensor,
  wOut: tf.Tensor, options: { training?: boolean } = {}): SwitchOpOutput {
  const { dModel: D } = layer;
  if (x.rank !== 2 || x.shape[1] !== D)
    throw Object.assign(new RangeError(`tensor 'x' must have shape (T, ${D}), got (${x.shape.join(', ')})`), { code: 'ERR_SWITCH_SHAPE' });
  const T = x.shape[0];
  // customGrad has one output: y and the aux loss travel packed in one (T·D + 1) vector.
  const op = tf.customGrad(((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xt, rt, wit, wot] = args as tf.Tensor[];
    const save = args[4] as tf.GradSaveFunc;
    layer.params.router.set(data(rt, 'router'));
    layer.params.wIn.set(data(wit, 'wIn'));
    layer.params.wOut.set(data(wot, 'wOut'));
    const out = layer.forward(data(xt, 'x'), { training: options.training ?? false, retainForBackward: true });
    save([]);
    const packed = new Float32Array(T * D + 1);
    packed.set(out.y);
    packed[T * D] = out.auxLoss;
    return {
      value: tf.tensor1d(packed),
      gradFunc: (dPacked: tf.Tensor | tf.Tensor[]) => {
        const g = (Array.isArray(dPacked) ? dPacked[0] : dPacked).dataSync() as Float32Array;
        const { dx, grads } = layer.backwardScaled(g.slice(0, T * D), g[T * D]);
        return [tf.tensor(dx, xt.shape), tf.tensor(grads.router, rt.shape), tf.tensor(grads.wIn, wit.shape),
          tf.tensor(grads.wOut, wot.shape)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  const packed = op(x, router, wIn, wOut);
  const y = tf.reshape(tf.slice(packed, [0], [T * D]), [T, D]) as tf.Tensor2D;
  const auxLoss = tf.reshape(tf.slice(packed, [T * D], [1]), []) as tf.Scalar;
  packed.dispose();
  return { y, auxLoss };
}

/** The dense layer's parameters as tf.Variables (wIn (D, F), wOut (F, D)). */
export function denseVariables(layer: DenseFeedForward): { wIn: tf.Variable; wOut: tf.Variable } {
  return {
    wIn: tf.variable(tf.tensor2d(layer.params.wIn, [layer.dModel, layer.dFF])),
    wOut: tf.variable(tf.tensor2d(layer.params.wOut, [layer.dFF, layer.dModel])),
  };
}

/** The dense layer as a tfjs op: y = op(x, wIn, wOut). */
export function denseFeedForward(layer: DenseFeedForward, x: tf.Tensor, wIn: tf.Tensor, wOut: tf.Tensor,
  options: { training?: boolean } = {}): tf.Tensor2D {
  const { dModel: D } = layer;
  if (x.rank !== 2 || x.shape[1] !== D)
    throw Object.assign(new RangeError(`tensor 'x' must have shape (T, ${D}), got (${x.shape.join(', ')})`), { code: 'ERR_SWITCH_SHAPE' });
  const T = x.shape[0];
  const op = tf.customGrad(((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xt, wit, wot] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    layer.params.wIn.set(data(wit, 'wIn'));
    layer.params.wOut.set(data(wot, 'wOut'));
    const out = layer.forward(data(xt, 'x'), { training: options.training ?? false, retainForBackward: true });
    save([]);
    return {
      value: tf.tensor2d(out.y, [T, D]),
      gradFunc: (dy: tf.Tensor | tf.Tensor[]) => {
        const g = Array.isArray(dy) ? dy[0] : dy;
        const { dx, grads } = layer.backward(Float32Array.from(g.dataSync()));
        return [tf.tensor(dx, xt.shape), tf.tensor(grads.wIn, wit.shape), tf.tensor(grads.wOut, wot.shape)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(x, wIn, wOut) as tf.Tensor2D;
}
