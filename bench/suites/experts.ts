// Suite `experts`: training step time of the Switch layer at fixed T, D, F and capacity factor as
// the number of experts grows (E = 1 ... 128). The paper's claim (§2, Figure 4) is that more
// experts cost almost nothing per token: the target is E = 64 within 1.25× of E = 1.
import type { BenchContext, BenchRecord, Suite } from '../suite.js';
import { setNumThreads } from '../../src/index.js';
import { shapeName, stepFlops, timeSwitch, timeTorch, type LayerShape } from './layer.js';

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
      let first = 0;
      for (const E of counts) {
        const shape: LayerShape = { ...fixed, E };
        ctx.log(`experts: ${shapeName(shape)}, ${threads} thread(s)`);
        const s = timeSwitch(shape, warmup, repeats);
        if (E === counts[0]) first = s.forwardBackward;
        const torch = withTorch ? timeTorch(shape, threads, false, warmup, repeats, ctx.log) : null;
        const outside = Math.max(0, s.forwardBackward - s.matmulsForwardBackward);
        records.push({
          suite: 'experts', name: `switch step E=${E}`, shape: shapeName(shape), threads, seconds: s.forwardBackward,
          ratioToOneExpert: s.forwardBackward / first,
          tokensPerSecond: shape.T / s.forwardBackward,
          gflops: stepFlops(s.rows, shape.D, shape.F) / s.forwardBackward / 1e9,
          expertMatmulsSeconds: s.matmulsForwardBackward,
          outsideMatmulsShare: outside / s.forwardBackward,
          stepsOutsideMatmulsSeconds: s.stepsOutsideMatmuls,
          rows: s.rows,
          ...(torch ? { torchSeconds: torch.forwardBackward, speedupOverTorch: torch.forwardBackward / s.forwardBackward } : {}),
        });
      }
    }
    return records;
  },
};

export default expertsSuite;
