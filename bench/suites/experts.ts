// Suite `experts`: training step time of the Switch layer at fixed T, D, F and capacity factor as
// the number of experts grows (E = 1 ... 128). The paper's claim (§2, Figure 4) is that more
// experts cost almost nothing per token: the target is E = 64 within 1.25× of E = 1.
import { performance } from 'node:perf_hooks';
import type { BenchContext, BenchRecord, Suite } from '../suite.js';
import { SwitchFeedForward, setNumThreads } from '../../src/index.js';
import { randomInput } from '../measure.js';
import { compareWithTorch, shapeName, stepFlops, timeSwitch, torchFields, type LayerShape } from './layer.js';

/**
 * The step time of each E relative to the first, measured interleaved: one layer per E, stepped in
 * turn for `rounds` rounds, the median of the per-round ratios. On a shared machine whose speed
 * changes from second to second this is the ratio to trust; the per-E medians timed one after the
 * other carry the load changes between them.
 */
export function interleavedRatios(fixed: Omit<LayerShape, 'E'>, counts: number[], rounds: number): number[] {
  const { T, D, F, cf } = fixed;
  // The inputs timeSwitch uses: the same routing, so the same kept rows, as the per-E timings.
  const x = randomInput(T * D, 7), dy = randomInput(T * D, 8);
  const layers = counts.map((E) => new SwitchFeedForward({ dModel: D, dFF: F, numExperts: E, capacityFactor: cf, seed: 1, reuseGradients: true }));
  const step = (layer: SwitchFeedForward): number => {
    const t0 = performance.now();
    layer.forward(x, { training: true });
    layer.backward(dy);
    return performance.now() - t0;
  };
  layers.forEach(step);
  const ratios: number[][] = counts.map(() => []);
  for (let r = 0; r < rounds; r++) {
    const times = layers.map(step);
    times.forEach((t, i) => ratios[i].push(t / times[0]));
  }
  return ratios.map((rs) => rs.sort((a, b) => a - b)[Math.floor(rs.length / 2)]);
}

export const expertsSuite: Suite = {
  name: 'experts',
  description: 'Switch layer step time for E = 1 ... 128 at fixed T, D, F, capacity factor (ratio to E = 1)',
  async run(ctx: BenchContext): Promise<BenchRecord[]> {
    const records: BenchRecord[] = [];
    const fixed = ctx.quick ? { T: 1024, D: 128, F: 256, cf: 1.25 } : { T: 4096, D: 512, F: 1024, cf: 1.25 };
    const counts = ctx.quick ? [1, 8, 64] : [1, 2, 4, 8, 16, 32, 64, 128];
    const warmup = 1, repeats = ctx.quick ? 3 : 5;
    const withTorch = ctx.compare.includes('torch');
    for (const threads of ctx.threads) {
      setNumThreads(threads);
      ctx.log(`experts: interleaved steps, ${threads} thread(s)`);
      const interleaved = interleavedRatios(fixed, counts, ctx.quick ? 3 : 11);
      let first = 0;
      for (const E of counts) {
        const shape: LayerShape = { ...fixed, E };
        ctx.log(`experts: ${shapeName(shape)}, ${threads} thread(s)`);
        const s = timeSwitch(shape, warmup, repeats, false);
        if (E === counts[0]) first = s.forwardBackward;
        // PyTorch's layer at the same E, in rounds alternating with ours (as in the layer suite).
        const torch = withTorch ? await compareWithTorch(shape, threads, false, repeats, ctx, () => {
          s.layer.forward(s.x, { training: true });
          s.layer.backward(s.dy);
        }) : null;
        const outside = Math.max(0, s.forwardBackward - s.matmulsForwardBackward);
        records.push({
          suite: 'experts', name: `switch step E=${E}`, shape: shapeName(shape), threads, seconds: s.forwardBackward,
          ratioToOneExpert: s.forwardBackward / first,
          interleavedRatioToOneExpert: interleaved[counts.indexOf(E)],
          tokensPerSecond: shape.T / s.forwardBackward,
          gflops: stepFlops(s.rows, shape.D, shape.F) / s.forwardBackward / 1e9,
          expertMatmulsSeconds: s.matmulsForwardBackward,
          outsideMatmulsShare: outside / s.forwardBackward,
          stepsOutsideMatmulsSeconds: s.stepsOutsideMatmuls,
          rows: s.rows,
          ...torchFields(torch),
        });
      }
    }
    return records;
  },
};

export default expertsSuite;
