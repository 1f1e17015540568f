// Training: safetensors files, atomic checkpoints, bit-identical resume (40 steps == 20 + save +
// load + 20), seeded determinism, learning on a tiny task, evaluation, with the package's Switch layers.
import { describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Random, SwitchTransformerLM, Trainer, WordTokenizer, decodeSafetensors, encodeSafetensors, loadCheckpoint, readCheckpoint, tokenizerFromJSON,
  type ModelConfig, type StepReport,
} from 'switch-transformer';
import { sameBits } from './model-helpers.js';

const tiny: Partial<ModelConfig> = {
  vocabSize: 24, dModel: 16, numHeads: 2, numLayers: 2, dFF: 24, maxSeqLen: 8, numExperts: 4,
  dropout: 0.1, jitter: 0.01, expertDropout: 0.1, seed: 5,
};

/** A stream with structure to learn: repeating patterns with noise. */
function stream(n: number, seed: number): Int32Array {
  const random = new Random(seed);
  return Int32Array.from({ length: n }, (_, i) => (random.uniform() < 0.1 ? random.int(24) : (i * 7) % 24));
}

const train = stream(3000, 1), validation = stream(400, 2);

function curve(history: StepReport[]) {
  return history.map((h) => [h.loss, h.auxLoss, h.gradNorm]);
}

describe('safetensors', () => {
  it('writes the documented layout and reads it back', () => {
    const a = Float32Array.of(1, -2.5, 3, 4, 5, 6), b = Float32Array.of(Math.PI);
    const bytes = encodeSafetensors({ a: { shape: [2, 3], data: a }, b: { shape: [1], data: b } }, { note: 'x' });
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString());
    expect(header.a).toEqual({ dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] });
    expect(header.b).toEqual({ dtype: 'F32', shape: [1], data_offsets: [24, 28] });
    expect(header.__metadata__).toEqual({ note: 'x' });
    expect(bytes.length).toBe(8 + n + 28);
    expect(bytes.readFloatLE(8 + n + 4)).toBe(-2.5);
    const back = decodeSafetensors(bytes);
    expect(Array.from(back.tensors.a.data)).toEqual(Array.from(a));
    expect(back.tensors.b.data[0]).toBe(Math.fround(Math.PI));
    expect(() => decodeSafetensors(bytes.subarray(0, 20))).toThrow(expect.objectContaining({ code: 'ERR_CHECKPOINT' }));
    expect(() => decodeSafetensors(bytes.subarray(0, bytes.length - 4))).toThrow(/offsets/);
  });
});

describe('Trainer', () => {
  it.each(['adamw', 'adafactor'] as const)('%s: 40 steps == 20 steps, save, load, 20 steps (bit for bit)', async (optimizer) => {
    const dir = mkdtempSync(join(tmpdir(), 'ckpt-'));
    try {
      const options = { train, validation, batchSize: 4, seqLen: 8, optimizer, lr: 3e-3, warmupSteps: 5, routerLrScale: 0.5, seed: 3 };
      const full = new Trainer(new SwitchTransformerLM(tiny), options);
      const whole = await full.fit({ steps: 40 });
      const first = new Trainer(new SwitchTransformerLM(tiny), options);
      const part1 = await first.fit({ steps: 20 });
      expect(curve(part1.history)).toEqual(curve(whole.history.slice(0, 20)));  // same seed → same curve
      first.save(join(dir, 'ckpt'));
      first.save(join(dir, 'ckpt'));  // overwriting an existing checkpoint is atomic too
      expect(readdirSync(dir)).toEqual(['ckpt']);  // no temporary leftovers
      expect(readdirSync(join(dir, 'ckpt')).sort()).toEqual(['config.json', 'model.safetensors', 'optimizer.safetensors', 'state.json']);
      const { trainer: resumed } = Trainer.resume(join(dir, 'ckpt'), { train, validation });
      expect(resumed.step).toBe(20);
      expect(resumed.options.routerLrScale).toBe(0.5);  // saved with the trainer options
      const part2 = await resumed.fit({ steps: 20 });
      expect(curve(part2.history)).toEqual(curve(whole.history.slice(20)));
      expect(part2.history.at(-1)!.step).toBe(40);
      full.model.parameters.forEach((p, i) => expect(sameBits(p.data, resumed.model.parameters[i].data), p.name).toBe(true));
      // the Switch layers routed and reported
      expect(whole.history[0].tokensPerExpert).toHaveLength(1);
      expect(whole.history[0].tokensPerExpert[0].reduce((a, b) => a + b, 0)).toBe(32);
      expect(whole.history[0].auxLoss).toBeGreaterThan(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps the event loop turning during a step (timers fire before the step resolves)', async () => {
    const trainer = new Trainer(new SwitchTransformerLM(tiny), { train, batchSize: 4, seqLen: 8 });
    for (const run of [() => trainer.trainStep(), () => trainer.evaluate(validation, 2)]) {
      const events: string[] = [];
      setImmediate(() => events.push('immediate'));
      setTimeout(() => events.push('timer'), 0);
      const done = run().then(() => events.push('done'));
      // The loss and attention kernels run on worker threads: the loop reaches its check phase (and
      // its timers) while the step is still pending, which a step of synchronous calls never lets it.
      await done;
      expect(events.indexOf('immediate')).toBeGreaterThanOrEqual(0);
      expect(events.indexOf('immediate')).toBeLessThan(events.indexOf('done'));
      await new Promise((resolve) => setTimeout(resolve, 5));
      expect(events).toContain('timer');
    }
    // A second forward while one is pending is refused, not interleaved.
    const model = trainer.model;
    const tokens = train.slice(0, 32), targets = train.slice(1, 33);
    const first = model.forward(tokens, targets, 4, { training: true });
    await expect(model.forward(tokens, targets, 4, { training: true })).rejects.toMatchObject({ code: 'ERR_SWITCH_STATE' });
    await first;
  });

  it('learns a tiny task and evaluates loss and perplexity', async () => {
    const trainer = new Trainer(new SwitchTransformerLM({ ...tiny, dropout: 0, expertDropout: 0, jitter: 0 }),
      { train, validation, batchSize: 8, seqLen: 8, lr: 1e-2, warmupSteps: 5 });
    const before = await trainer.evaluate();
    expect(before.loss).toBeGreaterThan(2.5);
    const seen: number[] = [];
    const evals: number[] = [];
    const result = await trainer.fit({ steps: 60, onStep: (r) => { seen.push(r.step); }, evalEvery: 30, evalBatches: 4, onEval: (s) => { evals.push(s); } });
    expect(seen).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    expect(evals).toEqual([30, 60]);
    const after = await trainer.evaluate();
    expect(after.loss).toBeLessThan(before.loss - 1);
    expect(after.perplexity).toBeCloseTo(Math.exp(after.loss), 6);
    const r = result.history.at(-1)!;
    expect(r.tokens).toBe(64);
    expect(r.tokensPerSecond).toBeGreaterThan(0);
    expect(r.droppedFraction).toBeGreaterThanOrEqual(0);
    expect(r.droppedFraction).toBeLessThanOrEqual(1);
    // greedy generation continues the learned pattern (t → t + 7 mod 24) most of the time
    const out = await trainer.model.generate([0, 7, 14], { maxNewTokens: 5 });
    const hits = out.filter((t, i) => t === ((21 + 7 * i) % 24)).length;
    expect(hits).toBeGreaterThanOrEqual(3);
  });

  it('routerLrScale scales the routers\' updates only (AdamW: the whole step, weight decay included)', async () => {
    const config = { ...tiny, dropout: 0, expertDropout: 0, jitter: 0 };
    const options = { train, batchSize: 4, seqLen: 8, lr: 3e-3, warmupSteps: 0, seed: 3 };
    const scale = 0.25;
    const a = new Trainer(new SwitchTransformerLM(config), { ...options, routerLrScale: scale });
    const b = new Trainer(new SwitchTransformerLM(config), options);
    expect(b.options.routerLrScale).toBe(1);
    const before = b.model.parameters.map((p) => Float32Array.from(p.data));
    await a.trainStep();
    await b.trainStep();
    const routers = a.model.parameters.filter((p) => /^blocks\.\d+\.ffn\.router$/.test(p.name)).map((p) => p.name);
    expect(routers).toEqual(['blocks.1.ffn.router']);
    a.model.parameters.forEach((p, i) => {
      const q = b.model.parameters[i];
      if (!routers.includes(p.name)) {
        expect(sameBits(p.data, q.data), p.name).toBe(true);  // same gradients, same step
        return;
      }
      // w·(1 − s·lr·λ) − s·lr·u: the change is s times the unscaled change.
      let worst = 0, size = 0;
      for (let j = 0; j < p.data.length; j++) {
        const da = p.data[j] - before[i][j], db = q.data[j] - before[i][j];
        worst = Math.max(worst, Math.abs(da - scale * db));
        size = Math.max(size, Math.abs(scale * db));
      }
      expect(size).toBeGreaterThan(0);
      expect(worst).toBeLessThan(1e-3 * size);
    });
    // 0 freezes the routers (and only them)
    const frozen = new Trainer(new SwitchTransformerLM(config), { ...options, routerLrScale: 0 });
    const initial = frozen.model.parameters.map((p) => Float32Array.from(p.data));
    await frozen.fit({ steps: 3 });
    frozen.model.parameters.forEach((p, i) => expect(sameBits(p.data, initial[i]), p.name).toBe(routers.includes(p.name)));
    for (const bad of [-1, NaN, Infinity, '1'])
      expect(() => new Trainer(new SwitchTransformerLM(config), { ...options, routerLrScale: bad as number }))
        .toThrow(expect.objectContaining({ code: 'ERR_SWITCH_OPTION', message: expect.stringContaining('routerLrScale') }));
  });

  it('loadCheckpoint rebuilds the model for inference: same weights, tokenizer and generation', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ckpt-'));
    try {
      const words = WordTokenizer.fromTexts(['the cat sat on the mat', 'a dog ran far'], 30);
      const model = new SwitchTransformerLM({ ...tiny, vocabSize: words.vocabSize });
      const trainer = new Trainer(model, { train: Int32Array.from(train, (t) => t % words.vocabSize), batchSize: 2, seqLen: 8, tokenizer: words.toJSON() });
      await trainer.fit({ steps: 3 });
      trainer.save(join(dir, 'c'));
      const { model: loaded, tokenizer, state } = loadCheckpoint(join(dir, 'c'));
      expect(state.step).toBe(3);
      expect(loaded.config).toEqual(model.config);
      for (const [i, p] of loaded.parameters.entries()) expect(sameBits(p.data, model.parameters[i].data), p.name).toBe(true);
      expect(tokenizer).toEqual(words.toJSON());
      const prompt = tokenizerFromJSON(tokenizer!).encode('the cat');
      const options = { maxNewTokens: 6, temperature: 0.9, topP: 0.95, seed: 3 };
      expect(await loaded.generate(prompt, options)).toEqual(await model.generate(prompt, options));
      expect(() => loadCheckpoint(join(dir, 'none'))).toThrow(expect.objectContaining({ code: 'ERR_CHECKPOINT' }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects a corrupt or foreign checkpoint with ERR_CHECKPOINT', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ckpt-'));
    try {
      expect(() => readCheckpoint(dir)).toThrow(expect.objectContaining({ code: 'ERR_CHECKPOINT' }));
      const trainer = new Trainer(new SwitchTransformerLM(tiny), { train, batchSize: 2, seqLen: 8 });
      trainer.save(join(dir, 'c'));
      const file = join(dir, 'c', 'model.safetensors');
      writeFileSync(file, readFileSync(file).subarray(0, 100));
      expect(() => Trainer.resume(join(dir, 'c'), { train })).toThrow(expect.objectContaining({ code: 'ERR_CHECKPOINT' }));
      expect(existsSync(join(dir, 'c', 'state.json'))).toBe(true);
      expect(() => new Trainer(new SwitchTransformerLM(tiny), { train, batchSize: 2, seqLen: 9 })).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_OPTION' }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
