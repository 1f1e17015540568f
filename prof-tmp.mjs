import { native } from './dist/src/native.js';
import { SwitchTransformerLM, prepareDataset, BatchLoader, AdamW, setNumThreads, clipGradientNorm, SwitchFeedForward, DenseFeedForward } from 'switch-transformer';
setNumThreads(+(process.argv[2] ?? 2));
const times = {};
for (const k of Object.keys(native)) { const f = native[k]; if (typeof f !== 'function') continue; native[k] = (...a) => { const t = performance.now(); const r = f(...a); times[k] = (times[k] ?? 0) + performance.now() - t; return r; }; }
for (const C of [SwitchFeedForward, DenseFeedForward]) for (const m of ['forward', 'backward']) { const f = C.prototype[m]; C.prototype[m] = function (...a) { const t = performance.now(); const r = f.apply(this, a); const key = C.name + '.' + m; times[key] = (times[key] ?? 0) + performance.now() - t; return r; }; }
const ds = prepareDataset();
const model = new SwitchTransformerLM({ vocabSize: ds.tokenizer.vocabSize, numExperts: +(process.argv[3] ?? 8) });
const loader = new BatchLoader(ds.train, { batchSize: 16, seqLen: 128 });
const opt = new AdamW();
let total = 0;
for (let step = 0; step < 3; step++) {
  if (step === 1) { for (const k in times) delete times[k]; total = 0; }
  const b = loader.next();
  const t0 = performance.now();
  await model.forward(b.tokens, b.targets, 16, { training: true });
  await model.backward();
  const t1 = performance.now();
  clipGradientNorm(model.parameters.map(p => p.grad), 1);
  const t2 = performance.now();
  opt.step(model.parameters, 2e-3);
  const t3 = performance.now();
  times.clip = (times.clip ?? 0) + t2 - t1; times.opt = (times.opt ?? 0) + t3 - t2;
  total += t3 - t0;
}
console.log('total per step', (total / 2).toFixed(0), 'ms');
for (const [k, v] of Object.entries(times).sort((a, b) => b[1] - a[1])) console.log(k.padEnd(30), (v / 2).toFixed(1));
