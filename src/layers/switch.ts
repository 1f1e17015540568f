// The Switch feed-forward layer (SPEC §1; paper §2.1-2.4) on one device: the public contract.
// T = tokens, D = d_model, F = d_ff, E = experts, k = choices per token, G = group size, C = capacity.
import { codedError } from '../errors.js';
import { checkParam, checkTokens, optionError } from './options.js';
import {
  combine, combineBackward, dispatchBackward, expertsBackward, expertsForward, planDispatch, route,
  routerBackward, STREAM, truncatedNormal, wireRound, Workspace,
  type Activation, type DispatchPlan, type ExpertActivations, type ExpertConfig, type Routing, type SecondExpertPolicy,
} from './switch_steps.js';
import type { FeedForwardBackward, FeedForwardLayer, FeedForwardOutput, ForwardOptions, RoutingStats } from './types.js';
import type { Device } from '../mesh/device.js';
import { MeshSwitchFeedForward, type MeshSwitchOptions } from './switch_mesh.js';
import { routingStats, shapeError, SwitchLayerBase, type Precision } from './layer_base.js';

export type { Activation, SecondExpertPolicy } from './switch_steps.js';
export type { Precision } from './layer_base.js';

export interface SwitchFeedForwardOptions {
  dModel: number;
  dFF: number;
  numExperts: number;
  /** 1: Switch routing (default); 2: the top-2 MoE baseline. */
  topK?: 1 | 2;
  /** Training capacity factor (default 1.25). */
  capacityFactor?: number;
  /** Evaluation capacity factor (default 2.0). */
  evalCapacityFactor?: number;
  /** Smallest capacity (default 4). */
  minCapacity?: number;
  /** Tokens per routing group (default: the whole call). */
  groupSize?: number;
  activation?: Activation;
  /** α of the load-balancing loss (default 0.01). */
  loadBalanceCoef?: number;
  /** Coefficient of the router z-loss (default 0). */
  zLossCoef?: number;
  /** ε of the multiplicative router jitter in training (default 0). */
  jitter?: number;
  /** Dropout rate on the experts' hidden activation in training (default 0). */
  expertDropout?: number;
  /** Top-2 only: what happens to the second choice (default 'all'). */
  secondExpertPolicy?: SecondExpertPolicy;
  /** θ of the 'threshold' and 'random' policies (default 0.2). */
  secondExpertThreshold?: number;
  precision?: Precision;
  /** Seeds the initialisation, the jitter, the random policy and the dropout masks (default 0). */
  seed?: number;
  /** s of the truncated-normal initialisation σ = sqrt(s / fan_in) (default 0.1). */
  initScale?: number;
  /** Top-1 only: dropped tokens try their 2nd-4th best experts (Appendix B; default false). */
  noTokenLeftBehind?: boolean;
  /**
   * Reuse the arrays of dx and grads from one backward to the next instead of allocating fresh
   * ones (default false). Faster with many experts (no fresh E·D·F buffers per step); the arrays
   * a backward returns are then only valid until the next backward.
   */
  reuseGradients?: boolean;
  /** Expert parallelism on this mesh device (switch_mesh.ts): params then hold this device's experts. */
  mesh?: Device;
}

export interface SwitchFeedForwardOutput extends FeedForwardOutput {
  expertIndex: Int32Array;
  gate: Float32Array;
  kept: Uint8Array;
  stats: RoutingStats;
}

export interface SwitchGrads extends Record<string, Float32Array> {
  router: Float32Array;
  wIn: Float32Array;
  wOut: Float32Array;
}

export interface SwitchFeedForwardBackward extends FeedForwardBackward {
  grads: SwitchGrads;
}

/** What a training forward keeps for the backward. */
interface SavedForward {
  T: number;
  x: Float32Array;
  xExpert: Float32Array;
  routing: Routing;
  plan: DispatchPlan;
  acts: ExpertActivations;
  expertCfg: ExpertConfig;
  wRouter: Float32Array;
  wIn: Float32Array;
  wOut: Float32Array;
}

export class SwitchFeedForward extends SwitchLayerBase implements FeedForwardLayer {
  /**
   * router (D, E), wIn (E, D, F), wOut (E, F, D): writable, read on every call. Created as views
   * into 64-byte aligned memory (so their .buffer is slightly larger than the array).
   */
  readonly params: { router: Float32Array; wIn: Float32Array; wOut: Float32Array };
  private saved: SavedForward | null = null;
  // Scratch and saved arrays by role: a retained forward, an evaluation forward, the backward, the gradients.
  private readonly wsTrain = new Workspace(true);
  private readonly wsEval = new Workspace(true);
  private readonly wsBackward = new Workspace(true);

  constructor(options: SwitchFeedForwardOptions) {
    super(options, 'float32');
    const { dModel: D, dFF: F, numExperts: E, initScale } = this;
    this.params = {
      router: truncatedNormal(D * E, D, initScale, this.seed, STREAM.router),
      wIn: truncatedNormal(E * D * F, D, initScale, this.seed, STREAM.wIn),
      wOut: truncatedNormal(E * F * D, F, initScale, this.seed, STREAM.wOut),
    };
    // On a mesh: the expert-parallel layer, initialised with this device's slices of these weights.
    if (options.mesh !== undefined)
      return new MeshSwitchFeedForward(options as MeshSwitchOptions, this.params) as unknown as SwitchFeedForward;
  }

  /** Inference: forward with evaluation settings, keeping no backward state. */
  evaluate(x: Float32Array): SwitchFeedForwardOutput {
    return this.forward(x, { training: false });
  }

  /**
   * options.retainForBackward (default: training) keeps the backward state after an evaluation
   * forward too (the tfjs op differentiates through evaluation calls).
   */
  forward(x: Float32Array, options: ForwardOptions & { retainForBackward?: boolean } = {}): SwitchFeedForwardOutput {
    const training = options?.training ?? false;
    if (typeof training !== 'boolean') throw optionError('training', 'a boolean', training);
    const retain = options?.retainForBackward ?? training;
    const ws = retain ? this.wsTrain : this.wsEval;
    const { dModel: D, dFF: F, numExperts: E, topK: k } = this;
    const T = checkTokens('x', x, D);
    const G = this.groupSize ?? T;
    if (T % G !== 0)
      throw shapeError(`argument 'x' has T = ${T} tokens, which is not a multiple of groupSize ${G}`);
    const wRouter = checkParam('router', this.params.router, D * E, `(${D}, ${E})`);
    const wIn = checkParam('wIn', this.params.wIn, E * D * F, `(${E}, ${D}, ${F})`);
    const wOut = checkParam('wOut', this.params.wOut, E * F * D, `(${E}, ${F}, ${D})`);
    const call = training ? ++this.calls : 0;
    const streamBase = call * 16;
    const routing = route(x, wRouter, {
      T, D, E, k, G, C: this.capacity(T, training),
      policy: k === 2 ? (training || this.secondExpertPolicy !== 'random' ? this.secondExpertPolicy : 'all') : 'all',
      threshold: this.secondExpertThreshold, noTokenLeftBehind: this.noTokenLeftBehind,
      jitter: training ? this.jitter : 0, seed: this.seed, streamBase,
    }, ws);
    const plan = planDispatch(routing, false, ws);
    const wire = this.precision === 'bf16-wire';
    // §1.12 point 1: the dispatched expert input crosses the wire.
    let xCopy = x;
    if (retain) {
      xCopy = ws.f32('x', T * D);
      xCopy.set(x);
    }
    const xExpert = wire ? wireRound(x, ws.f32('xWire', T * D)) : xCopy;
    const expertCfg: ExpertConfig = {
      E, D, F, activation: this.activation, dropoutRate: training ? this.expertDropout : 0, seed: this.seed,
      stream: streamBase + STREAM.dropout,
    };
    const acts = expertsForward(xExpert, plan.rowToken, plan.rowChoice, plan.offsets, wIn, wOut, expertCfg, ws);
    // §1.12 point 2: the expert output comes back over the wire before the gate multiplies it.
    if (wire) wireRound(acts.expertOut, acts.expertOut);
    const y = combine(acts.expertOut, routing.gate, plan.row, T, k, D);
    const kept = new Uint8Array(T * k);
    for (let c = 0; c < T * k; c++) kept[c] = plan.row[c] >= 0 ? 1 : 0;
    const stats = routingStats(routing, kept, T, k, E);
    this.stats = stats;
    if (retain) {
      this.saved = {
        T, x: xCopy, xExpert, routing, plan, acts, expertCfg,
        // Held by reference, not copied (they are large): change params only after the backward.
        wRouter, wIn, wOut,
      };
    }
    const auxLoss = this.loadBalanceCoef * routing.loadBalanceLoss + this.zLossCoef * routing.zLoss;
    return {
      y, auxLoss, loadBalanceLoss: routing.loadBalanceLoss, zLoss: routing.zLoss,
      expertIndex: routing.expertIndex, gate: routing.gate, kept, stats,
    };
  }

  backward(dy: Float32Array): SwitchFeedForwardBackward {
    return this.backwardScaled(dy, 1);
  }

  /** The gradient of Σ(y ⊙ dy) + auxScale · auxLoss (the tfjs op passes the aux loss's upstream gradient). */
  backwardScaled(dy: Float32Array, auxScale: number): SwitchFeedForwardBackward {
    const s = this.saved;
    if (!s) throw codedError('ERR_SWITCH_STATE', 'SwitchFeedForward.backward needs a forward with { training: true } first');
    const { dModel: D, topK: k } = this;
    const T = checkTokens('dy', dy, D);
    if (T !== s.T) throw shapeError(`argument 'dy' must have ${s.T * D} elements (shape (${s.T}, ${D})), got ${dy.length}`);
    const wire = this.precision === 'bf16-wire';
    // §1.12 point 3: gate · dy is rounded on its way to the expert.
    const wsB = this.wsBackward;
    const { dgate, dExpertOut } = combineBackward(dy, s.acts.expertOut, s.routing.gate, s.plan, T, k, D, wire, wsB);
    const { dx, dwRouter } = routerBackward(dgate, s.routing, s.wRouter, D, this.loadBalanceCoef * auxScale,
      this.zLossCoef * auxScale, wsB, this.wsGrads);
    // The experts write dx per row (R, D) with the row × column tiling of the matmul, then one
    // gather per token adds its rows onto the router's dx: faster than scattering inside the
    // matmul (which can only split columns, since rows of one token may collide), and the same
    // chain as a mesh. §1.12 point 4 (bf16 wire): each row is rounded on its way back.
    const dxRows = wsB.f32('dxRows', s.plan.R * D);
    const { dwIn, dwOut } = expertsBackward(dxRows, dExpertOut, s.acts, s.xExpert, s.plan.rowToken, s.plan.offsets, s.wIn,
      s.wOut, s.expertCfg, false, wsB, this.wsGrads);
    dispatchBackward(dx, dxRows, s.plan, T, k, D, wire, true);
    return { dx, grads: { router: dwRouter, wIn: dwIn, wOut: dwOut } };
  }
}

// The mesh layer answers `instanceof SwitchFeedForward` (it defines every method itself).
Object.setPrototypeOf(MeshSwitchFeedForward.prototype, SwitchFeedForward.prototype);
