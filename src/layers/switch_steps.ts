// The steps of the Switch feed-forward layer (SPEC §1), each a thin typed wrapper over one native
// kernel: route → slots → dispatch plan → [dispatch] → experts → combine, and their backwards.
// SwitchFeedForward chains them on one device; the mesh layer chains the same steps with an
// all-to-all of the expert-major buffer between dispatch and the experts and back.
// T = tokens, D = d_model, F = d_ff, E = experts, k = choices per token, G = group size,
// C = capacity, R = rows of the dispatch buffer.
import { native } from '../native.js';

export type Activation = 'relu' | 'gelu';
export type SecondExpertPolicy = 'all' | 'none' | 'threshold' | 'random';

const POLICY_CODE: Record<SecondExpertPolicy, number> = { all: 0, none: 1, threshold: 2, random: 3 };
const ACTIVATION_CODE: Record<Activation, number> = { relu: 0, gelu: 1 };

/**
 * Where the steps take their scratch and saved arrays: fresh ones (FRESH), or named grow-only
 * buffers reused from call to call (a layer keeps one per role, so a saved training forward is
 * never overwritten by an evaluation call). Every kernel overwrites all it is given, so reused
 * memory needs no clearing. Arrays handed to the user (y, expertIndex, gate, kept) are always fresh.
 */
export class Workspace {
  // Each buffer with the byte offset of its first 64-byte aligned address: every view starts
  // there, so rows of a multiple of 16 floats are whole cache lines (the weight gradients'
  // non-temporal write-back, gemm_grouped.cc).
  private readonly buffers = new Map<string, { buffer: ArrayBuffer; offset: number }>();
  constructor(readonly reuse: boolean) {}
  f32(name: string, n: number): Float32Array {
    if (!this.reuse) return new Float32Array(n);
    const { buffer, offset } = this.take(name, n * 4);
    return new Float32Array(buffer, offset, n);
  }
  i32(name: string, n: number): Int32Array {
    if (!this.reuse) return new Int32Array(n);
    const { buffer, offset } = this.take(name, n * 4);
    return new Int32Array(buffer, offset, n);
  }
  u8(name: string, n: number): Uint8Array {
    if (!this.reuse) return new Uint8Array(n);
    const { buffer, offset } = this.take(name, n);
    return new Uint8Array(buffer, offset, n);
  }
  private take(name: string, bytes: number): { buffer: ArrayBuffer; offset: number } {
    let b = this.buffers.get(name);
    if (!b || b.buffer.byteLength - b.offset < bytes) {
      // Some slack: the number of kept rows changes from call to call; 64 bytes to align.
      b = alignedBuffer(Math.max(bytes, Math.ceil(((b?.buffer.byteLength ?? 0) * 1.25) / 64) * 64));
      this.buffers.set(name, b);
    }
    return b;
  }
}

export const FRESH = new Workspace(false);

/**
 * Large buffers (the expert weights, their gradients, the experts' activations) ask for huge
 * pages before their first write: the grouped matmuls stream them from memory a few kilobytes per
 * 4 KB page at a time (native/addon/core.cc). A hint only; smaller buffers are left alone.
 */
export function adviseHugePages(buffer: ArrayBufferLike): void {
  if (buffer.byteLength >= 4 << 20 && buffer instanceof ArrayBuffer) native.adviseHugePages(buffer);
}

/** A buffer of at least `bytes` from its first 64-byte aligned address (`offset`), huge pages advised. */
function alignedBuffer(bytes: number): { buffer: ArrayBuffer; offset: number } {
  const buffer = new ArrayBuffer(bytes + 64);
  adviseHugePages(buffer);
  return { buffer, offset: native.alignedOffset(buffer) as number };
}

/** Random stream purposes: a stream is call · 16 + purpose, so every call draws fresh numbers. */
export const STREAM = { router: 1, wIn: 2, wOut: 3, jitter: 4, policy: 5, dropout: 6 } as const;

/** SPEC §1.4: C = max(minCapacity, min(G, floor(G · cf / E))). */
export function expertCapacity(groupSize: number, capacityFactor: number, numExperts: number, minCapacity: number): number {
  return Math.max(minCapacity, Math.min(groupSize, Math.floor((groupSize * capacityFactor) / numExperts)));
}

/** §2.4: truncated normal, σ = sqrt(scale / fanIn), redrawn beyond 2σ. */
export function truncatedNormal(n: number, fanIn: number, scale: number, seed: number, stream: number): Float32Array {
  // 64-byte aligned, like the reused buffers (Workspace): each 16-float piece of a weight row is
  // one cache line, not two, when the grouped matmuls pack it.
  const { buffer, offset } = alignedBuffer(n * 4);
  const out = new Float32Array(buffer, offset, n);
  native.switchTruncatedNormal(out, Math.sqrt(scale / fanIn), seed, stream);
  return out;
}

export interface RouteConfig {
  T: number;
  D: number;
  E: number;
  k: 1 | 2;
  G: number;
  C: number;
  policy: SecondExpertPolicy;
  threshold: number;
  noTokenLeftBehind: boolean;
  /** ε of the multiplicative jitter; 0 disables it (always 0 outside training). */
  jitter: number;
  seed: number;
  /** call · 16: the stream base of this call. */
  streamBase: number;
  /** Global index of x's first token (a mesh device's share), for the random draws; default 0. */
  tokenOffset?: number;
}

/** Everything routing decides for one call (SPEC §1.2-1.5, 1.8-1.9, 1.14). */
export interface Routing {
  T: number;
  E: number;
  k: 1 | 2;
  G: number;
  C: number;
  /** (T, D) what the router saw: x, or x ⊙ u with jitter. */
  xRouter: Float32Array;
  /** (T, D) the jitter noise, or null. */
  u: Float32Array | null;
  /** (T, E) */
  probs: Float32Array;
  /** (T) logsumexp of the logits. */
  lse: Float32Array;
  /** (T, k) expert of every choice (after No-Token-Left-Behind rerouting). */
  expertIndex: Int32Array;
  /** (T, k) gate of every choice. */
  gate: Float32Array;
  /** (T, k) 1 where the choice asked for a slot (the second-expert policy). */
  want: Uint8Array;
  /** (T/G, E) fraction of each group's tokens whose first choice is each expert, before drops. */
  f: Float32Array;
  /** (T/G, E) tokens of each group whose first choice is each expert (before rerouting). */
  firstChoiceCounts: Int32Array;
  loadBalanceLoss: number;
  zLoss: number;
  /** Mean entropy of the router's softmax, in nats. */
  routerEntropy: number;
  /** (T, k) position of each choice in its expert, -1 where dropped or not wanted. */
  slot: Int32Array;
  /** (T/G, E) kept choices per group and expert. */
  counts: Int32Array;
}

/** Router, choice, losses and slot assignment for the T tokens of x (T, D). */
export function route(x: Float32Array, wRouter: Float32Array, cfg: RouteConfig, ws = FRESH): Routing {
  const { T, D, E, k, G, C } = cfg;
  let xRouter = x;
  let u: Float32Array | null = null;
  if (cfg.jitter > 0) {
    xRouter = ws.f32('xRouter', T * D);
    u = ws.f32('u', T * D);
    native.switchRouterJitter(xRouter, u, x, cfg.jitter, cfg.seed, cfg.streamBase + STREAM.jitter, T, D, cfg.tokenOffset ?? 0);
  }
  const logits = ws.f32('logits', T * E);
  const probs = ws.f32('probs', T * E);
  const lse = ws.f32('lse', T);
  native.switchRouterForward(logits, probs, lse, xRouter, wRouter, T, D, E);
  const expertIndex = new Int32Array(T * k);
  const gate = new Float32Array(T * k);
  const want = ws.u8('want', T * k);
  native.switchRouterChoose(expertIndex, gate, want, probs, T, E, k, POLICY_CODE[cfg.policy], cfg.threshold, cfg.seed,
    cfg.streamBase + STREAM.policy, cfg.tokenOffset ?? 0);
  const f = ws.f32('f', (T / G) * E);
  const [loadBalanceLoss, zLoss, routerEntropy] =
    native.switchRouterLosses(f, probs, lse, expertIndex, T, E, k, G) as [number, number, number];
  const firstChoiceCounts = new Int32Array((T / G) * E);
  for (let i = 0; i < firstChoiceCounts.length; i++) firstChoiceCounts[i] = Math.round(f[i] * G);
  const slot = ws.i32('slot', T * k);
  const counts = ws.i32('counts', (T / G) * E);
  native.switchSlots(slot, counts, expertIndex, gate, want, probs, T, k, G, E, C, cfg.noTokenLeftBehind);
  return { T, E, k, G, C, xRouter, u, probs, lse, expertIndex, gate, want, f, firstChoiceCounts, loadBalanceLoss, zLoss,
    routerEntropy, slot, counts };
}

/** The expert-major order of the kept choices (switch_slots.h). */
export interface DispatchPlan {
  /** Padded: (E, T/G, C) rows, the all-to-all layout; compact: the kept choices only. */
  padded: boolean;
  R: number;
  /** (T, k) row of each choice, -1 where dropped. */
  row: Int32Array;
  /** (E + 1) first row of each expert. */
  offsets: Int32Array;
  /** (R) token of each row (-1 for an empty padded row). */
  rowToken: Int32Array;
  /** (R) choice t·k + j of each row (-1 for an empty padded row). */
  rowChoice: Int32Array;
}

export function planDispatch(routing: Routing, padded = false, ws = FRESH): DispatchPlan {
  const { T, k, G, E, C } = routing;
  const R = native.switchRowsCount(routing.counts, T, G, E, C, padded) as number;
  const row = ws.i32('row', T * k);
  const offsets = ws.i32('offsets', E + 1);
  const rowToken = ws.i32('rowToken', R);
  const rowChoice = ws.i32('rowChoice', R);
  native.switchRows(row, offsets, rowToken, rowChoice, routing.expertIndex, routing.slot, routing.counts, T, k, G, E, C,
    padded);
  return { padded, R, row, offsets, rowToken, rowChoice };
}

/** The dispatched buffer (R, D): token rows in expert-major order (rounded for a bf16 wire). */
export function dispatch(x: Float32Array, plan: DispatchPlan, T: number, D: number, roundWire: boolean): Float32Array {
  const buffer = new Float32Array(plan.R * D);
  native.switchDispatchForward(buffer, x, plan.rowToken, T, D, roundWire);
  return buffer;
}

/** dx (T, D) (+)= Σ over each token's kept choices of dbuffer rows (rounded first for a bf16 wire). */
export function dispatchBackward(dx: Float32Array, dbuffer: Float32Array, plan: DispatchPlan, T: number, k: number,
  D: number, roundWire: boolean, accumulate: boolean): void {
  native.switchDispatchBackward(dx, dbuffer, plan.row, T, k, D, roundWire, accumulate);
}

/** What the experts keep for their backward. */
export interface ExpertActivations {
  /** (R, D) */
  expertOut: Float32Array;
  /** (R, F), or null for relu without dropout (folded into the matmul: the backward reads h). */
  hPre: Float32Array | null;
  /** (R, F) */
  h: Float32Array;
  /** (R, F) dropout mask, or null without dropout. */
  keep: Uint8Array | null;
}

export interface ExpertConfig {
  E: number;
  D: number;
  F: number;
  activation: Activation;
  dropoutRate: number;
  seed: number;
  /** Stream of the dropout mask. */
  stream: number;
}

/**
 * The experts on R rows: x (T, D) gathered by rowToken (the single-device layer: dispatch folded
 * into the matmul), or x (R, D) already dispatched (rowToken null: the mesh's received buffer).
 */
export function expertsForward(x: Float32Array, rowToken: Int32Array | null, rowChoice: Int32Array | null,
  offsets: Int32Array, wIn: Float32Array, wOut: Float32Array, cfg: ExpertConfig, ws = FRESH): ExpertActivations {
  const R = offsets[cfg.E];
  const expertOut = ws.f32('expertOut', R * cfg.D);
  const hPre = cfg.activation === 'relu' && cfg.dropoutRate === 0 ? null : ws.f32('hPre', R * cfg.F);
  const h = ws.f32('h', R * cfg.F);
  const keep = cfg.dropoutRate > 0 ? ws.u8('keep', R * cfg.F) : null;
  native.switchExpertsForward(expertOut, hPre, h, keep, x, rowToken, rowChoice, wIn, wOut, offsets, cfg.E, cfg.D, cfg.F,
    ACTIVATION_CODE[cfg.activation], cfg.dropoutRate, cfg.seed, cfg.stream);
  return { expertOut, hPre, h, keep };
}

/**
 * Experts' backward; x and rowToken as in the forward. scatterDx: dx (T, D) is accumulated into
 * through rowToken (the scatter folded into the matmul); otherwise dx (R, D) is overwritten per row
 * (to be rounded and sent back over a wire).
 */
export function expertsBackward(dx: Float32Array, dExpertOut: Float32Array, acts: ExpertActivations, x: Float32Array,
  rowToken: Int32Array | null, offsets: Int32Array, wIn: Float32Array, wOut: Float32Array,
  cfg: ExpertConfig, scatterDx: boolean, ws = FRESH, grads = FRESH): { dwIn: Float32Array; dwOut: Float32Array } {
  const R = offsets[cfg.E];
  const dwIn = grads.f32('wIn', cfg.E * cfg.D * cfg.F);
  const dwOut = grads.f32('wOut', cfg.E * cfg.F * cfg.D);
  const dh = ws.f32('dh', R * cfg.F);
  native.switchExpertsBackward(dx, dwIn, dwOut, dh, dExpertOut, acts.hPre, acts.h, acts.keep, x, rowToken, wIn, wOut,
    offsets, cfg.E, cfg.D, cfg.F, ACTIVATION_CODE[cfg.activation], cfg.dropoutRate, scatterDx);
  return { dwIn, dwOut };
}

/** y (T, D) = Σ over kept choices of gate · expertOut[row]. */
export function combine(expertOut: Float32Array, gate: Float32Array, row: Int32Array, T: number, k: number,
  D: number): Float32Array {
  const y = new Float32Array(T * D);
  native.switchCombineForward(y, expertOut, gate, row, T, k, D);
  return y;
}

/** dgate (T, k) and the gradient sent to the experts dExpertOut (R, D) (bf16-rounded on that wire). */
export function combineBackward(dy: Float32Array, expertOut: Float32Array, gate: Float32Array, plan: DispatchPlan,
  T: number, k: number, D: number, roundWire: boolean, ws = FRESH): { dgate: Float32Array; dExpertOut: Float32Array } {
  const dgate = ws.f32('dgate', T * k);
  const dExpertOut = ws.f32('dExpertOut', plan.R * D);
  native.switchCombineBackward(dgate, dExpertOut, dy, expertOut, gate, plan.rowChoice, T, k, D, roundWire);
  return { dgate, dExpertOut };
}

/** The router's gradient from dgate and the aux losses: dW_r (D, E) and the router's part of dx (T, D). */
export function routerBackward(dgate: Float32Array, routing: Routing, wRouter: Float32Array, D: number,
  loadBalanceCoef: number, zLossCoef: number, ws = FRESH, grads = FRESH): { dx: Float32Array; dwRouter: Float32Array } {
  const { T, E, k, G } = routing;
  const dlogits = ws.f32('dlogits', T * E);
  const dwRouter = grads.f32('router', D * E);
  const dx = grads.f32('dx', T * D);
  native.switchRouterBackward(dlogits, dwRouter, dx, dgate, routing.probs, routing.lse, routing.f, routing.expertIndex,
    routing.xRouter, wRouter, routing.u, T, D, E, k, G, loadBalanceCoef, zLossCoef);
  return { dx, dwRouter };
}

/** Rounds float32 values to bfloat16 and back (a bf16 wire), into dst (a new array by default; may be src). */
export function wireRound(src: Float32Array, dst: Float32Array = new Float32Array(src.length)): Float32Array {
  native.switchWireRound(dst, src);
  return dst;
}
