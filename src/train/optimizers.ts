// Optimizers over the model's named parameters: AdamW (decoupled weight decay) and Adafactor
// (Shazeer & Stern 2018, the optimizer the Switch Transformer paper trains with): factored second
// moments for matrices, update clipping, relative step scaled by the parameter's RMS.
// Updates are applied in place to each Parameter's data from its grad, by native kernels
// (native/kernels/adamw.cc, adafactor.cc).
import { rangeError } from '../errors.js';
import { native } from '../native.js';

/** What an optimizer needs of a parameter (the model's Parameter satisfies it). */
export interface OptimizerParameter {
  name: string;
  shape: number[];
  data: Float32Array;
  grad: Float32Array;
  /** Multiplies the learning rate (and with it the decoupled weight decay) for this parameter; default 1. */
  lrScale?: number;
}

/** Everything an optimizer needs to continue bit-identically. */
export interface OptimizerState {
  name: string;
  step: number;
  options: Record<string, unknown>;
  /** Named state arrays ("<param>.m", "<param>.v", "<param>.row", ...). */
  tensors: Record<string, Float32Array>;
}

export interface Optimizer {
  readonly name: 'adamw' | 'adafactor';
  /** Steps taken so far. */
  readonly stepCount: number;
  /** One update of every parameter with learning rate lr. */
  step(params: readonly OptimizerParameter[], lr: number): void;
  /**
   * The same update when some parameters are slices of a tensor split over devices (expert
   * parallelism): `sharded` names them, and `allReduce` sums a buffer over the devices (a fixed
   * order, so every device gets the same numbers). Only optimizers whose update of an element looks
   * beyond that element need it (Adafactor's RMS terms); AdamW has none.
   */
  shardedStep?(params: readonly OptimizerParameter[], lr: number, sharded: ShardedReduction): Promise<void>;
  state(): OptimizerState;
  loadState(state: OptimizerState): void;
}

/** How sliced parameters (see Optimizer.shardedStep) see their whole tensors. */
export interface ShardedReduction {
  /** Names of the parameters each device holds a slice of (equal slices). */
  names: ReadonlySet<string>;
  /** Devices the tensors are split over. */
  devices: number;
  /** Element-wise sum over the devices. */
  allReduce(buffer: Float32Array): Float32Array | Promise<Float32Array>;
}

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay (PyTorch's AdamW default 0.01), applied to every parameter. */
  weightDecay?: number;
}

function checkLr(lr: number): void {
  if (!(lr >= 0) || !Number.isFinite(lr)) throw rangeError('ERR_SWITCH_OPTION', `learning rate must be a finite number >= 0, got ${lr}`);
}

/** A parameter's learning rate: lr · lrScale (lr itself when it has no scale, so no rounding is added). */
function scaledLr(lr: number, p: OptimizerParameter): number {
  return p.lrScale === undefined || p.lrScale === 1 ? lr : lr * p.lrScale;
}

export class AdamW implements Optimizer {
  readonly name = 'adamw' as const;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private t = 0;
  private m = new Map<string, Float32Array>();
  private v = new Map<string, Float32Array>();

  constructor(options: AdamWOptions = {}) {
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0.01;
    for (const [k, v] of Object.entries({ beta1: this.beta1, beta2: this.beta2 }))
      if (!(v >= 0 && v < 1)) throw rangeError('ERR_SWITCH_OPTION', `AdamW option '${k}' must be in [0, 1), got ${v}`);
    if (!(this.eps > 0)) throw rangeError('ERR_SWITCH_OPTION', `AdamW option 'eps' must be > 0, got ${this.eps}`);
    if (!(this.weightDecay >= 0)) throw rangeError('ERR_SWITCH_OPTION', `AdamW option 'weightDecay' must be >= 0`);
  }

  get stepCount(): number {
    return this.t;
  }

  step(params: readonly OptimizerParameter[], lr: number): void {
    checkLr(lr);
    this.t++;
    const bc1 = 1 - Math.pow(this.beta1, this.t), bc2 = 1 - Math.pow(this.beta2, this.t);
    for (const p of params) {
      let m = this.m.get(p.name), v = this.v.get(p.name);
      if (!m || !v) {
        m = new Float32Array(p.data.length);
        v = new Float32Array(p.data.length);
        this.m.set(p.name, m);
        this.v.set(p.name, v);
      }
      // native/kernels/adamw.cc: w ← w·(1 − lr·λ) − lr/(1−β1^t) · m / (sqrt(v)/sqrt(1−β2^t) + ε)
      native.adamwUpdate(p.data, m, v, p.grad, scaledLr(lr, p), this.beta1, this.beta2, this.eps, this.weightDecay, bc1, bc2);
    }
  }

  state(): OptimizerState {
    const tensors: Record<string, Float32Array> = {};
    for (const [name, m] of this.m) tensors[`${name}.m`] = m;
    for (const [name, v] of this.v) tensors[`${name}.v`] = v;
    return { name: this.name, step: this.t, options: { beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: this.weightDecay }, tensors };
  }

  loadState(state: OptimizerState): void {
    if (state.name !== this.name) throw rangeError('ERR_CHECKPOINT', `optimizer state is for '${state.name}', not adamw`);
    this.t = state.step;
    this.m.clear();
    this.v.clear();
    for (const [key, value] of Object.entries(state.tensors)) {
      const name = key.slice(0, key.lastIndexOf('.'));
      (key.endsWith('.m') ? this.m : this.v).set(name, Float32Array.from(value));
    }
  }
}

export interface AdafactorOptions {
  /** Momentum; 0 (the paper's choice) keeps no first moment. */
  beta1?: number;
  /** β2 at step t is 1 − t^(−decayRate). */
  decayRate?: number;
  /** Update clipping threshold d: u ← u / max(1, RMS(u) / d). */
  clipThreshold?: number;
  /** Added to g² (ε1). */
  eps1?: number;
  /** Floor of the parameter scale (ε2). */
  eps2?: number;
  /** Scale the step by max(ε2, RMS(parameter)) (relative step size). */
  multiplyByParameterScale?: boolean;
  /** Decoupled weight decay. */
  weightDecay?: number;
  /** Factor second moments of parameters with at least 2 dimensions (over the last two). */
  factored?: boolean;
}

export class Adafactor implements Optimizer {
  readonly name = 'adafactor' as const;
  readonly options: Required<AdafactorOptions>;
  private t = 0;
  private tensors = new Map<string, Float32Array>();

  constructor(options: AdafactorOptions = {}) {
    this.options = {
      beta1: 0, decayRate: 0.8, clipThreshold: 1, eps1: 1e-30, eps2: 1e-3, multiplyByParameterScale: true,
      weightDecay: 0, factored: true, ...options,
    };
    const o = this.options;
    if (!(o.beta1 >= 0 && o.beta1 < 1)) throw rangeError('ERR_SWITCH_OPTION', `Adafactor option 'beta1' must be in [0, 1)`);
    if (!(o.decayRate > 0 && o.decayRate <= 1)) throw rangeError('ERR_SWITCH_OPTION', `Adafactor option 'decayRate' must be in (0, 1]`);
    if (!(o.clipThreshold > 0)) throw rangeError('ERR_SWITCH_OPTION', `Adafactor option 'clipThreshold' must be > 0`);
  }

  get stepCount(): number {
    return this.t;
  }

  private buffer(key: string, n: number): Float32Array {
    let b = this.tensors.get(key);
    if (!b) {
      b = new Float32Array(n);
      this.tensors.set(key, b);
    }
    return b;
  }

  step(params: readonly OptimizerParameter[], lr: number): void {
    checkLr(lr);
    this.t++;
    for (const p of params) {
      const update = this.scaledUpdate(p);
      this.apply(p, lr, update.sumSquaresU / p.data.length, update.sumSquaresW / p.data.length);
    }
  }

  /**
   * Expert parallelism: the factored statistics are per expert matrix (local to the device that
   * holds it), but the update clipping RMS(u) and the parameter scale RMS(w) span the whole tensor,
   * so the sliced parameters' sums of squares are all-reduced (one call for all of them) first.
   */
  async shardedStep(params: readonly OptimizerParameter[], lr: number, sharded: ShardedReduction): Promise<void> {
    checkLr(lr);
    this.t++;
    const updates = params.map((p) => this.scaledUpdate(p));
    const slices = params.flatMap((p, i) => (sharded.names.has(p.name) ? [i] : []));
    const local = new Float32Array(2 * slices.length);
    slices.forEach((i, j) => { local[2 * j] = updates[i].sumSquaresU; local[2 * j + 1] = updates[i].sumSquaresW; });
    const total = slices.length > 0 ? await sharded.allReduce(local) : local;
    const whole = new Map(slices.map((i, j) => [i, [total[2 * j], total[2 * j + 1]]]));
    params.forEach((p, i) => {
      const sums = whole.get(i);
      const n = sums ? p.data.length * sharded.devices : p.data.length;
      this.apply(p, lr, (sums ? sums[0] : updates[i].sumSquaresU) / n, (sums ? sums[1] : updates[i].sumSquaresW) / n);
    });
  }

  /** The factored shape (matrices, rows, columns) of a parameter, or null for a vector statistic. */
  private factoredShape(p: OptimizerParameter): [number, number, number] | null {
    const dims = p.shape;
    if (!this.options.factored || dims.length < 2) return null;
    const cols = dims[dims.length - 1], rows = dims[dims.length - 2];
    return [p.data.length / (rows * cols), rows, cols];
  }

  /**
   * First pass (native/kernels/adafactor.cc): the second-moment statistics from the gradient, and
   * the sums of squares of u = g / sqrt(v̂) and of the parameter.
   */
  private scaledUpdate(p: OptimizerParameter): { sumSquaresU: number; sumSquaresW: number } {
    const o = this.options;
    const beta2 = 1 - Math.pow(this.t, -o.decayRate);
    const n = p.data.length;
    const f = this.factoredShape(p);
    // Factored: row and column means of g² + ε1 per matrix (the last two dimensions); v̂_rc = R_r C_c / mean(R).
    const sumSquaresU: number = f
      ? native.adafactorFactoredStatistics(this.buffer(`${p.name}.row`, f[0] * f[1]), this.buffer(`${p.name}.col`, f[0] * f[2]),
        p.grad, f[0], f[1], f[2], beta2, o.eps1)
      : native.adafactorVectorStatistics(this.buffer(`${p.name}.v`, n), p.grad, beta2, o.eps1);
    const sumSquaresW: number = o.multiplyByParameterScale ? native.sumSquares(p.data) : 0;
    return { sumSquaresU, sumSquaresW };
  }

  /** Second pass: update clipping by RMS(u), the step scaled by RMS(w), weight decay, optional momentum. */
  private apply(p: OptimizerParameter, baseLr: number, meanSquareU: number, meanSquareW: number): void {
    const o = this.options;
    const lr = scaledLr(baseLr, p);
    const n = p.data.length;
    const clip = Math.max(1, Math.sqrt(meanSquareU) / o.clipThreshold);
    let scale = lr / clip;
    if (o.multiplyByParameterScale) scale *= Math.max(o.eps2, Math.sqrt(meanSquareW));
    const decay = 1 - lr * o.weightDecay;
    const m = o.beta1 > 0 ? this.buffer(`${p.name}.m`, n) : null;
    const f = this.factoredShape(p);
    if (f)
      native.adafactorFactoredUpdate(p.data, m, p.grad, this.tensors.get(`${p.name}.row`)!, this.tensors.get(`${p.name}.col`)!,
        f[0], f[1], f[2], scale, decay, o.beta1);
    else native.adafactorVectorUpdate(p.data, m, p.grad, this.tensors.get(`${p.name}.v`)!, scale, decay, o.beta1);
  }

  state(): OptimizerState {
    return { name: this.name, step: this.t, options: { ...this.options }, tensors: Object.fromEntries(this.tensors) };
  }

  loadState(state: OptimizerState): void {
    if (state.name !== this.name) throw rangeError('ERR_CHECKPOINT', `optimizer state is for '${state.name}', not adafactor`);
    this.t = state.step;
    this.tensors = new Map(Object.entries(state.tensors).map(([k, v]) => [k, Float32Array.from(v)]));
  }
}

export type OptimizerName = 'adamw' | 'adafactor';

export function createOptimizer(name: OptimizerName, options: AdamWOptions & AdafactorOptions = {}): Optimizer {
  if (name === 'adamw') {
    const { beta1, beta2, eps, weightDecay } = options;
    return new AdamW({ beta1, beta2, eps, weightDecay });
  }
  if (name === 'adafactor') {
    const { beta2: _b2, eps: _e, ...rest } = options;
    return new Adafactor(rest);
  }
  throw rangeError('ERR_SWITCH_OPTION', `optimizer must be 'adamw' or 'adafactor', got '${String(name)}'`);
}
