// The model's native kernels against tfjs-core autograd (CPU backend) and bad-input errors.
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops.js';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import '@tensorflow/tfjs-backend-cpu';
import { modelKernels as k } from 'switch-transformer';
import { fileRandom, maxAbsDiff, poisoned, randn, relError, sameBits } from './model-helpers.js';

await tf.setBackend('cpu');
const { random } = fileRandom();

function rms(x: tf.Tensor2D, w: tf.Tensor1D, eps: number): tf.Tensor2D {
  return x.mul(x.square().mean(-1, true).add(eps).rsqrt()).mul(w);
}

function causalAttention(x: tf.Tensor2D, wQkv: tf.Tensor2D, wO: tf.Tensor2D, B: number, S: number, D: number, H: number): tf.Tensor2D {
  const Dh = D / H;
  const qkv = x.matMul(wQkv).reshape([B, S, 3, H, Dh]).transpose([2, 0, 3, 1, 4]);
  const [q, kk, v] = tf.unstack(qkv, 0) as tf.Tensor4D[];
  const mask = tf.linalg.bandPart(tf.ones([S, S]), -1, 0);
  const scores = q.matMul(kk, false, true).div(Math.sqrt(Dh)).add(tf.scalar(1).sub(mask).mul(-1e9));
  const ctx = tf.softmax(scores).matMul(v).transpose([0, 2, 1, 3]).reshape([B * S, D]);
  return ctx.matMul(wO) as tf.Tensor2D;
}

describe('rmsnorm kernels', () => {
  it.each([[1, 1], [1, 5], [7, 16], [40, 33]])('T=%i D=%i matches tfjs autograd', (T, D) => {
    const x = randn(T * D, random), w = randn(D, random), dy = randn(T * D, random);
    const y = poisoned(T * D), rstd = poisoned(T);
    k.rmsnormForward(y, rstd, x, w, T, D, 1e-6);
    const [tx, tw, tdy] = [tf.tensor2d(x, [T, D]), tf.tensor1d(w), tf.tensor2d(dy, [T, D])];
    expect(relError(y, rms(tx, tw, 1e-6).dataSync())).toBeLessThan(1e-5);
    const [gx, gw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => rms(a as tf.Tensor2D, b as tf.Tensor1D, 1e-6).mul(tdy).sum())([tx, tw]);
    const dx = poisoned(T * D), dw = poisoned(D);
    k.rmsnormBackward(dx, dw, dy, x, w, rstd, T, D, false);
    // D = 1: dx = r·w·dy·ε/(x² + ε) is the difference of two terms of size r·w·dy that nearly
    // cancel (x·y·mean(dy·y) against dy·w), so it is bounded against their size, not its own.
    let cancelled = 0;
    for (let i = 0; i < T * D; i++) cancelled = Math.max(cancelled, Math.abs(rstd[Math.floor(i / D)] * w[i % D] * dy[i]));
    expect(Math.min(relError(dx, gx.dataSync()), maxAbsDiff(dx, gx.dataSync()) / cancelled)).toBeLessThan(1e-4);
    expect(relError(dw, gw.dataSync())).toBeLessThan(1e-4);
    // accumulate adds to what is there
    const dw2 = Float32Array.from(dw);
    k.rmsnormBackward(dx, dw2, dy, x, w, rstd, T, D, true);
    expect(relError(dw2, dw.map((v) => 2 * v))).toBeLessThan(1e-6);
    // a residual gradient is added to dx, element by element
    const residual = randn(T * D, random), dxResidual = poisoned(T * D), dw3 = poisoned(D);
    k.rmsnormBackward(dxResidual, dw3, dy, x, w, rstd, T, D, false, residual);
    for (let i = 0; i < T * D; i++) expect(dxResidual[i]).toBe(Math.fround(dx[i] + residual[i]));
    expect(sameBits(dw3, dw)).toBe(true);
  });
});

describe('attention kernels', () => {
  // S = 70: several causal tiles of 32 query rows, the last one partial.
  it.each([[1, 1, 1, 1], [1, 4, 6, 2], [2, 9, 8, 4], [3, 17, 12, 3], [1, 70, 8, 2]])('B=%i S=%i D=%i H=%i matches tfjs autograd', (B, S, D, H) => {
    const T = B * S;
    const x = randn(T * D, random), wQkv = randn(D * 3 * D, random, 0.4), wO = randn(D * D, random, 0.4), dy = randn(T * D, random);
    const y = poisoned(T * D), qkv = poisoned(T * 3 * D), att = poisoned(B * H * S * S), ctx = poisoned(T * D);
    k.attentionForward(y, qkv, att, ctx, x, wQkv, wO, B, S, D, H);
    const tx = tf.tensor2d(x, [T, D]), tq = tf.tensor2d(wQkv, [D, 3 * D]), to = tf.tensor2d(wO, [D, D]);
    expect(relError(y, causalAttention(tx, tq, to, B, S, D, H).dataSync())).toBeLessThan(1e-5);
    // Probabilities: rows sum to 1, zero above the diagonal.
    for (let i = 0; i < S; i++) {
      let sum = 0;
      for (let j = 0; j < S; j++) sum += att[i * S + j];
      expect(sum).toBeCloseTo(1, 5);
      if (i + 1 < S) expect(att[i * S + S - 1]).toBe(0);
    }
    const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
      causalAttention(a as tf.Tensor2D, b as tf.Tensor2D, c as tf.Tensor2D, B, S, D, H).mul(tf.tensor2d(dy, [T, D])).sum())([tx, tq, to]);
    const dx = poisoned(T * D), dwQkv = poisoned(D * 3 * D), dwO = poisoned(D * D);
    k.attentionBackward(dx, dwQkv, dwO, dy, x, wQkv, wO, qkv, att, ctx, B, S, D, H);
    expect(relError(dx, grads[0].dataSync())).toBeLessThan(1e-4);
    expect(relError(dwQkv, grads[1].dataSync())).toBeLessThan(1e-4);
    expect(relError(dwO, grads[2].dataSync())).toBeLessThan(1e-4);
  });

  it('backward agrees with finite differences', () => {
    const B = 1, S = 5, D = 4, H = 2, T = B * S;
    const x = randn(T * D, random), wQkv = randn(D * 3 * D, random, 0.5), wO = randn(D * D, random, 0.5), dy = randn(T * D, random);
    const objective = () => {
      const y = new Float32Array(T * D);
      k.attentionForward(y, new Float32Array(T * 3 * D), new Float32Array(B * H * S * S), new Float32Array(T * D), x, wQkv, wO, B, S, D, H);
      let s = 0;
      for (let i = 0; i < y.length; i++) s += y[i] * dy[i];
      return s;
    };
    const qkv = new Float32Array(T * 3 * D), att = new Float32Array(B * H * S * S), ctx = new Float32Array(T * D);
    k.attentionForward(new Float32Array(T * D), qkv, att, ctx, x, wQkv, wO, B, S, D, H);
    const dx = poisoned(T * D), dwQkv = poisoned(D * 3 * D), dwO = poisoned(D * D);
    k.attentionBackward(dx, dwQkv, dwO, dy, x, wQkv, wO, qkv, att, ctx, B, S, D, H);
    for (const [param, grad] of [[x, dx], [wQkv, dwQkv], [wO, dwO]] as const) {
      for (let probe = 0; probe < 5; probe++) {
        const i = random.int(param.length);
        const saved = param[i];
        param[i] = saved + 1e-2; const up = objective();
        param[i] = saved - 1e-2; const down = objective();
        param[i] = saved;
        expect(Math.abs((up - down) / 2e-2 - grad[i])).toBeLessThan(2e-3 * (1 + Math.abs(grad[i])));
      }
    }
  });
});

describe('embedding kernels', () => {
  it.each([[1, 1, 1, 1], [2, 5, 3, 7], [3, 8, 16, 11]])('B=%i S=%i D=%i V=%i matches tfjs autograd', (B, S, D, V) => {
    const T = B * S;
    const tokens = Int32Array.from({ length: T }, () => random.int(V));
    const wte = randn(V * D, random), wpe = randn((S + 3) * D, random), dy = randn(T * D, random);
    const x = poisoned(T * D);
    k.embeddingForward(x, tokens, wte, wpe, B, S, D, V);
    const f = (a: tf.Tensor, b: tf.Tensor) => tf.gather(a, tf.tensor1d(tokens, 'int32')).reshape([B, S, D])
      .add(b.slice([0, 0], [S, D])).reshape([T, D]);
    const tw = tf.tensor2d(wte, [V, D]), tp = tf.tensor2d(wpe, [S + 3, D]);
    expect(relError(x, f(tw, tp).dataSync())).toBeLessThan(1e-6);
    const [gw, gp] = tf.grads((a: tf.Tensor, b: tf.Tensor) => f(a, b).mul(tf.tensor2d(dy, [T, D])).sum())([tw, tp]);
    const dwte = poisoned(V * D), dwpe = poisoned((S + 3) * D);
    k.embeddingBackward(dwte, dwpe, dy, tokens, B, S, D, V, false);
    expect(relError(dwte, gw.dataSync())).toBeLessThan(1e-5);
    expect(relError(dwpe.subarray(0, S * D), gp.dataSync().subarray(0, S * D))).toBeLessThan(1e-5);
  });
});

describe('cross-entropy kernels', () => {
  it.each([[1, 1, 1], [1, 3, 2], [6, 5, 9], [33, 8, 70]])('T=%i D=%i V=%i matches tfjs autograd', (T, D, V) => {
    const h = randn(T * D, random), wte = randn(V * D, random, 0.5), dl = randn(T, random);
    const targets = Int32Array.from({ length: T }, () => random.int(V));
    const losses = poisoned(T), probs = poisoned(T * V);
    k.crossEntropyForward(losses, probs, h, wte, targets, T, D, V);
    const oneHot = new Float32Array(T * V);
    targets.forEach((target, t) => { oneHot[t * V + target] = 1; });
    const f = (a: tf.Tensor, b: tf.Tensor) => {
      const logits = (a as tf.Tensor2D).matMul(b as tf.Tensor2D, false, true);
      return logits.logSumExp(1).sub(logits.mul(tf.tensor2d(oneHot, [T, V])).sum(1));
    };
    const th = tf.tensor2d(h, [T, D]), tw = tf.tensor2d(wte, [V, D]);
    expect(relError(losses, f(th, tw).dataSync())).toBeLessThan(1e-5);
    const [gh, gw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => f(a, b).mul(tf.tensor1d(dl)).sum())([th, tw]);
    const dh = poisoned(T * D), dwte = poisoned(V * D);
    k.crossEntropyBackward(dh, dwte, dl, probs, h, wte, targets, T, D, V, false);
    expect(relError(dh, gh.dataSync())).toBeLessThan(1e-4);
    expect(relError(dwte, gw.dataSync())).toBeLessThan(1e-4);
    // the fused training pass gives the same loss and gradients
    const fl = poisoned(T), fdh = poisoned(T * D), fdw = poisoned(V * D);
    k.crossEntropyForwardBackward(fl, fdh, fdw, h, wte, targets, dl, T, D, V, false);
    expect(relError(fl, losses)).toBeLessThan(1e-6);
    expect(relError(fdh, gh.dataSync())).toBeLessThan(1e-4);
    expect(relError(fdw, gw.dataSync())).toBeLessThan(1e-4);
  });
});

describe('kernels on a worker thread (…Async)', () => {
  it('give the same bits as the synchronous kernels, into poisoned outputs', async () => {
    const B = 2, S = 9, D = 8, H = 2, T = B * S, V = 11;
    const x = randn(T * D, random), wQkv = randn(D * 3 * D, random, 0.4), wO = randn(D * D, random, 0.4), dy = randn(T * D, random);
    const sync = { y: poisoned(T * D), qkv: poisoned(T * 3 * D), att: poisoned(B * H * S * S), ctx: poisoned(T * D) };
    const async = { y: poisoned(T * D), qkv: poisoned(T * 3 * D), att: poisoned(B * H * S * S), ctx: poisoned(T * D) };
    k.attentionForward(sync.y, sync.qkv, sync.att, sync.ctx, x, wQkv, wO, B, S, D, H);
    const pending = k.attentionForwardAsync(async.y, async.qkv, async.att, async.ctx, x, wQkv, wO, B, S, D, H);
    expect(pending).toBeInstanceOf(Promise);
    await pending;
    for (const key of ['y', 'qkv', 'att', 'ctx'] as const) expect(sameBits(async[key], sync[key]), key).toBe(true);
    const gs = [poisoned(T * D), poisoned(D * 3 * D), poisoned(D * D)], ga = [poisoned(T * D), poisoned(D * 3 * D), poisoned(D * D)];
    k.attentionBackward(gs[0], gs[1], gs[2], dy, x, wQkv, wO, sync.qkv, sync.att, sync.ctx, B, S, D, H);
    await k.attentionBackwardAsync(ga[0], ga[1], ga[2], dy, x, wQkv, wO, sync.qkv, sync.att, sync.ctx, B, S, D, H);
    gs.forEach((g, i) => expect(sameBits(ga[i], g)).toBe(true));
    const h = randn(T * D, random), wte = randn(V * D, random, 0.5), dl = randn(T, random);
    const targets = Int32Array.from({ length: T }, () => random.int(V));
    const ls = poisoned(T), dhs = poisoned(T * D), dws = poisoned(V * D), la = poisoned(T), dha = poisoned(T * D), dwa = poisoned(V * D);
    k.crossEntropyForwardBackward(ls, dhs, dws, h, wte, targets, dl, T, D, V, false);
    await k.crossEntropyForwardBackwardAsync(la, dha, dwa, h, wte, targets, dl, T, D, V, false);
    expect(sameBits(la, ls) && sameBits(dha, dhs) && sameBits(dwa, dws)).toBe(true);
    const lossOnly = poisoned(T), lossOnlyAsync = poisoned(T);
    k.crossEntropyLoss(lossOnly, h, wte, targets, T, D, V);
    await k.crossEntropyLossAsync(lossOnlyAsync, h, wte, targets, T, D, V);
    expect(sameBits(lossOnlyAsync, lossOnly)).toBe(true);
    expect(relError(lossOnly, ls)).toBeLessThan(1e-6);  // the evaluation path gives the training path's losses
    // Bad input is refused before any work is queued, with the same coded errors.
    expect(() => k.crossEntropyLossAsync(poisoned(T), h, wte, Int32Array.from(targets, () => V), T, D, V))
      .toThrow(expect.objectContaining({ code: 'ERR_SWITCH_RANGE', message: expect.stringContaining("'targets'") }));
    expect(() => k.attentionForwardAsync(poisoned(5), async.qkv, async.att, async.ctx, x, wQkv, wO, B, S, D, H))
      .toThrow(expect.objectContaining({ code: 'ERR_SWITCH_SHAPE', message: expect.stringContaining("'y'") }));
  });

  it('residualForward adds the branch (scaled by its dropout mask) to the input', () => {
    const n = 37, x = randn(n, random), y = randn(n, random), mask = Float32Array.from({ length: n }, () => (random.uniform() < 0.3 ? 0 : 1.5));
    const out = poisoned(n), masked = poisoned(n);
    k.residualForward(out, x, y);
    k.residualForward(masked, x, y, mask);
    for (let i = 0; i < n; i++) {
      expect(out[i]).toBe(Math.fround(x[i] + y[i]));
      expect(masked[i]).toBe(Math.fround(x[i] + Math.fround(y[i] * mask[i])));
    }
    expect(() => k.residualForward(poisoned(n - 1), x, y)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_SHAPE' }));
  });
});

describe('bad input', () => {
  it('throws coded errors naming the argument', () => {
    const T = 4, D = 3;
    expect(() => k.rmsnormForward(new Float32Array(11), new Float32Array(T), new Float32Array(T * D), new Float32Array(D), T, D, 1e-6))
      .toThrow(expect.objectContaining({ code: 'ERR_SWITCH_SHAPE', message: expect.stringContaining("'y'") }));
    expect(() => k.rmsnormForward(new Float64Array(T * D) as unknown as Float32Array, new Float32Array(T), new Float32Array(T * D), new Float32Array(D), T, D, 1e-6))
      .toThrow(expect.objectContaining({ code: 'ERR_SWITCH_ARG_TYPE', name: 'TypeError' }));
    expect(() => k.attentionForward(new Float32Array(12), new Float32Array(36), new Float32Array(16), new Float32Array(12), new Float32Array(12),
      new Float32Array(27), new Float32Array(9), 1, 4, 3, 2)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_SHAPE', message: expect.stringContaining("'H'") }));
    expect(() => k.embeddingForward(new Float32Array(6), Int32Array.of(0, 5), new Float32Array(12), new Float32Array(6), 1, 2, 3, 4))
      .toThrow(expect.objectContaining({ code: 'ERR_SWITCH_RANGE', message: expect.stringContaining("'tokens'") }));
    expect(() => k.embeddingForward(new Float32Array(6), Int32Array.of(0, 1), new Float32Array(12), new Float32Array(3), 1, 2, 3, 4))
      .toThrow(expect.objectContaining({ code: 'ERR_SWITCH_SHAPE', message: expect.stringContaining("'wpe'") }));
    expect(() => k.crossEntropyForward(new Float32Array(2), new Float32Array(8), new Float32Array(6), new Float32Array(12), Int32Array.of(0, -1), 2, 3, 4))
      .toThrow(expect.objectContaining({ code: 'ERR_SWITCH_RANGE', message: expect.stringContaining("'targets'") }));
    expect(() => k.rmsnormForward(new Float32Array(12), new Float32Array(4), new Float32Array(12), new Float32Array(3), 4.5, 3, 1e-6))
      .toThrow(expect.objectContaining({ code: 'ERR_SWITCH_RANGE' }));
  });
});
