// Why routing is unstable early in the default run (bench/RESULTS.md, ## train): for each Switch
// layer, every few steps, how much of the router input is common to all tokens, how far the
// router's logits spread across tokens, and how much one optimizer step moves them (the part common
// to all tokens against the token-specific part). Logits are centred per token (softmax ignores a
// shift shared by the experts).
//   node bench/quality/router_probe.mjs [steps=60] [every=10] [seed=0] [rlr=1] [alpha=0.01] [cf=1.25]
import { prepareDataset, SwitchTransformerLM, Trainer } from 'switch-transformer';

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.split('=')));
const steps = Number(args.steps ?? 60), every = Number(args.every ?? 10), seed = Number(args.seed ?? 0);
const data = prepareDataset({});
const model = new SwitchTransformerLM({ vocabSize: data.tokenizer.vocabSize, numExperts: 8, seed,
  loadBalanceCoef: Number(args.alpha ?? 0.01), capacityFactor: Number(args.cf ?? 1.25) });
const trainer = new Trainer(model, { train: data.train, batchSize: 16, seqLen: 128, lr: 2e-3, warmupSteps: 50, clipNorm: 1, seed,
  routerLrScale: Number(args.rlr ?? 1) });
const { dModel: D, numExperts: E } = model.config;
const blocks = [...Array(model.config.numLayers).keys()].filter((i) => i % 2 === 1);

/** (T, E) logits x·W centred per token. */
function logits(x, w, T) {
  const out = new Float64Array(T * E);
  for (let t = 0; t < T; t++) {
    let mean = 0;
    for (let e = 0; e < E; e++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += x[t * D + d] * w[d * E + e];
      out[t * E + e] = s;
      mean += s / E;
    }
    for (let e = 0; e < E; e++) out[t * E + e] -= mean;
  }
  return out;
}

/** RMS over experts of the mean over tokens (common) and RMS of the rest (token-specific). */
function split(l, T) {
  const mu = new Float64Array(E);
  for (let i = 0; i < T * E; i++) mu[i % E] += l[i] / T;
  let rest = 0;
  for (let i = 0; i < T * E; i++) rest += (l[i] - mu[i % E]) ** 2;
  return [Math.sqrt(mu.reduce((a, v) => a + v * v, 0) / E), Math.sqrt(rest / (T * E))];
}

console.log('step | block | common share of router input | logit spread over tokens | top-1 margin | step change: common | token-specific | tokens per expert');
for (let step = 1; step <= steps; step++) {
  const layers = blocks.map((i) => model.feedForward(i));
  const before = layers.map((l) => Float32Array.from(l.params.router));
  const report = await trainer.trainStep();
  if (step % every !== 0 && step !== 1) continue;
  layers.forEach((layer, j) => {
    // The router input of this step's forward (what the layer kept for its backward).
    const x = layer.saved.x, T = x.length / D;
    const mean = new Float64Array(D);
    let energy = 0;
    for (let i = 0; i < T * D; i++) { mean[i % D] += x[i] / T; energy += x[i] * x[i] / T; }
    const common = mean.reduce((a, v) => a + v * v, 0) / energy;
    const l0 = logits(x, before[j], T), l1 = logits(x, layer.params.router, T);
    const [, spread] = split(l0, T);
    const [dCommon, dToken] = split(l1.map((v, i) => v - l0[i]), T);
    let margin = 0;
    for (let t = 0; t < T; t++) {
      const row = Array.from(l0.subarray(t * E, t * E + E)).sort((a, b) => b - a);
      margin += (row[0] - row[1]) / T;
    }
    console.log(`${step} | ${blocks[j]} | ${common.toFixed(3)} | ${spread.toFixed(3)} | ${margin.toFixed(3)} | ${dCommon.toFixed(3)} | ` +
      `${dToken.toFixed(3)} | ${report.tokensPerExpert[j].join(' ')}`);
  });
}
