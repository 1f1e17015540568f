// The Switch feed-forward layer (SPEC §1; paper §2.1-2.4) on one device: the public contract.
// T = tokens, D = d_model, F = d_ff, E = experts, k = choices per token, G = group size, C = capacity.
import { codedError } from '../errors.js';
import {
  checkKnownOptions, checkParam, checkTokens, finiteInRange, nonNegativeInteger, oneOf, optionError, positiveInteger,
  seedOption, booleanOption, trainingCallsValue } from './options.js';
import {
  combine, combineBackward, dispatchBackward, expertCapacity, expertsBackward, expertsForward, planDispatch, route,
  routerBackward, STREAM, truncatedNormal, wireRound, Workspace, FRESH,
  type Activation, type DispatchPlan, type ExpertActivations, type ExpertConfig, type Routing, type SecondExpertPolicy,
} from './switch_steps.js';
import type { FeedForwardBackward, FeedForwardLayer, FeedForwardOutput, ForwardOptions, RoutingStats } from './types.js';
import type { Device } from '../mesh/device.js';
import { MeshSwitchFeedForward, type MeshSwitchOptions } from './switch_mesh.js';

export type { Activation, SecondExpertPolicy } from './switch_steps.js';
export type Precision = 'float32' | 'bf16-wire';

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

const KNOWN_OPTIONS = [
  'dModel', 'dFF', 'numExperts', 'topK', 'capacityFactor', 'evalCapacityFactor', 'minCapacity', 'groupSize',
  'activation', 'loadBalanceCoef', 'zLossCoef', 'jitter', 'expertDropout', 'secondExpertPolicy',
  'secondExpertThreshold', 'precision', 'seed', 'initScale', 'noTokenLeftBehind', 'reuseGradients', 'mesh',
] as const;

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

export class SwitchFeedForward implements FeedForwardLayer {
  readonly dModel: number;
  readonly dFF: number;
  readonly numExperts: number;
  readonly topK: 1 | 2;
  readonly capacityFactor: number;
  readonly evalCapacityFactor: number;
  readonly minCapacity: number;
  readonly groupSize: number | undefined;
  readonly activation: Activation;
  readonly loadBalanceCoef: number;
  readonly zLossCoef: number;
  readonly jitter: number;
  readonly expertDropout: number;
  readonly secondExpertPolicy: SecondExpertPolicy;
  readonly secondExpertThreshold: number;
  readonly precision: Precision;
  readonly seed: number;
  readonly noTokenLeftBehind: boolean;
  /** router (D, E), wIn (E, D, F), wOut (E, F, D): writable, read on every call. */
  readonly params: { router: Float32Array; wIn: Float32Array; wOut: Float32Array };
  /** Routing statistics of the last forward (training or not), or null before the first. */
  stats: RoutingStats | null = null;

  private calls = 0;

  /**
   * Training calls so far. Every random draw of a training call (jitter, second-expert policy,
   * dropout) is keyed by (seed, call number), so this count is the whole state of the layer's
   * random streams: a checkpoint saves it, and setting it makes the next training call draw what
   * the (n+1)-th call of a fresh layer draws.
   */
  get trainingCalls(): number {
    return this.calls;
  }

  set trainingCalls(value: number) {
    this.calls = trainingCallsValue(value);
  }
  private saved: SavedForward | null = null;
  // Scratch and saved arrays by role: a retained forward, an evaluation forward, the backward, the gradients.
  private readonly wsTrain = new Workspace(true);
  private readonly wsEval = new Workspace(true);
  private readonly wsBackward = new Workspace(true);
  private readonly wsGrads: Workspace;

  constructor(options: SwitchFeedForwardOptions) {
    checkKnownOptions(options, KNOWN_OPTIONS, 'SwitchFeedForward');
    this.dModel = positiveInteger('dModel', options.dModel);
    this.dFF = positiveInteger('dFF', options.dFF);
    this.numExperts = positiveInteger('numExperts', options.numExperts);
    this.topK = oneOf('topK', options.topK, 1, [1, 2] as const);
    if (this.topK > this.numExperts) throw optionError('topK', `<= numExperts (${this.numExperts})`, this.topK);
    this.capacityFactor = finiteInRange('capacityFactor', options.capacityFactor, 1.25, 0, 1e6, true);
    this.evalCapacityFactor = finiteInRange('evalCapacityFactor', options.evalCapacityFactor, 2.0, 0, 1e6, true);
    this.minCapacity = nonNegativeInteger('minCapacity', options.minCapacity, 4);
    this.groupSize = options.groupSize === undefined ? undefined : positiveInteger('groupSize', options.groupSize);
    this.activation = oneOf('activation', options.activation, 'relu', ['relu', 'gelu'] as const);
    this.loadBalanceCoef = finiteInRange('loadBalanceCoef', options.loadBalanceCoef, 0.01, 0, 1e6);
    this.zLossCoef = finiteInRange('zLossCoef', options.zLossCoef, 0, 0, 1e6);
    this.jitter = finiteInRange('jitter', options.jitter, 0, 0, 1, false, true);
    this.expertDropout = finiteInRange('expertDropout', options.expertDropout, 0, 0, 1, false, true);
    this.secondExpertPolicy = oneOf('secondExpertPolicy', options.secondExpertPolicy, 'all',
      ['all', 'none', 'threshold', 'random'] as const);
    this.secondExpertThreshold = finiteInRange('secondExpertThreshold', options.secondExpertThreshold, 0.2, 0, 1, true);
    this.precision = oneOf('precision', options.precision, 'float32', ['float32', 'bf16-wire'] as const);
    this.seed = seedOption(options.seed);
    const initScale = finiteInRange('initScale', options.initScale, 0.1, 0, 1e6);
    this.noTokenLeftBehind = booleanOption('noTokenLeftBehind', options.noTokenLeftBehind, false);
    if (this.noTokenLeftBehind && this.topK !== 1) throw optionError('noTokenLeftBehind', 'false with topK 2', true);
    this.wsGrads = booleanOption('reuseGradients', options.reuseGradients, false) ? new Workspace(true) : FRESH;
    const { dModel: D, dFF: F, numExperts: E } = this;
    if (E * D * F > 2 ** 31 - 1) throw optionError('numExperts · dModel · dFF', 'below 2^31', E * D * F);
    this.params = {
      router: truncatedNormal(D * E, D, initScale, this.seed, STREAM.router),
      wIn: truncatedNormal(E * D * F, D, initScale, this.seed, STREAM.wIn),
      wOut: truncatedNormal(E * F * D, F, initScale, this.seed, STREAM.wOut),
    };
    // On a mesh: the expert-parallel layer, initialised with this device's slices of these weights.
    if (options.mesh !== undefined)
      return new MeshSwitchFeedForward(options as MeshSwitchOptions, this.params) as unknown as SwitchFeedForward;
  }

  /** Capacity C for a call of T tokens. */
  capacity(T: number, training: boolean): number {
    const G = this.groupSize ?? T;
    return expertCapacity(G, training ? this.capacityFactor : this.evalCapacityFactor, this.numExperts, this.minCapacity);
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
      throw codedShapeError(`argument 'x' has T = ${T} tokens, which is not a multiple of groupSize ${G}`);
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
    if (T !== s.T) throw codedShapeError(`argument 'dy' must have ${s.T * D} elements (shape (${s.T}, ${D})), got ${dy.length}`);
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

function codedShapeError(message: string): Error {
  return Object.assign(new RangeError(message), { code: 'ERR_SWITCH_SHAPE' as const });
}

function routingStats(routing: Routing, kept: Uint8Array, T: number, k: number, E: number): RoutingStats {
  const tokensPerExpert = new Int32Array(E);
  for (let i = 0; i < routing.firstChoiceCounts.length; i++) tokensPerExpert[i % E] += routing.firstChoiceCounts[i];
  let dropped = 0;
  for (let t = 0; t < T; t++) {
    let any = 0;
    for (let j = 0; j < k; j++) any |= kept[t * k + j];
    if (!any) dropped++;
  }
  return { tokensPerExpert, droppedFraction: dropped / T, routerEntropy: routing.routerEntropy, capacity: routing.C };
}
