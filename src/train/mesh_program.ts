// The program every device of a training mesh runs (see mesh_training.ts): strategy 'data'
// (replicated model, gradients all-reduced) or 'expert-data' (Switch layers built on the mesh, their
// experts spread along `data`; the rest replicated).
import { codedError } from '../errors.js';
import type { Device } from '../mesh/device.js';
import { prepareDataset } from '../data/dataset.js';
import { SwitchFeedForward } from '../layers/switch.js';
import { packageFeedForward } from '../model/feed_forward.js';
import { SwitchTransformerLM, type FeedForwardFactory } from '../model/model.js';
import { readCheckpoint, type CheckpointContents } from './checkpoint.js';
import type { OptimizerState } from './optimizers.js';
import type { Tensor } from './safetensors.js';
import { Trainer } from './trainer.js';
import type { MeshTrainingOptions, MeshTrainingResult } from './mesh_training.js';

/** Switch blocks get the mesh layer (this device's experts); dense blocks the replicated layer. */
function expertDataFactory(device: Device): FeedForwardFactory {
  return (spec) => spec.kind === 'dense' ? packageFeedForward(spec) : new SwitchFeedForward({
    dModel: spec.dModel, dFF: spec.dFF, numExperts: spec.numExperts, topK: spec.topK,
    capacityFactor: spec.capacityFactor, evalCapacityFactor: spec.evalCapacityFactor, minCapacity: spec.minCapacity,
    groupSize: spec.groupSize, activation: spec.activation, loadBalanceCoef: spec.loadBalanceCoef,
    zLossCoef: spec.zLossCoef, jitter: spec.jitter, expertDropout: spec.expertDropout,
    secondExpertPolicy: spec.secondExpertPolicy, precision: spec.precision, seed: spec.seed, initScale: spec.initScale,
    mesh: device,
  });
}

/**
 * Restores a checkpoint (single-device layout) onto this device: replicated tensors whole, the
 * experts' weights and optimizer moments as this device's slice (experts c·E/n … along `data`).
 */
function restore(device: Device, trainer: Trainer, saved: CheckpointContents & { weights: Record<string, Tensor> }, sharded: Set<string>): void {
  const c = device.coords.data ?? 0, n = device.axes.data ?? 1;
  const model = trainer.model;
  const local = new Map(model.parameters.map((p) => [p.name, p.data.length]));
  const piece = (name: string, key: string, full: Float32Array | undefined): Float32Array => {
    const length = local.get(name)!;
    const whole = sharded.has(name) ? length * n : length;
    if (!full || full.length !== whole)
      throw codedError('ERR_CHECKPOINT', `checkpoint tensor '${key}' is missing or has ${full?.length} values, expected ${whole}`);
    return sharded.has(name) ? full.subarray(c * length, (c + 1) * length) : full;
  };
  for (const p of model.parameters) p.data.set(piece(p.name, p.name, saved.weights[p.name]?.data));
  if (saved.optimizer) {
    const tensors: Record<string, Float32Array> = {};
    for (const [key, value] of Object.entries(saved.optimizer.tensors)) {
      const name = key.slice(0, key.lastIndexOf('.'));
      tensors[key] = local.has(name) ? Float32Array.from(piece(name, key, value)) : value;
    }
    trainer.optimizer.loadState({ ...saved.optimizer, tensors });
  }
  model.random.state = saved.state.modelRandom;
  saved.state.layerCalls?.forEach((calls, i) => {
    const layer = model.feedForward(i);
    if (typeof calls === 'number' && typeof layer.trainingCalls === 'number') layer.trainingCalls = calls;
  });
  if (saved.state.loader) trainer.loader.state = saved.state.loader;
  trainer.step = saved.state.step;
}

export default async function train(device: Device, args: MeshTrainingOptions & { returnParameters?: boolean }): Promise<MeshTrainingResult | null> {
  const expertData = args.strategy === 'expert-data';
  const saved = args.resume ? readCheckpoint(args.resume) : undefined;
  // A resumed run keeps the checkpoint's vocabulary.
  const data = prepareDataset(saved?.tokenizer ? { ...args.data, tokenizerJSON: saved.tokenizer } : args.data);
  const model = new SwitchTransformerLM({ ...args.model, vocabSize: data.tokenizer.vocabSize },
    expertData ? { feedForward: expertDataFactory(device) } : {});
  // The experts' weights: each device holds the slice of its own experts.
  const sharded = new Set<string>();
  if (expertData)
    for (let i = 0; i < model.config.numLayers; i++)
      if (model.feedForward(i) instanceof SwitchFeedForward) for (const name of ['wIn', 'wOut']) sharded.add(`blocks.${i}.ffn.${name}`);
  const savedTrainer = (saved?.state.extra?.trainer ?? {}) as Partial<MeshTrainingOptions['trainer']>;
  const trainer = new Trainer(model, {
    ...savedTrainer, ...args.trainer, train: data.train, validation: data.validation.length > 0 ? data.validation : undefined,
    tokenizer: data.tokenizer.toJSON(),
    dataParallel: {
      rank: device.rank, size: device.size, allReduce: (buffer) => device.allReduce(buffer, { wire: 'float32' }),
      sharded: expertData ? sharded : undefined,
    },
  });
  if (saved) restore(device, trainer, saved, sharded);
  const lead = device.rank === 0;
  const { history } = await trainer.fit({
    steps: args.steps,
    onStep: (r) => {
      if (lead && args.progress)
        process.stderr.write(`${expertData ? 'expert' : 'data'}-parallel x${device.size} step ${r.step}/${args.steps} loss ${r.crossEntropy.toFixed(3)} ` +
          `aux ${r.auxLoss.toFixed(4)} ${Math.round(r.tokensPerSecond)} tok/s dropped ${(100 * r.droppedFraction).toFixed(1)}%\n`);
    },
  });
  // Mesh layers run collectives in forward: with expert-data every device evaluates (the same batches).
  const evaluate = args.evaluate && trainer.options.validation && (lead || expertData);
  const evaluation = evaluate ? await trainer.evaluate(trainer.options.validation, args.evalBatches ?? 8) : undefined;
  // Gather the experts (and their optimizer state) so a checkpoint has the single-device layout.
  const gather = (slice: Float32Array) => device.allGather(slice, { axis: 'data', wire: 'float32' });
  const parameters = Object.fromEntries(model.parameters.map((p) => [p.name, sharded.has(p.name) ? gather(p.data) : p.data]));
  let optimizer: OptimizerState | undefined;
  if (args.checkpoint) {
    const state = trainer.optimizer.state();
    const tensors: Record<string, Float32Array> = {};
    for (const key of Object.keys(state.tensors).sort())
      tensors[key] = sharded.has(key.slice(0, key.lastIndexOf('.'))) ? gather(state.tensors[key]) : state.tensors[key];
    optimizer = { ...state, tensors };
  }
  if (!lead) return null;
  if (args.checkpoint) trainer.save(args.checkpoint, undefined, expertData ? { parameters, optimizer } : undefined);
  return {
    history, step: trainer.step, evaluation, params: expertData ? Object.values(parameters).reduce((n, p) => n + p.length, 0) : model.parameterCount,
    parameters: args.returnParameters ? parameters : undefined,
  };
}
