// The model's default feed-forward layers: the package's SwitchFeedForward in Switch blocks and
// DenseFeedForward elsewhere, both used only through the FeedForwardLayer interface. The model copies
// each backward's gradients into its own parameters at once, so the layers may reuse their gradient
// arrays from step to step (reuseGradients) instead of allocating fresh E·D·F buffers.
import { DenseFeedForward } from '../layers/dense.js';
import { SwitchFeedForward } from '../layers/switch.js';
import type { FeedForwardLayer } from '../layers/types.js';
import type { FeedForwardSpec } from './model.js';

export function packageFeedForward(spec: FeedForwardSpec): FeedForwardLayer {
  if (spec.kind === 'dense')
    return new DenseFeedForward({
      dModel: spec.dModel, dFF: spec.dFF, activation: spec.activation, dropout: spec.dropout, seed: spec.seed,
      initScale: spec.initScale, reuseGradients: true,
    });
  return new SwitchFeedForward({
    dModel: spec.dModel, dFF: spec.dFF, numExperts: spec.numExperts, topK: spec.topK,
    capacityFactor: spec.capacityFactor, evalCapacityFactor: spec.evalCapacityFactor, minCapacity: spec.minCapacity,
    groupSize: spec.groupSize, activation: spec.activation, loadBalanceCoef: spec.loadBalanceCoef,
    zLossCoef: spec.zLossCoef, jitter: spec.jitter, expertDropout: spec.expertDropout,
    secondExpertPolicy: spec.secondExpertPolicy, precision: spec.precision, seed: spec.seed, initScale: spec.initScale,
    reuseGradients: true,
  });
}
