// The device mesh: every collective on 2 and 4 devices, over the whole mesh and each axis of a
// { data: 2, model: 2 } mesh, on both wires, against a plain TypeScript computation (SPEC §3).
import { describe, expect, it } from 'vitest';
import { launchMesh, singleDevice } from 'switch-transformer';
// @ts-expect-error plain JS fixture shared with the device processes
import { count, inputs } from './fixtures/mesh-data.mjs';

const PROGRAM = new URL('./fixtures/mesh-collectives.mjs', import.meta.url);
const SLOT = 65536;   // the smallest slot: 2048 float32 per peer per round on 4 devices, so sizes chunk early

type Wire = 'float32' | 'bf16';
interface Case { op: string; n: number; axis?: string; wire?: Wire; root?: number; specials?: boolean; repeats?: number }
interface Report { rank: number; pid: number; size: number; axes: Record<string, number>; coords: Record<string, number>; out: Float32Array[] }

// SPEC §2, written independently of the native code: round to nearest even on the top 16 bits.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function bf16(x: number): number {
  f32[0] = x;
  const u = u32[0];
  if ((u & 0x7fffffff) > 0x7f800000) u32[0] = (((u >>> 16) | 0x40) << 16) >>> 0;
  else u32[0] = ((Math.floor((u + 0x7fff + ((u >>> 16) & 1)) / 65536) & 0xffff) << 16) >>> 0;
  return f32[0];
}
const onWire = (x: number, wire: Wire) => (wire === 'bf16' ? bf16(x) : Math.fround(x));

/** Mesh ranks of `rank`'s group along `axis` (row-major over the axes, the last fastest). */
function groupOf(axes: [string, number][], rank: number, axis?: string): number[] {
  const size = axes.reduce((p, [, s]) => p * s, 1);
  if (!axis) return Array.from({ length: size }, (_, r) => r);
  const a = axes.findIndex(([name]) => name === axis);
  const stride = axes.slice(a + 1).reduce((p, [, s]) => p * s, 1);
  const coord = Math.floor(rank / stride) % axes[a][1];
  return Array.from({ length: axes[a][1] }, (_, c) => rank - coord * stride + c * stride);
}

/** Σ in group order, in float32, each contribution as it crosses the wire. */
function sumInOrder(values: number[], wire: Wire): number {
  let acc = onWire(values[0], wire);
  for (let q = 1; q < values.length; q++) acc = Math.fround(acc + onWire(values[q], wire));
  return acc;
}

function expected(seed: number, index: number, c: Case, axes: [string, number][], rank: number, meshWire: Wire): Float32Array {
  const wire = c.wire ?? meshWire;
  const ranks = groupOf(axes, rank, c.axis);
  const P = ranks.length;
  const me = ranks.indexOf(rank);
  const input = (r: number, n: number): Float32Array => inputs(seed, index, r, n, c.specials);
  const out: number[] = [];
  switch (c.op) {
    case 'barrier':
      break;
    case 'broadcast':
      for (const v of input(ranks[c.root!], c.n)) out.push(onWire(v, wire));
      break;
    case 'allReduce':
    case 'allReduceInPlace': {
      const all = ranks.map((r) => input(r, c.n));
      for (let i = 0; i < c.n; i++) out.push(sumInOrder(all.map((a) => a[i]), wire));
      break;
    }
    case 'allGather':
      for (const r of ranks) for (const v of input(r, c.n)) out.push(onWire(v, wire));
      break;
    case 'reduceScatter': {
      const all = ranks.map((r) => input(r, P * c.n));
      for (let i = 0; i < c.n; i++) out.push(sumInOrder(all.map((a) => a[me * c.n + i]), wire));
      break;
    }
    case 'allToAll':
    case 'benchAllToAll':
    case 'allToAllReuse':
    case 'allToAllHeap':
    case 'allToAllInPlace':
      for (const r of ranks) {
        const send = input(r, P * c.n);
        for (let i = 0; i < c.n; i++) out.push(onWire(send[me * c.n + i], wire));
      }
      break;
    case 'allToAllv':
      for (const r of ranks) {
        const sendCounts = ranks.map((q) => count(seed, index, r, q, c.n) as number);
        const at = sendCounts.slice(0, me).reduce((x, y) => x + y, 0);
        const send = input(r, sendCounts.reduce((x, y) => x + y, 0));
        for (let i = 0; i < sendCounts[me]; i++) out.push(onWire(send[at + i], wire));
      }
      break;
  }
  return Float32Array.from(out);
}

function expectSame(actual: Float32Array, want: Float32Array, what: string): void {
  expect(actual.length, `${what}: length`).toBe(want.length);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const w = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < want.length; i++) {
    const same = a[i] === w[i] || (Number.isNaN(actual[i]) && Number.isNaN(want[i]));
    if (!same) expect.fail(`${what}: element ${i} is ${actual[i]} (0x${a[i].toString(16)}), expected ${want[i]} (0x${w[i].toString(16)})`);
  }
}

async function runCases(devices: number, axes: Record<string, number>, meshWire: Wire, cases: Case[], seed: number, pinDevices = false): Promise<Report[]> {
  const reports = await launchMesh<Report>(PROGRAM, { devices, axes, wire: meshWire, timeoutMs: 20000, slotBytes: SLOT, pinDevices, args: { seed, cases } });
  const axisList = Object.entries(axes);
  expect(reports.length).toBe(devices);
  for (const rep of reports) {
    expect(rep.size).toBe(devices);
    cases.forEach((c, i) => {
      expectSame(rep.out[i], expected(seed, i, c, axisList, rep.rank, meshWire), `rank ${rep.rank} case ${i} ${JSON.stringify(c)}`);
    });
  }
  return reports;
}

const randomInt = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));

/** Every collective with sizes 1, random small, and random sizes that need several rounds. */
function allCases(axes: (string | undefined)[], wires: Wire[], maxRoot = 1): Case[] {
  const cases: Case[] = [];
  for (const axis of axes)
    for (const wire of wires) {
      const sizes = [1, randomInt(2, 300), randomInt(4097, 9000)];
      for (const n of sizes) {
        for (const op of ['allToAll', 'allReduce', 'allGather', 'reduceScatter', 'broadcast'])
          cases.push({ op, n, axis, wire, specials: op !== 'allReduce' && op !== 'reduceScatter', root: op === 'broadcast' ? randomInt(0, maxRoot) : undefined });
      }
      cases.push({ op: 'barrier', n: 0, axis, wire });
      cases.push({ op: 'allToAllInPlace', n: randomInt(1, 5000), axis, wire, specials: true });
      cases.push({ op: 'allToAllHeap', n: randomInt(1, 300), axis, wire, specials: true });
      cases.push({ op: 'allToAllHeap', n: randomInt(4097, 9000), axis, wire, specials: true });
      cases.push({ op: 'benchAllToAll', n: randomInt(1, 300), axis, wire, specials: true, repeats: randomInt(1, 4) });
      // Reused arrays: below, at and above the size the binding remembers (8191 elements in all).
      for (const n of [1, randomInt(2, 2000), 4095, 4096, 2047, 2048])
        cases.push({ op: 'allToAllReuse', n, axis, wire, specials: true });
      cases.push({ op: 'benchAllToAll', n: randomInt(2049, 9000), axis, wire, specials: true, repeats: 2 });
      cases.push({ op: 'allReduceInPlace', n: randomInt(1, 9000), axis, wire });
      cases.push({ op: 'allToAllv', n: randomInt(1, 6000), axis, wire, specials: true });
      cases.push({ op: 'allToAll', n: 0, axis, wire });
    }
  return cases;
}

describe('mesh collectives', () => {
  it('match the reference on a { data: 2, model: 2 } mesh: whole mesh and each axis, both wires', async () => {
    const seed = randomInt(1, 2 ** 30);
    const cases = allCases([undefined, 'data', 'model'], ['float32', 'bf16']);
    const reports = await runCases(4, { data: 2, model: 2 }, 'float32', cases, seed);
    expect(reports.map((r) => r.coords)).toEqual([{ data: 0, model: 0 }, { data: 0, model: 1 }, { data: 1, model: 0 }, { data: 1, model: 1 }]);
    expect(reports[0].axes).toEqual({ data: 2, model: 2 });
  });

  it('work on a single device (every group of one)', async () => {
    const seed = randomInt(1, 2 ** 30);
    await runCases(1, { data: 1 }, 'bf16', allCases([undefined, 'data'], ['float32', 'bf16'], 0), seed);
  });

  it('match the reference on 2 devices with a bf16 mesh wire, and all-reduce is bit-identical run to run', async () => {
    const seed = randomInt(1, 2 ** 30);
    // No `wire` in the cases: the mesh's bf16 applies; then a float32 override.
    const cases: Case[] = [
      ...allCases([undefined], [undefined as unknown as Wire]),
      { op: 'allReduce', n: randomInt(5000, 20000), wire: 'float32' },
      { op: 'allToAll', n: randomInt(1, 3000), wire: 'float32', specials: true },
    ];
    const first = await runCases(2, { data: 2 }, 'bf16', cases, seed);
    const again = await runCases(2, { data: 2 }, 'bf16', cases, seed, true);   // and bound to CPUs
    cases.forEach((c, i) => {
      if (c.op.startsWith('allReduce')) for (let r = 0; r < 2; r++) expectSame(again[r].out[i], first[r].out[i], `run 2 vs run 1, rank ${r} case ${i}`);
    });
  });
});

describe('singleDevice', () => {
  it('is a mesh of one inside this process: collectives apply only the wire', () => {
    const device = singleDevice({ wire: 'bf16', axes: { data: 1, model: 1 } });
    expect([device.rank, device.size, device.coords, device.groupSize('model')]).toEqual([0, 1, { data: 0, model: 0 }, 1]);
    const x = inputs(randomInt(1, 2 ** 30), 0, 0, 1000, true) as Float32Array;
    const rounded = Float32Array.from(x, (v) => bf16(v));
    expectSame(device.allToAll(x), rounded, 'allToAll bf16');
    expectSame(device.allReduce(x, { axis: 'model' }), rounded, 'allReduce bf16');
    expectSame(device.allGather(x, { wire: 'float32' }), x, 'allGather float32');
    const heap = device.alloc(x.length);
    heap.set(x);
    expectSame(device.allToAll(heap, new Float32Array(x.length), { wire: 'float32' }), x, 'allToAll from the heap');
    // The same arrays again (the binding's remembered views), on another axis, then detached.
    const again = x.slice(0, 64), into = new Float32Array(64);
    expectSame(device.allToAll(again, into), Float32Array.from(again, (v) => bf16(v)), 'allToAll');
    again.set(x.subarray(100, 164));
    into.fill(NaN);
    expectSame(device.allToAll(again, into, { wire: 'float32' }), x.subarray(100, 164), 'allToAll again, float32');
    into.fill(NaN);
    expectSame(device.allToAll(again, into, { axis: 'model' }), Float32Array.from(again, (v) => bf16(v)), 'allToAll again, other axis');
    structuredClone(again.buffer, { transfer: [again.buffer] });
    expect(() => device.allToAll(again, into)).toThrow(expect.objectContaining({ code: expect.stringMatching(/^ERR_SWITCH_/) }));
    // The benchmarks' loop in native code: each repeat timed, the values those of one allToAll.
    const benched = new Float32Array(x.length).fill(NaN);
    const times = device.benchAllToAll(x, benched, 5);
    expect(times).toBeInstanceOf(Float64Array);
    expect(times.length).toBe(5);
    for (const t of times) expect(Number.isFinite(t) && t >= 0).toBe(true);
    expectSame(benched, rounded, 'benchAllToAll bf16');
    for (const bad of [0, 1.5, -1, NaN])
      expect(() => device.benchAllToAll(x, benched, bad)).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_SWITCH_RANGE' }));
    expect(() => device.benchAllToAll(x, new Float32Array(3), 2)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_SHAPE' }));
    expect(() => device.allToAll(x, { axis: 'expert' })).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_OPTION' }));
  });
});
