// The language model (SPEC §4) with the reference dense feed-forward layer: loss and every
// parameter's gradient against the same network written in tfjs-core (autograd), finite
// differences, thread-count invariance, async layers, generation and bad options.
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops.js';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import '@tensorflow/tfjs-backend-cpu';
import { Random, setNumThreads, cpuInfo, SwitchTransformerLM, type ModelConfig } from 'switch-transformer';
import { ReferenceDenseLayer, fileRandom, referenceFactory, relError, sameBits } from './model-helpers.js';

await tf.setBackend('cpu');
const { seed, random } = fileRandom();

const tiny: Partial<ModelConfig> = { vocabSize: 13, dModel: 8, numHeads: 2, numLayers: 2, dFF: 12, maxSeqLen: 6, numExperts: 0 };

function batch(B: number, S: number, V: number) {
  const tokens = Int32Array.from({ length: B * S }, () => random.int(V));
  const targets = Int32Array.from({ length: B * S }, () => random.int(V));
  return { tokens, targets };
}

/** The same network in tfjs, on the model's own parameter values. */
function tfLoss(model: SwitchTransformerLM, values: tf.Tensor[], tokens: Int32Array, targets: Int32Array, B: number, S: number): tf.Scalar {
  const c = model.config;
  const D = c.dModel, H = c.numHeads, Dh = D / H, T = B * S, V = c.vocabSize;
  const p = new Map(model.parameters.map((q, i) => [q.name, values[i]]));
  const rms = (x: tf.Tensor, w: tf.Tensor) => x.mul(x.square().mean(-1, true).add(c.normEps).rsqrt()).mul(w);
  let x = tf.gather(p.get('wte')!, tf.tensor1d(tokens, 'int32')).reshape([B, S, D]).add(p.get('wpe')!.slice([0, 0], [S, D])).reshape([T, D]);
  const mask = tf.linalg.bandPart(tf.ones([S, S]), -1, 0);
  for (let i = 0; i < c.numLayers; i++) {
    const n1 = rms(x, p.get(`blocks.${i}.norm1`)!) as tf.Tensor2D;
    const qkv = n1.matMul(p.get(`blocks.${i}.attention.wQkv`) as tf.Tensor2D).reshape([B, S, 3, H, Dh]).transpose([2, 0, 3, 1, 4]);
    const [q, k, v] = tf.unstack(qkv, 0);
    const scores = q.matMul(k, false, true).div(Math.sqrt(Dh)).add(tf.scalar(1).sub(mask).mul(-1e9));
    const ctx = tf.softmax(scores).matMul(v).transpose([0, 2, 1, 3]).reshape([T, D]) as tf.Tensor2D;
    x = x.add(ctx.matMul(p.get(`blocks.${i}.attention.wO`) as tf.Tensor2D));
    const n2 = rms(x, p.get(`blocks.${i}.norm2`)!) as tf.Tensor2D;
    x = x.add(n2.matMul(p.get(`blocks.${i}.ffn.wIn`) as tf.Tensor2D).relu().matMul(p.get(`blocks.${i}.ffn.wOut`) as tf.Tensor2D));
  }
  const logits = (rms(x, p.get('normFinal')!) as tf.Tensor2D).matMul(p.get('wte') as tf.Tensor2D, false, true);
  const oneHot = new Float32Array(T * V);
  targets.forEach((target, t) => { oneHot[t * V + target] = 1; });
  return logits.logSumExp(1).sub(logits.mul(tf.tensor2d(oneHot, [T, V])).sum(1)).mean() as tf.Scalar;
}

async function lossAndGrads(model: SwitchTransformerLM, tokens: Int32Array, targets: Int32Array, B: number) {
  const out = await model.forward(tokens, targets, B, { training: true });
  for (const p of model.parameters) p.grad.fill(NaN);  // poison: every gradient must be written
  await model.backward();
  return { out, grads: model.parameters.map((p) => Float32Array.from(p.grad)) };
}

describe('SwitchTransformerLM (dense reference feed-forward)', () => {
  it.each([[1, 1], [2, 5], [3, 6]])('B=%i S=%i: loss and all gradients match tfjs autograd', async (B, S) => {
    const model = new SwitchTransformerLM({ ...tiny, seed: random.int(1000) }, { feedForward: referenceFactory() });
    // Non-trivial norm weights so their gradients are exercised.
    for (const p of model.parameters) if (p.name.includes('norm')) p.data.forEach((_, i) => { p.data[i] = 1 + 0.3 * random.normal(); });
    const { tokens, targets } = batch(B, S, tiny.vocabSize!);
    const { out, grads } = await lossAndGrads(model, tokens, targets, B);
    const values = model.parameters.map((p) => tf.tensor(p.data, p.shape));
    const expected = tfLoss(model, values, tokens, targets, B, S).dataSync()[0];
    expect(out.auxLoss).toBe(0);
    expect(Math.abs(out.loss - expected)).toBeLessThan(1e-5 * Math.abs(expected));
    expect(out.crossEntropy).toBe(out.loss);
    const tfGrads = tf.grads((...xs: tf.Tensor[]) => tfLoss(model, xs, tokens, targets, B, S))(values);
    model.parameters.forEach((p, i) => {
      const g = tfGrads[i].dataSync();
      if (p.name === 'wpe') {
        expect(relError(grads[i].subarray(0, S * 8), g.subarray(0, S * 8)), p.name).toBeLessThan(2e-4);
        expect(grads[i].subarray(S * 8).every((v) => v === 0)).toBe(true);
      } else {
        expect(relError(grads[i], g), p.name).toBeLessThan(2e-4);
      }
    });
  });

  it('gradients agree with finite differences of the loss', async () => {
    const model = new SwitchTransformerLM({ ...tiny, seed: 3 }, { feedForward: referenceFactory() });
    const B = 2, S = 4;
    // The loss at a perturbed weight, and which relu inputs of the reference layers were > 0.
    const lossAt = async (tokens: Int32Array, targets: Int32Array, p: { data: Float32Array }, i: number, value: number) => {
      const saved = p.data[i];
      p.data[i] = value;
      const loss = (await model.forward(tokens, targets, B)).loss;
      p.data[i] = saved;
      const pattern = Array.from({ length: model.config.numLayers }, (_, b) =>
        Buffer.from((model.feedForward(b) as ReferenceDenseLayer).activePattern).toString('hex')).join('|');
      return { loss, pattern };
    };
    // A batch and its gradients; a parameter whose probes all sit on a kink of this batch (a relu
    // input within reach of zero moves with every weight of the layers before it) gets a new one.
    const batches: { tokens: Int32Array; targets: Int32Array; grads: Float32Array[] }[] = [];
    const batchNumber = async (n: number) => {
      while (batches.length <= n) {
        const { tokens, targets } = batch(B, S, tiny.vocabSize!);
        batches.push({ tokens, targets, grads: (await lossAndGrads(model, tokens, targets, B)).grads });
      }
      return batches[n];
    };
    for (const [pi, p] of model.parameters.entries()) {
      if (p.name === 'wpe') continue;
      // relu is the model's only kink: where some relu input changes sign inside [w − h, w + h]
      // the central difference averages two slopes and means nothing, so such a probe (seen
      // exactly, as a change of the activation pattern) is replaced by another index. Everywhere
      // else the loss is smooth: Richardson's (4·fd(h/2) − fd(h)) / 3 cancels the h² error, which
      // at h = 1e-2 alone could reach 5 % for wte (it is also the output projection).
      let checked = 0;
      for (let n = 0; n < 4 && checked === 0; n++) {
        const { tokens, targets, grads } = await batchNumber(n);
        for (let attempt = 0; attempt < 40 && checked < 2; attempt++) {
          const i = p.name === 'wte' ? tokens[random.int(tokens.length)] * 8 + random.int(8) : random.int(p.data.length);
          const w = p.data[i];
          const at = await lossAt(tokens, targets, p, i, w);
          let kink = false;
          const fd = async (h: number) => {  // one at a time
            const up = await lossAt(tokens, targets, p, i, w + h), down = await lossAt(tokens, targets, p, i, w - h);
            kink ||= up.pattern !== at.pattern || down.pattern !== at.pattern;
            return (up.loss - down.loss) / (2 * h);
          };
          const h = 2e-3;
          const [coarse, fine] = [await fd(h), await fd(h / 2)];
          if (kink) continue;
          const estimate = (4 * fine - coarse) / 3;
          // float32 forward: ~1e-6 noise in the loss, ~1e-4 in a difference quotient at h = 1e-3.
          expect(Math.abs(estimate - grads[pi][i]), `seed ${seed}: ${p.name}[${i}] fd ${estimate} vs ${grads[pi][i]}`).toBeLessThan(1e-3 * Math.max(1, Math.abs(estimate)) + 1e-4);
          checked++;
        }
      }
      expect(checked, `seed ${seed}: ${p.name}: no smooth probe found in four batches`).toBeGreaterThan(0);
    }
  });

  it('is bit-identical for any thread count, and with asynchronous layers', async () => {
    const B = 2, S = 6;
    const { tokens, targets } = batch(B, S, tiny.vocabSize!);
    const threads = cpuInfo().threads;
    const runs = [];
    for (const [n, asynchronous] of [[1, false], [2, false], [3, true]] as const) {
      setNumThreads(n);
      const model = new SwitchTransformerLM({ ...tiny, seed: 11, dropout: 0.2 }, { feedForward: referenceFactory(asynchronous) });
      runs.push(await lossAndGrads(model, tokens, targets, B));
    }
    setNumThreads(threads);
    for (const run of runs.slice(1)) {
      expect(run.out.loss).toBe(runs[0].out.loss);
      run.grads.forEach((g, i) => expect(sameBits(g, runs[0].grads[i])).toBe(true));
    }
  });

  it('an evaluation forward between a training forward and its backward changes nothing', async () => {
    const B = 2, S = 5;
    const { tokens, targets } = batch(B, S, tiny.vocabSize!);
    const a = new SwitchTransformerLM({ ...tiny, seed: 8 }, { feedForward: referenceFactory() });
    const b = new SwitchTransformerLM({ ...tiny, seed: 8 }, { feedForward: referenceFactory() });
    const plain = await lossAndGrads(a, tokens, targets, B);
    await b.forward(tokens, targets, B, { training: true });
    const other = batch(1, 3, tiny.vocabSize!);
    await b.forward(other.tokens, other.targets, 1);
    await b.backward();
    b.parameters.forEach((p, i) => expect(sameBits(p.grad, plain.grads[i]), p.name).toBe(true));
  });

  it('dropout is off in evaluation and seeded in training', async () => {
    const B = 1, S = 6;
    const { tokens, targets } = batch(B, S, tiny.vocabSize!);
    const model = new SwitchTransformerLM({ ...tiny, dropout: 0.5 }, { feedForward: referenceFactory() });
    const plain = new SwitchTransformerLM({ ...tiny, dropout: 0 }, { feedForward: referenceFactory() });
    expect((await model.forward(tokens, targets, B)).loss).toBe((await plain.forward(tokens, targets, B)).loss);
    const a = (await model.forward(tokens, targets, B, { training: true })).loss;
    const b = (await model.forward(tokens, targets, B, { training: true })).loss;
    expect(a).not.toBe(b);  // a fresh mask each step
  });

  it('generates greedily and by sampling, deterministically per seed', async () => {
    const model = new SwitchTransformerLM(tiny, { feedForward: referenceFactory() });
    const greedy = await model.generate([1, 2, 3], { maxNewTokens: 8 });
    expect(greedy).toHaveLength(8);
    expect(greedy.every((t) => Number.isInteger(t) && t >= 0 && t < 13)).toBe(true);
    expect(await model.generate([1, 2, 3], { maxNewTokens: 8 })).toEqual(greedy);
    // the greedy first token is the argmax of the logits
    const logits = await model.nextTokenLogits(Int32Array.of(1, 2, 3));
    expect(greedy[0]).toBe(logits.indexOf(Math.max(...logits)));
    const sampled = await model.generate([1, 2, 3], { maxNewTokens: 8, temperature: 1, topK: 5, seed: 7 });
    expect(await model.generate([1, 2, 3], { maxNewTokens: 8, temperature: 1, topK: 5, seed: 7 })).toEqual(sampled);
  });

  it('decodes with a key/value cache as a forward over every token fed so far would', async () => {
    const drawn = (n: number) => Array.from({ length: n }, () => random.int(tiny.vocabSize!));
    const models = [
      new SwitchTransformerLM({ ...tiny, seed: random.int(1000) }, { feedForward: referenceFactory() }),
      new SwitchTransformerLM({ ...tiny, seed: random.int(1000) }, { feedForward: referenceFactory(true) }),
      // Switch layers that drop nothing in a forward over the window (capacity = group size).
      new SwitchTransformerLM({ ...tiny, numExperts: 4, evalCapacityFactor: 4, seed: random.int(1000) }),
      new SwitchTransformerLM({ ...tiny, numExperts: 4, topK: 2, evalCapacityFactor: 4, seed: random.int(1000) }),
    ];
    for (const [m, model] of models.entries()) {
      const decoder = model.decoder();
      const history: number[] = [];
      // A prompt, single tokens, several at once, then past maxSeqLen (6): the window slides.
      for (const chunk of [drawn(2), drawn(1), drawn(1), drawn(2), drawn(1), drawn(3), drawn(1)]) {
        history.push(...chunk);
        const logits = await decoder.append(chunk);
        expect(decoder.length).toBe(history.length);
        const expected = await model.nextTokenLogits(Int32Array.from(history));
        expect(logits).toHaveLength(tiny.vocabSize!);
        expect(relError(logits, expected), `model ${m}, ${history.length} tokens`).toBeLessThan(1e-5);
        if (history.length === 2) expect(sameBits(logits, expected), 'the first append is the same forward').toBe(true);
      }
      decoder.reset();
      expect(decoder.length).toBe(0);
      const prompt = drawn(3);
      expect(sameBits(await decoder.append(prompt), await model.nextTokenLogits(Int32Array.from(prompt)))).toBe(true);
    }
  });

  it('generates with the decoder: the same tokens as argmax over forwards of the whole sequence', async () => {
    const model = new SwitchTransformerLM({ ...tiny, numExperts: 4, evalCapacityFactor: 4, seed: 11 });
    const tokens = [4, 9];
    for (let n = 0; n < 9; n++) {  // past maxSeqLen
      const logits = await model.nextTokenLogits(Int32Array.from(tokens));
      tokens.push(logits.indexOf(Math.max(...logits)));
    }
    expect(await model.generate([4, 9], { maxNewTokens: 9 })).toEqual(tokens.slice(2));
  });

  it('samples within the topK and topP candidates, and rejects bad generation options', async () => {
    // A fresh model's logits are nearly flat, so a nucleus of p holds about p of the tokens and a
    // sample outside it would show within a few draws.
    const model = new SwitchTransformerLM({ ...tiny, seed: random.int(1000) }, { feedForward: referenceFactory() });
    const prompt = [random.int(13), random.int(13)];
    const logits = await model.nextTokenLogits(Int32Array.from(prompt));
    const byLogit = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
    const weights = byLogit.map((i) => Math.exp(logits[i] - logits[byLogit[0]]));
    // The fewest most likely of the k best whose probabilities add up to p (of the k's total).
    const nucleus = (p: number, k = 13) => {
      const total = weights.slice(0, k).reduce((a, b) => a + b, 0);
      let mass = 0, kept = 0;
      while (kept < k && mass < p * total) mass += weights[kept++];
      return new Set(byLogit.slice(0, kept));
    };
    for (const [options, allowed] of [
      [{ topP: 0.5 }, nucleus(0.5)],
      [{ topP: 0.9 }, nucleus(0.9)],
      [{ topK: 3 }, nucleus(1, 3)],
      [{ topK: 5, topP: 0.5 }, nucleus(0.5, 5)],
      [{ topP: 1e-9 }, new Set([byLogit[0]])],
    ] as const) {
      expect(allowed.size, 'nearly flat logits').toBeLessThan(13);
      const seen = new Set<number>();
      for (let seed = 0; seed < 40; seed++) {
        const [t] = await model.generate(prompt, { maxNewTokens: 1, temperature: 1, seed, ...options });
        expect(allowed.has(t), `${JSON.stringify(options)}: token ${t}`).toBe(true);
        seen.add(t);
      }
      if (allowed.size > 1) expect(seen.size, `${JSON.stringify(options)}: one token in 40 draws`).toBeGreaterThan(1);
    }
    for (const bad of [{ maxNewTokens: -1 }, { maxNewTokens: 1.5 }, { topK: -1 }, { topK: 2.5 }, { topP: 0 }, { topP: 1.5 },
      { topP: Number.NaN }, { temperature: -1 }, { seed: 0.5 }])
      await expect(model.generate(prompt, bad), JSON.stringify(bad)).rejects.toMatchObject({
        code: 'ERR_SWITCH_OPTION', name: 'RangeError', message: expect.stringContaining(`option '${Object.keys(bad)[0]}'`) });
  });

  it('a decoder rejects bad tokens and keeps its state', async () => {
    const model = new SwitchTransformerLM(tiny, { feedForward: referenceFactory(true) });  // layers that await
    const decoder = model.decoder();
    await expect(decoder.append([])).rejects.toMatchObject({ code: 'ERR_SWITCH_SHAPE', name: 'RangeError' });
    const first = await decoder.append([1, 2]);
    for (const bad of [[13], [-1], [1.5], [Number.NaN]])
      await expect(decoder.append([3, ...bad])).rejects.toMatchObject({ code: 'ERR_SWITCH_RANGE', message: expect.stringContaining("argument 'tokens'") });
    expect(decoder.length).toBe(2);
    expect(relError(await decoder.append([3]), await model.nextTokenLogits(Int32Array.of(1, 2, 3)))).toBeLessThan(1e-5);
    expect(first).toHaveLength(13);
    // One call at a time, as for forward; a failed append feeds nothing.
    const pending = decoder.append([4]);
    const second = decoder.append([5]), forward = model.forward(Int32Array.of(1, 2), Int32Array.of(2, 3), 1);
    expect(() => decoder.reset()).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_STATE' }));
    await expect(second).rejects.toMatchObject({ code: 'ERR_SWITCH_STATE' });
    await expect(forward).rejects.toMatchObject({ code: 'ERR_SWITCH_STATE' });
    await pending;
    expect(decoder.length).toBe(4);
    const busy = model.forward(Int32Array.of(1, 2), Int32Array.of(2, 3), 1);
    await expect(decoder.append([5])).rejects.toMatchObject({ code: 'ERR_SWITCH_STATE' });
    await busy;
    expect(decoder.length).toBe(4);
    expect(relError(await decoder.append([5]), await model.nextTokenLogits(Int32Array.of(1, 2, 3, 4, 5)))).toBeLessThan(1e-5);
    // Layers that route groups of more than one token cannot take one token at a time.
    const grouped = new SwitchTransformerLM({ ...tiny, numExperts: 4, groupSize: 2 });
    await expect(grouped.generate([1, 2], { maxNewTokens: 2 })).rejects.toMatchObject({ code: 'ERR_SWITCH_SHAPE' });
  });

  it('rejects bad options and inputs with coded errors', async () => {
    const f = { feedForward: referenceFactory() };
    expect(() => new SwitchTransformerLM({ ...tiny, numHeads: 3 }, f)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_OPTION' }));
    expect(() => new SwitchTransformerLM({ ...tiny, dropout: 1 }, f)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_OPTION' }));
    expect(() => new SwitchTransformerLM({ ...tiny, dModle: 8 } as Partial<ModelConfig>, f)).toThrow(/unknown model option 'dModle'/);
    expect(() => new SwitchTransformerLM({ ...tiny, switchLayers: [5] }, f)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_OPTION' }));
    const model = new SwitchTransformerLM(tiny, f);
    await expect(model.forward(new Int32Array(14), new Int32Array(14), 2)).rejects.toMatchObject({ code: 'ERR_SWITCH_SHAPE' });
    await expect(model.forward(new Int32Array(6), new Int32Array(5), 1)).rejects.toMatchObject({ code: 'ERR_SWITCH_SHAPE' });
    await expect(model.forward(Int32Array.of(0, 99), new Int32Array(2), 1)).rejects.toMatchObject({ code: 'ERR_SWITCH_RANGE' });
    await expect(model.backward()).rejects.toMatchObject({ code: 'ERR_SWITCH_STATE' });
    // one call at a time: the layers keep per-call state
    const asyncModel = new SwitchTransformerLM(tiny, { feedForward: referenceFactory(true) });
    const first = asyncModel.forward(Int32Array.of(1, 2), Int32Array.of(2, 3), 1);
    await expect(asyncModel.forward(Int32Array.of(1, 2), Int32Array.of(2, 3), 1)).rejects.toMatchObject({ code: 'ERR_SWITCH_STATE' });
    expect(Number.isFinite((await first).loss)).toBe(true);
    expect(Number.isFinite((await asyncModel.forward(Int32Array.of(1, 2), Int32Array.of(2, 3), 1)).loss)).toBe(true);
  });
});

describe('SwitchTransformerLM with the package layers (SwitchFeedForward, DenseFeedForward)', () => {
  const config: Partial<ModelConfig> = { vocabSize: 11, dModel: 8, numHeads: 2, numLayers: 2, dFF: 12, maxSeqLen: 6, numExperts: 4, seed: 21 };

  it('puts Switch layers in the odd blocks, adds their aux loss, and reports routing', async () => {
    const model = new SwitchTransformerLM(config);
    const names = model.parameters.map((p) => p.name);
    expect(names).toContain('blocks.1.ffn.router');
    expect(names).not.toContain('blocks.0.ffn.router');
    expect(model.parameters.find((p) => p.name === 'blocks.1.ffn.wIn')!.shape).toEqual([4, 8, 12]);
    const dense = new SwitchTransformerLM({ ...config, numExperts: 0 });
    expect(dense.parameters.some((p) => p.name.endsWith('router'))).toBe(false);
    const all = new SwitchTransformerLM({ ...config, switchLayers: 'all' });
    expect(all.parameters.filter((p) => p.name.endsWith('router'))).toHaveLength(2);
    const fixed = new Random(4);
    const tokens = Int32Array.from({ length: 12 }, () => fixed.int(11)), targets = Int32Array.from({ length: 12 }, () => fixed.int(11));
    const out = await model.forward(tokens, targets, 2, { training: true });
    expect(out.switchLayers).toHaveLength(1);
    const s = out.switchLayers[0];
    expect(s.block).toBe(1);
    expect(out.auxLoss).toBeCloseTo(0.01 * s.loadBalanceLoss, 6);
    expect(out.loss).toBeCloseTo(out.crossEntropy + out.auxLoss, 6);
    expect(Array.from(s.tokensPerExpert).reduce((a, b) => a + b, 0)).toBe(12);
    expect(out.droppedFraction).toBe(s.droppedFraction);
  });

  it('gradients (router included) agree with finite differences', async () => {
    const model = new SwitchTransformerLM({ ...config, minCapacity: 12 });  // no drops: the loss is smooth in the weights
    const fixed = new Random(9);
    const B = 2, S = 6;
    const tokens = Int32Array.from({ length: B * S }, () => fixed.int(11)), targets = Int32Array.from({ length: B * S }, () => fixed.int(11));
    await model.forward(tokens, targets, B, { training: true });
    await model.backward();
    const grads = model.parameters.map((p) => Float32Array.from(p.grad));
    for (const [pi, p] of model.parameters.entries()) {
      if (p.name === 'wpe') continue;
      for (let probe = 0; probe < 2; probe++) {
        const i = fixed.int(p.data.length);
        const saved = p.data[i];
        const h = 5e-3;
        p.data[i] = saved + h;
        const up = (await model.forward(tokens, targets, B, { training: true })).loss;
        p.data[i] = saved - h;
        const down = (await model.forward(tokens, targets, B, { training: true })).loss;
        p.data[i] = saved;
        const fd = (up - down) / (2 * h);
        expect(Math.abs(fd - grads[pi][i]), `${p.name}[${i}] fd ${fd} vs ${grads[pi][i]}`).toBeLessThan(5e-3 * Math.max(1, Math.abs(fd)) + 3e-4);
      }
    }
  });
});
