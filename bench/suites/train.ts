// Suite `train`: tokens/s of one training step (forward, backward, clipping, AdamW) of the default
// small language model (4 blocks, D=256, 4 heads, F=1024, seq 128, batch 16, word-level vocabulary
// 8193), dense and Switch (8 experts in the odd blocks), at each thread count of the run.
// Batches are random tokens: the speed of a step does not depend on the text.
import type { BenchContext, BenchRecord, Suite } from '../suite.js';
import { AdamW, Random, SwitchTransformerLM, clipGradientNorm, setNumThreads, cpuInfo, trainOnMesh } from '../../src/index.js';

async function stepSeconds(model: SwitchTransformerLM, B: number, S: number, repeats: number): Promise<number> {
  const random = new Random(1);
  const V = model.config.vocabSize;
  const optimizer = new AdamW();
  const times: number[] = [];
  for (let i = 0; i <= repeats; i++) {
    const tokens = Int32Array.from({ length: B * S }, () => random.int(V));
    const targets = Int32Array.from({ length: B * S }, () => random.int(V));
    const t0 = performance.now();
    await model.forward(tokens, targets, B, { training: true });
    await model.backward();
    clipGradientNorm(model.parameters.map((p) => p.grad), 1);
    optimizer.step(model.parameters, 1e-3);
    if (i > 0) times.push((performance.now() - t0) / 1000);  // the first step allocates the optimizer state
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

export const trainSuite: Suite = {
  name: 'train',
  description: 'tokens/s of a training step (forward, backward, optimizer) of the default small model, dense and Switch',
  async run(ctx: BenchContext): Promise<BenchRecord[]> {
    const records: BenchRecord[] = [];
    const B = ctx.quick ? 4 : 16, S = 128, repeats = ctx.quick ? 2 : 5;
    const original = cpuInfo().threads;
    for (const vocabSize of ctx.quick ? [8193] : [8193, 256]) {
      for (const numExperts of [0, 8]) {
        const model = new SwitchTransformerLM({ vocabSize, numExperts, maxSeqLen: S });
        for (const threads of ctx.threads) {
          setNumThreads(threads);
          const seconds = await stepSeconds(model, B, S, repeats);
          const name = `${numExperts ? `switch-e${numExperts}` : 'dense'}-${vocabSize === 256 ? 'byte' : 'word'}`;
          ctx.log(`train ${name} threads=${threads}: ${(B * S / seconds).toFixed(0)} tokens/s`);
          records.push({
            suite: 'train', name, shape: `B=${B} S=${S} D=256 F=1024 E=${numExperts} V=${vocabSize} layers=4`, threads, seconds,
            tokensPerSecond: (B * S) / seconds, params: model.parameterCount,
          });
        }
      }
    }
    setNumThreads(original);
    // Data parallelism on 2 devices (one thread each) on the Brown batches: the median step after the first.
    for (const numExperts of [0, 8]) {
      const steps = ctx.quick ? 3 : 6;
      const result = await trainOnMesh({
        devices: 2, strategy: 'data', model: { numExperts, maxSeqLen: S, groupSize: (B / 2) * S }, data: { corpus: 'brown' },
        trainer: { batchSize: B, seqLen: S, lr: 1e-3 }, steps, threadsPerDevice: 1,
      });
      const times = result.history.slice(1).map((h) => h.seconds).sort((a, b) => a - b);
      const seconds = times[Math.floor(times.length / 2)];
      const name = `${numExperts ? `switch-e${numExperts}` : 'dense'}-word-2-devices`;
      ctx.log(`train ${name}: ${(B * S / seconds).toFixed(0)} tokens/s`);
      records.push({ suite: 'train', name, shape: `B=${B} S=${S} D=256 F=1024 E=${numExperts} V=8193 layers=4 devices=2`, threads: 2,
        seconds, tokensPerSecond: (B * S) / seconds, params: result.params, devices: 2, strategy: 'data' });
    }
    return records;
  },
};

export default trainSuite;
