// The Switch feed-forward layer on a device mesh (SPEC §3: expert + data, expert + model + data).
// Every device routes its own tokens with the replicated router, sends each expert's kept choices
// (the compact expert-major dispatch rows) to the device that owns the expert (an all-to-all with
// per-peer sizes along `data`; the row counts go first), runs its own experts
// (their d_ff split over the `model` axis, partial outputs summed by an all-reduce along `model`),
// and sends the outputs back (all-to-all) to be combined on the token's own device. Backward mirrors
// it. With float32 on the wire this is the single-device layer on the global batch with
// groupSize = tokens per device (or a divisor); with bf16 it is that layer in precision 'bf16-wire':
// the four wire points of SPEC §1.12 are exactly the two all-to-alls of forward and of backward
// (a device's chunk to itself is rounded by the mesh like every other).
// T = tokens of this device, D = d_model, F = d_ff, E = experts, El = E/n experts of this device,
// Fm = F/m hidden units of this device, k = choices per token, G = group size, C = capacity,
// n = devices along `data`, m = devices along `model`, R = kept choices of this device's tokens,
// Rl = rows this device's experts receive.
import { codedError, rangeError } from '../errors.js';
import { native } from '../native.js';
import type { Device, Wire } from '../mesh/device.js';
import { checkParam, checkTokens, optionError } from './options.js';
import {
  combine, dispatchBackward, expertsBackward, expertsForward, planDispatch, route, routerBackward, STREAM,
  truncatedNormal, Workspace, type DispatchPlan, type ExpertActivations, type ExpertConfig, type Routing,
} from './switch_steps.js';
import type { SwitchFeedForwardOptions } from './switch.js';
import { routingStats, shapeError, SwitchLayerBase } from './layer_base.js';

/** The options of SwitchFeedForward with the mesh required; `precision` defaults to the mesh's wire
 * ('bf16' → 'bf16-wire'), and given explicitly it overrides the mesh's wire. */
export type MeshSwitchOptions = SwitchFeedForwardOptions & { mesh: Device };

/** Who sends how many rows to whom: the layout of both all-to-alls of a call. */
interface Exchange {
  /** (n, El) rows peer p sends for local expert el. */
  recvRows: Int32Array;
  /** (n, El) rows this device sends to peer p for its expert el (its counts, peer-major). */
  sendRows: Int32Array;
  /** (n) elements to / from each peer. */
  sendCounts: Int32Array;
  recvCounts: Int32Array;
  Rl: number;
}

interface SavedForward {
  T: number;
  routing: Routing;
  plan: DispatchPlan;
  exchange: Exchange;
  /** (Rl, D) the received expert inputs, expert-major. */
  xLocal: Float32Array;
  offsets: Int32Array;
  acts: ExpertActivations;
  expertCfg: ExpertConfig;
  /** (E·B, D) this device's tokens' expert outputs as they came back. */
  expertOut: Float32Array;
  wRouter: Float32Array;
  wIn: Float32Array;
  wOut: Float32Array;
}

/** Checks that `mesh` looks like a Device and returns the sizes of its `data` and `model` axes. */
export function meshAxes(mesh: unknown, layer: string): { device: Device; n: number; m: number } {
  const device = mesh as Device;
  if (device === null || typeof device !== 'object' || typeof device.allToAll !== 'function' || !device.axes)
    throw Object.assign(new TypeError(`${layer}: option 'mesh' must be a mesh device (the first argument of a launchMesh program)`),
      { code: 'ERR_SWITCH_ARG_TYPE' as const });
  const axes = device.axes;
  for (const name of Object.keys(axes))
    if (name !== 'data' && name !== 'model')
      throw rangeError('ERR_SWITCH_OPTION', `${layer}: the mesh's axes must be 'data' and/or 'model', got axis '${name}'`);
  return { device, n: axes.data ?? 1, m: axes.model ?? 1 };
}

/**
 * Reorders blocks of rows between peer-major (p, el) order, as an all-to-all delivers them, and the
 * experts' expert-major (el, p) order; rows (n, El) gives each block's row count, width the
 * elements of a row. dst and src must not overlap.
 */
function permuteBlocks(dst: Float32Array, src: Float32Array, rows: Int32Array, n: number, El: number, width: number,
  toExpertMajor: boolean): void {
  if (n === 1 || El === 1) {
    let total = 0;
    for (let i = 0; i < rows.length; i++) total += rows[i];
    dst.set(src.subarray(0, total * width));
    return;
  }
  const peerMajorAt = new Int32Array(n * El);
  let at = 0;
  for (let i = 0; i < n * El; i++) {
    peerMajorAt[i] = at;
    at += rows[i] * width;
  }
  at = 0;
  for (let el = 0; el < El; el++)
    for (let p = 0; p < n; p++) {
      const i = p * El + el;
      const len = rows[i] * width;
      if (toExpertMajor) dst.set(src.subarray(peerMajorAt[i], peerMajorAt[i] + len), at);
      else dst.set(src.subarray(at, at + len), peerMajorAt[i]);
      at += len;
    }
}

export class MeshSwitchFeedForward extends SwitchLayerBase {
  readonly mesh: Device;
  /** Devices along `data` (experts are spread over them) and along `model` (d_ff is split over them). */
  readonly dataSize: number;
  readonly modelSize: number;
  /** The experts this device owns: firstExpert … firstExpert + localExperts − 1. */
  readonly firstExpert: number;
  readonly localExperts: number;
  /** Hidden units of each own expert this device holds: firstHidden … firstHidden + localFF − 1. */
  readonly firstHidden: number;
  readonly localFF: number;
  /** router (D, E) whole; wIn (El, D, Fm), wOut (El, Fm, D): this device's slices. */
  readonly params: { router: Float32Array; wIn: Float32Array; wOut: Float32Array };
  private saved: SavedForward | null = null;
  private readonly wire: Wire;
  private readonly hasDataAxis: boolean;
  // Send buffers: plain memory (allToAllv stages through the arena; only an equal-size float32
  // allToAll reads a shared-heap buffer in place, and the heap is never freed).
  private readonly send = new Workspace(true);
  private readonly wsTrain = new Workspace(true);
  private readonly wsEval = new Workspace(true);
  private readonly wsBackward = new Workspace(true);

  /** full: the single-device layer's weights for this seed (drawn again when not given). */
  constructor(options: MeshSwitchOptions, full?: { router: Float32Array; wIn: Float32Array; wOut: Float32Array }) {
    const { device, n, m } = meshAxes(options.mesh, 'SwitchFeedForward');
    super(options, device.wire === 'bf16' ? 'bf16-wire' : 'float32');
    this.mesh = device;
    this.dataSize = n;
    this.modelSize = m;
    this.hasDataAxis = 'data' in device.axes;
    this.wire = this.precision === 'bf16-wire' ? 'bf16' : 'float32';
    const { dModel: D, dFF: F, numExperts: E, initScale } = this;
    if (E % n !== 0)
      throw rangeError('ERR_SWITCH_OPTION',
        `SwitchFeedForward: option 'numExperts' (${E}) must be a multiple of the mesh's 'data' axis (${n} devices): each device owns E/n experts`);
    if (F % m !== 0)
      throw rangeError('ERR_SWITCH_OPTION',
        `SwitchFeedForward: option 'dFF' (${F}) must be a multiple of the mesh's 'model' axis (${m} devices): each expert's d_ff is split over them`);
    if (m > 1 && this.expertDropout > 0)
      throw codedError('ERR_SWITCH_UNSUPPORTED',
        "SwitchFeedForward: option 'expertDropout' is not supported with a 'model' axis (the dropout mask is keyed by the unsplit hidden unit)");
    this.localExperts = E / n;
    this.firstExpert = (device.coords.data ?? 0) * this.localExperts;
    this.localFF = F / m;
    this.firstHidden = (device.coords.model ?? 0) * this.localFF;
    // The same draws as a single-device layer with this seed, then this device's slices of them.
    const wIn = full?.wIn ?? truncatedNormal(E * D * F, D, initScale, this.seed, STREAM.wIn);
    const wOut = full?.wOut ?? truncatedNormal(E * F * D, F, initScale, this.seed, STREAM.wOut);
    const El = this.localExperts, Fm = this.localFF, e0 = this.firstExpert, f0 = this.firstHidden;
    const wInLocal = new Float32Array(El * D * Fm);
    const wOutLocal = new Float32Array(El * Fm * D);
    for (let e = 0; e < El; e++) {
      for (let d = 0; d < D; d++) {
        const from = ((e0 + e) * D + d) * F + f0;
        wInLocal.set(wIn.subarray(from, from + Fm), (e * D + d) * Fm);
      }
      const from = ((e0 + e) * F + f0) * D;
      wOutLocal.set(wOut.subarray(from, from + Fm * D), e * Fm * D);
    }
    this.params = { router: full?.router ?? truncatedNormal(D * E, D, initScale, this.seed, STREAM.router), wIn: wInLocal, wOut: wOutLocal };
  }

  evaluate(x: Float32Array) {
    return this.forward(x, { training: false });
  }

  forward(x: Float32Array, options: { training?: boolean; retainForBackward?: boolean } = {}) {
    const training = options?.training ?? false;
    if (typeof training !== 'boolean') throw optionError('training', 'a boolean', training);
    const retain = options?.retainForBackward ?? training;
    const ws = retain ? this.wsTrain : this.wsEval;
    const { dModel: D, numExperts: E, topK: k, dataSize: n, localExperts: El, localFF: Fm } = this;
    const T = checkTokens('x', x, D);
    const G = this.groupSize ?? T;
    if (T % G !== 0) throw shapeError(`argument 'x' has T = ${T} tokens, which is not a multiple of groupSize ${G}`);
    const wRouter = checkParam('router', this.params.router, D * E, `(${D}, ${E})`);
    const wIn = checkParam('wIn', this.params.wIn, El * D * Fm, `(${El}, ${D}, ${Fm})`);
    const wOut = checkParam('wOut', this.params.wOut, El * Fm * D, `(${El}, ${Fm}, ${D})`);
    const call = training ? ++this.calls : 0;
    const streamBase = call * 16;
    const C = this.capacity(T, training);
    // Every device has T tokens (the all-to-all chunks are equal), so its first global token is coord · T.
    const tokenOffset = (this.mesh.coords.data ?? 0) * T;
    const routing = route(x, wRouter, {
      T, D, E, k, G, C,
      policy: k === 2 ? (training || this.secondExpertPolicy !== 'random' ? this.secondExpertPolicy : 'all') : 'all',
      threshold: this.secondExpertThreshold, noTokenLeftBehind: this.noTokenLeftBehind,
      jitter: training ? this.jitter : 0, seed: this.seed, streamBase, tokenOffset,
    }, ws);
    const plan = planDispatch(routing, false, ws);
    const R = plan.R;
    const ex = this.planExchange(plan.offsets, D);
    // Dispatch: the kept choices, expert-major, so peer p's rows are one run (wire point 1).
    const sendX = this.send.f32('a', R * D);
    native.switchDispatchForward(sendX, x, plan.rowToken, T, D, false);
    const recvX = ws.f32('recvX', ex.Rl * D);
    this.exchange(sendX, ex.sendCounts, recvX, ex.recvCounts);
    const xLocal = ws.f32('xLocal', ex.Rl * D);
    permuteBlocks(xLocal, recvX, ex.recvRows, n, El, D, true);
    const dropoutRate = training ? this.expertDropout : 0;
    let rowChoice: Int32Array | null = null;
    if (dropoutRate > 0) {
      // The dropout mask is keyed by the global choice index t·k + j: send it along (exact in float32).
      const sendChoice = this.send.f32('choice', R);
      for (let r = 0; r < R; r++) sendChoice[r] = plan.rowChoice[r] + tokenOffset * k;
      const recvChoice = ws.f32('recvChoice', ex.Rl);
      this.exchange(sendChoice, ex.sendCounts.map((c) => c / D), recvChoice, ex.recvCounts.map((c) => c / D), 'float32');
      const local = ws.f32('choiceLocal', ex.Rl);
      permuteBlocks(local, recvChoice, ex.recvRows, n, El, 1, true);
      rowChoice = ws.i32('rowChoiceLocal', ex.Rl);
      for (let r = 0; r < ex.Rl; r++) rowChoice[r] = local[r];
    }
    const offsets = new Int32Array(El + 1);
    for (let e = 0; e < El; e++) {
      let rows = 0;
      for (let p = 0; p < n; p++) rows += ex.recvRows[p * El + e];
      offsets[e + 1] = offsets[e] + rows;
    }
    const expertCfg: ExpertConfig = {
      E: El, D, F: Fm, activation: this.activation, dropoutRate, seed: this.seed, stream: streamBase + STREAM.dropout,
    };
    const acts = expertsForward(xLocal, null, rowChoice, offsets, wIn, wOut, expertCfg, ws);
    // Each device of a model group holds Fm of the hidden units: their partial outputs sum to the
    // expert's output (float32: the sum is inside the expert; only its result crosses the wire).
    if (this.modelSize > 1) this.mesh.allReduce(acts.expertOut, acts.expertOut, { axis: 'model', wire: 'float32' });
    // Back to the tokens' devices (wire point 2), peer-major again.
    const sendOut = this.send.f32('b', ex.Rl * D);
    permuteBlocks(sendOut, acts.expertOut, ex.recvRows, n, El, D, false);
    const expertOut = ws.f32('expertOutBack', R * D);
    this.exchange(sendOut, ex.recvCounts, expertOut, ex.sendCounts);
    const y = combine(expertOut, routing.gate, plan.row, T, k, D);
    const kept = new Uint8Array(T * k);
    for (let c = 0; c < T * k; c++) kept[c] = plan.row[c] >= 0 ? 1 : 0;
    const stats = routingStats(routing, kept, T, k, E);
    this.stats = stats;
    if (retain) this.saved = { T, routing, plan, exchange: ex, xLocal, offsets, acts, expertCfg, expertOut, wRouter, wIn, wOut };
    const auxLoss = this.loadBalanceCoef * routing.loadBalanceLoss + this.zLossCoef * routing.zLoss;
    return {
      y, auxLoss, loadBalanceLoss: routing.loadBalanceLoss, zLoss: routing.zLoss,
      expertIndex: routing.expertIndex, gate: routing.gate, kept, stats,
    };
  }

  backward(dy: Float32Array) {
    return this.backwardScaled(dy, 1);
  }

  /** The gradient of Σ(y ⊙ dy) + auxScale · auxLoss for this device's tokens (see the file comment). */
  backwardScaled(dy: Float32Array, auxScale: number) {
    const s = this.saved;
    if (!s) throw codedError('ERR_SWITCH_STATE', 'SwitchFeedForward.backward needs a forward with { training: true } first');
    const { dModel: D, topK: k, dataSize: n, localExperts: El } = this;
    const T = checkTokens('dy', dy, D);
    if (T !== s.T) throw shapeError(`argument 'dy' must have ${s.T * D} elements (shape (${s.T}, ${D})), got ${dy.length}`);
    const wsB = this.wsBackward;
    const R = s.plan.R;
    const ex = s.exchange;
    // gate · dy per kept choice, written straight into the send buffer (wire point 3).
    const dgate = wsB.f32('dgate', T * k);
    const sendD = this.send.f32('a', R * D);
    native.switchCombineBackward(dgate, sendD, dy, s.expertOut, s.routing.gate, s.plan.rowChoice, T, k, D, false);
    const { dx, dwRouter } = routerBackward(dgate, s.routing, s.wRouter, D, this.loadBalanceCoef * auxScale,
      this.zLossCoef * auxScale, wsB, this.wsGrads);
    const recvD = wsB.f32('recvD', ex.Rl * D);
    this.exchange(sendD, ex.sendCounts, recvD, ex.recvCounts);
    const dOutLocal = wsB.f32('dOutLocal', ex.Rl * D);
    permuteBlocks(dOutLocal, recvD, ex.recvRows, n, El, D, true);
    const dxRows = wsB.f32('dxRows', ex.Rl * D);
    const { dwIn, dwOut } = expertsBackward(dxRows, dOutLocal, s.acts, s.xLocal, null, s.offsets, s.wIn, s.wOut,
      s.expertCfg, false, wsB, this.wsGrads);
    if (this.modelSize > 1) this.mesh.allReduce(dxRows, dxRows, { axis: 'model', wire: 'float32' });
    // The gradient of each dispatched row goes back to its token's device (wire point 4).
    const sendBack = this.send.f32('b', ex.Rl * D);
    permuteBlocks(sendBack, dxRows, ex.recvRows, n, El, D, false);
    const dBack = wsB.f32('dBack', R * D);
    this.exchange(sendBack, ex.recvCounts, dBack, ex.sendCounts);
    dispatchBackward(dx, dBack, s.plan, T, k, D, false, true);
    return { dx, grads: { router: dwRouter, wIn: dwIn, wOut: dwOut } };
  }

  /** Rows per (peer, expert) both ways, from the compact plan's expert offsets (one small all-to-all). */
  private planExchange(offsets: Int32Array, D: number): Exchange {
    const { dataSize: n, localExperts: El } = this;
    const sendRows = new Int32Array(n * El);
    const rowsOut = new Float32Array(n * El);
    for (let e = 0; e < n * El; e++) rowsOut[e] = sendRows[e] = offsets[e + 1] - offsets[e];
    const recvRows = this.hasDataAxis
      ? Int32Array.from(this.mesh.allToAll(rowsOut, new Float32Array(n * El), { axis: 'data', wire: 'float32' }))
      : sendRows.slice();
    const sendCounts = new Int32Array(n);
    const recvCounts = new Int32Array(n);
    let Rl = 0;
    for (let p = 0; p < n; p++)
      for (let e = 0; e < El; e++) {
        sendCounts[p] += sendRows[p * El + e] * D;
        recvCounts[p] += recvRows[p * El + e] * D;
        Rl += recvRows[p * El + e];
      }
    return { recvRows, sendRows, sendCounts, recvCounts, Rl };
  }

  /** All-to-all along `data` (per-peer sizes) on the layer's wire; without a `data` axis, the wire of a chunk to itself. */
  private exchange(send: Float32Array, sendCounts: Int32Array, recv: Float32Array, recvCounts: Int32Array,
    wire: Wire = this.wire): void {
    if (this.hasDataAxis) {
      this.mesh.allToAllv(send, sendCounts, recv, recvCounts, { axis: 'data', wire });
    } else if (wire === 'bf16') {
      native.switchWireRound(recv, send.subarray(0, recv.length));
    } else {
      recv.set(send.subarray(0, recv.length));
    }
  }
}
