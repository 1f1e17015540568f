// Global-norm gradient clipping: every gradient scaled by min(1, maxNorm / ‖g‖) where ‖g‖ is the
// L2 norm over all parameters together. The norm is summed in float64 in parameter order, so it is
// the same number every run.

/** Returns the norm before clipping. */
export function clipGradientNorm(grads: readonly Float32Array[], maxNorm: number): number {
  let sq = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) sq += g[i] * g[i];
  const norm = Math.sqrt(sq);
  const scale = maxNorm / (norm + 1e-6);
  if (maxNorm > 0 && scale < 1) {
    for (const g of grads) for (let i = 0; i < g.length; i++) g[i] *= scale;
  }
  return norm;
}
