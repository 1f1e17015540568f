// The dense feed-forward layer (T5 FFN, no biases): y = act(x · W_in) · W_out. The baseline of the
// paper's comparisons and the even-block layer of the model; on the native core it is the
// experts' kernel with one expert that takes every token.
// T = tokens, D = d_model, F = d_ff.
import { STREAM, truncatedNormal, type Activation } from './switch_steps.js';
import type { FeedForwardBackward, FeedForwardLayer, FeedForwardOutput, ForwardOptions } from './types.js';
import type { Device } from '../mesh/device.js';
import { MeshDenseFeedForward, type DenseMeshStrategy, type MeshDenseOptions } from './dense_mesh.js';
import { DenseLayerBase } from './layer_base.js';

export interface DenseFeedForwardOptions {
  dModel: number;
  dFF: number;
  activation?: Activation;
  /** Dropout rate on the hidden activation in training (default 0). */
  dropout?: number;
  seed?: number;
  /** s of the truncated-normal initialisation σ = sqrt(s / fan_in) (default 0.1). */
  initScale?: number;
  /** Reuse the arrays of dx and grads from one backward to the next (default false; see SwitchFeedForward). */
  reuseGradients?: boolean;
  /** Model parallelism on this mesh device (dense_mesh.ts): params then hold this device's d_ff slice. */
  mesh?: Device;
  /**
   * With mesh: 'model', 'model+data' (d_ff split over the 'model' axis) or 'data' (replicated).
   * Default: 'model+data' on a mesh with both axes, 'model' with a `model` axis alone, else 'data'.
   */
  strategy?: DenseMeshStrategy;
}

export interface DenseGrads extends Record<string, Float32Array> {
  wIn: Float32Array;
  wOut: Float32Array;
}

export class DenseFeedForward extends DenseLayerBase implements FeedForwardLayer {
  /** wIn (D, F), wOut (F, D): writable, read on every call; views into 64-byte aligned memory (.buffer slightly larger). */
  readonly params: { wIn: Float32Array; wOut: Float32Array };

  constructor(options: DenseFeedForwardOptions) {
    super(options);
    const { dModel: D, dFF: F, initScale } = this;
    this.params = {
      wIn: truncatedNormal(D * F, D, initScale, this.seed, STREAM.wIn),
      wOut: truncatedNormal(F * D, F, initScale, this.seed, STREAM.wOut),
    };
    // On a mesh: the model-parallel layer, initialised with this device's slices of these weights.
    if (options.mesh !== undefined)
      return new MeshDenseFeedForward(options as MeshDenseOptions, this.params) as unknown as DenseFeedForward;
  }

  evaluate(x: Float32Array): FeedForwardOutput {
    return this.forward(x, { training: false });
  }

  /** options.retainForBackward (default: training) keeps the backward state after an evaluation forward too. */
  forward(x: Float32Array, options: ForwardOptions & { retainForBackward?: boolean } = {}): FeedForwardOutput {
    return { y: this.localForward(x, options, this.dFF, this.params), auxLoss: 0, loadBalanceLoss: 0, zLoss: 0 };
  }

  backward(dy: Float32Array): FeedForwardBackward & { grads: DenseGrads } {
    return this.localBackward(dy, this.params);
  }
}

// The mesh layer answers `instanceof DenseFeedForward` (it defines every method itself).
Object.setPrototypeOf(MeshDenseFeedForward.prototype, DenseFeedForward.prototype);
