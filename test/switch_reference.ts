// A plain, independent TypeScript definition of the Switch layer of SPEC §1, in float64, for the
// tests: written from the specification, sharing no code with the library. Also the counter-based
// random numbers documented in native/kernels/switch_random.h, re-derived with BigInt.

const M64 = (1n << 64n) - 1n;

function mix(z: bigint): bigint {
  z = (z + 0x9e3779b97f4a7c15n) & M64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
  return z ^ (z >> 31n);
}

export function randomKey(seed: number, stream: number): bigint {
  return mix(mix(BigInt(seed)) ^ ((BigInt(stream) * 0xd1b54a32d192ed03n) & M64));
}

export function randomUniform(key: bigint, index: number): number {
  return Number(mix(key ^ mix(BigInt(index))) >> 40n) / 16777216;
}

/** bfloat16 rounding (round to nearest, ties to even), written independently of the library. */
export function bf16(v: number): number {
  const f = new Float32Array([v]);
  const u = new Uint32Array(f.buffer);
  if (Number.isNaN(f[0])) return NaN;
  const lsb = (u[0] >>> 16) & 1;
  u[0] = ((u[0] + 0x7fff + lsb) >>> 16) << 16;
  return f[0];
}

export interface RefOptions {
  D: number; F: number; E: number; k: 1 | 2;
  capacityFactor: number; evalCapacityFactor: number; minCapacity: number; groupSize?: number;
  activation: 'relu' | 'gelu'; loadBalanceCoef: number; zLossCoef: number; jitter: number; expertDropout: number;
  policy: 'all' | 'none' | 'threshold' | 'random'; threshold: number; precision: 'float32' | 'bf16-wire';
  seed: number; noTokenLeftBehind: boolean;
}

export const defaults = (o: Partial<RefOptions> & { D: number; F: number; E: number }): RefOptions => ({
  k: 1, capacityFactor: 1.25, evalCapacityFactor: 2.0, minCapacity: 4, activation: 'relu', loadBalanceCoef: 0.01,
  zLossCoef: 0, jitter: 0, expertDropout: 0, policy: 'all', threshold: 0.2, precision: 'float32', seed: 0,
  noTokenLeftBehind: false, ...o,
});

/** Routing held fixed (for gradients): the choices, what was kept, the dropout masks. */
export interface FixedRouting { expertIndex: Int32Array; kept: Uint8Array }

export interface RefOutput {
  y: Float64Array; expertIndex: Int32Array; gate: Float64Array; kept: Uint8Array;
  loadBalanceLoss: number; zLoss: number; auxLoss: number; capacity: number; routerEntropy: number;
}

type Arr = ArrayLike<number>;

export function act(kind: 'relu' | 'gelu', v: number): number {
  if (kind === 'relu') return Math.max(0, v);
  return 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
}

/**
 * y and the losses of SPEC §1 for x (T, D). `call` numbers the layer's training forwards from 1
 * (the random streams); fixed overrides the routing decisions.
 */
export function referenceForward(x: Arr, wr: Arr, wIn: Arr, wOut: Arr, o: RefOptions, training: boolean, call: number,
  fixed?: FixedRouting): RefOutput {
  const { D, F, E, k } = o;
  const T = x.length / D;
  const G = o.groupSize ?? T;
  const groups = T / G;
  const base = call * 16;
  // §1.2 router on x ⊙ u in training with jitter.
  const xr = Array.from(x);
  if (training && o.jitter > 0) {
    const key = randomKey(o.seed, base + 4);
    for (let i = 0; i < T * D; i++) xr[i] = x[i] * (1 - o.jitter + 2 * o.jitter * randomUniform(key, i));
  }
  const logits = new Float64Array(T * E), p = new Float64Array(T * E), lse = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    for (let e = 0; e < E; e++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += xr[t * D + d] * wr[d * E + e];
      logits[t * E + e] = s;
    }
    const m = Math.max(...logits.subarray(t * E, t * E + E));
    let sum = 0;
    for (let e = 0; e < E; e++) sum += Math.exp(logits[t * E + e] - m);
    for (let e = 0; e < E; e++) p[t * E + e] = Math.exp(logits[t * E + e] - m) / sum;
    lse[t] = m + Math.log(sum);
  }
  // Experts ranked by probability, ties to the lowest index.
  const ranked = (t: number) => Array.from({ length: E }, (_, e) => e)
    .sort((a, b) => p[t * E + b] - p[t * E + a] || a - b);
  const expertIndex = new Int32Array(T * k), gate = new Float64Array(T * k), want = new Uint8Array(T * k);
  const policyKey = randomKey(o.seed, base + 5);
  for (let t = 0; t < T; t++) {
    const r = fixed ? Array.from(fixed.expertIndex.subarray(t * k, t * k + k)) : ranked(t);
    if (k === 1) {
      expertIndex[t] = r[0];
      gate[t] = p[t * E + r[0]];
      want[t] = 1;
    } else {
      const p1 = p[t * E + r[0]], p2 = p[t * E + r[1]];
      expertIndex[2 * t] = r[0];
      expertIndex[2 * t + 1] = r[1];
      gate[2 * t] = p1 / (p1 + p2 + 1e-9);
      gate[2 * t + 1] = p2 / (p1 + p2 + 1e-9);
      want[2 * t] = 1;
      const g2 = gate[2 * t + 1];
      const policy = o.policy === 'random' && !training ? 'all' : o.policy;
      want[2 * t + 1] = policy === 'all' ? 1 : policy === 'none' ? 0 : policy === 'threshold' ? +(g2 > o.threshold)
        : +(randomUniform(policyKey, t) < g2 / o.threshold);
    }
  }
  // §1.8 load balance with f from the first choices before drops (and before rerouting).
  const firstChoice = Int32Array.from({ length: T }, (_, t) => expertIndex[t * k]);
  let lb = 0;
  for (let g = 0; g < groups; g++) {
    let s = 0;
    for (let e = 0; e < E; e++) {
      let f = 0, P = 0;
      for (let t = g * G; t < (g + 1) * G; t++) {
        f += firstChoice[t] === e ? 1 : 0;
        P += p[t * E + e];
      }
      s += (f / G) * (P / G);
    }
    lb += E * s;
  }
  lb /= groups;
  let z = 0, entropy = 0;
  for (let t = 0; t < T; t++) z += lse[t] ** 2;
  z /= T;
  for (let i = 0; i < T * E; i++) entropy -= p[i] > 0 ? p[i] * Math.log(p[i]) : 0;
  entropy /= T;
  // §1.4-1.5 capacity and slots.
  const cf = training ? o.capacityFactor : o.evalCapacityFactor;
  const C = Math.max(o.minCapacity, Math.min(G, Math.floor((G * cf) / E)));
  let kept = new Uint8Array(T * k);
  if (fixed) {
    kept = Uint8Array.from(fixed.kept);
  } else {
    for (let g = 0; g < groups; g++) {
      const count = new Array(E).fill(0);
      for (let j = 0; j < k; j++)
        for (let t = g * G; t < (g + 1) * G; t++) {
          const c = t * k + j;
          if (!want[c]) continue;
          const position = count[expertIndex[c]]++;
          kept[c] = position < C ? 1 : 0;
        }
      if (o.noTokenLeftBehind) {
        const taken = count.map((n) => Math.min(n, C));
        for (let r = 1; r < Math.min(4, E); r++)
          for (let t = g * G; t < (g + 1) * G; t++) {
            if (kept[t]) continue;
            const e = ranked(t)[r];
            if (taken[e] < C) {
              taken[e]++;
              kept[t] = 1;
              expertIndex[t] = e;
              gate[t] = p[t * E + e];
            }
          }
      }
    }
  }
  // §1.6-1.7 experts and combine, with the bf16 wire of §1.12.
  const wire = o.precision === 'bf16-wire' ? bf16 : (v: number) => v;
  const dropKey = randomKey(o.seed, base + 6);
  const rate = training ? o.expertDropout : 0;
  const y = new Float64Array(T * D);
  for (let t = 0; t < T; t++)
    for (let j = 0; j < k; j++) {
      const c = t * k + j;
      if (!kept[c]) continue;
      const e = expertIndex[c];
      const h = new Float64Array(F);
      for (let f = 0; f < F; f++) {
        let s = 0;
        for (let d = 0; d < D; d++) s += wire(x[t * D + d]) * wIn[(e * D + d) * F + f];
        h[f] = act(o.activation, s);
        if (rate > 0) h[f] = randomUniform(dropKey, c * F + f) >= rate ? h[f] / (1 - rate) : 0;
      }
      for (let d = 0; d < D; d++) {
        let s = 0;
        for (let f = 0; f < F; f++) s += h[f] * wOut[(e * F + f) * D + d];
        y[t * D + d] += gate[c] * wire(s);
      }
    }
  return {
    y, expertIndex, gate, kept, loadBalanceLoss: lb, zLoss: z,
    auxLoss: o.loadBalanceCoef * lb + o.zLossCoef * z, capacity: C, routerEntropy: entropy,
  };
}

/** Σ y ⊙ dy + aux with the routing fixed: the function whose gradient backward returns. */
export function referenceObjective(x: Arr, wr: Arr, wIn: Arr, wOut: Arr, dy: Arr, o: RefOptions, call: number,
  fixed: FixedRouting): number {
  const out = referenceForward(x, wr, wIn, wOut, o, true, call, fixed);
  let s = out.auxLoss;
  for (let i = 0; i < out.y.length; i++) s += out.y[i] * dy[i];
  return s;
}
