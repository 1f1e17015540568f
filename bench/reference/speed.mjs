// Training-step speed of ours against the PyTorch reference on the same machine and threads,
// measured side by side in one run (alternating rounds), medians over the rounds. Outside npm test.
//   node bench/reference/speed.mjs [--threads 1] [--rounds 3] [--experts 8] [--vocab 8193] [--python /usr/bin/python3]
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AdamW, Random, SwitchTransformerLM, clipGradientNorm, setNumThreads } from 'switch-transformer';

const { values } = parseArgs({ options: {
  threads: { type: 'string', default: '1' }, rounds: { type: 'string', default: '3' }, experts: { type: 'string', default: '8' },
  vocab: { type: 'string', default: '8193' }, python: { type: 'string', default: '/usr/bin/python3' },
  steps: { type: 'string', default: '4' },
} });
const threads = Number(values.threads), V = Number(values.vocab), E = Number(values.experts), steps = Number(values.steps);
const B = 16, S = 128;
setNumThreads(threads);
const script = join(dirname(fileURLToPath(import.meta.url)), 'model_torch.py');
const model = new SwitchTransformerLM({ vocabSize: V, numExperts: E, maxSeqLen: S });
const optimizer = new AdamW();
const random = new Random(1);

async function ours() {
  const times = [];
  for (let i = 0; i <= steps; i++) {
    const tokens = Int32Array.from({ length: B * S }, () => random.int(V));
    const targets = Int32Array.from({ length: B * S }, () => random.int(V));
    const t0 = performance.now();
    await model.forward(tokens, targets, B, { training: true });
    await model.backward();
    clipGradientNorm(model.parameters.map((p) => p.grad), 1);
    optimizer.step(model.parameters, 1e-3);
    if (i > 0) times.push((performance.now() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  return (B * S) / times[Math.floor(times.length / 2)];
}

function theirs() {
  // torch.set_num_threads does not reach the BLAS that Debian's PyTorch calls (OpenBLAS, pthreads,
  // one thread per core by default): without these, "1 thread" of PyTorch runs its matmuls on 2 cores.
  const env = { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) };
  const out = execFileSync(values.python, [script, 'bench', '--vocab', String(V), '--experts', String(E), '--steps', String(steps),
    '--threads', String(threads)], { encoding: 'utf8', env });
  return JSON.parse(out).tokensPerSecond;
}

const rows = [];
for (let r = 0; r < Number(values.rounds); r++) {
  const a = await ours(), b = theirs();
  rows.push({ ours: a, pytorch: b, ratio: a / b });
  console.error(`round ${r + 1}: ours ${a.toFixed(0)} tokens/s, pytorch ${b.toFixed(0)} tokens/s, ratio ${(a / b).toFixed(2)}`);
}
const median = (xs) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)];
console.log(JSON.stringify({ threads, vocab: V, experts: E, batch: B, seq: S,
  oursTokensPerSecond: median(rows.map((r) => r.ours)), pytorchTokensPerSecond: median(rows.map((r) => r.pytorch)),
  ratio: median(rows.map((r) => r.ratio)) }));
