// What every feed-forward layer (dense, Switch, top-2 MoE; single device or on a mesh) offers the
// model. A mesh layer may return promises from forward and backward; callers always `await`.

export interface ForwardOptions {
  /** Training mode: training capacity factor, jitter, dropout. Default false. */
  training?: boolean;
}

/** Per-call routing statistics of a mixture-of-experts layer. */
export interface RoutingStats {
  /** Tokens whose first choice was each expert, before capacity drops (length E). */
  tokensPerExpert: Int32Array;
  /** Fraction of the call's tokens that no expert processed (dropped by every choice). */
  droppedFraction: number;
  /** Mean entropy of the router's softmax, in nats. */
  routerEntropy: number;
  /** Expert capacity C used by the call. */
  capacity: number;
}

export interface FeedForwardOutput {
  /** (T, D) */
  y: Float32Array;
  /** loadBalanceCoef · loadBalanceLoss + zLossCoef · zLoss (0 for a dense layer). */
  auxLoss: number;
  loadBalanceLoss: number;
  zLoss: number;
  /** (T, k): the routing of every choice, kept or dropped (MoE layers only). */
  expertIndex?: Int32Array;
  gate?: Float32Array;
  kept?: Uint8Array;
  stats?: RoutingStats;
}

export interface FeedForwardBackward {
  /** (T, D) */
  dx: Float32Array;
  /** Same names and shapes as `params`. */
  grads: Record<string, Float32Array>;
}

export interface FeedForwardLayer {
  /** Writable parameters by name (router, wIn, wOut for Switch; wIn, wOut for dense). */
  readonly params: Record<string, Float32Array>;
  /** x: (T, D). */
  forward(x: Float32Array, options?: ForwardOptions): FeedForwardOutput | Promise<FeedForwardOutput>;
  /** Gradient of Σ(y ⊙ dy) + auxLoss for the last training forward. dy: (T, D). */
  backward(dy: Float32Array): FeedForwardBackward | Promise<FeedForwardBackward>;
  /** Inference: forward with evaluation settings that keeps no backward state (optional). */
  evaluate?(x: Float32Array): FeedForwardOutput | Promise<FeedForwardOutput>;
  /** Routing statistics of the last forward (MoE layers only). */
  readonly stats?: RoutingStats | null;
  /**
   * Training calls so far, where a layer's random draws (jitter, dropout, ...) are keyed by the call
   * number: the state of its random streams, saved in checkpoints and set on resume (optional).
   */
  trainingCalls?: number;
}
