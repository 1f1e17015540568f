// Where one training step's time goes (outside npm test): the default model's step (forward,
// backward, clipping, AdamW) with every native kernel call and every feed-forward layer call timed.
//   node bench/reference/profile.mjs [--threads 1] [--steps 5] [--vocab 8193] [--experts 8]
// Prints per phase the median over steps (ms) and the rest (TypeScript, allocation) as "other".
import { parseArgs } from 'node:util';
import { AdamW, Random, SwitchTransformerLM, clipGradientNorm, setNumThreads } from 'switch-transformer';

const { values } = parseArgs({ options: {
  threads: { type: 'string', default: '1' }, steps: { type: 'string', default: '5' },
  vocab: { type: 'string', default: '8193' }, experts: { type: 'string', default: '8' },
} });
const threads = Number(values.threads), V = Number(values.vocab), E = Number(values.experts), steps = Number(values.steps);
const B = 16, S = 128;
setNumThreads(threads);
const { native } = await import('../../dist/src/native.js');

const phases = new Map();
let current = null;
const add = (name, ms) => { current.set(name, (current.get(name) ?? 0) + ms); };
const wrapNative = (name, label = name) => {
  const f = native[name];
  if (typeof f !== 'function') return;
  native[name] = (...args) => {
    const t = performance.now();
    const out = f(...args);
    // The …Async kernels return a promise: their time runs until it settles.
    if (out instanceof Promise) return out.finally(() => add(label, performance.now() - t));
    add(label, performance.now() - t);
    return out;
  };
};
for (const name of ['rmsnormForward', 'rmsnormBackward', 'residualForward', 'attentionForward', 'attentionBackward',
  'embeddingForward', 'embeddingBackward', 'crossEntropyForwardBackward', 'adamwUpdate', 'sumSquares', 'scaleInPlace']) {
  wrapNative(name);
  wrapNative(`${name}Async`, name);
}

const model = new SwitchTransformerLM({ vocabSize: V, numExperts: E, maxSeqLen: S });
for (let i = 0; i < model.config.numLayers; i++) {
  const layer = model.feedForward(i);
  const kind = layer.constructor.name.includes('Switch') ? 'switch' : 'dense';
  for (const m of ['forward', 'backward']) {
    const f = layer[m].bind(layer);
    layer[m] = async (...args) => { const t = performance.now(); try { return await f(...args); } finally { add(`${kind} ffn ${m}`, performance.now() - t); } };
  }
}
const optimizer = new AdamW();
const random = new Random(1);
const totals = [];
for (let i = 0; i <= steps; i++) {
  current = new Map();
  const tokens = Int32Array.from({ length: B * S }, () => random.int(V));
  const targets = Int32Array.from({ length: B * S }, () => random.int(V));
  const t0 = performance.now();
  let t = performance.now();
  await model.forward(tokens, targets, B, { training: true });
  add('forward (all)', performance.now() - t); t = performance.now();
  await model.backward();
  add('backward (all)', performance.now() - t); t = performance.now();
  clipGradientNorm(model.parameters.map((p) => p.grad), 1);
  add('clip (all)', performance.now() - t); t = performance.now();
  optimizer.step(model.parameters, 1e-3);
  add('optimizer (all)', performance.now() - t);
  const total = performance.now() - t0;
  if (i > 0) { totals.push(total); for (const [k, v] of current) (phases.get(k) ?? phases.set(k, []).get(k)).push(v); }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const total = median(totals);
const rows = [...phases].map(([k, v]) => [k, median(v)]);
const inner = rows.filter(([k]) => !k.endsWith('(all)')).reduce((s, [, v]) => s + v, 0);
console.log(`threads ${threads}, vocab ${V}, experts ${E}, B ${B}, S ${S}: step ${total.toFixed(1)} ms = ${(B * S / total * 1000).toFixed(0)} tokens/s`);
for (const [k, v] of rows) console.log(`${k.padEnd(30)} ${v.toFixed(1).padStart(8)} ms ${(100 * v / total).toFixed(1).padStart(5)}%`);
console.log(`${'other (TS, allocation)'.padEnd(30)} ${(total - inner).toFixed(1).padStart(8)} ms ${(100 * (total - inner) / total).toFixed(1).padStart(5)}%`);
