// Batches of next-token prediction windows from a token stream, deterministic and resumable.
// B = batch size, S = sequence length.
//
// The stream is cut into non-overlapping windows of S + 1 tokens (window w starts at w·S; its last
// token is the next window's first, so every token is a target once). Each epoch visits the windows
// in an order shuffled by (seed, epoch); the loader's whole state is { epoch, cursor }, so a resumed
// loader produces exactly the batches the original would have.
import { rangeError } from '../errors.js';
import { Random } from '../model/random.js';

export interface Batch {
  /** (B, S) */
  tokens: Int32Array;
  /** (B, S): targets[b, s] = the token after tokens[b, s]. */
  targets: Int32Array;
  batchSize: number;
  seqLen: number;
}

export interface LoaderState {
  epoch: number;
  /** Windows of this epoch already served. */
  cursor: number;
}

export interface LoaderOptions {
  batchSize: number;
  seqLen: number;
  seed?: number;
  /** false: windows in stream order every epoch. */
  shuffle?: boolean;
}

export class BatchLoader {
  readonly batchSize: number;
  readonly seqLen: number;
  readonly seed: number;
  readonly shuffle: boolean;
  readonly windows: number;
  private epoch = 0;
  private cursor = 0;
  private order?: Uint32Array;
  private orderEpoch = -1;

  constructor(readonly stream: Int32Array, options: LoaderOptions) {
    const { batchSize, seqLen, seed = 0, shuffle = true } = options;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw rangeError('ERR_SWITCH_OPTION', `option 'batchSize' must be an integer >= 1, got ${batchSize}`);
    if (!Number.isInteger(seqLen) || seqLen < 1) throw rangeError('ERR_SWITCH_OPTION', `option 'seqLen' must be an integer >= 1, got ${seqLen}`);
    this.batchSize = batchSize;
    this.seqLen = seqLen;
    this.seed = seed;
    this.shuffle = shuffle;
    this.windows = Math.floor((stream.length - 1) / seqLen);
    if (this.windows < 1)
      throw rangeError('ERR_SWITCH_SHAPE', `a stream of ${stream.length} tokens holds no window of seqLen + 1 = ${seqLen + 1} tokens`);
  }

  private epochOrder(): Uint32Array {
    if (this.orderEpoch !== this.epoch) {
      const order = Array.from({ length: this.windows }, (_, i) => i);
      if (this.shuffle) new Random((this.seed * 2654435761 + this.epoch * 40503 + 1) >>> 0).shuffle(order);
      this.order = Uint32Array.from(order);
      this.orderEpoch = this.epoch;
    }
    return this.order!;
  }

  /** The next (B, S) batch; epochs roll over as needed. */
  next(): Batch {
    const { batchSize: B, seqLen: S } = this;
    const tokens = new Int32Array(B * S), targets = new Int32Array(B * S);
    for (let b = 0; b < B; b++) {
      if (this.cursor >= this.windows) {
        this.epoch++;
        this.cursor = 0;
      }
      const start = this.epochOrder()[this.cursor++] * S;
      tokens.set(this.stream.subarray(start, start + S), b * S);
      targets.set(this.stream.subarray(start + 1, start + S + 1), b * S);
    }
    return { tokens, targets, batchSize: B, seqLen: S };
  }

  get state(): LoaderState {
    return { epoch: this.epoch, cursor: this.cursor };
  }

  set state(state: LoaderState) {
    if (!Number.isInteger(state.epoch) || state.epoch < 0 || !Number.isInteger(state.cursor) || state.cursor < 0 || state.cursor > this.windows)
      throw rangeError('ERR_CHECKPOINT', `loader state ${JSON.stringify(state)} does not fit a stream of ${this.windows} windows`);
    this.epoch = state.epoch;
    this.cursor = state.cursor;
  }
}

/** Consecutive (B, S) batches over a stream in order (for evaluation); the last partial batch is dropped. */
export function* sequentialBatches(stream: Int32Array, batchSize: number, seqLen: number, maxBatches = Infinity): Generator<Batch> {
  const windows = Math.floor((stream.length - 1) / seqLen);
  for (let first = 0, n = 0; first + batchSize <= windows && n < maxBatches; first += batchSize, n++) {
    const tokens = new Int32Array(batchSize * seqLen), targets = new Int32Array(batchSize * seqLen);
    for (let b = 0; b < batchSize; b++) {
      const start = (first + b) * seqLen;
      tokens.set(stream.subarray(start, start + seqLen), b * seqLen);
      targets.set(stream.subarray(start + 1, start + seqLen + 1), b * seqLen);
    }
    yield { tokens, targets, batchSize, seqLen };
  }
}
