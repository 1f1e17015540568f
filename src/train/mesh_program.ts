// The program every device of a data-parallel training mesh runs (see mesh_training.ts).
import type { Device } from '../mesh/device.js';
import { prepareDataset } from '../data/dataset.js';
import { SwitchTransformerLM } from '../model/model.js';
import { Trainer } from './trainer.js';
import type { MeshTrainingOptions, MeshTrainingResult } from './mesh_training.js';

export default async function train(device: Device, args: MeshTrainingOptions & { returnParameters?: boolean }): Promise<MeshTrainingResult | null> {
  const data = prepareDataset(args.data);
  const model = new SwitchTransformerLM({ ...args.model, vocabSize: data.tokenizer.vocabSize });
  const trainer = new Trainer(model, {
    ...args.trainer, train: data.train, validation: data.validation.length > 0 ? data.validation : undefined,
    tokenizer: data.tokenizer.toJSON(),
    dataParallel: { rank: device.rank, size: device.size, allReduce: (buffer) => device.allReduce(buffer, { wire: 'float32' }) },
  });
  const lead = device.rank === 0;
  const { history } = await trainer.fit({
    steps: args.steps,
    onStep: (r) => {
      if (lead && args.progress)
        process.stderr.write(`data-parallel x${device.size} step ${r.step}/${args.steps} loss ${r.crossEntropy.toFixed(3)} ` +
          `aux ${r.auxLoss.toFixed(4)} ${Math.round(r.tokensPerSecond)} tok/s dropped ${(100 * r.droppedFraction).toFixed(1)}%\n`);
    },
  });
  if (!lead) return null;
  const evaluation = args.evaluate && trainer.options.validation ? await trainer.evaluate(trainer.options.validation, args.evalBatches ?? 8) : undefined;
  if (args.checkpoint) trainer.save(args.checkpoint);
  return {
    history, evaluation, params: model.parameterCount,
    parameters: args.returnParameters ? Object.fromEntries(model.parameters.map((p) => [p.name, p.data])) : undefined,
  };
}
