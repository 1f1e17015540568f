// What a feed-forward layer on one device and its mesh counterpart share: the options and their
// checks, and the count of training calls that keys every random draw. SwitchLayerBase serves
// switch.ts and switch_mesh.ts (SPEC §1 options, the capacity, the routing statistics),
// DenseLayerBase serves dense.ts and dense_mesh.ts.
// T = tokens, G = group size.
import {
  booleanOption, checkKnownOptions, finiteInRange, nonNegativeInteger, oneOf, optionError, positiveInteger, seedOption,
  trainingCallsValue } from './options.js';
import { codedError } from '../errors.js';
import { checkParam, checkTokens } from './options.js';
import {
  expertCapacity, expertsBackward, expertsForward, FRESH, STREAM, Workspace,
  type Activation, type ExpertActivations, type ExpertConfig, type SecondExpertPolicy,
} from './switch_steps.js';
import type { SwitchFeedForwardOptions } from './switch.js';
import type { DenseFeedForwardOptions } from './dense.js';
import type { RoutingStats } from './types.js';
import type { Routing } from './switch_steps.js';

export type Precision = 'float32' | 'bf16-wire';

/** A layer whose training calls draw random numbers keyed by (seed, call number). */
abstract class CountedLayer {
  protected calls = 0;

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
}

const DENSE_OPTIONS = ['dModel', 'dFF', 'activation', 'dropout', 'seed', 'initScale', 'reuseGradients', 'mesh', 'strategy'] as const;

export abstract class DenseLayerBase extends CountedLayer {
  readonly dModel: number;
  readonly dFF: number;
  readonly activation: Activation;
  readonly dropout: number;
  readonly seed: number;
  /** s of the truncated-normal initialisation (what the subclass draws its weights with). */
  protected readonly initScale: number;
  /** Where backward's dx and gradients live: reused arrays (reuseGradients) or fresh ones. */
  protected readonly wsGrads: Workspace;

  protected constructor(options: DenseFeedForwardOptions) {
    super();
    checkKnownOptions(options, DENSE_OPTIONS, 'DenseFeedForward');
    this.dModel = positiveInteger('dModel', options.dModel);
    this.dFF = positiveInteger('dFF', options.dFF);
    this.activation = oneOf('activation', options.activation, 'relu', ['relu', 'gelu'] as const);
    this.dropout = finiteInRange('dropout', options.dropout, 0, 0, 1, false, true);
    this.seed = seedOption(options.seed);
    this.initScale = finiteInRange('initScale', options.initScale, 0.1, 0, 1e6);
    this.wsGrads = booleanOption('reuseGradients', options.reuseGradients, false) ? new Workspace(true) : FRESH;
  }

  private readonly wsTrain = new Workspace(true);
  private readonly wsBackward = new Workspace(true);
  private saved: { T: number; x: Float32Array; offsets: Int32Array; acts: ExpertActivations; cfg: ExpertConfig } | null = null;

  /**
   * y = act(x · wIn) · wOut over this device's F hidden units (d_ff, or a mesh device's slice of it),
   * on the experts' kernel with one expert that takes every token; y is a fresh array. Keeps what
   * localBackward needs when options.retainForBackward (default: training) is set.
   */
  protected localForward(x: Float32Array, options: { training?: boolean; retainForBackward?: boolean } | undefined, F: number,
    params: { wIn: Float32Array; wOut: Float32Array }): Float32Array {
    const training = options?.training ?? false;
    if (typeof training !== 'boolean') throw optionError('training', 'a boolean', training);
    const retain = options?.retainForBackward ?? training;
    const D = this.dModel;
    const T = checkTokens('x', x, D);
    const wIn = checkParam('wIn', params.wIn, D * F, `(${D}, ${F})`);
    const wOut = checkParam('wOut', params.wOut, F * D, `(${F}, ${D})`);
    const call = training ? ++this.calls : 0;
    const cfg: ExpertConfig = {
      E: 1, D, F, activation: this.activation, dropoutRate: training ? this.dropout : 0, seed: this.seed,
      stream: call * 16 + STREAM.dropout,
    };
    const offsets = Int32Array.of(0, T);
    let xSaved = x;
    if (retain) {
      xSaved = this.wsTrain.f32('x', T * D);
      xSaved.set(x);
    }
    // The hidden activations are scratch when not retained; y is handed to the caller.
    const acts = expertsForward(xSaved, null, null, offsets, wIn, wOut, cfg, retain ? this.wsTrain : FRESH);
    if (retain) acts.expertOut = Float32Array.from(acts.expertOut);
    if (retain) this.saved = { T, x: xSaved, offsets, acts, cfg };
    return acts.expertOut;
  }

  /** dx and the gradients of params for the tokens of the last retained forward. */
  protected localBackward(dy: Float32Array, params: { wIn: Float32Array; wOut: Float32Array }) {
    const s = this.saved;
    if (!s) throw codedError('ERR_SWITCH_STATE', 'DenseFeedForward.backward needs a forward with { training: true } first');
    const T = checkTokens('dy', dy, this.dModel);
    if (T !== s.T) throw shapeError(`argument 'dy' must have ${s.T * this.dModel} elements (shape (${s.T}, ${this.dModel})), got ${dy.length}`);
    const dx = this.wsGrads.f32('dx', T * this.dModel);
    const { dwIn, dwOut } = expertsBackward(dx, dy, s.acts, s.x, null, s.offsets, params.wIn, params.wOut, s.cfg,
      false, this.wsBackward, this.wsGrads);
    return { dx, grads: { wIn: dwIn, wOut: dwOut } };
  }
}

const KNOWN_OPTIONS = [
  'dModel', 'dFF', 'numExperts', 'topK', 'capacityFactor', 'evalCapacityFactor', 'minCapacity', 'groupSize',
  'activation', 'loadBalanceCoef', 'zLossCoef', 'jitter', 'expertDropout', 'secondExpertPolicy',
  'secondExpertThreshold', 'precision', 'seed', 'initScale', 'noTokenLeftBehind', 'reuseGradients', 'mesh',
] as const;

export abstract class SwitchLayerBase extends CountedLayer {
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
  /** Routing statistics of the last forward (training or not), or null before the first. */
  stats: RoutingStats | null = null;

  /** s of the truncated-normal initialisation (what the subclass draws its weights with). */
  protected readonly initScale: number;
  /** Where backward's dx and gradients live: reused arrays (reuseGradients) or fresh ones. */
  protected readonly wsGrads: Workspace;

  /** `defaultPrecision`: 'float32' on one device, the mesh's wire on a mesh. */
  protected constructor(options: SwitchFeedForwardOptions, defaultPrecision: Precision) {
    super();
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
    this.precision = oneOf('precision', options.precision, defaultPrecision, ['float32', 'bf16-wire'] as const);
    this.seed = seedOption(options.seed);
    this.initScale = finiteInRange('initScale', options.initScale, 0.1, 0, 1e6);
    this.noTokenLeftBehind = booleanOption('noTokenLeftBehind', options.noTokenLeftBehind, false);
    if (this.noTokenLeftBehind && this.topK !== 1) throw optionError('noTokenLeftBehind', 'false with topK 2', true);
    this.wsGrads = booleanOption('reuseGradients', options.reuseGradients, false) ? new Workspace(true) : FRESH;
    const { dModel: D, dFF: F, numExperts: E } = this;
    if (E * D * F > 2 ** 31 - 1) throw optionError('numExperts · dModel · dFF', 'below 2^31', E * D * F);
  }

  /** Capacity C for a call of T tokens (on a mesh: per device, groups never span devices). */
  capacity(T: number, training: boolean): number {
    const G = this.groupSize ?? T;
    return expertCapacity(G, training ? this.capacityFactor : this.evalCapacityFactor, this.numExperts, this.minCapacity);
  }
}

export function shapeError(message: string): Error {
  return Object.assign(new RangeError(message), { code: 'ERR_SWITCH_SHAPE' as const });
}

/** The statistics of one call's routing: T tokens, k choices each, `kept` (T, k) after capacity. */
export function routingStats(routing: Routing, kept: Uint8Array, T: number, k: number, E: number): RoutingStats {
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
