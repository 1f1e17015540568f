#!/usr/bin/env node
// switch-train: trains a Switch Transformer language model on the Brown corpus (or a text corpus),
// shows progress on stderr, prints validation loss and a generated sample, writes a checkpoint.
// `--json` prints one summary object on stdout instead of the text summary.
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { cpuInfo, setNumThreads } from '../index.js';
import { prepareDataset, type Dataset } from '../data/dataset.js';
import type { Tokenizer } from '../data/tokenizer.js';
import { SwitchTransformerLM } from '../model/model.js';
import { resolveModelConfig, type ModelConfig } from '../model/config.js';
import { loadCheckpoint, readCheckpoint } from '../train/checkpoint.js';
import { Trainer, type StepReport } from '../train/trainer.js';
import { trainOnMesh, type MeshTrainingOptions } from '../train/mesh_training.js';
import { htmlPage, lineChart, escapeHtml } from './report.js';

const HELP = `Usage: switch-train [options]

Trains a decoder-only Switch Transformer language model (default: 8 experts in every other block,
word-level Brown corpus, about five minutes), prints the validation loss and a generated sample and
writes a checkpoint.

Model:
  --d-model N            d_model (256)          --layers N        blocks (4)
  --heads N              attention heads (4)    --d-ff N          d_ff per expert / dense layer (1024)
  --experts N            experts per Switch layer, 0 = all dense (8)
  --switch-layers odd|all  which blocks are Switch (odd)
  --capacity-factor X    training capacity factor (1.25)    --eval-capacity-factor X (2.0)
  --top-k 1|2            experts per token (1)
  --load-balance X       load-balancing loss coefficient α (0.01)
  --z-loss X             router z-loss coefficient (0)
  --jitter X             router input jitter ε (0)
  --dropout X            residual dropout (0)   --expert-dropout X  expert hidden dropout (0)
  --init-scale X         initialisation scale s (0.1)
Data:
  --corpus brown|PATH    the Brown corpus (default) or a text file / folder
  --tokenizer word|byte  (word)                 --vocab N         word vocabulary size (8192)
  --validation X         fraction of documents held out (0.1)
Training:
  --steps N              training steps (default: as many as fit in --minutes)
  --minutes X            time budget when --steps is not given (5)
  --batch N              sequences per batch (16)   --seq N       sequence length (128)
  --optimizer adamw|adafactor (adamw)     --lr X     peak learning rate (2e-3)
  --schedule constant|inverse-sqrt (constant)        --warmup N  warm-up steps (50)
  --router-lr-scale X    the routers' learning rate relative to --lr (1)
  --clip X               global gradient-norm limit, 0 = off (1.0)
  --seed N               seeds initialisation, data order and dropout (0)
  --threads N            native threads (all cores)
  --devices N            train on N mesh devices (needs --steps)
  --strategy data|expert-data  data: replicated model (default); expert-data: each device holds
                         E/N experts of every Switch layer, tokens reach them by all-to-all
  --wire bf16|float32    expert-data: precision of the all-to-alls (bf16)
  --backend shared-memory|mpi  the mesh's transport: processes on this host (default) or MPI
                         ranks started by mpirun (Open MPI; --mpi-args "--hostfile hosts" for more hosts)
  --eval-every N         validation every N steps (50)    --eval-batches N (8)
Output:
  --checkpoint DIR       where to write the checkpoint (switch-checkpoint); --no-checkpoint to skip
  --resume DIR           continue training from a checkpoint (on one device or, with --devices, on the mesh);
                         with --steps 0 it only evaluates and samples
  --compare-dense        also train the dense model of equal FLOPs per token on the same data
  --report FILE.html     write a self-contained HTML report with charts
  --prompt TEXT          start of the generated sample ("the")   --sample-tokens N (30)
  --temperature X        sampling temperature, 0 = greedy (0.8)
  --top-p X              sample from the fewest likeliest words holding X of the probability (1)
  --json                 print a JSON summary on stdout
  --quiet                no progress bar
  -h, --help
`;

/** --router-lr-scale's default. */
const ROUTER_LR_SCALE = 1;

const options = {
  'd-model': { type: 'string' }, layers: { type: 'string' }, heads: { type: 'string' }, 'd-ff': { type: 'string' },
  experts: { type: 'string' }, 'switch-layers': { type: 'string' }, 'capacity-factor': { type: 'string' },
  'eval-capacity-factor': { type: 'string' }, 'top-k': { type: 'string' }, 'load-balance': { type: 'string' },
  'z-loss': { type: 'string' }, jitter: { type: 'string' }, dropout: { type: 'string' }, 'expert-dropout': { type: 'string' },
  'init-scale': { type: 'string' }, corpus: { type: 'string' }, tokenizer: { type: 'string' }, vocab: { type: 'string' },
  validation: { type: 'string' }, steps: { type: 'string' }, minutes: { type: 'string' }, batch: { type: 'string' },
  seq: { type: 'string' }, optimizer: { type: 'string' }, lr: { type: 'string' }, schedule: { type: 'string' },
  warmup: { type: 'string' }, 'router-lr-scale': { type: 'string' }, clip: { type: 'string' }, seed: { type: 'string' }, threads: { type: 'string' },
  devices: { type: 'string' }, strategy: { type: 'string' }, wire: { type: 'string' }, backend: { type: 'string' }, 'mpi-args': { type: 'string' }, 'eval-every': { type: 'string' },
  'eval-batches': { type: 'string' }, checkpoint: { type: 'string' }, 'no-checkpoint': { type: 'boolean' },
  resume: { type: 'string' }, 'compare-dense': { type: 'boolean' }, report: { type: 'string' }, prompt: { type: 'string' },
  'sample-tokens': { type: 'string' }, temperature: { type: 'string' }, 'top-p': { type: 'string' }, json: { type: 'boolean' }, quiet: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

class UsageError extends Error {}

function num(values: Record<string, unknown>, name: string, fallback: number, integer = false): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || (integer && !Number.isInteger(v))) throw new UsageError(`--${name} expects ${integer ? 'an integer' : 'a number'}, got '${String(raw)}'`);
  return v;
}

interface RunSummary {
  label: string;
  steps: number;
  trainLoss: number;
  valLoss: number;
  valPerplexity: number;
  tokensPerSecond: number;
  params: number;
  droppedFraction: number;
  seconds: number;
  curve: { step: number; loss: number; crossEntropy: number; auxLoss: number; droppedFraction: number }[];
  evaluations: { step: number; valLoss: number }[];
  expertLoad: number[][];  // per step: fraction of tokens per expert in the first Switch layer
  sample?: string;
  checkpoint?: string;
  config: ModelConfig;
}

function formatTime(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

class Progress {
  private lastPrint = 0;
  constructor(private readonly quiet: boolean, private readonly label: string) {}

  update(r: StepReport, fraction: number, eta: number, stepsText: string, tokensPerSecond: number): void {
    if (this.quiet) return;
    const width = 24, filled = Math.max(0, Math.min(width, Math.round(fraction * width)));
    const line = `${this.label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] step ${stepsText} loss ${r.crossEntropy.toFixed(3)}` +
      ` aux ${r.auxLoss.toFixed(4)} ${Math.round(tokensPerSecond)} tok/s dropped ${(100 * r.droppedFraction).toFixed(1)}% ETA ${formatTime(eta)}`;
    if (process.stderr.isTTY) {
      process.stderr.write(`\r${line}\x1b[K`);
    } else if (Date.now() - this.lastPrint > 5000 || fraction >= 1) {
      this.lastPrint = Date.now();
      process.stderr.write(`${line}\n`);
    }
  }

  message(text: string): void {
    if (this.quiet) return;
    if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
    process.stderr.write(`${text}\n`);
  }

  end(): void {
    if (!this.quiet && process.stderr.isTTY) process.stderr.write('\n');
  }
}

async function trainOne(label: string, config: Partial<ModelConfig>, dataset: Dataset, values: Record<string, unknown>,
  budget: { steps?: number; seconds: number }, resumeDir?: string): Promise<{ summary: RunSummary; trainer: Trainer }> {
  const trainerOptions = {
    train: dataset.train, validation: dataset.validation.length > 0 ? dataset.validation : undefined,
    batchSize: num(values, 'batch', 16, true), seqLen: num(values, 'seq', 128, true),
    optimizer: (values.optimizer as 'adamw' | 'adafactor' | undefined) ?? 'adamw',
    lr: num(values, 'lr', 2e-3), schedule: (values.schedule as 'constant' | 'inverse-sqrt' | undefined) ?? 'constant',
    warmupSteps: num(values, 'warmup', 50, true), routerLrScale: num(values, 'router-lr-scale', ROUTER_LR_SCALE),
    clipNorm: num(values, 'clip', 1), seed: num(values, 'seed', 0, true), tokenizer: dataset.tokenizer.toJSON(),
  };
  let trainer: Trainer;
  if (resumeDir) {
    const overrides: Record<string, unknown> = {};
    for (const [flag, key] of [['batch', 'batchSize'], ['seq', 'seqLen'], ['lr', 'lr'], ['warmup', 'warmupSteps'],
      ['router-lr-scale', 'routerLrScale'], ['clip', 'clipNorm']] as const)
      if (values[flag] !== undefined) overrides[key] = (trainerOptions as Record<string, unknown>)[key];
    trainer = Trainer.resume(resumeDir, { train: trainerOptions.train, validation: trainerOptions.validation }, overrides).trainer;
  } else {
    trainer = new Trainer(new SwitchTransformerLM(config), trainerOptions);
  }
  const progress = new Progress(Boolean(values.quiet), label);
  const evalEvery = num(values, 'eval-every', 50, true), evalBatches = num(values, 'eval-batches', 8, true);
  const start = performance.now();
  const startStep = trainer.step;
  const history: StepReport[] = [];
  const evaluations: { step: number; valLoss: number }[] = [];
  let tokens = 0;
  for (;;) {
    const elapsed = (performance.now() - start) / 1000;
    const done = trainer.step - startStep;
    if (budget.steps !== undefined ? done >= budget.steps : elapsed >= budget.seconds) break;
    const { history: h, evaluations: e } = await trainer.fit({
      steps: 1, evalEvery, evalBatches,
    });
    const r = h[0];
    history.push(r);
    tokens += r.tokens;
    for (const ev of e) {
      evaluations.push({ step: ev.step, valLoss: ev.report.loss });
      progress.message(`${label} step ${ev.step}: validation loss ${ev.report.loss.toFixed(4)} (perplexity ${ev.report.perplexity.toFixed(1)})`);
    }
    const now = (performance.now() - start) / 1000;
    const tps = tokens / now;
    const fraction = budget.steps !== undefined ? (done + 1) / budget.steps : now / budget.seconds;
    const eta = budget.steps !== undefined ? (now / (done + 1)) * (budget.steps - done - 1) : budget.seconds - now;
    progress.update(r, fraction, eta, budget.steps !== undefined ? `${trainer.step}/${startStep + budget.steps}` : `${trainer.step}`, tps);
  }
  progress.end();
  const seconds = (performance.now() - start) / 1000;
  const val = trainer.options.validation ? await trainer.evaluate(trainer.options.validation, evalBatches) : undefined;
  if (val && evaluations.at(-1)?.step !== trainer.step) evaluations.push({ step: trainer.step, valLoss: val.loss });
  const tail = history.slice(-Math.min(10, history.length));
  const mean = (f: (r: StepReport) => number) => (tail.length ? tail.reduce((a, r) => a + f(r), 0) / tail.length : NaN);
  const summary: RunSummary = {
    label, steps: trainer.step, trainLoss: mean((r) => r.crossEntropy), valLoss: val?.loss ?? NaN,
    valPerplexity: val?.perplexity ?? NaN, tokensPerSecond: tokens / seconds, params: trainer.model.parameterCount,
    droppedFraction: history.length ? history.reduce((a, r) => a + r.droppedFraction, 0) / history.length : 0, seconds,
    curve: history.map((r) => ({ step: r.step, loss: r.loss, crossEntropy: r.crossEntropy, auxLoss: r.auxLoss, droppedFraction: r.droppedFraction })),
    evaluations,
    expertLoad: history.map((r) => {
      const first = r.tokensPerExpert[0];
      if (!first) return [];
      const total = first.reduce((a, b) => a + b, 0) || 1;
      return first.map((n) => n / total);
    }),
    config: trainer.model.config,
  };
  return { summary, trainer };
}

function jsonSummary(s: RunSummary) {
  const { label: _l, curve, expertLoad: _e, ...rest } = s;
  return { ...rest, lossCurve: curve.map((c) => c.crossEntropy) };
}

function writeReport(path: string, runs: RunSummary[], context: Record<string, unknown>): void {
  const sections = [];
  const rows = runs.map((r) => `<tr><td style="text-align:left">${escapeHtml(r.label)}</td><td>${r.steps}</td><td>${r.trainLoss.toFixed(4)}</td><td>${r.valLoss.toFixed(4)}</td><td>${r.valPerplexity.toFixed(1)}</td><td>${Math.round(r.tokensPerSecond)}</td><td>${r.params.toLocaleString('en-US')}</td><td>${(100 * r.droppedFraction).toFixed(2)}%</td></tr>`);
  sections.push({ heading: 'Summary', body: `<table><tr><th>model</th><th>steps</th><th>train loss</th><th>validation loss</th><th>perplexity</th><th>tokens/s</th><th>parameters</th><th>dropped</th></tr>${rows.join('')}</table>` });
  sections.push({ heading: 'Loss', body: lineChart('Training cross-entropy (nats/token)', [
    ...runs.map((r) => ({ name: `${r.label} train`, points: r.curve.map((c) => [c.step, c.crossEntropy] as [number, number]) })),
    ...runs.map((r) => ({ name: `${r.label} validation`, points: r.evaluations.map((e) => [e.step, e.valLoss] as [number, number]) })),
  ], { yLabel: 'loss' }) });
  const sw = runs.find((r) => r.expertLoad.some((l) => l.length > 0));
  if (sw) {
    const E = sw.expertLoad.find((l) => l.length > 0)!.length;
    sections.push({ heading: 'Expert load (first Switch layer)', body: lineChart('Fraction of tokens routed to each expert',
      Array.from({ length: E }, (_, e) => ({ name: `expert ${e}`, points: sw.expertLoad.map((l, i) => [sw.curve[i].step, l[e] ?? NaN] as [number, number]) })),
      { yLabel: 'fraction' }) });
    sections.push({ heading: 'Dropped tokens', body: lineChart('Fraction of tokens dropped (over capacity)',
      [{ name: sw.label, points: sw.curve.map((c) => [c.step, c.droppedFraction] as [number, number]) }], { yLabel: 'fraction' }) });
  }
  if (runs[0].sample) sections.push({ heading: 'Sample', body: `<pre>${escapeHtml(runs[0].sample)}</pre>` });
  sections.push({ heading: 'Configuration', body: `<pre>${escapeHtml(JSON.stringify({ ...context, model: runs[0].config }, null, 2))}</pre>` });
  writeFileSync(path, htmlPage('switch-train report', sections));
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: false, strict: true });
  } catch (error) {
    process.stderr.write(`switch-train: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  const values = parsed.values as Record<string, unknown>;
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const textFlags = new Set(['corpus', 'tokenizer', 'switch-layers', 'optimizer', 'schedule', 'strategy', 'wire', 'backend', 'mpi-args', 'checkpoint', 'resume', 'report', 'prompt']);
  for (const [name, value] of Object.entries(values))
    if (typeof value === 'string' && !textFlags.has(name) && !Number.isFinite(Number(value)))
      throw new UsageError(`--${name} expects a number, got '${value}'`);
  for (const [name, allowed] of [['tokenizer', ['word', 'byte']], ['optimizer', ['adamw', 'adafactor']], ['schedule', ['constant', 'inverse-sqrt']],
    ['switch-layers', ['odd', 'all']], ['strategy', ['data', 'expert-data']], ['wire', ['float32', 'bf16']], ['backend', ['shared-memory', 'mpi']]] as const)
    if (values[name] !== undefined && !(allowed as readonly string[]).includes(values[name] as string))
      throw new UsageError(`--${name} must be one of ${allowed.join(', ')}, got '${String(values[name])}'`);
  const devices = num(values, 'devices', 1, true);
  if (devices < 1) throw new UsageError(`--devices must be >= 1, got ${devices}`);
  if (values.wire !== undefined && values.strategy !== 'expert-data') throw new UsageError('--wire applies to --strategy expert-data only');
  const onMesh = devices > 1 || values.strategy === 'expert-data' || values.backend === 'mpi';
  if (values['mpi-args'] !== undefined && values.backend !== 'mpi') throw new UsageError('--mpi-args applies to --backend mpi only');
  if (onMesh && values.steps === undefined) throw new UsageError('--devices needs --steps (a mesh run has no time budget)');
  if (onMesh && values['compare-dense']) throw new UsageError('--compare-dense runs on one device only');
  if (values.threads !== undefined) setNumThreads(num(values, 'threads', 1, true));
  // The sample comes after training: its options are checked before training starts.
  if (num(values, 'sample-tokens', 30, true) < 0) throw new UsageError(`--sample-tokens must be >= 0, got ${String(values['sample-tokens'])}`);
  if (num(values, 'temperature', 0.8) < 0) throw new UsageError(`--temperature must be >= 0, got ${String(values.temperature)}`);
  const topP = num(values, 'top-p', 1);
  if (!(topP > 0 && topP <= 1)) throw new UsageError(`--top-p must be in (0, 1], got ${String(values['top-p'])}`);
  const seed = num(values, 'seed', 0, true);
  const log = (s: string) => { if (!values.quiet) process.stderr.write(`${s}\n`); };

  // Data: a resumed run uses the checkpoint's tokenizer.
  let tokenizerJSON;
  let resumedConfig: ModelConfig | undefined;
  if (values.resume) {
    const saved = readCheckpoint(values.resume as string);
    tokenizerJSON = saved.tokenizer;
    resumedConfig = saved.config;
  }
  const t0 = performance.now();
  const dataset = prepareDataset({
    corpus: (values.corpus as string | undefined) ?? 'brown', tokenizer: (values.tokenizer as 'word' | 'byte' | undefined) ?? 'word',
    vocabWords: num(values, 'vocab', 8192, true), validationFraction: num(values, 'validation', 0.1), seed, tokenizerJSON,
  });
  log(`data: ${dataset.trainDocuments.length} training documents (${dataset.train.length.toLocaleString('en-US')} tokens), ` +
    `${dataset.validationDocuments.length} validation documents (${dataset.validation.length.toLocaleString('en-US')} tokens), ` +
    `${dataset.tokenizer.kind} vocabulary ${dataset.tokenizer.vocabSize} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);

  const config: Partial<ModelConfig> = resumedConfig ?? resolveModelConfig({
    vocabSize: dataset.tokenizer.vocabSize, dModel: num(values, 'd-model', 256, true), numLayers: num(values, 'layers', 4, true),
    numHeads: num(values, 'heads', 4, true), dFF: num(values, 'd-ff', 1024, true), maxSeqLen: num(values, 'seq', 128, true),
    numExperts: num(values, 'experts', 8, true), switchLayers: ((values['switch-layers'] as string | undefined) ?? 'odd') as 'odd' | 'all',
    capacityFactor: num(values, 'capacity-factor', 1.25), evalCapacityFactor: num(values, 'eval-capacity-factor', 2),
    topK: num(values, 'top-k', 1, true) as 1 | 2, loadBalanceCoef: num(values, 'load-balance', 0.01),
    zLossCoef: num(values, 'z-loss', 0), jitter: num(values, 'jitter', 0), dropout: num(values, 'dropout', 0),
    expertDropout: num(values, 'expert-dropout', 0), initScale: num(values, 'init-scale', 0.1), seed,
  });
  const budget = { steps: values.steps !== undefined ? num(values, 'steps', 0, true) : undefined, seconds: 60 * num(values, 'minutes', 5) };
  const info = cpuInfo();
  log(`model: ${config.numLayers} blocks, d_model ${config.dModel}, d_ff ${config.dFF}, ${config.numExperts} experts ` +
    `(${config.switchLayers} blocks), ${info.threads} threads (${info.isa})`);
  if (onMesh) return trainDataParallel(values, devices, config, dataset, budget.steps!);
  const { summary, trainer } = await trainOne(config.numExperts ? 'switch' : 'dense', config, dataset, values, budget, values.resume as string | undefined);

  summary.sample = await sampleText(trainer.model, dataset.tokenizer, values, seed);
  if (!values['no-checkpoint']) {
    const dir = (values.checkpoint as string | undefined) ?? 'switch-checkpoint';
    trainer.save(dir);
    summary.checkpoint = dir;
  }

  let dense: RunSummary | undefined;
  if (values['compare-dense'] && config.numExperts) {
    // Top-1 routing sends each token through one expert of the same d_ff as a dense layer, so the
    // dense model of equal FLOPs per token has the same shape without experts (top-2 doubles the
    // Switch blocks' d_ff; the dense baseline then uses 2·d_ff in every block as an upper bound).
    const denseConfig = { ...config, numExperts: 0, dFF: (config.topK ?? 1) * config.dFF! };
    const steps = summary.steps - (values.resume ? (readCheckpointStep(values.resume as string)) : 0);
    log(`dense baseline: ${steps} steps on the same batches`);
    dense = (await trainOne('dense', denseConfig, dataset, { ...values, resume: undefined }, { steps, seconds: Infinity })).summary;
  }

  const context = { corpus: values.corpus ?? 'brown', tokenizer: dataset.tokenizer.kind, threads: info.threads, isa: info.isa,
    batch: trainer.options.batchSize, seq: trainer.options.seqLen, optimizer: trainer.options.optimizer, lr: trainer.options.lr,
    routerLrScale: trainer.options.routerLrScale };
  if (values.report) writeReport(values.report as string, dense ? [summary, dense] : [summary], context);

  if (values.json) {
    process.stdout.write(`${JSON.stringify({ ...jsonSummary(summary), ...(dense ? { dense: jsonSummary(dense) } : {}), context })}\n`);
  } else {
    // A run of no steps (--resume DIR --steps 0: a sample from a checkpoint) has no training figures.
    const line = (s: RunSummary) => {
      const trained = s.curve.length > 0;
      return `${s.label}: ${s.steps} steps${trained ? `, train loss ${s.trainLoss.toFixed(4)}` : ' (none in this run)'}, ` +
        `validation loss ${s.valLoss.toFixed(4)} (perplexity ${s.valPerplexity.toFixed(1)})` +
        `${trained ? `, ${Math.round(s.tokensPerSecond)} tokens/s` : ''}, ${s.params.toLocaleString('en-US')} parameters` +
        `${trained ? `, ${(100 * s.droppedFraction).toFixed(2)}% dropped` : ''}`;
    };
    process.stdout.write(`${line(summary)}\n`);
    if (dense) {
      process.stdout.write(`${line(dense)}\n`);
      const gap = dense.valLoss - summary.valLoss;
      process.stdout.write(`switch vs dense validation loss: ${summary.valLoss.toFixed(4)} vs ${dense.valLoss.toFixed(4)} (${gap >= 0 ? 'switch ahead by' : 'dense ahead by'} ${Math.abs(gap).toFixed(4)} nats)\n`);
    }
    if (summary.sample) process.stdout.write(`sample: ${summary.sample}\n`);
    if (summary.checkpoint) process.stdout.write(`checkpoint: ${summary.checkpoint}\n`);
    if (values.report) process.stdout.write(`report: ${values.report}\n`);
  }
  return 0;
}

/** --devices N: data- or expert-parallel training on the mesh; rank 0 reports progress and writes the checkpoint. */
async function trainDataParallel(values: Record<string, unknown>, devices: number, config: Partial<ModelConfig>, dataset: Dataset,
  steps: number): Promise<number> {
  const dir = values['no-checkpoint'] ? undefined : ((values.checkpoint as string | undefined) ?? 'switch-checkpoint');
  const start = performance.now();
  const strategy = (values.strategy as 'data' | 'expert-data' | undefined) ?? 'data';
  const expertData = strategy === 'expert-data';
  const result = await trainOnMesh({
    devices, strategy, steps,
    backend: values.backend as 'shared-memory' | 'mpi' | undefined,
    mpi: values['mpi-args'] !== undefined ? { args: (values['mpi-args'] as string).split(/\s+/).filter(Boolean) } : undefined,
    // expert-data: the wire decides the Switch layers' precision: --wire, else a resumed
    // checkpoint's precision, else bf16.
    model: expertData ? { ...config, precision: values.wire ? (values.wire === 'bf16' ? 'bf16-wire' : 'float32') : values.resume ? config.precision : undefined } : config,
    resume: values.resume as string | undefined, evaluate: true, evalBatches: num(values, 'eval-batches', 8, true), checkpoint: dir,
    progress: !values.quiet,
    data: { corpus: (values.corpus as string | undefined) ?? 'brown', tokenizer: (values.tokenizer as 'word' | 'byte' | undefined) ?? 'word',
      vocabWords: num(values, 'vocab', 8192, true), validationFraction: num(values, 'validation', 0.1), seed: num(values, 'seed', 0, true) },
    trainer: meshTrainerOptions(values),
  });
  const seconds = (performance.now() - start) / 1000;
  const tail = result.history.slice(-10);
  const tokens = result.history.reduce((n, r) => n + r.tokens, 0);
  const summary = {
    steps: result.step, devices, strategy,
    trainLoss: tail.reduce((a, r) => a + r.crossEntropy, 0) / tail.length, valLoss: result.evaluation?.loss ?? NaN,
    valPerplexity: result.evaluation?.perplexity ?? NaN, tokensPerSecond: tokens / seconds, params: result.params,
    droppedFraction: result.history.reduce((a, r) => a + r.droppedFraction, 0) / Math.max(1, result.history.length),
    lossCurve: result.history.map((r) => r.crossEntropy), checkpoint: dir,
    // The devices are gone: the sample comes from the checkpoint, on this process alone.
    sample: dir ? await sampleText(loadCheckpoint(dir).model, dataset.tokenizer, values, num(values, 'seed', 0, true)) : undefined,
  };
  if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else process.stdout.write(`${strategy}-parallel on ${devices} devices: ${summary.steps} steps, train loss ${summary.trainLoss.toFixed(4)}, ` +
    `validation loss ${summary.valLoss.toFixed(4)}, ${Math.round(summary.tokensPerSecond)} tokens/s, ${summary.params.toLocaleString('en-US')} parameters` +
    `${summary.sample ? `\nsample: ${summary.sample}` : ''}${dir ? `\ncheckpoint: ${dir}` : ''}\n`);
  return 0;
}

/** The sample of a run: --prompt continued by --sample-tokens tokens (none when the prompt encodes to nothing). */
async function sampleText(model: SwitchTransformerLM, tokenizer: Tokenizer, values: Record<string, unknown>, seed: number): Promise<string | undefined> {
  const prompt = (values.prompt as string | undefined) ?? 'the';
  const promptIds = tokenizer.encode(prompt);
  if (promptIds.length === 0) return undefined;
  const ids = await model.generate(promptIds, {
    maxNewTokens: num(values, 'sample-tokens', 30, true), temperature: num(values, 'temperature', 0.8), topK: 40,
    topP: num(values, 'top-p', 1), seed, excludeTokens: tokenizer.kind === 'word' ? [0] : [],
  });
  return prompt + (tokenizer.kind === 'word' ? ' ' : '') + tokenizer.decode(ids);
}

/** The trainer flags of a mesh run; resuming, only the flags given (the checkpoint's options fill the rest). */
function meshTrainerOptions(values: Record<string, unknown>): MeshTrainingOptions['trainer'] {
  const all = { batchSize: num(values, 'batch', 16, true), seqLen: num(values, 'seq', 128, true),
    optimizer: (values.optimizer as 'adamw' | 'adafactor' | undefined) ?? 'adamw', lr: num(values, 'lr', 2e-3),
    schedule: (values.schedule as 'constant' | 'inverse-sqrt' | undefined) ?? 'constant', warmupSteps: num(values, 'warmup', 50, true),
    routerLrScale: num(values, 'router-lr-scale', ROUTER_LR_SCALE), clipNorm: num(values, 'clip', 1), seed: num(values, 'seed', 0, true) };
  if (!values.resume) return all;
  const flags = { batchSize: 'batch', seqLen: 'seq', optimizer: 'optimizer', lr: 'lr', schedule: 'schedule', warmupSteps: 'warmup',
    routerLrScale: 'router-lr-scale', clipNorm: 'clip', seed: 'seed' } as const;
  return Object.fromEntries(Object.entries(all).filter(([key]) => values[flags[key as keyof typeof flags]] !== undefined)) as unknown as MeshTrainingOptions['trainer'];
}

function readCheckpointStep(dir: string): number {
  return readCheckpoint(dir).state.step;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (error: Error & { code?: string }) => {
  process.stderr.write(`switch-train: ${error.message}${error.code ? ` (${error.code})` : ''}\n`);
  if (error instanceof UsageError) process.stderr.write(`Run switch-train --help for the options.\n`);
  process.exitCode = error instanceof UsageError ? 2 : 1;
});
