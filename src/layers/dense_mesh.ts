// The dense feed-forward layer on a device mesh (SPEC §3): strategies 'model' and 'model+data'
// split d_ff over the `model` axis (W_in by columns, W_out by rows); each device computes a partial
// y = act(x · W_in[:, slice]) · W_out[slice, :] and an all-reduce along `model` sums them, and in
// backward the same for dx. The devices of a model group see the same tokens; with 'model+data'
// each model group (a coordinate on `data`) has its own. Strategy 'data' keeps whole, replicated
// weights and needs no communication in the layer (the trainer all-reduces the gradients).
// T = tokens, D = d_model, F = d_ff, m = devices along `model`, Fm = F/m hidden units of this device.
import { codedError, rangeError } from '../errors.js';
import type { Device, Wire } from '../mesh/device.js';
import { oneOf } from './options.js';
import { meshAxes } from './switch_mesh.js';
import { DenseLayerBase } from './layer_base.js';
import type { DenseFeedForwardOptions } from './dense.js';
import { STREAM, truncatedNormal } from './switch_steps.js';

export type DenseMeshStrategy = 'data' | 'model' | 'model+data';

/** The options of DenseFeedForward with the mesh required. */
export type MeshDenseOptions = DenseFeedForwardOptions & { mesh: Device };

export class MeshDenseFeedForward extends DenseLayerBase {
  readonly mesh: Device;
  readonly strategy: DenseMeshStrategy;
  /** Devices d_ff is split over (1 for 'data'). */
  readonly modelSize: number;
  /** This device's hidden units: firstHidden … firstHidden + localFF − 1. */
  readonly firstHidden: number;
  readonly localFF: number;
  /** wIn (D, Fm), wOut (Fm, D): this device's slices. */
  readonly params: { wIn: Float32Array; wOut: Float32Array };

  private readonly wire: Wire;
  /** full: the single-device layer's weights for this seed (drawn again when not given). */
  constructor(options: MeshDenseOptions, full?: { wIn: Float32Array; wOut: Float32Array }) {
    const { device, n, m } = meshAxes(options.mesh, 'DenseFeedForward');
    super(options);
    this.mesh = device;
    const hasModel = 'model' in device.axes;
    const fallback: DenseMeshStrategy = hasModel ? (n > 1 ? 'model+data' : 'model') : 'data';
    this.strategy = oneOf('strategy', options.strategy, fallback, ['data', 'model', 'model+data'] as const);
    if (this.strategy !== 'data' && !hasModel)
      throw rangeError('ERR_SWITCH_OPTION', `DenseFeedForward: strategy '${this.strategy}' needs a mesh with a 'model' axis`);
    if (this.strategy === 'model' && n > 1)
      throw rangeError('ERR_SWITCH_OPTION',
        `DenseFeedForward: strategy 'model' splits d_ff over the whole mesh, but the mesh also has a 'data' axis of ${n}: use 'model+data'`);
    this.wire = device.wire;
    this.modelSize = this.strategy === 'data' ? 1 : m;
    const { dModel: D, dFF: F, initScale } = this;
    if (F % this.modelSize !== 0)
      throw rangeError('ERR_SWITCH_OPTION',
        `DenseFeedForward: option 'dFF' (${F}) must be a multiple of the mesh's 'model' axis (${this.modelSize} devices)`);
    if (this.modelSize > 1 && this.dropout > 0)
      throw codedError('ERR_SWITCH_UNSUPPORTED',
        "DenseFeedForward: option 'dropout' is not supported with d_ff split over 'model' (the mask is keyed by the unsplit hidden unit)");
    const Fm = F / this.modelSize;
    this.localFF = Fm;
    this.firstHidden = this.modelSize > 1 ? (device.coords.model ?? 0) * Fm : 0;
    const wIn = full?.wIn ?? truncatedNormal(D * F, D, initScale, this.seed, STREAM.wIn);
    const wOut = full?.wOut ?? truncatedNormal(F * D, F, initScale, this.seed, STREAM.wOut);
    const wInLocal = new Float32Array(D * Fm);
    for (let d = 0; d < D; d++) wInLocal.set(wIn.subarray(d * F + this.firstHidden, d * F + this.firstHidden + Fm), d * Fm);
    this.params = { wIn: wInLocal, wOut: wOut.slice(this.firstHidden * D, (this.firstHidden + Fm) * D) };
  }

  evaluate(x: Float32Array) {
    return this.forward(x, { training: false });
  }

  forward(x: Float32Array, options: { training?: boolean; retainForBackward?: boolean } = {}) {
    const y = this.localForward(x, options, this.localFF, this.params);
    if (this.modelSize > 1) this.mesh.allReduce(y, y, { axis: 'model', wire: this.wire });
    return { y, auxLoss: 0, loadBalanceLoss: 0, zLoss: 0 };
  }

  backward(dy: Float32Array) {
    const out = this.localBackward(dy, this.params);
    if (this.modelSize > 1) this.mesh.allReduce(out.dx, out.dx, { axis: 'model', wire: this.wire });
    return out;
  }
}
