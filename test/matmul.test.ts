// matmul, groupedMatmul and groupedMatmulWeightGrad against plain TypeScript references on fresh
// random shapes, and a table of bad calls that must throw coded errors without crashing.
import { describe, expect, it } from 'vitest';
import {
  cpuInfo,
  groupedMatmul,
  groupedMatmulWeightGrad,
  matmul,
  setIsa,
  setNumThreads,
  type Isa,
} from 'switch-transformer';

// The ISAs this CPU runs, in order: each level runs the ones before it.
const ALL_ISAS: Isa[] = ['portable', 'avx2', 'avx512'];
const supportedIsas = (): Isa[] => ALL_ISAS.slice(0, ALL_ISAS.indexOf(cpuInfo().bestIsa) + 1);

const randInt = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));
function randomArray(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() * 2 - 1;
  return a;
}
const poisoned = (n: number) => new Float32Array(n).fill(NaN);

// Element i of got is within a few float32 roundings of want, relative to its magnitude Σ|a||b|.
function expectClose(got: Float32Array, want: Float64Array, magnitude: Float64Array, depth: number, what: string) {
  expect(got.length).toBe(want.length);
  const tol = (depth + 8) * 2 ** -22;
  for (let i = 0; i < want.length; i++) {
    const ok = Math.abs(got[i] - want[i]) <= tol * magnitude[i] + 1e-30;
    if (!ok) throw new Error(`${what}: element ${i} is ${got[i]}, expected ${want[i]} (magnitude ${magnitude[i]})`);
  }
}

/** C = [C0 +] op(A)·op(B) in float64, and its magnitude Σ|a||b| + |C0|. */
function matmulReference(a: Float32Array, b: Float32Array, m: number, n: number, k: number, transA: boolean,
                         transB: boolean, c0?: Float32Array) {
  const want = new Float64Array(m * n), magnitude = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = c0 ? c0[i * n + j] : 0, mag = c0 ? Math.abs(c0[i * n + j]) : 0;
      for (let p = 0; p < k; p++) {
        const av = transA ? a[p * m + i] : a[i * k + p];
        const bv = transB ? b[j * k + p] : b[p * n + j];
        s += av * bv;
        mag += Math.abs(av * bv);
      }
      want[i * n + j] = s;
      magnitude[i * n + j] = mag;
    }
  return { want, magnitude };
}

function randomOffsets(E: number, rows: number): Int32Array {
  const cuts = Array.from({ length: E - 1 }, () => randInt(0, rows)).sort((x, y) => x - y);
  return Int32Array.from([0, ...cuts, rows]);
}
const randomIndices = (n: number, range: number) => Int32Array.from({ length: n }, () => randInt(0, range - 1));

describe('matmul', () => {
  it('multiplies the 2×2 example exactly', () => {
    const c = matmul(new Float32Array([1, 2, 3, 4]), new Float32Array([5, 6, 7, 8]), { m: 2, n: 2, k: 2 });
    expect(Array.from(c)).toEqual([19, 22, 43, 50]);
  });

  it('matches the reference on random shapes, transposes and accumulate, on every ISA', () => {
    const isas = supportedIsas();
    const best = cpuInfo().isa;
    try {
      for (const isa of isas) {
        setIsa(isa);
        for (let trial = 0; trial < 40; trial++) {
          const m = randInt(0, 30), n = randInt(0, 40), k = randInt(0, 30);
          const transA = Math.random() < 0.5, transB = Math.random() < 0.5, accumulate = Math.random() < 0.5;
          const a = randomArray(m * k), b = randomArray(k * n);
          const c0 = accumulate ? randomArray(m * n) : undefined;
          const out = accumulate ? Float32Array.from(c0!) : poisoned(m * n);
          const got = matmul(a, b, { m, n, k, transA, transB, out, accumulate });
          expect(got).toBe(out);
          const { want, magnitude } = matmulReference(a, b, m, n, k, transA, transB, c0);
          expectClose(got, want, magnitude, k, `${isa} ${m}x${n}x${k} tA=${transA} tB=${transB} acc=${accumulate}`);
        }
        // A shape past the kernel's blocks (depth 256, rows 144), allocating its own output.
        const a = randomArray(150 * 260), b = randomArray(260 * 35);
        const { want, magnitude } = matmulReference(a, b, 150, 35, 260, false, false);
        expectClose(matmul(a, b, { m: 150, n: 35, k: 260 }), want, magnitude, 260, `${isa} 150x35x260`);
      }
    } finally {
      setIsa(best);
    }
  });

  it('gives identical bits on 1 and 2 threads', () => {
    const threads = cpuInfo().threads;
    const a = randomArray(70 * 90), b = randomArray(90 * 50);
    setNumThreads(1);
    const one = matmul(a, b, { m: 70, n: 50, k: 90 });
    setNumThreads(2);
    const two = matmul(a, b, { m: 70, n: 50, k: 90 });
    setNumThreads(threads);
    expect(Buffer.from(two.buffer).equals(Buffer.from(one.buffer))).toBe(true);
  });
});

describe('groupedMatmul', () => {
  it('matches the reference with gather, scatter, scale, transposed weights and empty groups', () => {
    for (let trial = 0; trial < 30; trial++) {
      const E = randInt(1, 9), rows = randInt(0, 40), k = randInt(1, 20), n = randInt(1, 24);
      const offsets = randomOffsets(E, rows);
      const useGather = Math.random() < 0.5, useScatter = Math.random() < 0.5, useScale = Math.random() < 0.5;
      const transW = Math.random() < 0.5;
      const xRows = useGather ? randInt(1, 30) : rows, outRows = useScatter ? randInt(1, 25) : rows;
      const x = randomArray(xRows * k), w = randomArray(E * k * n);
      const gather = useGather ? randomIndices(rows, xRows) : undefined;
      const scatter = useScatter ? randomIndices(rows, outRows) : undefined;
      const scale = useScatter && useScale ? randomArray(rows) : undefined;
      const y0 = randomArray(outRows * n);
      const accumulate = !useScatter && Math.random() < 0.5;
      const out = useScatter || accumulate ? Float32Array.from(y0) : poisoned(rows * n);
      const got = groupedMatmul(x, w, offsets, { k, n, gather, scatter, scale, transW, out, accumulate });
      expect(got).toBe(out);
      const want = new Float64Array(outRows * n), magnitude = new Float64Array(outRows * n);
      if (useScatter || accumulate)
        for (let i = 0; i < y0.length; i++) (want[i] = y0[i]), (magnitude[i] = Math.abs(y0[i]));
      for (let e = 0; e < E; e++)
        for (let i = offsets[e]; i < offsets[e + 1]; i++) {
          const xr = gather ? gather[i] : i, yr = scatter ? scatter[i] : i, s = scale ? scale[i] : 1;
          for (let j = 0; j < n; j++) {
            let sum = 0, mag = 0;
            for (let p = 0; p < k; p++) {
              const wv = transW ? w[e * k * n + j * k + p] : w[e * k * n + p * n + j];
              sum += x[xr * k + p] * wv;
              mag += Math.abs(x[xr * k + p] * wv);
            }
            want[yr * n + j] += s * sum;
            magnitude[yr * n + j] += Math.abs(s) * mag;
          }
        }
      expectClose(got, want, magnitude, 2 * k, `grouped E=${E} rows=${rows} k=${k} n=${n} gather=${useGather} scatter=${useScatter}`);
    }
  });

  it('scatters into a new zeroed output of outRows rows', () => {
    const x = new Float32Array([1, 2, 3, 4]);            // 2 dispatched rows, k = 2
    const w = new Float32Array([1, 0, 0, 1, 2, 0, 0, 2]); // expert 0: identity, expert 1: 2·identity
    const y = groupedMatmul(x, w, new Int32Array([0, 1, 2]), {
      k: 2, n: 2, scatter: new Int32Array([2, 0]), scale: new Float32Array([0.5, 1]), outRows: 3,
    });
    expect(Array.from(y)).toEqual([6, 8, 0, 0, 0.5, 1]);
  });
});

describe('groupedMatmulWeightGrad', () => {
  it('matches the reference with gathers and empty groups', () => {
    for (let trial = 0; trial < 25; trial++) {
      const E = randInt(1, 8), rows = randInt(0, 40), k = randInt(1, 20), n = randInt(1, 20);
      const offsets = randomOffsets(E, rows);
      const gx = Math.random() < 0.5, gy = Math.random() < 0.5, accumulate = Math.random() < 0.5;
      const xRows = gx ? randInt(1, 30) : rows, dyRows = gy ? randInt(1, 30) : rows;
      const x = randomArray(xRows * k), dy = randomArray(dyRows * n);
      const gatherX = gx ? randomIndices(rows, xRows) : undefined, gatherDy = gy ? randomIndices(rows, dyRows) : undefined;
      const dw0 = randomArray(E * k * n);
      const out = accumulate ? Float32Array.from(dw0) : poisoned(E * k * n);
      const got = groupedMatmulWeightGrad(x, dy, offsets, { k, n, gatherX, gatherDy, out, accumulate });
      const want = new Float64Array(E * k * n), magnitude = new Float64Array(E * k * n);
      if (accumulate) for (let i = 0; i < dw0.length; i++) (want[i] = dw0[i]), (magnitude[i] = Math.abs(dw0[i]));
      for (let e = 0; e < E; e++)
        for (let i = offsets[e]; i < offsets[e + 1]; i++) {
          const xr = gatherX ? gatherX[i] : i, yr = gatherDy ? gatherDy[i] : i;
          for (let p = 0; p < k; p++)
            for (let j = 0; j < n; j++) {
              const v = x[xr * k + p] * dy[yr * n + j];
              want[e * k * n + p * n + j] += v;
              magnitude[e * k * n + p * n + j] += Math.abs(v);
            }
        }
      expectClose(got, want, magnitude, rows, `weight grad E=${E} rows=${rows} k=${k} n=${n}`);
    }
  });
});

// Few rows per group take the small-group path (native/kernels/gemm_grouped.cc: weights as stored
// with groups of at most 128 rows, weight gradients with at most 48), the rest (and every transposed
// weight) the general driver: many experts with 0, 1 or odd row counts, depths and widths past the
// small path's blocks, one group past the limits, both ISAs, identical bits on 1 and 2 threads.
describe('grouped matmuls with few rows per group', () => {
  const groupRows = (E: number, most: number) => Array.from({ length: E }, () => randInt(0, most));
  const offsetsOf = (rows: number[]) => Int32Array.from([0, ...rows.map((_, e) => rows.slice(0, e + 1).reduce((a, b) => a + b, 0))]);
  const cases: Array<{ rows: number[]; k: number; n: number }> = [
    { rows: groupRows(64, 5), k: 9, n: 20 },
    { rows: [0, 1, 7, 0, 13, 4], k: 300, n: 33 },
    { rows: [3, 0, 5], k: 24, n: 1030 },
    { rows: [2, 1], k: 2100, n: 17 },
    { rows: [48, 0, 31], k: 10, n: 40 },
    { rows: [130, 6, 0], k: 12, n: 18 },
  ];
  const best = cpuInfo().isa, threads = cpuInfo().threads;
  const isas = supportedIsas();

  it('groupedMatmul matches the reference: gather, scatter with scale, transposed weights', () => {
    try {
      for (const { rows, k, n } of cases)
        for (const isa of isas)
          for (let combo = 0; combo < 4; combo++) {
            setIsa(isa);
            const E = rows.length, offsets = offsetsOf(rows), R = offsets[E];
            const transW = (combo & 1) === 1, useScatter = (combo & 2) === 2;
            const xRows = R + 2, outRows = useScatter ? Math.max(1, R - 1) : R;
            const x = randomArray(xRows * k), w = randomArray(E * k * n);
            const gather = randomIndices(R, xRows);
            const scatter = useScatter ? randomIndices(R, outRows) : undefined;
            const scale = useScatter ? randomArray(R) : undefined;
            const y0 = randomArray(outRows * n);
            const run = (t: number) => {
              setNumThreads(t);
              const out = useScatter ? Float32Array.from(y0) : poisoned(R * n);
              return groupedMatmul(x, w, offsets, { k, n, gather, scatter, scale, transW, out });
            };
            const got = run(1), two = run(2);
            expect(Buffer.from(two.buffer).equals(Buffer.from(got.buffer))).toBe(true);
            const want = new Float64Array(outRows * n), magnitude = new Float64Array(outRows * n);
            if (useScatter) for (let i = 0; i < y0.length; i++) (want[i] = y0[i]), (magnitude[i] = Math.abs(y0[i]));
            for (let e = 0; e < E; e++)
              for (let i = offsets[e]; i < offsets[e + 1]; i++) {
                const xr = gather[i], yr = scatter ? scatter[i] : i, s = scale ? scale[i] : 1;
                for (let j = 0; j < n; j++) {
                  let sum = 0, mag = 0;
                  for (let p = 0; p < k; p++) {
                    const v = x[xr * k + p] * (transW ? w[e * k * n + j * k + p] : w[e * k * n + p * n + j]);
                    sum += v;
                    mag += Math.abs(v);
                  }
                  want[yr * n + j] += s * sum;
                  magnitude[yr * n + j] += Math.abs(s) * mag;
                }
              }
            expectClose(got, want, magnitude, 2 * k, `grouped ${isa} rows=${rows.length} k=${k} n=${n} transW=${transW} scatter=${useScatter}`);
          }
    } finally {
      setIsa(best);
      setNumThreads(threads);
    }
  });

  it('groupedMatmul gives avx2 bits on avx512 (its 16-row tile sums in the same order)', () => {
    if (!supportedIsas().includes('avx512')) return; // nothing to compare: this CPU has no avx512 level
    try {
      // 64-row groups (four whole tiles), a last tile of each size, a partial last panel (n = 70),
      // several depth blocks (k = 1030).
      for (const { rows, k, n } of [{ rows: [64, 64, 0, 1, 17, 33], k: 40, n: 70 }, { rows: [16, 5, 64], k: 1030, n: 48 }]) {
        const E = rows.length, offsets = offsetsOf(rows), R = offsets[E];
        const x = randomArray((R + 2) * k), w = randomArray(E * k * n), gather = randomIndices(R, R + 2);
        const bits = (isa: Isa) => {
          setIsa(isa);
          const out = groupedMatmul(x, w, offsets, { k, n, gather, out: poisoned(R * n) });
          return Buffer.from(out.buffer);
        };
        const avx2 = bits('avx2');
        expect(avx2.equals(bits('avx512')), `rows=${rows} k=${k} n=${n}`).toBe(true);
      }
    } finally {
      setIsa(best);
    }
  });

  it('groupedMatmulWeightGrad matches the reference and writes every element', () => {
    try {
      for (const { rows, k, n } of cases)
        for (const isa of isas) {
          setIsa(isa);
          const E = rows.length, offsets = offsetsOf(rows), R = offsets[E];
          const x = randomArray((R + 3) * k), dy = randomArray(R * n), gatherX = randomIndices(R, R + 3);
          const run = (t: number) => {
            setNumThreads(t);
            return groupedMatmulWeightGrad(x, dy, offsets, { k, n, gatherX, out: poisoned(E * k * n) });
          };
          const got = run(1), two = run(2);
          expect(Buffer.from(two.buffer).equals(Buffer.from(got.buffer))).toBe(true);
          const want = new Float64Array(E * k * n), magnitude = new Float64Array(E * k * n);
          for (let e = 0; e < E; e++)
            for (let i = offsets[e]; i < offsets[e + 1]; i++)
              for (let p = 0; p < k; p++)
                for (let j = 0; j < n; j++) {
                  const v = x[gatherX[i] * k + p] * dy[i * n + j];
                  want[e * k * n + p * n + j] += v;
                  magnitude[e * k * n + p * n + j] += Math.abs(v);
                }
          expectClose(got, want, magnitude, Math.max(...rows), `weight grad ${isa} E=${E} k=${k} n=${n}`);
        }
    } finally {
      setIsa(best);
      setNumThreads(threads);
    }
  });
});

describe('bad calls', () => {
  const detachedF32 = () => {
    const buffer = new ArrayBuffer(16);
    const view = new Float32Array(buffer);
    structuredClone(buffer, { transfer: [buffer] });
    return view;
  };
  const a4 = () => new Float32Array(4);
  const off = Int32Array.from([0, 1, 2]);
  const x4 = () => new Float32Array(4);    // 2 rows × k = 2
  const w8 = () => new Float32Array(8);    // E = 2, k = n = 2
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const anyArg = (v: unknown) => v as any;
  const shared = new Float32Array(8);
  const table: Array<[string, () => unknown, string, string, RegExp]> = [
    ['no options', () => matmul(a4(), a4(), anyArg(undefined)), 'TypeError', 'ERR_SWITCH_ARG_TYPE', /options/],
    ['options a number', () => matmul(a4(), a4(), anyArg(3)), 'TypeError', 'ERR_SWITCH_ARG_TYPE', /options/],
    ['a a Float64Array', () => matmul(anyArg(new Float64Array(4)), a4(), { m: 2, n: 2, k: 2 }), 'TypeError', 'ERR_SWITCH_ARG_TYPE', /'a'.*Float32Array/],
    ['a a plain array', () => matmul(anyArg([1, 2, 3, 4]), a4(), { m: 2, n: 2, k: 2 }), 'TypeError', 'ERR_SWITCH_ARG_TYPE', /'a'/],
    ['b null', () => matmul(a4(), anyArg(null), { m: 2, n: 2, k: 2 }), 'TypeError', 'ERR_SWITCH_ARG_TYPE', /'b'/],
    ['a too short', () => matmul(new Float32Array(3), a4(), { m: 2, n: 2, k: 2 }), 'RangeError', 'ERR_SWITCH_SHAPE', /'a' must have 4 elements.*\(m, k\)/],
    ['b too long', () => matmul(a4(), new Float32Array(5), { m: 2, n: 2, k: 2 }), 'RangeError', 'ERR_SWITCH_SHAPE', /'b' must have 4/],
    ['b transposed, shape named', () => matmul(a4(), new Float32Array(4), { m: 2, n: 3, k: 2, transB: true }), 'RangeError', 'ERR_SWITCH_SHAPE', /'b' must have 6 elements \(shape \(n, k\) = \(3, 2\)\)/],
    ['m missing', () => matmul(a4(), a4(), anyArg({ n: 2, k: 2 })), 'TypeError', 'ERR_SWITCH_ARG_TYPE', /'m' is required/],
    ['m negative', () => matmul(a4(), a4(), { m: -2, n: 2, k: 2 }), 'RangeError', 'ERR_SWITCH_RANGE', /'m'/],
    ['m fractional', () => matmul(a4(), a4(), { m: 1.5, n: 2, k: 2 }), 'RangeError', 'ERR_SWITCH_RANGE', /'m'/],
    ['n NaN', () => matmul(a4(), a4(), { m: 2, n: NaN, k: 2 }), 'RangeError', 'ERR_SWITCH_RANGE', /'n'/],
    ['k Infinity', () => matmul(a4(), a4(), { m: 2, n: 2, k: Infinity }), 'RangeError', 'ERR_SWITCH_RANGE', /'k'/],
    ['k a string', () => matmul(a4(), a4(), anyArg({ m: 2, n: 2, k: '2' })), 'TypeError', 'ERR_SWITCH_ARG_TYPE', /'k'/],
    ['k past int32', () => matmul(a4(), a4(), { m: 2, n: 2, k: 2 ** 31 }), 'RangeError', 'ERR_SWITCH_RANGE', /'k'/],
    ['sizes past the array limit', () => matmul(a4(), a4(), { m: 65536, n: 1, k: 65537 }), 'RangeError', 'ERR_SWITCH_RANGE', /TypedArray limit/],
    ['transA a string', () => matmul(a4(), a4(), anyArg({ m: 2, n: 2, k: 2, transA: 'yes' })), 'TypeError', 'ERR_SWITCH_ARG_TYPE', /'transA'/],
    ['out wrong length', () => matmul(a4(), a4(), { m: 2, n: 2, k: 2, out: new Float32Array(3) }), 'RangeError', 'ERR_SWITCH_SHAPE', /'out' must have 4/],
    ['out wrong type', () => matmul(a4(), a4(), anyArg({ m: 2, n: 2, k: 2, out: new Uint16Array(4) })), 'TypeError', 'ERR_SWITCH_ARG_TYPE', /'out'/],
    ['accumulate without out', () => matmul(a4(), a4(), { m: 2, n: 2, k: 2, accumulate: true }), 'TypeError', 'ERR_SWITCH_OPTION', /accumulate/],
    ['out overlapping a', () => matmul(shared.subarray(0, 4), a4(), { m: 2, n: 2, k: 2, out: shared.subarray(2, 6) }), 'RangeError', 'ERR_SWITCH_RANGE', /share memory/],
    ['a detached', () => matmul(detachedF32(), a4(), { m: 2, n: 2, k: 2 }), 'TypeError', 'ERR_SWITCH_DETACHED', /'a'.*detached/],
    ['out detached', () => matmul(a4(), a4(), { m: 2, n: 2, k: 2, out: detachedF32() }), 'TypeError', 'ERR_SWITCH_DETACHED', /'out'/],
    ['too few arguments', () => anyArg(matmul)(a4()), 'TypeError', 'ERR_SWITCH_ARG_TYPE', /'b'/],
    ['grouped: offsets a Float32Array', () => groupedMatmul(x4(), w8(), anyArg(new Float32Array(3)), { k: 2, n: 2 }), 'TypeError', 'ERR_SWITCH_ARG_TYPE', /'offsets'.*Int32Array/],
    ['grouped: offsets empty', () => groupedMatmul(x4(), w8(), new Int32Array(0), { k: 2, n: 2 }), 'RangeError', 'ERR_SWITCH_SHAPE', /'offsets'/],
    ['grouped: offsets[0] not 0', () => groupedMatmul(x4(), w8(), Int32Array.from([1, 1, 2]), { k: 2, n: 2 }), 'RangeError', 'ERR_SWITCH_RANGE', /'offsets'\[0\]/],
    ['grouped: offsets decreasing', () => groupedMatmul(x4(), w8(), Int32Array.from([0, 2, 1]), { k: 2, n: 2 }), 'RangeError', 'ERR_SWITCH_RANGE', /non-decreasing/],
    ['grouped: x too short for offsets', () => groupedMatmul(x4(), w8(), Int32Array.from([0, 1, 3]), { k: 2, n: 2 }), 'RangeError', 'ERR_SWITCH_SHAPE', /'x' must have 6/],
    ['grouped: w wrong length', () => groupedMatmul(x4(), new Float32Array(7), off, { k: 2, n: 2 }), 'RangeError', 'ERR_SWITCH_SHAPE', /'w' must have 8.*\(E, k, n\)/],
    ['grouped: gather past x', () => groupedMatmul(x4(), w8(), off, { k: 2, n: 2, gather: Int32Array.from([0, 2]) }), 'RangeError', 'ERR_SWITCH_RANGE', /'gather'\[1\] = 2/],
    ['grouped: gather negative', () => groupedMatmul(x4(), w8(), off, { k: 2, n: 2, gather: Int32Array.from([-1, 0]) }), 'RangeError', 'ERR_SWITCH_RANGE', /'gather'\[0\]/],
    ['grouped: gather wrong length', () => groupedMatmul(x4(), w8(), off, { k: 2, n: 2, gather: Int32Array.from([0]) }), 'RangeError', 'ERR_SWITCH_SHAPE', /'gather'/],
    ['grouped: x not a multiple of k', () => groupedMatmul(new Float32Array(5), w8(), off, { k: 2, n: 2, gather: Int32Array.from([0, 1]) }), 'RangeError', 'ERR_SWITCH_SHAPE', /multiple of k/],
    ['grouped: scatter past the output', () => groupedMatmul(x4(), w8(), off, { k: 2, n: 2, scatter: Int32Array.from([0, 3]), outRows: 3 }), 'RangeError', 'ERR_SWITCH_RANGE', /'scatter'\[1\] = 3/],
    ['grouped: scatter without outRows', () => groupedMatmul(x4(), w8(), off, { k: 2, n: 2, scatter: Int32Array.from([0, 1]) }), 'TypeError', 'ERR_SWITCH_OPTION', /outRows/],
    ['grouped: scale without scatter', () => groupedMatmul(x4(), w8(), off, { k: 2, n: 2, scale: new Float32Array(2) }), 'TypeError', 'ERR_SWITCH_OPTION', /'scale'/],
    ['grouped: scale wrong length', () => groupedMatmul(x4(), w8(), off, { k: 2, n: 2, scatter: Int32Array.from([0, 1]), scale: new Float32Array(3), outRows: 2 }), 'RangeError', 'ERR_SWITCH_SHAPE', /'scale'/],
    ['grouped: accumulate with scatter', () => groupedMatmul(x4(), w8(), off, { k: 2, n: 2, scatter: Int32Array.from([0, 1]), out: new Float32Array(4), accumulate: true }), 'TypeError', 'ERR_SWITCH_OPTION', /accumulate/],
    ['grouped: outRows negative', () => groupedMatmul(x4(), w8(), off, { k: 2, n: 2, scatter: Int32Array.from([0, 1]), outRows: -1 }), 'RangeError', 'ERR_SWITCH_RANGE', /'outRows'/],
    ['grouped: out wrong length', () => groupedMatmul(x4(), w8(), off, { k: 2, n: 2, out: new Float32Array(5) }), 'RangeError', 'ERR_SWITCH_SHAPE', /'out' must have 4/],
    ['grouped: x detached', () => groupedMatmul(detachedF32(), w8(), off, { k: 2, n: 2 }), 'TypeError', 'ERR_SWITCH_DETACHED', /'x'/],
    ['weight grad: dy wrong length', () => groupedMatmulWeightGrad(x4(), new Float32Array(3), off, { k: 2, n: 2 }), 'RangeError', 'ERR_SWITCH_SHAPE', /'dy' must have 4/],
    ['weight grad: gatherX past x', () => groupedMatmulWeightGrad(x4(), x4(), off, { k: 2, n: 2, gatherX: Int32Array.from([5, 0]) }), 'RangeError', 'ERR_SWITCH_RANGE', /'gatherX'\[0\] = 5/],
    ['weight grad: gatherDy wrong length', () => groupedMatmulWeightGrad(x4(), x4(), off, { k: 2, n: 2, gatherDy: Int32Array.from([0, 1, 1]) }), 'RangeError', 'ERR_SWITCH_SHAPE', /'gatherDy'/],
    ['weight grad: out wrong length', () => groupedMatmulWeightGrad(x4(), x4(), off, { k: 2, n: 2, out: new Float32Array(4) }), 'RangeError', 'ERR_SWITCH_SHAPE', /'out' must have 8.*\(E, k, n\)/],
    ['weight grad: offsets decreasing', () => groupedMatmulWeightGrad(x4(), x4(), Int32Array.from([0, 2, 1]), { k: 2, n: 2 }), 'RangeError', 'ERR_SWITCH_RANGE', /non-decreasing/],
  ];

  for (const [name, call, errorName, code, message] of table) {
    it(`rejects ${name}`, () => {
      let caught: unknown;
      try {
        call();
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(Error);
      expect(caught).toMatchObject({ name: errorName, code });
      expect((caught as Error).message).toMatch(message);
    });
  }

  it('still computes after every bad call', () => {
    expect(Array.from(matmul(new Float32Array([1, 2]), new Float32Array([3, 4]), { m: 1, n: 1, k: 2 }))).toEqual([11]);
  });
});
