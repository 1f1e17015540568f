// Global-norm gradient clipping: every gradient scaled by min(1, maxNorm / ‖g‖) where ‖g‖ is the
// L2 norm over all parameters together. The sum of squares is taken in float64 over fixed blocks
// in a fixed order (native/kernels/adamw.cc), so it is the same number every run and thread count.
import { native } from '../native.js';

/** Returns the norm before clipping. */
export function clipGradientNorm(grads: readonly Float32Array[], maxNorm: number): number {
  let sq = 0;
  for (const g of grads) sq += native.sumSquares(g) as number;
  const norm = Math.sqrt(sq);
  const scale = maxNorm / (norm + 1e-6);
  if (maxNorm > 0 && scale < 1) for (const g of grads) native.scaleInPlace(g, scale);
  return norm;
}
