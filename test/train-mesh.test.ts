// Data-parallel training on the mesh: 2 devices with the float32 wire match one device on the
// same global batch, step by step (the Switch layers' groups set to one device's tokens).
import { describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SwitchTransformerLM, Trainer, prepareDataset, trainOnMesh, type ModelConfig } from 'switch-transformer';
import { relError } from './model-helpers.js';

describe('trainOnMesh (strategy data)', () => {
  it('2 devices == 1 device on the same global batch, step by step', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mesh-train-'));
    try {
      const folder = join(dir, 'corpus');
      mkdirSync(folder);
      const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'and', 'dog', 'ran', 'far', 'away', 'home'];
      for (let d = 0; d < 5; d++)
        writeFileSync(join(folder, `d${d}.txt`), Array.from({ length: 400 }, (_, i) => words[(i * 5 + d * 3 + (i % 7)) % 12]).join(' '));
      const B = 4, S = 8;
      const model: Partial<ModelConfig> = { dModel: 16, numHeads: 2, numLayers: 2, dFF: 24, maxSeqLen: S, numExperts: 4,
        groupSize: (B / 2) * S, seed: 3 };
      const trainer = { batchSize: B, seqLen: S, lr: 5e-3, warmupSteps: 2, seed: 1 };
      const data = { corpus: folder, validationFraction: 0.2 };
      const steps = 4;
      const mesh = await trainOnMesh({ devices: 2, model, data, trainer, steps, returnParameters: true, threadsPerDevice: 1 });
      const ds = prepareDataset(data);
      const single = new Trainer(new SwitchTransformerLM({ ...model, vocabSize: ds.tokenizer.vocabSize }), { ...trainer, train: ds.train });
      const { history } = await single.fit({ steps });
      expect(mesh.history).toHaveLength(steps);
      mesh.history.forEach((h, i) => {
        expect(Math.abs(h.loss - history[i].loss) / history[i].loss).toBeLessThan(1e-5);
        expect(Math.abs(h.gradNorm - history[i].gradNorm) / history[i].gradNorm).toBeLessThan(1e-4);  // the mean gradient, not the sum
        expect(h.tokens).toBe(B * S);
        expect(h.tokensPerExpert[0].reduce((a, b) => a + b, 0)).toBe(B * S);
        expect(h.tokensPerExpert).toEqual(history[i].tokensPerExpert);
      });
      for (const p of single.model.parameters)
        expect(relError(mesh.parameters![p.name], p.data), p.name).toBeLessThan(1e-4);
      await expect(trainOnMesh({ devices: 2, strategy: 'expert-data', model, data, trainer, steps })).rejects.toMatchObject({ code: 'ERR_SWITCH_UNSUPPORTED' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
