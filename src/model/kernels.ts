// Typed wrappers of the model's native kernels (native/addon/model.cc). Outputs first, then inputs,
// then sizes, as in the C++ kernels. B = batch, S = sequence, T = B·S, D = d_model, H = heads,
// V = vocabulary, P = positions.
import { native } from '../native.js';

/** y, x: (T, D), rstd: (T), weight: (D). */
export function rmsnormForward(y: Float32Array, rstd: Float32Array, x: Float32Array, weight: Float32Array,
  T: number, D: number, eps: number): void {
  native.rmsnormForward(y, rstd, x, weight, T, D, eps);
}

/**
 * dx, dy, x: (T, D), dweight, weight: (D), rstd: (T). dweight is added to when accumulate; residual
 * (T, D), when given, is added to dx (the gradient around the norm through a residual connection).
 */
export function rmsnormBackward(dx: Float32Array, dweight: Float32Array, dy: Float32Array, x: Float32Array,
  weight: Float32Array, rstd: Float32Array, T: number, D: number, accumulate: boolean, residual?: Float32Array): void {
  native.rmsnormBackward(dx, dweight, dy, x, weight, rstd, T, D, accumulate, residual);
}

/** out = x + mask ⊙ y (a residual connection; mask: the branch's dropout scale), all of x's length. */
export function residualForward(out: Float32Array, x: Float32Array, y: Float32Array, mask?: Float32Array): void {
  native.residualForward(out, x, y, mask);
}

/** y, ctx, x: (T, D), qkv: (T, 3D), att: (B, H, S, S), wQkv: (D, 3D), wO: (D, D). */
export function attentionForward(y: Float32Array, qkv: Float32Array, att: Float32Array, ctx: Float32Array,
  x: Float32Array, wQkv: Float32Array, wO: Float32Array, B: number, S: number, D: number, H: number): void {
  native.attentionForward(y, qkv, att, ctx, x, wQkv, wO, B, S, D, H);
}

/** Gradients written (not accumulated): dx (T, D), dwQkv (D, 3D), dwO (D, D). */
export function attentionBackward(dx: Float32Array, dwQkv: Float32Array, dwO: Float32Array, dy: Float32Array,
  x: Float32Array, wQkv: Float32Array, wO: Float32Array, qkv: Float32Array, att: Float32Array, ctx: Float32Array,
  B: number, S: number, D: number, H: number): void {
  native.attentionBackward(dx, dwQkv, dwO, dy, x, wQkv, wO, qkv, att, ctx, B, S, D, H);
}

/** x: (T, D) = wte[tokens] + wpe[position]; tokens: (T) in [0, V); wpe: (P, D), P ≥ S. */
export function embeddingForward(x: Float32Array, tokens: Int32Array, wte: Float32Array, wpe: Float32Array,
  B: number, S: number, D: number, V: number): void {
  native.embeddingForward(x, tokens, wte, wpe, B, S, D, V);
}

/** dwte: (V, D), dwpe: (P, D) written or added to; dx: (T, D). */
export function embeddingBackward(dwte: Float32Array, dwpe: Float32Array, dx: Float32Array, tokens: Int32Array,
  B: number, S: number, D: number, V: number, accumulate: boolean): void {
  native.embeddingBackward(dwte, dwpe, dx, tokens, B, S, D, V, accumulate);
}

/** losses: (T), probs: (T, V), h: (T, D), wte: (V, D), targets: (T). */
export function crossEntropyForward(losses: Float32Array, probs: Float32Array, h: Float32Array, wte: Float32Array,
  targets: Int32Array, T: number, D: number, V: number): void {
  native.crossEntropyForward(losses, probs, h, wte, targets, T, D, V);
}

/** dh: (T, D) written, dwte: (V, D) written or added to, dlosses: (T); probs (T, V) is overwritten with dlogits. */
export function crossEntropyBackward(dh: Float32Array, dwte: Float32Array, dlosses: Float32Array,
  probs: Float32Array, h: Float32Array, wte: Float32Array, targets: Int32Array, T: number, D: number, V: number,
  accumulate: boolean): void {
  native.crossEntropyBackward(dh, dwte, dlosses, probs, h, wte, targets, T, D, V, accumulate);
}

/**
 * The training path of the loss: losses (T), dh (T, D) and dwte (V, D, written or added to) in one
 * pass over blocks of tokens, given dlosses (T) in advance; no (T, V) buffer.
 */
export function crossEntropyForwardBackward(losses: Float32Array, dh: Float32Array, dwte: Float32Array, h: Float32Array,
  wte: Float32Array, targets: Int32Array, dlosses: Float32Array, T: number, D: number, V: number, accumulate: boolean): void {
  native.crossEntropyForwardBackward(losses, dh, dwte, h, wte, targets, dlosses, T, D, V, accumulate);
}

/** Evaluation: losses (T) alone, the logits computed in blocks of tokens (no (T, V) buffer). */
export function crossEntropyLoss(losses: Float32Array, h: Float32Array, wte: Float32Array, targets: Int32Array,
  T: number, D: number, V: number): void {
  native.crossEntropyLoss(losses, h, wte, targets, T, D, V);
}

// The same kernels on a libuv worker thread (the model's training step awaits these, so the event
// loop keeps running during a step). The arrays must not be touched until the promise settles.

/** attentionForward on a worker thread. */
export function attentionForwardAsync(y: Float32Array, qkv: Float32Array, att: Float32Array, ctx: Float32Array,
  x: Float32Array, wQkv: Float32Array, wO: Float32Array, B: number, S: number, D: number, H: number): Promise<void> {
  return native.attentionForwardAsync(y, qkv, att, ctx, x, wQkv, wO, B, S, D, H);
}

/** attentionBackward on a worker thread. */
export function attentionBackwardAsync(dx: Float32Array, dwQkv: Float32Array, dwO: Float32Array, dy: Float32Array,
  x: Float32Array, wQkv: Float32Array, wO: Float32Array, qkv: Float32Array, att: Float32Array, ctx: Float32Array,
  B: number, S: number, D: number, H: number): Promise<void> {
  return native.attentionBackwardAsync(dx, dwQkv, dwO, dy, x, wQkv, wO, qkv, att, ctx, B, S, D, H);
}

/** crossEntropyForwardBackward on a worker thread. */
export function crossEntropyForwardBackwardAsync(losses: Float32Array, dh: Float32Array, dwte: Float32Array, h: Float32Array,
  wte: Float32Array, targets: Int32Array, dlosses: Float32Array, T: number, D: number, V: number, accumulate: boolean): Promise<void> {
  return native.crossEntropyForwardBackwardAsync(losses, dh, dwte, h, wte, targets, dlosses, T, D, V, accumulate);
}

/** crossEntropyLoss on a worker thread. */
export function crossEntropyLossAsync(losses: Float32Array, h: Float32Array, wte: Float32Array, targets: Int32Array,
  T: number, D: number, V: number): Promise<void> {
  return native.crossEntropyLossAsync(losses, h, wte, targets, T, D, V);
}
