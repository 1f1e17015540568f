// The training loop: batches from a BatchLoader, forward/backward of the model, global-norm
// clipping, an optimizer step at the scheduled learning rate; evaluation (validation loss and
// perplexity) and checkpoints that resume bit-identically (same seed and threads → same curve).
import { rangeError } from '../errors.js';
import { BatchLoader, sequentialBatches } from '../data/loader.js';
import type { TokenizerJSON } from '../data/tokenizer.js';
import type { SwitchTransformerLM, ModelOptions } from '../model/model.js';
import { native } from '../native.js';
import { clipGradientNorm } from './clip.js';
import { loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import { createOptimizer, type AdafactorOptions, type AdamWOptions, type Optimizer, type OptimizerName, type OptimizerState } from './optimizers.js';
import { createSchedule, type Schedule, type ScheduleName } from './schedules.js';

export interface TrainerOptions {
  /** Training token stream. */
  train: Int32Array;
  /** Validation token stream (optional). */
  validation?: Int32Array;
  batchSize: number;
  seqLen: number;
  optimizer?: OptimizerName;
  optimizerOptions?: AdamWOptions & AdafactorOptions;
  lr?: number;
  schedule?: ScheduleName;
  warmupSteps?: number;
  /**
   * Multiplies the learning rate of the Switch layers' routers (the `blocks.N.ffn.router`
   * parameters) with respect to every other parameter. Default 1.
   */
  routerLrScale?: number;
  /** Global gradient-norm limit (0: no clipping). Default 1. */
  clipNorm?: number;
  /** Seeds the batch order. */
  seed?: number;
  /** Saved with checkpoints. */
  tokenizer?: TokenizerJSON;
  /** Data parallelism (SPEC §3 'data'): this device's share of each global batch and the gradient sum. */
  dataParallel?: DataParallel;
}

/**
 * One device of a data-parallel mesh: it trains on rows [rank·B/size, (rank+1)·B/size) of every
 * global batch, and `allReduce` sums a buffer over the devices in a fixed order (float32 on the
 * wire), so every replica takes the same optimizer step.
 */
export interface DataParallel {
  rank: number;
  size: number;
  allReduce(buffer: Float32Array): Float32Array | Promise<Float32Array>;
  /**
   * Expert parallelism (SPEC §3 'expert-data'): names of the parameters each device holds only a
   * slice of (its experts). Their gradients come out of the mesh layer's backward already summed
   * over the devices, so they are scaled by 1/size and not all-reduced; the global gradient norm
   * for clipping adds the devices' sums of squares of these slices (one more all-reduce).
   */
  sharded?: ReadonlySet<string>;
}

export interface StepReport {
  /** 1-based index of the step just taken. */
  step: number;
  loss: number;
  crossEntropy: number;
  auxLoss: number;
  lr: number;
  gradNorm: number;
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
  /** Mean fraction of tokens dropped by the Switch layers. */
  droppedFraction: number;
  /** Per Switch layer (block order): tokens whose first choice was each expert. */
  tokensPerExpert: number[][];
}

export interface EvaluationReport {
  loss: number;
  perplexity: number;
  auxLoss: number;
  droppedFraction: number;
  tokens: number;
}

export interface FitOptions {
  steps: number;
  onStep?: (report: StepReport) => void | Promise<void>;
  /** Evaluate on the validation stream every N steps (0: never) and report through onEval. */
  evalEvery?: number;
  evalBatches?: number;
  onEval?: (step: number, report: EvaluationReport) => void | Promise<void>;
  signal?: AbortSignal;
}

export interface FitResult {
  steps: number;
  history: StepReport[];
  evaluations: { step: number; report: EvaluationReport }[];
}

/** The Switch layers' router weights (what `routerLrScale` applies to). */
const ROUTER_PARAMETER = /^blocks\.\d+\.ffn\.router$/;

export class Trainer {
  readonly model: SwitchTransformerLM;
  readonly optimizer: Optimizer;
  readonly loader: BatchLoader;
  readonly schedule: Schedule;
  readonly options: Required<Omit<TrainerOptions, 'validation' | 'tokenizer' | 'optimizerOptions' | 'dataParallel'>> &
    Pick<TrainerOptions, 'validation' | 'tokenizer' | 'optimizerOptions' | 'dataParallel'>;
  /** Steps taken. */
  step = 0;

  constructor(model: SwitchTransformerLM, options: TrainerOptions) {
    this.model = model;
    this.options = {
      optimizer: 'adamw', lr: 2e-3, schedule: 'constant', warmupSteps: 0, routerLrScale: 1, clipNorm: 1, seed: 0, ...options,
    };
    const o = this.options;
    if (typeof o.routerLrScale !== 'number' || !(o.routerLrScale >= 0) || !Number.isFinite(o.routerLrScale))
      throw rangeError('ERR_SWITCH_OPTION', `option 'routerLrScale' must be a finite number >= 0, got ${String(o.routerLrScale)}`);
    if (o.seqLen > model.config.maxSeqLen)
      throw rangeError('ERR_SWITCH_OPTION', `option 'seqLen' (${o.seqLen}) exceeds the model's maxSeqLen (${model.config.maxSeqLen})`);
    if (!(o.clipNorm >= 0)) throw rangeError('ERR_SWITCH_OPTION', `option 'clipNorm' must be >= 0, got ${o.clipNorm}`);
    this.optimizer = createOptimizer(o.optimizer, o.optimizerOptions);
    this.schedule = createSchedule(o.schedule, { lr: o.lr, warmupSteps: o.warmupSteps });
    this.loader = new BatchLoader(o.train, { batchSize: o.batchSize, seqLen: o.seqLen, seed: o.seed });
    const dp = o.dataParallel;
    if (dp && (!Number.isInteger(dp.size) || dp.size < 1 || o.batchSize % dp.size !== 0 || !(dp.rank >= 0 && dp.rank < dp.size)))
      throw rangeError('ERR_SWITCH_OPTION', `data parallelism needs the batch size (${o.batchSize}) to be a multiple of the devices (${dp.size})`);
  }

  /** One training step on the next batch. */
  async trainStep(): Promise<StepReport> {
    const start = performance.now();
    let batch = this.loader.next();
    const dp = this.options.dataParallel;
    if (dp) {
      // This device's rows of the global batch (the same loader state on every device).
      const rows = batch.batchSize / dp.size, n = rows * batch.seqLen;
      batch = { ...batch, batchSize: rows, tokens: batch.tokens.slice(dp.rank * n, (dp.rank + 1) * n),
        targets: batch.targets.slice(dp.rank * n, (dp.rank + 1) * n) };
    }
    const out = await this.model.forward(batch.tokens, batch.targets, batch.batchSize, { training: true });
    if (!Number.isFinite(out.loss)) {
      throw Object.assign(new Error(`loss is ${out.loss} at step ${this.step + 1}`), { code: 'ERR_SWITCH_NAN' });
    }
    await this.model.backward();
    const params = this.model.parameters;
    if (dp) await this.reduceAcrossDevices(dp, out);
    const gradNorm = dp?.sharded?.size
      ? await this.clipShardedNorm(dp)
      : clipGradientNorm(params.map((p) => p.grad), this.options.clipNorm);
    const lr = this.schedule(this.step);
    const scale = this.options.routerLrScale;
    const stepParams = scale === 1 ? params : params.map((p) => (ROUTER_PARAMETER.test(p.name) ? { ...p, lrScale: scale } : p));
    // Sliced experts: an optimizer that looks at whole tensors (Adafactor's RMS terms) reduces over the devices.
    if (dp?.sharded?.size && this.optimizer.shardedStep)
      await this.optimizer.shardedStep(stepParams, lr, { names: dp.sharded, devices: dp.size, allReduce: (b) => dp.allReduce(b) });
    else this.optimizer.step(stepParams, lr);
    this.step++;
    const seconds = (performance.now() - start) / 1000;
    return {
      step: this.step, loss: out.loss, crossEntropy: out.crossEntropy, auxLoss: out.auxLoss, lr, gradNorm,
      tokens: out.tokens, seconds, tokensPerSecond: out.tokens / seconds, droppedFraction: out.droppedFraction,
      tokensPerExpert: out.switchLayers.filter((s) => s.tokensPerExpert.length > 0).map((s) => Array.from(s.tokensPerExpert)),
    };
  }

  /**
   * The loss is a mean over equal shards, so the global gradient is the mean of the devices':
   * one all-reduce of every gradient (and of the step's statistics), then a scale by 1/size.
   */
  private async reduceAcrossDevices(dp: DataParallel, out: { loss: number; crossEntropy: number; auxLoss: number; droppedFraction: number; tokens: number; switchLayers: { tokensPerExpert: Int32Array }[] }): Promise<void> {
    const all = this.model.parameters;
    const sharded = dp.sharded;
    const params = sharded ? all.filter((p) => !sharded.has(p.name)) : all;
    const inv = 1 / dp.size;
    if (sharded) for (const p of all) if (sharded.has(p.name)) native.scaleInPlace(p.grad, inv);
    const experts = out.switchLayers.reduce((n, s) => n + s.tokensPerExpert.length, 0);
    const total = params.reduce((n, p) => n + p.grad.length, 0) + 4 + experts;
    const flat = new Float32Array(total);
    let at = 0;
    for (const p of params) { flat.set(p.grad, at); at += p.grad.length; }
    flat.set([out.loss, out.crossEntropy, out.auxLoss, out.droppedFraction], at);
    at += 4;
    for (const s of out.switchLayers) { flat.set(s.tokensPerExpert, at); at += s.tokensPerExpert.length; }
    const sum = await dp.allReduce(flat);
    at = 0;
    for (const p of params) {
      // Two native passes (a copy, a scale) instead of a per-element loop over millions of values.
      p.grad.set(sum.subarray(at, at + p.grad.length));
      native.scaleInPlace(p.grad, inv);
      at += p.grad.length;
    }
    out.loss = sum[at] * inv; out.crossEntropy = sum[at + 1] * inv; out.auxLoss = sum[at + 2] * inv; out.droppedFraction = sum[at + 3] * inv;
    at += 4;
    for (const s of out.switchLayers) {
      for (let e = 0; e < s.tokensPerExpert.length; e++) s.tokensPerExpert[e] = Math.round(sum[at + e]);
      at += s.tokensPerExpert.length;
    }
    out.tokens *= dp.size;
  }

  /**
   * Global-norm clipping when some gradients are slices: the replicated gradients' sum of squares
   * (the same on every device) plus the all-reduced sum of the slices' sums of squares.
   */
  private async clipShardedNorm(dp: DataParallel): Promise<number> {
    let replicated = 0, local = 0;
    for (const p of this.model.parameters) {
      const sq = native.sumSquares(p.grad) as number;
      if (dp.sharded!.has(p.name)) local += sq;
      else replicated += sq;
    }
    // float32 on the wire, summed in a fixed order: every device gets the same norm.
    const shardSum = (await dp.allReduce(Float32Array.of(local)))[0];
    const norm = Math.sqrt(replicated + shardSum);
    const maxNorm = this.options.clipNorm;
    const scale = maxNorm / (norm + 1e-6);
    if (maxNorm > 0 && scale < 1) for (const p of this.model.parameters) native.scaleInPlace(p.grad, scale);
    return norm;
  }

  /** Trains `steps` more steps, yielding to the event loop between steps. */
  async fit(options: FitOptions): Promise<FitResult> {
    const { steps, onStep, evalEvery = 0, evalBatches = 8, onEval, signal } = options;
    if (!Number.isInteger(steps) || steps < 0) throw rangeError('ERR_SWITCH_OPTION', `option 'steps' must be an integer >= 0, got ${steps}`);
    const history: StepReport[] = [];
    const evaluations: FitResult['evaluations'] = [];
    for (let i = 0; i < steps; i++) {
      if (signal?.aborted) break;
      const report = await this.trainStep();
      history.push(report);
      await onStep?.(report);
      if (evalEvery > 0 && this.step % evalEvery === 0 && this.options.validation) {
        const evaluation = await this.evaluate(this.options.validation, evalBatches);
        evaluations.push({ step: this.step, report: evaluation });
        await onEval?.(this.step, evaluation);
      }
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    return { steps: history.length, history, evaluations };
  }

  /** Mean cross-entropy (nats per token) and perplexity over up to maxBatches consecutive batches. */
  async evaluate(stream: Int32Array | undefined = this.options.validation, maxBatches = 8): Promise<EvaluationReport> {
    if (!stream) throw rangeError('ERR_SWITCH_OPTION', 'no validation stream to evaluate on');
    return evaluateModel(this.model, stream, this.options.batchSize, this.options.seqLen, maxBatches);
  }

  /**
   * Writes a checkpoint. `gathered` replaces the model's parameters and the optimizer's state by
   * name (a mesh run passes its experts gathered from every device: the single-device layout).
   */
  save(dir: string, extra?: Record<string, unknown>,
    gathered?: { parameters?: Record<string, Float32Array>; optimizer?: OptimizerState }): void {
    saveCheckpoint(dir, this.model, {
      optimizer: gathered?.optimizer ?? this.optimizer.state(), tokenizer: this.options.tokenizer, step: this.step,
      loader: this.loader.state, extra: { trainer: trainerOptionsJSON(this.options), ...extra }, parameters: gathered?.parameters,
    });
  }

  /**
   * Rebuilds model, optimizer, schedule and loader position from a checkpoint. The token streams
   * are not stored: pass the same ones (options given here override the saved trainer options).
   */
  static resume(dir: string, streams: { train: Int32Array; validation?: Int32Array }, options: Partial<TrainerOptions> = {},
    modelOptions: ModelOptions = {}): { trainer: Trainer; extra?: Record<string, unknown> } {
    const loaded = loadCheckpoint(dir, modelOptions);
    const saved = (loaded.state.extra?.trainer ?? {}) as Partial<TrainerOptions>;
    const trainer = new Trainer(loaded.model, { ...saved, tokenizer: loaded.tokenizer, ...options, ...streams } as TrainerOptions);
    if (loaded.optimizer) trainer.optimizer.loadState(loaded.optimizer);
    if (loaded.state.loader) trainer.loader.state = loaded.state.loader;
    trainer.step = loaded.state.step;
    return { trainer, extra: loaded.state.extra };
  }
}

function trainerOptionsJSON(o: Trainer['options']): Partial<TrainerOptions> {
  const { train: _t, validation: _v, tokenizer: _k, dataParallel: _d, ...rest } = o;
  return rest;
}

export async function evaluateModel(model: SwitchTransformerLM, stream: Int32Array, batchSize: number, seqLen: number,
  maxBatches = 8): Promise<EvaluationReport> {
  let lossSum = 0, auxSum = 0, droppedSum = 0, tokens = 0, batches = 0;
  let B = batchSize;
  // A short stream still gets one evaluation batch.
  const windows = Math.floor((stream.length - 1) / seqLen);
  if (windows < 1) throw rangeError('ERR_SWITCH_SHAPE', `validation stream of ${stream.length} tokens is shorter than seqLen + 1`);
  if (windows < B) B = windows;
  for (const batch of sequentialBatches(stream, B, seqLen, maxBatches)) {
    const out = await model.forward(batch.tokens, batch.targets, batch.batchSize);
    lossSum += out.crossEntropy * out.tokens;
    auxSum += out.auxLoss;
    droppedSum += out.droppedFraction;
    tokens += out.tokens;
    batches++;
  }
  const loss = lossSum / tokens;
  return { loss, perplexity: Math.exp(loss), auxLoss: auxSum / batches, droppedFraction: droppedSum / batches, tokens };
}
