// Fidelity check against the PyTorch reference (bench/reference/model_torch.py), outside npm test:
// from the same initial weights (exported from ours) and the same batches, the first N training
// steps' losses must agree to 1e-4 relative.
//   node bench/reference/fidelity.mjs [--steps 10] [--experts 8] [--vocab word|byte] [--router-lr-scale X] [--python /usr/bin/python3]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SwitchTransformerLM, Trainer, prepareDataset, saveCheckpoint } from 'switch-transformer';

const { values } = parseArgs({ options: {
  steps: { type: 'string', default: '10' }, experts: { type: 'string', default: '8' }, tokenizer: { type: 'string', default: 'word' },
  python: { type: 'string', default: '/usr/bin/python3' }, 'router-lr-scale': { type: 'string' }, batch: { type: 'string', default: '16' }, seq: { type: 'string', default: '128' },
} });
const steps = Number(values.steps), B = Number(values.batch), S = Number(values.seq);
const data = prepareDataset({ tokenizer: values.tokenizer });
const model = new SwitchTransformerLM({ vocabSize: data.tokenizer.vocabSize, numExperts: Number(values.experts), maxSeqLen: S });
const trainerOptions = { lr: 2e-3, warmupSteps: 50, clipNorm: 1, batchSize: B, seqLen: S, optimizer: 'adamw',
  ...(values['router-lr-scale'] !== undefined ? { routerLrScale: Number(values['router-lr-scale']) } : {}) };
const trainer = new Trainer(model, { ...trainerOptions, train: data.train });
const dir = mkdtempSync(join(tmpdir(), 'fidelity-'));
try {
  saveCheckpoint(join(dir, 'init'), model, { tokenizer: data.tokenizer.toJSON() });
  const batches = [];
  const probe = new Trainer(new SwitchTransformerLM(model.config, {}), { ...trainerOptions, train: data.train });
  for (let i = 0; i < steps; i++) {
    const b = probe.loader.next();
    batches.push({ tokens: Array.from(b.tokens), targets: Array.from(b.targets) });
  }
  writeFileSync(join(dir, 'batches.json'), JSON.stringify({ batchSize: B, seqLen: S, trainer: { ...trainerOptions, routerLrScale: trainer.options.routerLrScale }, batches }));
  const ours = (await trainer.fit({ steps })).history.map((h) => h.loss);
  const script = join(dirname(fileURLToPath(import.meta.url)), 'model_torch.py');
  const theirs = JSON.parse(execFileSync(values.python, [script, 'train', join(dir, 'init'), join(dir, 'batches.json'), '--steps', String(steps)],
    { encoding: 'utf8', maxBuffer: 1 << 26 })).losses;
  let worst = 0;
  ours.forEach((l, i) => {
    const rel = Math.abs(l - theirs[i]) / Math.abs(theirs[i]);
    worst = Math.max(worst, rel);
    console.log(`step ${i + 1}: ours ${l.toFixed(6)}  pytorch ${theirs[i].toFixed(6)}  relative difference ${rel.toExponential(2)}`);
  });
  console.log(`worst relative difference ${worst.toExponential(2)} (target 1e-4): ${worst <= 1e-4 ? 'PASS' : 'FAIL'}`);
  process.exitCode = worst <= 1e-4 ? 0 : 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
