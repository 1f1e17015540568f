// Validation curves of one model of the default run (bench/RESULTS.md, ## train): Switch (8
// experts) or dense (E=0), with router options, evaluated every N steps on the first 8 held-out
// batches (what switch-train reports) and on the whole held-out split.
//   node bench/quality/curves.mjs [steps=678] [every=100] [seed=0] [E=8] [rlr=1] [alpha=0.01] [cf=1.25] [z=0] [all=1]
import { prepareDataset, SwitchTransformerLM, Trainer } from 'switch-transformer';

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.split('=')));
const steps = Number(args.steps ?? 678), every = Number(args.every ?? 100), seed = Number(args.seed ?? 0);
const data = prepareDataset({});
const model = new SwitchTransformerLM({ vocabSize: data.tokenizer.vocabSize, numExperts: Number(args.E ?? 8), seed,
  loadBalanceCoef: Number(args.alpha ?? 0.01), capacityFactor: Number(args.cf ?? 1.25), zLossCoef: Number(args.z ?? 0) });
const trainer = new Trainer(model, { train: data.train, validation: data.validation, batchSize: 16, seqLen: 128, lr: 2e-3,
  warmupSteps: 50, clipNorm: 1, seed, routerLrScale: Number(args.rlr ?? 1) });
let dropped = 0;
const evaluations = [];
for (let s = 1; s <= steps; s++) {
  dropped += (await trainer.trainStep()).droppedFraction;
  if (s % every !== 0 && s !== steps) continue;
  const first8 = (await trainer.evaluate(data.validation, 8)).loss;
  const whole = args.all === '0' ? NaN : (await trainer.evaluate(data.validation, Infinity)).loss;
  evaluations.push({ step: s, first8, whole });
  process.stderr.write(`step ${s}: validation ${first8.toFixed(4)} (first 8 batches), ${whole.toFixed(4)} (whole split)\n`);
}
console.log(JSON.stringify({ args, evaluations, droppedFraction: dropped / steps }));
