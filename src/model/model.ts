// The decoder-only Switch Transformer language model (SPEC §4): tied token embedding + learned
// positions, pre-norm RMSNorm blocks of causal multi-head self-attention and a feed-forward layer
// (Switch in the configured blocks, dense elsewhere), final RMSNorm, cross-entropy over the
// vocabulary plus every Switch layer's auxiliary loss. No biases.
//
// B = batch, S = sequence length, T = B·S tokens, D = d_model, H = heads, V = vocabulary, P = positions.
import { codedError, rangeError, typeError } from '../errors.js';
import type { FeedForwardLayer, FeedForwardOutput } from '../layers/types.js';
import { Workspace } from '../layers/switch_steps.js';
import { matmul } from '../matmul.js';
import { packageFeedForward } from './feed_forward.js';
import { isSwitchBlock, resolveModelConfig, type ModelConfig } from './config.js';
import * as k from './kernels.js';
import { Random, truncatedNormal } from './random.js';

/** What the model asks of a feed-forward factory: one layer per block. */
export interface FeedForwardSpec {
  kind: 'switch' | 'dense';
  /** Block index (0-based). */
  block: number;
  dModel: number;
  dFF: number;
  numExperts: number;
  topK: 1 | 2;
  capacityFactor: number;
  evalCapacityFactor: number;
  minCapacity: number;
  /** undefined: each call is one group. */
  groupSize?: number;
  activation: ModelConfig['activation'];
  loadBalanceCoef: number;
  zLossCoef: number;
  jitter: number;
  expertDropout: number;
  /** Dropout on a dense layer's hidden activation (the model's dropout rate; training only). */
  dropout: number;
  secondExpertPolicy: ModelConfig['secondExpertPolicy'];
  precision: ModelConfig['precision'];
  initScale: number;
  seed: number;
}

export type FeedForwardFactory = (spec: FeedForwardSpec) => FeedForwardLayer;

/** One named parameter: its data (writable, updated in place by the optimizer), shape and gradient. */
export interface Parameter {
  name: string;
  shape: number[];
  data: Float32Array;
  grad: Float32Array;
}

/** Routing statistics of one Switch layer for the last forward. */
export interface SwitchLayerStats {
  block: number;
  auxLoss: number;
  loadBalanceLoss: number;
  zLoss: number;
  droppedFraction: number;
  tokensPerExpert: Int32Array;
}

export interface ForwardResult {
  /** crossEntropy + auxLoss: what backward differentiates. */
  loss: number;
  /** Mean cross-entropy over the T tokens (nats). */
  crossEntropy: number;
  /** Sum of every Switch layer's aux loss (already weighted by its coefficients). */
  auxLoss: number;
  /** Mean dropped fraction over the Switch layers (0 without any). */
  droppedFraction: number;
  switchLayers: SwitchLayerStats[];
  tokens: number;
}

interface BlockSaved {
  x: Float32Array;          // (T, D) block input
  norm1: Float32Array;      // (T, D)
  rstd1: Float32Array;      // (T)
  qkv: Float32Array;        // (T, 3D)
  att: Float32Array;        // (B, H, S, S)
  ctx: Float32Array;        // (T, D)
  mid: Float32Array;        // (T, D) after the attention residual
  norm2: Float32Array;      // (T, D)
  rstd2: Float32Array;      // (T)
  maskAttention?: Float32Array;  // (T, D) dropout scale (0 or 1/(1-p))
  maskFeedForward?: Float32Array;
}

interface Saved {
  B: number;
  S: number;
  tokens: Int32Array;
  targets: Int32Array;
  blocks: BlockSaved[];
  final: Float32Array;      // (T, D) before the final norm
  rstdFinal: Float32Array;
  dFinalNorm: Float32Array; // (T, D) gradient of the loss at the final norm's output
  dwteOutput: Float32Array; // (V, D) the output projection's part of the tied embedding's gradient
}

interface Block {
  norm1: Float32Array;  // (D)
  wQkv: Float32Array;   // (D, 3D)
  wO: Float32Array;     // (D, D)
  norm2: Float32Array;  // (D)
  feedForward: FeedForwardLayer;
  isSwitch: boolean;
}

let defaultFactory: FeedForwardFactory = packageFeedForward;

/** Replaces the feed-forward factory used when a model is built without one (default: the package's layers). */
export function setDefaultFeedForwardFactory(factory: FeedForwardFactory): void {
  defaultFactory = factory;
}

export interface ModelOptions {
  /** Builds each block's feed-forward layer; default: SwitchFeedForward and DenseFeedForward. */
  feedForward?: FeedForwardFactory;
}

export class SwitchTransformerLM {
  readonly config: ModelConfig;
  /** (V, D), tied with the output projection. */
  readonly wte: Float32Array;
  /** (P, D) */
  readonly wpe: Float32Array;
  /** (D) */
  readonly normFinal: Float32Array;
  private readonly blocks: Block[];
  private readonly parameterList: Parameter[];
  /** Dropout masks; its state is part of a checkpoint. */
  readonly random: Random;
  private saved?: Saved;
  private busy = false;
  // Activations and gradients live in buffers reused from step to step (fresh multi-MB arrays cost
  // page faults and zeroing every step): one set for training forwards (what backward reads), one
  // for evaluation forwards (so an evaluation in between keeps the training state), one for backward.
  private readonly wsTrain = new Workspace(true);
  private readonly wsEval = new Workspace(true);
  private readonly wsBackward = new Workspace(true);

  constructor(options: Partial<ModelConfig> = {}, modelOptions: ModelOptions = {}) {
    const c = resolveModelConfig(options);
    this.config = c;
    const factory = modelOptions.feedForward ?? defaultFactory;
    const D = c.dModel;
    const init = new Random(c.seed);
    this.random = new Random((c.seed ^ 0x5bd1e995) >>> 0);
    this.wte = truncatedNormal(new Float32Array(c.vocabSize * D), D, c.initScale, init);
    this.wpe = truncatedNormal(new Float32Array(c.maxSeqLen * D), D, c.initScale, init);
    this.normFinal = new Float32Array(D).fill(1);
    this.blocks = [];
    for (let i = 0; i < c.numLayers; i++) {
      const isSwitch = isSwitchBlock(c, i);
      const wQkv = truncatedNormal(new Float32Array(D * 3 * D), D, c.initScale, init);
      const wO = truncatedNormal(new Float32Array(D * D), D, c.initScale, init);
      const feedForward = factory({
        kind: isSwitch ? 'switch' : 'dense', block: i, dModel: D, dFF: c.dFF,
        numExperts: isSwitch ? c.numExperts : 0, topK: c.topK, capacityFactor: c.capacityFactor,
        evalCapacityFactor: c.evalCapacityFactor, minCapacity: c.minCapacity,
        groupSize: c.groupSize > 0 ? c.groupSize : undefined, activation: c.activation,
        loadBalanceCoef: c.loadBalanceCoef, zLossCoef: c.zLossCoef, jitter: c.jitter, expertDropout: c.expertDropout, dropout: c.dropout,
        secondExpertPolicy: c.secondExpertPolicy, precision: c.precision, initScale: c.initScale,
        seed: (c.seed * 1000003 + 7919 * (i + 1)) >>> 0,
      });
      this.blocks.push({ norm1: new Float32Array(D).fill(1), wQkv, wO, norm2: new Float32Array(D).fill(1), feedForward, isSwitch });
    }
    this.parameterList = this.collectParameters();
  }

  private collectParameters(): Parameter[] {
    const c = this.config;
    const D = c.dModel;
    const list: Parameter[] = [];
    const add = (name: string, shape: number[], data: Float32Array) => {
      const size = shape.reduce((a, b) => a * b, 1);
      if (size !== data.length)
        throw rangeError('ERR_SWITCH_SHAPE', `parameter '${name}' has ${data.length} elements, expected shape [${shape}]`);
      list.push({ name, shape, data, grad: new Float32Array(data.length) });
    };
    add('wte', [c.vocabSize, D], this.wte);
    add('wpe', [c.maxSeqLen, D], this.wpe);
    this.blocks.forEach((b, i) => {
      add(`blocks.${i}.norm1`, [D], b.norm1);
      add(`blocks.${i}.attention.wQkv`, [D, 3 * D], b.wQkv);
      add(`blocks.${i}.attention.wO`, [D, D], b.wO);
      add(`blocks.${i}.norm2`, [D], b.norm2);
      for (const name of Object.keys(b.feedForward.params).sort())
        add(`blocks.${i}.ffn.${name}`, feedForwardShape(name, b.feedForward.params[name].length, D, c.dFF, b.isSwitch),
          b.feedForward.params[name]);
    });
    add('normFinal', [D], this.normFinal);
    return list;
  }

  /** Every parameter in a fixed order, with its gradient buffer (filled by backward). */
  get parameters(): readonly Parameter[] {
    return this.parameterList;
  }

  /** Total number of parameters. */
  get parameterCount(): number {
    return this.parameterList.reduce((n, p) => n + p.data.length, 0);
  }

  /** The feed-forward layer of block i. */
  feedForward(i: number): FeedForwardLayer {
    return this.blocks[i].feedForward;
  }

  private checkBatch(tokens: Int32Array, batch: number, name: string): number {
    if (!(tokens instanceof Int32Array)) throw typeError('ERR_SWITCH_ARG_TYPE', `argument '${name}' must be an Int32Array`);
    if (!Number.isInteger(batch) || batch < 1 || tokens.length % batch !== 0 || tokens.length === 0)
      throw rangeError('ERR_SWITCH_SHAPE', `argument '${name}' must have shape (B=${batch}, S): got ${tokens.length} tokens`);
    const S = tokens.length / batch;
    if (S > this.config.maxSeqLen)
      throw rangeError('ERR_SWITCH_SHAPE', `sequence length ${S} exceeds maxSeqLen ${this.config.maxSeqLen}`);
    return S;
  }

  private dropoutMask(mask: Float32Array): Float32Array {
    const p = this.config.dropout, n = mask.length;
    const keep = 1 / (1 - p);
    for (let i = 0; i < n; i++) mask[i] = this.random.uniform() < p ? 0 : keep;
    return mask;
  }

  /** Runs the blocks and the final norm; returns the normalised final hidden states (T, D). */
  private async trunk(tokens: Int32Array, B: number, S: number, training: boolean,
    blocksOut: BlockSaved[] | null, stats: SwitchLayerStats[], capture?: CaptureQkv): Promise<{ final: Float32Array; finalNorm: Float32Array; rstd: Float32Array }> {
    this.enter();
    try {
      return await this.runTrunk(tokens, B, S, training, blocksOut, stats, capture);
    } finally {
      this.busy = false;
    }
  }

  /**
   * The layers keep per-call state (their saved activations, their random streams), so one call at
   * a time: a second forward or backward while one is awaiting its layers is refused.
   */
  private enter(): void {
    if (this.busy) throw codedError('ERR_SWITCH_STATE', 'the model is already running a forward or backward: await it first');
    this.busy = true;
  }

  private async runTrunk(tokens: Int32Array, B: number, S: number, training: boolean,
    blocksOut: BlockSaved[] | null, stats: SwitchLayerStats[], capture?: CaptureQkv): Promise<{ final: Float32Array; finalNorm: Float32Array; rstd: Float32Array }> {
    const c = this.config;
    const D = c.dModel, H = c.numHeads, T = B * S;
    // Training: every block's activations under their own names (backward reads them all);
    // evaluation: one set shared by the blocks, the block input and output alternating.
    const ws = blocksOut ? this.wsTrain : this.wsEval;
    const name = (i: number, what: string) => (blocksOut ? `${i}.${what}` : what);
    let x = ws.f32(blocksOut ? '0.x' : 'x0', T * D);
    k.embeddingForward(x, tokens, this.wte, this.wpe, B, S, D, c.vocabSize);
    const useDropout = training && c.dropout > 0;
    for (let i = 0; i < this.blocks.length; i++) {
      const b = this.blocks[i];
      const norm1 = ws.f32(name(i, 'norm1'), T * D), rstd1 = ws.f32(name(i, 'rstd1'), T);
      k.rmsnormForward(norm1, rstd1, x, b.norm1, T, D, c.normEps);
      const attnOut = ws.f32('attnOut', T * D), qkv = ws.f32(name(i, 'qkv'), T * 3 * D);
      const att = ws.f32(name(i, 'att'), B * H * S * S), ctx = ws.f32(name(i, 'ctx'), T * D);
      await k.attentionForwardAsync(attnOut, qkv, att, ctx, norm1, b.wQkv, b.wO, B, S, D, H);
      capture?.(i, qkv);
      const maskAttention = useDropout ? this.dropoutMask(ws.f32(name(i, 'maskAttention'), T * D)) : undefined;
      const mid = ws.f32(name(i, 'mid'), T * D);
      k.residualForward(mid, x, attnOut, maskAttention);
      const norm2 = ws.f32(name(i, 'norm2'), T * D), rstd2 = ws.f32(name(i, 'rstd2'), T);
      k.rmsnormForward(norm2, rstd2, mid, b.norm2, T, D, c.normEps);
      const out: FeedForwardOutput = await b.feedForward.forward(norm2, { training });
      if (out.y.length !== T * D)
        throw rangeError('ERR_SWITCH_SHAPE', `block ${i} feed-forward returned ${out.y.length} values, expected (T=${T}, D=${D})`);
      if (b.isSwitch) stats.push(switchStats(i, out, c.numExperts, T));
      else if (out.auxLoss !== 0) stats.push(switchStats(i, out, 0, T));
      const maskFeedForward = useDropout ? this.dropoutMask(ws.f32(name(i, 'maskFeedForward'), T * D)) : undefined;
      const next = ws.f32(blocksOut ? `${i + 1}.x` : `x${(i + 1) % 2}`, T * D);
      k.residualForward(next, mid, out.y, maskFeedForward);
      blocksOut?.push({ x, norm1, rstd1, qkv, att, ctx, mid, norm2, rstd2, maskAttention, maskFeedForward });
      x = next;
    }
    const finalNorm = ws.f32('finalNorm', T * D), rstd = ws.f32('rstdFinal', T);
    k.rmsnormForward(finalNorm, rstd, x, this.normFinal, T, D, c.normEps);
    return { final: x, finalNorm, rstd };
  }

  /**
   * Loss of next-token prediction: tokens and targets are (B, S), targets[b, s] the token after
   * tokens[b, s]. With training: true, dropout and the layers' training mode apply and the
   * activations are kept for backward().
   */
  async forward(tokens: Int32Array, targets: Int32Array, batch: number, options: { training?: boolean } = {}): Promise<ForwardResult> {
    const c = this.config;
    const S = this.checkBatch(tokens, batch, 'tokens');
    if (!(targets instanceof Int32Array) || targets.length !== tokens.length)
      throw rangeError('ERR_SWITCH_SHAPE', `argument 'targets' must be an Int32Array of shape (B=${batch}, S=${S})`);
    const training = options.training ?? false;
    const B = batch;
    const blocks: BlockSaved[] = [];
    const stats: SwitchLayerStats[] = [];
    // One call at a time through the loss too: its kernel runs on a worker thread and reads the trunk's buffers.
    this.enter();
    try {
      return await this.runForward(tokens, targets, B, S, training, blocks, stats);
    } finally {
      this.busy = false;
    }
  }

  private async runForward(tokens: Int32Array, targets: Int32Array, B: number, S: number, training: boolean,
    blocks: BlockSaved[], stats: SwitchLayerStats[]): Promise<ForwardResult> {
    const c = this.config;
    const T = B * S, D = c.dModel, V = c.vocabSize;
    const { final, finalNorm, rstd } = await this.runTrunk(tokens, B, S, training, training ? blocks : null, stats);
    const ws = training ? this.wsTrain : this.wsEval;
    const losses = ws.f32('losses', T);
    let dFinalNorm: Float32Array | undefined, dwteOutput: Float32Array | undefined;
    if (training) {
      // The loss is a mean over the T tokens, so its gradient is known now: the fused pass computes
      // both and never materialises the (T, V) logits.
      dFinalNorm = ws.f32('dFinalNorm', T * D);
      dwteOutput = ws.f32('dwteOutput', V * D);
      const dlosses = ws.f32('dlosses', T).fill(1 / T);
      await k.crossEntropyForwardBackwardAsync(losses, dFinalNorm, dwteOutput, finalNorm, this.wte, targets, dlosses, T, D, V, false);
    } else {
      // Evaluation: the loss alone, in blocks of tokens (no (T, V) buffer).
      await k.crossEntropyLossAsync(losses, finalNorm, this.wte, targets, T, D, V);
    }
    let sum = 0;
    for (let t = 0; t < T; t++) sum += losses[t];
    const crossEntropy = sum / T;
    let auxLoss = 0, dropped = 0, switchCount = 0;
    for (const s of stats) {
      auxLoss += s.auxLoss;
      if (this.blocks[s.block].isSwitch) {
        dropped += s.droppedFraction;
        switchCount++;
      }
    }
    // An evaluation forward in between keeps the last training forward's state (as the layers do).
    if (training) this.saved = { B, S, tokens, targets, blocks, final, rstdFinal: rstd, dFinalNorm: dFinalNorm!, dwteOutput: dwteOutput! };
    return {
      loss: crossEntropy + auxLoss, crossEntropy, auxLoss, droppedFraction: switchCount ? dropped / switchCount : 0,
      switchLayers: stats, tokens: T,
    };
  }

  /** Fills every parameter's grad with the gradient of the last training forward's loss. */
  async backward(): Promise<void> {
    const s = this.saved;
    if (!s) throw codedError('ERR_SWITCH_STATE', 'backward() needs a forward(..., { training: true }) first');
    this.enter();
    try {
      await this.runBackward(s);
    } finally {
      this.busy = false;
    }
  }

  private async runBackward(s: Saved): Promise<void> {
    this.saved = undefined;
    const c = this.config;
    const { B, S } = s;
    const T = B * S, D = c.dModel, H = c.numHeads, V = c.vocabSize;
    const grads = new Map(this.parameterList.map((p) => [p.name, p.grad]));
    const g = (name: string) => grads.get(name)!;
    g('wte').set(s.dwteOutput);
    const ws = this.wsBackward;
    // The gradient at a block's output and input alternate between two buffers.
    let parity = 0;
    let dx = ws.f32('dx0', T * D);
    k.rmsnormBackward(dx, g('normFinal'), s.dFinalNorm, s.final, this.normFinal, s.rstdFinal, T, D, false);
    for (let i = this.blocks.length - 1; i >= 0; i--) {
      const b = this.blocks[i];
      const sb = s.blocks[i];
      // Feed-forward branch: next = mid + mask ⊙ ffn(norm2(mid)).
      let dy = dx;
      if (sb.maskFeedForward) {
        dy = ws.f32('dMasked', T * D);
        for (let j = 0; j < dy.length; j++) dy[j] = dx[j] * sb.maskFeedForward[j];
      }
      const ff = await b.feedForward.backward(dy);
      for (const [name, grad] of Object.entries(ff.grads)) {
        const target = grads.get(`blocks.${i}.ffn.${name}`);
        if (!target || target.length !== grad.length)
          throw rangeError('ERR_SWITCH_SHAPE', `block ${i} feed-forward returned an unexpected gradient '${name}'`);
        target.set(grad);
      }
      // dMid = norm2's backward + dx (the residual path around the feed-forward branch).
      const dMid = ws.f32('dMid', T * D);
      k.rmsnormBackward(dMid, g(`blocks.${i}.norm2`), ff.dx, sb.mid, b.norm2, sb.rstd2, T, D, false, dx);
      // Attention branch: mid = x + mask ⊙ attention(norm1(x)).
      let dAttn = dMid;
      if (sb.maskAttention) {
        dAttn = ws.f32('dMasked', T * D);
        for (let j = 0; j < dAttn.length; j++) dAttn[j] = dMid[j] * sb.maskAttention[j];
      }
      const dNorm1 = ws.f32('dNorm1', T * D);
      await k.attentionBackwardAsync(dNorm1, g(`blocks.${i}.attention.wQkv`), g(`blocks.${i}.attention.wO`), dAttn, sb.norm1,
        b.wQkv, b.wO, sb.qkv, sb.att, sb.ctx, B, S, D, H);
      parity ^= 1;
      const dBlockIn = ws.f32(`dx${parity}`, T * D);
      k.rmsnormBackward(dBlockIn, g(`blocks.${i}.norm1`), dNorm1, sb.x, b.norm1, sb.rstd1, T, D, false, dMid);
      dx = dBlockIn;
    }
    // The tied embedding's gradient already holds the output projection's part; positions past S get none.
    g('wpe').fill(0);
    k.embeddingBackward(g('wte'), g('wpe'), dx, s.tokens, B, S, D, V, true);
  }

  /** Next-token logits (V) after the last token of `context` (at most maxSeqLen tokens are read). */
  async nextTokenLogits(context: Int32Array): Promise<Float32Array> {
    const c = this.config;
    const window = context.length > c.maxSeqLen ? context.subarray(context.length - c.maxSeqLen) : context;
    const S = this.checkBatch(window, 1, 'context');
    const { finalNorm } = await this.trunk(window, 1, S, false, null, []);
    return this.logits(finalNorm.subarray((S - 1) * c.dModel, S * c.dModel));
  }

  /** The output projection of one normalised hidden state h (D): h · wteᵀ (V). */
  private logits(h: Float32Array): Float32Array {
    return matmul(h, this.wte, { m: 1, n: this.config.vocabSize, k: this.config.dModel, transB: true });
  }

  /**
   * Incremental decoding with a key/value cache. `append(tokens)` feeds tokens and returns the
   * next-token logits after the last one, as `nextTokenLogits` of every token fed so far would:
   * the first call runs one forward over its tokens and keeps each block's keys and values, every
   * later token runs through the blocks as a single position against them (the whole window's work
   * once, then one position's per token). Once more than maxSeqLen tokens were fed, the window
   * slides and the learned positions move with it, so each append recomputes the last maxSeqLen.
   *
   * A Switch layer sees one token per later call, so nothing is dropped there, where a forward
   * over the whole window could drop a token over its expert's capacity; with float32 rounding
   * aside, the logits agree whenever that forward drops none. The cached keys and values come from
   * the weights as they were: make a new decoder after the weights change. Not for layers that
   * need more than one token per call (groupSize > 1).
   */
  decoder(): Decoder {
    const c = this.config;
    const D = c.dModel, H = c.numHeads, P = c.maxSeqLen, V = c.vocabSize, Dh = D / H;
    // Per block (H, P, Dh) keys and values, a head's rows contiguous; positions [0, cached) are valid.
    const keys = this.blocks.map(() => new Float32Array(P * D)), values = this.blocks.map(() => new Float32Array(P * D));
    const keep = (i: number, qkv: Float32Array, row: number, position: number) => {
      for (let h = 0; h < H; h++) {
        const from = row * 3 * D + h * Dh, to = (h * P + position) * Dh;
        keys[i].set(qkv.subarray(from + D, from + D + Dh), to);
        values[i].set(qkv.subarray(from + 2 * D, from + 2 * D + Dh), to);
      }
    };
    const x = new Float32Array(D), mid = new Float32Array(D), norm = new Float32Array(D), rstd = new Float32Array(1);
    const qkv = new Float32Array(3 * D), ctx = new Float32Array(D), attnOut = new Float32Array(D), scores = new Float32Array(P);
    const scale = 1 / Math.sqrt(Dh);
    const history: number[] = [];
    let cached = 0, running = false;

    // A forward over the window (its first position at 0), keeping every block's keys and values.
    const prefill = async (window: Int32Array): Promise<Float32Array> => {
      const S = window.length;
      cached = 0;  // the capture overwrites the cache from position 0
      const { finalNorm } = await this.trunk(window, 1, S, false, null, [], (i, q) => {
        for (let t = 0; t < S; t++) keep(i, q, t, t);
      });
      cached = S;
      return this.logits(finalNorm.subarray((S - 1) * D, S * D));
    };

    // One token at position p = cached through every block, its keys and values added to the cache.
    const step = async (token: number): Promise<Float32Array> => {
      const p = cached;
      this.enter();
      try {
        for (let d = 0; d < D; d++) x[d] = this.wte[token * D + d] + this.wpe[p * D + d];
        for (let i = 0; i < this.blocks.length; i++) {
          const b = this.blocks[i];
          k.rmsnormForward(norm, rstd, x, b.norm1, 1, D, c.normEps);
          matmul(norm, b.wQkv, { m: 1, n: 3 * D, k: D, out: qkv });
          keep(i, qkv, 0, p);
          const n = p + 1, a = scores.subarray(0, n);
          for (let h = 0; h < H; h++) {
            const head = h * P * Dh;
            matmul(qkv.subarray(h * Dh, (h + 1) * Dh), keys[i].subarray(head, head + n * Dh), { m: 1, n, k: Dh, transB: true, out: a });
            let max = -Infinity, total = 0;
            for (let j = 0; j < n; j++) max = Math.max(max, a[j]);
            for (let j = 0; j < n; j++) total += (a[j] = Math.exp((a[j] - max) * scale));
            for (let j = 0; j < n; j++) a[j] /= total;
            matmul(a, values[i].subarray(head, head + n * Dh), { m: 1, n: Dh, k: n, out: ctx.subarray(h * Dh, (h + 1) * Dh) });
          }
          matmul(ctx, b.wO, { m: 1, n: D, k: D, out: attnOut });
          k.residualForward(mid, x, attnOut);
          k.rmsnormForward(norm, rstd, mid, b.norm2, 1, D, c.normEps);
          const out = await b.feedForward.forward(norm, { training: false });
          if (out.y.length !== D)
            throw rangeError('ERR_SWITCH_SHAPE', `block ${i} feed-forward returned ${out.y.length} values for one token, expected D=${D}`);
          k.residualForward(x, mid, out.y);
        }
        cached = p + 1;
        k.rmsnormForward(norm, rstd, x, this.normFinal, 1, D, c.normEps);
      } finally {
        this.busy = false;
      }
      return this.logits(norm);
    };

    return {
      get length() { return history.length; },
      append: async (tokens: ArrayLike<number>): Promise<Float32Array> => {
        if (tokens.length === 0) throw rangeError('ERR_SWITCH_SHAPE', `argument 'tokens' must hold at least one token`);
        for (let i = 0; i < tokens.length; i++) {
          const t = tokens[i];
          if (!Number.isInteger(t) || t < 0 || t >= V)
            throw rangeError('ERR_SWITCH_RANGE', `argument 'tokens' holds ${t} at index ${i}: tokens are integers in [0, ${V})`);
        }
        if (running) throw codedError('ERR_SWITCH_STATE', 'the decoder is already running an append: await it first');
        running = true;
        const before = history.length;
        for (let i = 0; i < tokens.length; i++) history.push(tokens[i]);
        try {
          if (history.length > P) return await prefill(Int32Array.from(history.slice(history.length - P)));
          if (cached === 0) return await prefill(Int32Array.from(history));
          let logits!: Float32Array;
          for (let n = before; n < history.length; n++) logits = await step(history[n]);
          return logits;
        } catch (error) {
          history.length = before;  // the tokens of a failed append were not fed
          cached = Math.min(cached, before);
          throw error;
        } finally {
          running = false;
        }
      },
      reset() {
        if (running) throw codedError('ERR_SWITCH_STATE', 'the decoder is running an append: await it before reset()');
        history.length = 0;
        cached = 0;
      },
    };
  }

  /**
   * Continues `prompt` by `maxNewTokens` tokens: greedy when temperature is 0 (default), otherwise
   * sampled from softmax(logits / temperature), restricted to the topK most likely tokens and to the
   * topP nucleus when given.
   * Decodes with a key/value cache (see `decoder`).
   */
  async generate(prompt: ArrayLike<number>, options: GenerateOptions = {}): Promise<number[]> {
    const { maxNewTokens = 20, temperature = 0, topK = 0, topP = 1, seed = 0, excludeTokens = [] } = options;
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0)
      throw rangeError('ERR_SWITCH_OPTION', `option 'maxNewTokens' must be an integer >= 0, got ${maxNewTokens}`);
    if (!(temperature >= 0)) throw rangeError('ERR_SWITCH_OPTION', `option 'temperature' must be >= 0, got ${temperature}`);
    if (!Number.isInteger(topK) || topK < 0) throw rangeError('ERR_SWITCH_OPTION', `option 'topK' must be an integer >= 0, got ${topK}`);
    if (!(topP > 0 && topP <= 1)) throw rangeError('ERR_SWITCH_OPTION', `option 'topP' must be in (0, 1], got ${topP}`);
    if (!Number.isInteger(seed)) throw rangeError('ERR_SWITCH_OPTION', `option 'seed' must be an integer, got ${seed}`);
    if (prompt.length === 0) throw rangeError('ERR_SWITCH_SHAPE', `argument 'prompt' must hold at least one token`);
    const random = new Random(seed);
    const decoder = this.decoder();
    const out: number[] = [];
    let fresh: ArrayLike<number> = prompt;
    for (let n = 0; n < maxNewTokens; n++) {
      const logits = await decoder.append(fresh);
      for (const t of excludeTokens) if (t >= 0 && t < logits.length) logits[t] = -Infinity;
      const next = temperature === 0 ? argmax(logits) : sample(logits, temperature, topK, topP, random);
      out.push(next);
      fresh = [next];
    }
    return out;
  }
}

/** Called with each block's (T, 3D) queries, keys and values during a forward. */
type CaptureQkv = (block: number, qkv: Float32Array) => void;

/** Incremental decoding state of one sequence (SwitchTransformerLM.decoder). */
export interface Decoder {
  /** Tokens fed so far. */
  readonly length: number;
  /** Feeds tokens (integers in [0, V), at least one); resolves to the next-token logits (V) after the last. */
  append(tokens: ArrayLike<number>): Promise<Float32Array>;
  /** Forgets every token fed: the next append starts a new sequence. */
  reset(): void;
}

export interface GenerateOptions {
  maxNewTokens?: number;
  /** 0 = greedy. */
  temperature?: number;
  /** Sample among the k most likely tokens (0 = all). */
  topK?: number;
  /** Nucleus sampling: among the fewest most likely tokens whose probabilities (after temperature
   * and topK) add up to p; 1 = all (default). */
  topP?: number;
  seed?: number;
  /** Tokens never produced (e.g. the unknown word). */
  excludeTokens?: number[];
}

function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

function sample(logits: Float32Array, temperature: number, topK: number, topP: number, random: Random): number {
  // Candidates: every token, or by descending logit (ties: the lower id first) the topK most likely.
  let order = Array.from(logits.keys());
  if ((topK > 0 && topK < logits.length) || topP < 1) order.sort((a, b) => logits[b] - logits[a] || a - b);
  if (topK > 0 && topK < order.length) order = order.slice(0, topK);
  let max = -Infinity;
  for (const i of order) max = Math.max(max, logits[i]);
  let weights = order.map((i) => Math.exp((logits[i] - max) / temperature));
  let total = weights.reduce((a, b) => a + b, 0);
  if (topP < 1) {
    // Nucleus: the fewest most likely candidates whose probabilities add up to topP.
    let kept = 0, mass = 0;
    while (kept < order.length && mass < topP * total) mass += weights[kept++];
    order = order.slice(0, kept);
    weights = weights.slice(0, kept);
    total = mass;
  }
  let u = random.uniform() * total;
  for (let j = 0; j < order.length; j++) {
    u -= weights[j];
    if (u < 0) return order[j];
  }
  return order[order.length - 1];
}

/** Shapes of a feed-forward layer's parameters as SPEC §1 names them. */
function feedForwardShape(name: string, size: number, D: number, F: number, experts: boolean): number[] {
  // A Switch layer's weights are per expert (E, ·, ·) even when a mesh device holds one expert.
  const dense = !experts && size === D * F;
  if (name === 'router' && size % D === 0) return [D, size / D];
  if (name === 'wIn' && size % (D * F) === 0) return dense ? [D, F] : [size / (D * F), D, F];
  if (name === 'wOut' && size % (D * F) === 0) return dense ? [F, D] : [size / (D * F), F, D];
  return [size];
}

function switchStats(block: number, out: FeedForwardOutput, E: number, T: number): SwitchLayerStats {
  let tokensPerExpert = out.stats?.tokensPerExpert;
  let droppedFraction = out.stats?.droppedFraction;
  if ((!tokensPerExpert || droppedFraction === undefined) && out.expertIndex && out.kept) {
    const k = out.expertIndex.length / T;
    tokensPerExpert = new Int32Array(E);
    let dropped = 0;
    for (let t = 0; t < T; t++) {
      tokensPerExpert[out.expertIndex[t * k]]++;
      let any = false;
      for (let j = 0; j < k; j++) any ||= out.kept[t * k + j] !== 0;
      if (!any) dropped++;
    }
    droppedFraction = dropped / T;
  }
  return {
    block, auxLoss: out.auxLoss, loadBalanceLoss: out.loadBalanceLoss, zLoss: out.zLoss,
    droppedFraction: droppedFraction ?? 0, tokensPerExpert: tokensPerExpert ?? new Int32Array(E),
  };
}
