// Suite `generate`: greedy generation with the default small language model (4 blocks, D=256,
// 4 heads, F=1024, 128 positions, word-level vocabulary 8193), dense and Switch (8 experts in the
// odd blocks), from a 1-token prompt to the full window, at each thread count of the run: the
// key/value-cache decoder (`generate`) against a forward over the whole sequence for every token
// (`nextTokenLogits`, what generation did without a cache), side by side in one run.
//
// A decoded token reads every weight it uses once (one row through each matmul): the query, key,
// value and output projections of every block, one expert of each Switch layer (two matrices),
// the dense layers, and the tied embedding as the output projection. `weightGbps` is those bytes
// over the time of a token; `percentOfPeak` compares it with the memcpy bandwidth of the run (bytes
// copied, each read once and written once), the bound of a pass that reads each weight once.
import type { BenchContext, BenchRecord, Suite } from '../suite.js';
import { median } from '../measure.js';
import { SwitchTransformerLM, setNumThreads, cpuInfo, isSwitchBlock } from '../../src/index.js';

function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** Bytes of float32 weights one decoded token reads. */
function weightBytesPerToken(model: SwitchTransformerLM): number {
  const c = model.config, D = c.dModel, F = c.dFF;
  let floats = c.vocabSize * D;
  for (let i = 0; i < c.numLayers; i++) {
    floats += 4 * D * D;  // wQkv, wO
    // A Switch layer: the router and one expert per choice; a dense layer: its two matrices.
    floats += isSwitchBlock(c, i) ? D * c.numExperts + c.topK * 2 * D * F : 2 * D * F;
  }
  return floats * 4;
}

export const generateSuite: Suite = {
  name: 'generate',
  description: 'greedy generation of the default small model: the key/value-cache decoder against a forward over the sequence per token',
  async run(ctx: BenchContext): Promise<BenchRecord[]> {
    const records: BenchRecord[] = [];
    const peak = await ctx.peak();
    const tokens = ctx.quick ? 8 : 127, repeats = ctx.quick ? 1 : 5;
    const original = cpuInfo().threads;
    for (const numExperts of [0, 8]) {
      const model = new SwitchTransformerLM({ vocabSize: 8193, numExperts, maxSeqLen: 128 });
      const bytes = weightBytesPerToken(model);
      const label = numExperts ? `switch-e${numExperts}` : 'dense';
      for (const threads of ctx.threads) {
        setNumThreads(threads);
        const decoder: number[] = [], window: number[] = [];
        await model.generate([1], { maxNewTokens: 4 });  // warm-up
        for (let r = 0; r < repeats; r++) {
          // Alternating rounds, so both see the same state of a noisy machine.
          let t0 = performance.now();
          await model.generate([1], { maxNewTokens: tokens });
          decoder.push((performance.now() - t0) / 1000 / tokens);
          const sequence = [1];
          t0 = performance.now();
          for (let n = 0; n < tokens; n++) sequence.push(argmax(await model.nextTokenLogits(Int32Array.from(sequence))));
          window.push((performance.now() - t0) / 1000 / tokens);
        }
        const perToken = median(decoder), perTokenWindow = median(window);
        const shape = `prompt 1 + ${tokens} tokens D=256 F=1024 E=${numExperts} V=8193 layers=4`;
        ctx.log(`generate ${label} threads=${threads}: ${(perToken * 1e3).toFixed(2)} ms a token with the cache, ${(perTokenWindow * 1e3).toFixed(2)} without`);
        const weightGbps = bytes / perToken / 1e9;
        records.push({
          suite: 'generate', name: `${label} decoder`, shape, threads, seconds: perToken, gbps: weightGbps,
          percentOfPeak: (100 * weightGbps) / peak.memcpyGbps[threads], tokensPerSecond: 1 / perToken,
          weightBytesPerToken: bytes, speedupVsWindow: perTokenWindow / perToken, samples: repeats,
        });
        records.push({
          suite: 'generate', name: `${label} forward over the sequence`, shape, threads, seconds: perTokenWindow,
          tokensPerSecond: 1 / perTokenWindow, samples: repeats,
        });
      }
    }
    setNumThreads(original);
    return records;
  },
};

export default generateSuite;
