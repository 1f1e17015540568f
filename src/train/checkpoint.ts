// Checkpoints: a directory with the weights (model.safetensors), the model configuration and
// tokenizer (config.json), the optimizer's state (optimizer.safetensors, its scalars in the
// metadata) and the training state (state.json: step, data-loader position, random streams).
// Written atomically (see writeDirectoryAtomic); every file is fsynced before the rename.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { codedError } from '../errors.js';
import type { TokenizerJSON } from '../data/tokenizer.js';
import type { LoaderState } from '../data/loader.js';
import type { ModelConfig } from '../model/config.js';
import { SwitchTransformerLM, type ModelOptions } from '../model/model.js';
import type { RandomState } from '../model/random.js';
import type { OptimizerState } from './optimizers.js';
import { encodeSafetensors, readSafetensors, writeDirectoryAtomic, writeFileAtomic, type Tensor } from './safetensors.js';

export const CHECKPOINT_FORMAT = 'switch-transformer-checkpoint';

export interface TrainingState {
  step: number;
  loader?: LoaderState;
  /** The model's dropout stream. */
  modelRandom: RandomState;
  /** Per block: the feed-forward layer's count of training calls, which seeds its jitter and dropout. */
  layerCalls: (number | null)[];
  /** Anything else the caller keeps (trainer options, history, ...). */
  extra?: Record<string, unknown>;
}

export interface CheckpointContents {
  config: ModelConfig;
  tokenizer?: TokenizerJSON;
  optimizer?: OptimizerState;
  state: TrainingState;
}

/** The layers keep their random streams as a count of training calls (FeedForwardLayer.trainingCalls). */
function layerCalls(model: SwitchTransformerLM): (number | null)[] {
  return Array.from({ length: model.config.numLayers }, (_, i) => model.feedForward(i).trainingCalls ?? null);
}

export function saveCheckpoint(dir: string, model: SwitchTransformerLM, options: {
  optimizer?: OptimizerState; tokenizer?: TokenizerJSON; step?: number; loader?: LoaderState; extra?: Record<string, unknown>;
  /** Replaces parameters' data by name (whole tensors: shapes as a single-device model of this config). */
  parameters?: Record<string, Float32Array>;
} = {}): void {
  const weights: Record<string, Tensor> = {};
  for (const p of model.parameters) {
    const data = options.parameters?.[p.name] ?? p.data;
    weights[p.name] = { shape: data === p.data ? p.shape : wholeShape(p.shape, data.length), data };
  }
  const state: TrainingState = {
    step: options.step ?? 0, loader: options.loader, modelRandom: model.random.state, layerCalls: layerCalls(model),
    extra: options.extra,
  };
  writeDirectoryAtomic(dir, (tmp) => {
    writeFileAtomic(join(tmp, 'model.safetensors'), encodeSafetensors(weights, { format: CHECKPOINT_FORMAT }));
    writeFileAtomic(join(tmp, 'config.json'), JSON.stringify({
      format: CHECKPOINT_FORMAT, version: 1, model: model.config, tokenizer: options.tokenizer,
    }, null, 1));
    if (options.optimizer) {
      const { tensors, ...scalars } = options.optimizer;
      const shaped: Record<string, Tensor> = {};
      for (const [name, data] of Object.entries(tensors)) shaped[name] = { shape: [data.length], data };
      writeFileAtomic(join(tmp, 'optimizer.safetensors'), encodeSafetensors(shaped, { optimizer: JSON.stringify(scalars) }));
    }
    writeFileAtomic(join(tmp, 'state.json'), JSON.stringify(state));
  });
}

/** A sliced parameter's whole shape: the first dimension grows (experts are sliced along it). */
function wholeShape(shape: number[], size: number): number[] {
  const rest = shape.slice(1).reduce((a, b) => a * b, 1);
  if (shape.length < 2 || size % rest !== 0)
    throw codedError('ERR_CHECKPOINT', `a replacement of ${size} values does not fit a parameter of shape [${shape}]`);
  return [size / rest, ...shape.slice(1)];
}

function readJSON(path: string): any {  // eslint-disable-line @typescript-eslint/no-explicit-any
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    throw codedError('ERR_CHECKPOINT', `cannot read '${path}' as JSON`);
  }
}

export function readCheckpoint(dir: string): CheckpointContents & { weights: Record<string, Tensor> } {
  if (!existsSync(join(dir, 'config.json'))) throw codedError('ERR_CHECKPOINT', `'${dir}' is not a checkpoint (no config.json)`);
  const config = readJSON(join(dir, 'config.json'));
  if (config.format !== CHECKPOINT_FORMAT) throw codedError('ERR_CHECKPOINT', `'${dir}/config.json' is not a ${CHECKPOINT_FORMAT}`);
  const { tensors: weights } = readSafetensors(join(dir, 'model.safetensors'));
  let optimizer: OptimizerState | undefined;
  if (existsSync(join(dir, 'optimizer.safetensors'))) {
    const { tensors, metadata } = readSafetensors(join(dir, 'optimizer.safetensors'));
    optimizer = { ...JSON.parse(metadata.optimizer), tensors: Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, t.data])) };
  }
  const state = readJSON(join(dir, 'state.json')) as TrainingState;
  return { config: config.model, tokenizer: config.tokenizer, optimizer, state, weights };
}

/** Rebuilds the model of a checkpoint (weights and random streams restored) and returns the rest. */
export function loadCheckpoint(dir: string, modelOptions: ModelOptions = {}): CheckpointContents & { model: SwitchTransformerLM } {
  const contents = readCheckpoint(dir);
  const model = new SwitchTransformerLM(contents.config, modelOptions);
  for (const p of model.parameters) {
    const t = contents.weights[p.name];
    if (!t || t.data.length !== p.data.length)
      throw codedError('ERR_CHECKPOINT', `checkpoint weight '${p.name}' is missing or has the wrong size`);
    p.data.set(t.data);
  }
  model.random.state = contents.state.modelRandom;
  contents.state.layerCalls?.forEach((calls, i) => {
    const layer = model.feedForward(i);
    if (typeof calls === 'number' && typeof layer.trainingCalls === 'number') layer.trainingCalls = calls;
  });
  return { ...contents, model };
}
