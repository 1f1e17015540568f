// Training on the mesh: 2 devices with the float32 wire match one device on the same global batch,
// step by step (the Switch layers' groups set to one device's tokens), for strategy 'data' and
// 'expert-data'; expert-data with the bf16 wire matches one device in precision 'bf16-wire', and its
// checkpoint (experts gathered) resumes on one device or on the mesh as if one device had trained all along.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SwitchTransformerLM, Trainer, prepareDataset, readCheckpoint, trainOnMesh, type ModelConfig, type StepReport } from 'switch-transformer';
import { relError } from './model-helpers.js';

function corpus(dir: string): string {
  const folder = join(dir, 'corpus');
  mkdirSync(folder);
  const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'and', 'dog', 'ran', 'far', 'away', 'home'];
  for (let d = 0; d < 5; d++)
    writeFileSync(join(folder, `d${d}.txt`), Array.from({ length: 400 }, (_, i) => words[(i * 5 + d * 3 + (i % 7)) % 12]).join(' '));
  return folder;
}

function expectSameSteps(mesh: StepReport[], single: StepReport[], tokens: number, tolerance: number): void {
  expect(mesh).toHaveLength(single.length);
  mesh.forEach((h, i) => {
    expect(Math.abs(h.loss - single[i].loss) / single[i].loss, `loss at step ${i + 1}`).toBeLessThan(tolerance);
    expect(Math.abs(h.auxLoss - single[i].auxLoss) / single[i].auxLoss, `aux loss at step ${i + 1}`).toBeLessThan(10 * tolerance);
    // The mean gradient, not the sum (nor n × the experts' part).
    expect(Math.abs(h.gradNorm - single[i].gradNorm) / single[i].gradNorm, `gradient norm at step ${i + 1}`).toBeLessThan(10 * tolerance);
    expect(h.tokens).toBe(tokens);
    expect(h.tokensPerExpert[0].reduce((a, b) => a + b, 0)).toBe(tokens);
    expect(h.tokensPerExpert).toEqual(single[i].tokensPerExpert);
  });
}

describe('trainOnMesh', () => {
  const B = 4, S = 8;
  const base: Partial<ModelConfig> = { dModel: 16, numHeads: 2, numLayers: 2, dFF: 24, maxSeqLen: S, numExperts: 4,
    groupSize: (B / 2) * S, seed: 3 };
  const trainer = { batchSize: B, seqLen: S, lr: 5e-3, warmupSteps: 2, seed: 1 };

  it("strategy 'data': 2 devices == 1 device on the same global batch, step by step", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mesh-train-'));
    try {
      const data = { corpus: corpus(dir), validationFraction: 0.2 };
      const steps = 4;
      const mesh = await trainOnMesh({ devices: 2, model: base, data, trainer, steps, returnParameters: true, threadsPerDevice: 1 });
      const ds = prepareDataset(data);
      const single = new Trainer(new SwitchTransformerLM({ ...base, vocabSize: ds.tokenizer.vocabSize }), { ...trainer, train: ds.train });
      const { history } = await single.fit({ steps });
      expectSameSteps(mesh.history, history, B * S, 1e-5);
      for (const p of single.model.parameters)
        expect(relError(mesh.parameters![p.name], p.data), p.name).toBeLessThan(1e-4);
      await expect(trainOnMesh({ devices: 2, model: base, data, trainer, steps, wire: 'bf16' })).rejects.toMatchObject({ code: 'ERR_SWITCH_OPTION' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("strategy 'expert-data': float32 wire == 1 device, bf16 wire == 1 device in 'bf16-wire'; the checkpoint resumes on one device", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mesh-train-experts-'));
    try {
      const data = { corpus: corpus(dir), validationFraction: 0.2 };
      const ds = prepareDataset(data);
      // Every layer a Switch layer (block 0 included), with a z-loss, so every aux gradient path is
      // checked; jitter and expert dropout (keyed by the global token and the layer's trainingCalls)
      // so that the random streams must line up across devices and across a resume.
      const model: Partial<ModelConfig> = { ...base, switchLayers: 'all', zLossCoef: 0.01, jitter: 0.1, expertDropout: 0.2 };
      const steps = 3;
      const ckpt = join(dir, 'ckpt');
      for (const wire of ['float32', 'bf16'] as const) {
        const mesh = await trainOnMesh({ devices: 2, strategy: 'expert-data', wire, model, data, trainer, steps, returnParameters: true,
          threadsPerDevice: 1, checkpoint: wire === 'float32' ? ckpt : undefined });
        const singleModel = new SwitchTransformerLM({ ...model, vocabSize: ds.tokenizer.vocabSize,
          precision: wire === 'bf16' ? 'bf16-wire' : 'float32' });
        const single = new Trainer(singleModel, { ...trainer, train: ds.train });
        const { history } = await single.fit({ steps });
        // Measured: ~6e-8 relative (float32 rounding of the per-device sums), on either wire. With
        // bf16 a value within float32 rounding of a bf16 rounding boundary may round the other way
        // (a 2^-8 step), so bf16 gets 10× the margin: still 20× below float32-vs-bf16 (~2e-4).
        const tolerance = wire === 'float32' ? 1e-6 : 1e-5;
        expectSameSteps(mesh.history, history, B * S, tolerance);
        expect(mesh.params).toBe(singleModel.parameterCount);
        // The experts come back gathered: the single-device layout.
        for (const p of singleModel.parameters) {
          expect(mesh.parameters![p.name], p.name).toHaveLength(p.data.length);
          expect(relError(mesh.parameters![p.name], p.data), `${wire}: ${p.name}`).toBeLessThan(10 * tolerance);
        }
        if (wire !== 'float32') continue;
        // The checkpoint: whole expert tensors with the single-device shapes, and a resume on one
        // device continues as the single run does (the gathered optimizer state is right too).
        const saved = readCheckpoint(ckpt);
        expect(saved.weights['blocks.1.ffn.wIn'].shape).toEqual([4, 16, 24]);
        expect(saved.weights['blocks.0.ffn.wOut'].shape).toEqual([4, 24, 16]);
        expect(saved.state.step).toBe(steps);
        expect(saved.state.layerCalls).toEqual([steps, steps]);
        const { trainer: resumed } = Trainer.resume(ckpt, { train: ds.train });
        const after = (await resumed.fit({ steps: 2 })).history;
        const continued = (await single.fit({ steps: 2 })).history;
        expectSameSteps(after, continued, B * S, 1e-6);
        // ... and so does a resume onto the mesh (each device takes its experts' slice back).
        const onMesh = await trainOnMesh({ devices: 2, strategy: 'expert-data', resume: ckpt, model: {}, data, trainer, steps: 2,
          returnParameters: true, threadsPerDevice: 1 });
        expect(onMesh.step).toBe(steps + 2);
        expectSameSteps(onMesh.history, continued, B * S, 1e-6);
        for (const p of singleModel.parameters) {
          const q = resumed.model.parameters.find((r) => r.name === p.name)!;
          expect(relError(q.data, p.data), `resumed: ${p.name}`).toBeLessThan(1e-5);
          expect(relError(onMesh.parameters![p.name], p.data), `resumed on the mesh: ${p.name}`).toBeLessThan(1e-5);
        }
      }
      await expect(trainOnMesh({ devices: 2, strategy: 'expert-data', model: { ...model, numExperts: 3 }, data, trainer, steps }))
        .rejects.toMatchObject({ code: 'ERR_SWITCH_OPTION' });
      await expect(trainOnMesh({ devices: 2, strategy: 'expert-data', wire: 'float32', model: { ...model, precision: 'bf16-wire' }, data, trainer, steps }))
        .rejects.toMatchObject({ code: 'ERR_SWITCH_OPTION' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("strategy 'expert-data' with Adafactor: float32 wire == 1 device, and its checkpoint (row and column statistics gathered) resumes on one device", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mesh-train-adafactor-'));
    try {
      const data = { corpus: corpus(dir), validationFraction: 0.2 };
      const ds = prepareDataset(data);
      const model: Partial<ModelConfig> = { ...base, switchLayers: 'all' };
      const adafactor = { ...trainer, optimizer: 'adafactor' as const, lr: 1e-2 };
      const steps = 3;
      const ckpt = join(dir, 'ckpt');
      const mesh = await trainOnMesh({ devices: 2, strategy: 'expert-data', wire: 'float32', model, data, trainer: adafactor, steps,
        returnParameters: true, threadsPerDevice: 1, checkpoint: ckpt });
      const singleModel = new SwitchTransformerLM({ ...model, vocabSize: ds.tokenizer.vocabSize });
      const single = new Trainer(singleModel, { ...adafactor, train: ds.train });
      const { history } = await single.fit({ steps });
      // The RMS terms of the experts' tensors are sums over both devices (float32 on the wire).
      expectSameSteps(mesh.history, history, B * S, 1e-6);
      for (const p of singleModel.parameters)
        expect(relError(mesh.parameters![p.name], p.data), p.name).toBeLessThan(1e-5);
      const saved = readCheckpoint(ckpt);
      expect(saved.optimizer?.name).toBe('adafactor');
      // Per expert matrix of (D, F) = (16, 24): 4 experts' row (D) and column (F) statistics, gathered.
      expect(saved.optimizer?.tensors['blocks.1.ffn.wIn.row']).toHaveLength(4 * 16);
      expect(saved.optimizer?.tensors['blocks.1.ffn.wIn.col']).toHaveLength(4 * 24);
      const { trainer: resumed } = Trainer.resume(ckpt, { train: ds.train });
      const after = (await resumed.fit({ steps: 2 })).history;
      const continued = (await single.fit({ steps: 2 })).history;
      expectSameSteps(after, continued, B * S, 1e-5);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
