// The language model's configuration (SPEC §4) and its checks.
import { rangeError, typeError } from '../errors.js';

export type Activation = 'relu' | 'gelu';
export type SecondExpertPolicy = 'all' | 'none' | 'threshold' | 'random';
export type WirePrecision = 'float32' | 'bf16-wire';

export interface ModelConfig {
  /** Vocabulary size V (the tokenizer's). */
  vocabSize: number;
  /** d_model D. */
  dModel: number;
  numHeads: number;
  /** Number of blocks (attention + feed-forward). */
  numLayers: number;
  /** d_ff F of the dense layers and of each expert. */
  dFF: number;
  /** Learned positions P: the longest sequence the model reads. */
  maxSeqLen: number;
  /** Experts per Switch layer; 0 gives the all-dense baseline. */
  numExperts: number;
  /** Which blocks (0-based) hold a Switch layer: 'odd' (the paper's every other block), 'all', or a list. */
  switchLayers: 'odd' | 'all' | number[];
  /** 1 = Switch routing, 2 = the top-2 MoE baseline. */
  topK: 1 | 2;
  capacityFactor: number;
  evalCapacityFactor: number;
  minCapacity: number;
  /** Tokens per routing group; 0 = each call is one group. */
  groupSize: number;
  activation: Activation;
  /** §2.2 α, the load-balancing loss weight. */
  loadBalanceCoef: number;
  zLossCoef: number;
  /** Router input jitter ε (training only). */
  jitter: number;
  /** Dropout on the experts' hidden activations (Table 4; training only). */
  expertDropout: number;
  secondExpertPolicy: SecondExpertPolicy;
  precision: WirePrecision;
  /** Dropout on each block's residual branches (attention and feed-forward outputs; training only). */
  dropout: number;
  /** §2.4 initialisation scale s: truncated normal with σ = sqrt(s / fan_in). */
  initScale: number;
  /** RMSNorm ε. */
  normEps: number;
  seed: number;
}

export const defaultModelConfig: ModelConfig = {
  vocabSize: 8193,
  dModel: 256,
  numHeads: 4,
  numLayers: 4,
  dFF: 1024,
  maxSeqLen: 128,
  numExperts: 8,
  switchLayers: 'odd',
  topK: 1,
  capacityFactor: 1.25,
  evalCapacityFactor: 2.0,
  minCapacity: 4,
  groupSize: 0,
  activation: 'relu',
  loadBalanceCoef: 0.01,
  zLossCoef: 0,
  jitter: 0,
  expertDropout: 0,
  secondExpertPolicy: 'all',
  precision: 'float32',
  dropout: 0,
  initScale: 0.1,
  normEps: 1e-6,
  seed: 0,
};

function positiveInteger(config: ModelConfig, key: keyof ModelConfig, min = 1): void {
  const v = config[key];
  if (typeof v !== 'number') throw typeError('ERR_SWITCH_OPTION', `model option '${key}' must be a number, got ${typeof v}`);
  if (!Number.isInteger(v) || v < min)
    throw rangeError('ERR_SWITCH_OPTION', `model option '${key}' must be an integer >= ${min}, got ${v}`);
}

function fraction(config: ModelConfig, key: keyof ModelConfig): void {
  const v = config[key];
  if (typeof v !== 'number' || !(v >= 0 && v < 1))
    throw rangeError('ERR_SWITCH_OPTION', `model option '${key}' must be a number in [0, 1), got ${String(v)}`);
}

/** Fills in defaults and checks every option; throws a coded RangeError/TypeError naming the option. */
export function resolveModelConfig(options: Partial<ModelConfig> = {}): ModelConfig {
  for (const key of Object.keys(options))
    if (!(key in defaultModelConfig)) throw rangeError('ERR_SWITCH_OPTION', `unknown model option '${key}'`);
  const config: ModelConfig = { ...defaultModelConfig, ...options };
  positiveInteger(config, 'vocabSize');
  positiveInteger(config, 'dModel');
  positiveInteger(config, 'numHeads');
  positiveInteger(config, 'numLayers');
  positiveInteger(config, 'dFF');
  positiveInteger(config, 'maxSeqLen');
  positiveInteger(config, 'numExperts', 0);
  positiveInteger(config, 'minCapacity', 0);
  positiveInteger(config, 'groupSize', 0);
  positiveInteger(config, 'seed', 0);
  if (config.dModel % config.numHeads !== 0)
    throw rangeError('ERR_SWITCH_OPTION', `model option 'numHeads' (${config.numHeads}) must divide dModel (${config.dModel})`);
  if (config.topK !== 1 && config.topK !== 2)
    throw rangeError('ERR_SWITCH_OPTION', `model option 'topK' must be 1 or 2, got ${config.topK}`);
  if (config.numExperts > 0 && config.topK > config.numExperts)
    throw rangeError('ERR_SWITCH_OPTION', `model option 'topK' (${config.topK}) exceeds numExperts (${config.numExperts})`);
  for (const key of ['capacityFactor', 'evalCapacityFactor', 'initScale', 'normEps'] as const)
    if (typeof config[key] !== 'number' || !(config[key] > 0) || !Number.isFinite(config[key]))
      throw rangeError('ERR_SWITCH_OPTION', `model option '${key}' must be a positive number, got ${String(config[key])}`);
  for (const key of ['loadBalanceCoef', 'zLossCoef', 'jitter'] as const)
    if (typeof config[key] !== 'number' || !(config[key] >= 0) || !Number.isFinite(config[key]))
      throw rangeError('ERR_SWITCH_OPTION', `model option '${key}' must be a number >= 0, got ${String(config[key])}`);
  fraction(config, 'dropout');
  fraction(config, 'expertDropout');
  if (config.activation !== 'relu' && config.activation !== 'gelu')
    throw rangeError('ERR_SWITCH_OPTION', `model option 'activation' must be 'relu' or 'gelu', got ${String(config.activation)}`);
  if (!['all', 'none', 'threshold', 'random'].includes(config.secondExpertPolicy))
    throw rangeError('ERR_SWITCH_OPTION', `model option 'secondExpertPolicy' is not one of all, none, threshold, random`);
  if (config.precision !== 'float32' && config.precision !== 'bf16-wire')
    throw rangeError('ERR_SWITCH_OPTION', `model option 'precision' must be 'float32' or 'bf16-wire'`);
  const sl = config.switchLayers;
  if (sl !== 'odd' && sl !== 'all') {
    if (!Array.isArray(sl) || sl.some((i) => !Number.isInteger(i) || i < 0 || i >= config.numLayers))
      throw rangeError('ERR_SWITCH_OPTION',
        `model option 'switchLayers' must be 'odd', 'all' or a list of block indices in [0, ${config.numLayers})`);
    config.switchLayers = [...sl];
  }
  return config;
}

/** Whether block `i` (0-based) holds a Switch layer. */
export function isSwitchBlock(config: ModelConfig, i: number): boolean {
  if (config.numExperts === 0) return false;
  if (config.switchLayers === 'odd') return i % 2 === 1;
  if (config.switchLayers === 'all') return true;
  return config.switchLayers.includes(i);
}
