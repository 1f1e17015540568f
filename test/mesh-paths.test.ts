// The data paths of the mesh's all-to-all (native/mesh/collectives.cc): plain Float32Arrays staged
// through the arena, read by the peers with cross-memory attach, or read in place once a reused
// buffer's pages moved into the shared heap; arrays from device.alloc; both wires. Every path must
// give the same values: the sender's chunk as it crossed the wire (bf16: toBfloat16 then
// fromBfloat16, the library's own conversions). Environment switches force each path:
// SWITCH_MESH_CROSS_MEMORY=0 (no cross-memory attach), SWITCH_MESH_ADOPT_BYTES (0: no page moves),
// SWITCH_MESH_STREAM_BYTES (chunks copied with non-temporal stores from this size on).
import { describe, expect, it } from 'vitest';
import { cpuInfo, fromBfloat16, launchMesh, toBfloat16 } from 'switch-transformer';
// @ts-expect-error plain JS fixture shared with the device processes
import { count, inputs } from './fixtures/mesh-data.mjs';

const PROGRAM = new URL('./fixtures/mesh-paths.mjs', import.meta.url);
const SLOT = 65536;   // small slots: these sizes take several rounds

type Wire = 'float32' | 'bf16';
interface Case { op: 'allToAll' | 'allToAllv'; n: number; wire: Wire; offset: number; iterations: number; heap?: boolean; resizable?: boolean }
interface PathStats { crossMemory: boolean; bytesReadInPlace: number; bytesCrossMemory: number }
interface Report { rank: number; out: Float32Array[][]; stats: PathStats[] }

const randomInt = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));
const onWire = (x: Float32Array, wire: Wire) => (wire === 'bf16' ? fromBfloat16(toBfloat16(x)) : x);

function expected(seed: number, index: number, it: number, c: Case, P: number, me: number): Float32Array {
  const parts: Float32Array[] = [];
  for (let q = 0; q < P; q++) {
    if (c.op === 'allToAll') {
      parts.push(inputs(seed, index * 100 + it, q, P * c.n, true).subarray(me * c.n, (me + 1) * c.n));
    } else {
      const sendCounts = Array.from({ length: P }, (_, p) => count(seed, index, q, p, c.n) as number);
      const at = sendCounts.slice(0, me).reduce((x, y) => x + y, 0);
      const all = inputs(seed, index * 100 + it, q, sendCounts.reduce((x, y) => x + y, 0), true) as Float32Array;
      parts.push(all.subarray(at, at + sendCounts[me]));
    }
  }
  const joined = new Float32Array(parts.reduce((x, p) => x + p.length, 0));
  let at = 0;
  for (const p of parts) {
    joined.set(p, at);
    at += p.length;
  }
  return onWire(joined, c.wire);
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

/** Launches with these environment variables in the device processes (read when they start). */
async function launchWith(env: Record<string, string>, devices: number, args: unknown): Promise<Report[]> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    // The device processes are forked (and take the environment) before launchMesh returns.
    return launchMesh<Report>(PROGRAM, { devices, timeoutMs: 20000, slotBytes: SLOT, args });
  } finally {
    for (const k of Object.keys(env)) if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k];
  }
}

function cases(): Case[] {
  // Sizes that take several rounds of the small slot, and offsets that put page boundaries inside chunks.
  const big = () => randomInt(3000, 7000);
  return [
    { op: 'allToAll', n: big(), wire: 'float32', offset: randomInt(1, 1000), iterations: 3 },
    { op: 'allToAll', n: big(), wire: 'bf16', offset: randomInt(1, 1000), iterations: 3 },
    { op: 'allToAll', n: randomInt(1, 40), wire: 'float32', offset: randomInt(0, 3), iterations: 2 },
    { op: 'allToAll', n: big(), wire: 'bf16', offset: 0, iterations: 2, heap: true },
    { op: 'allToAll', n: big(), wire: 'float32', offset: 0, iterations: 2, heap: true },
    { op: 'allToAllv', n: big(), wire: 'float32', offset: randomInt(1, 1000), iterations: 3 },
    { op: 'allToAllv', n: big(), wire: 'bf16', offset: randomInt(1, 1000), iterations: 2 },
    // A resizable ArrayBuffer keeps its pages (V8 counts on fresh pages reading zero when it grows).
    { op: 'allToAll', n: big(), wire: 'bf16', offset: 0, iterations: 3, resizable: true },
  ];
}

function check(reports: Report[], seed: number, list: Case[]): void {
  const P = reports.length;
  for (const rep of reports)
    list.forEach((c, i) => {
      rep.out[i].forEach((recv, it) => expectSame(recv, expected(seed, i, it, c, P, rep.rank), `rank ${rep.rank} case ${i} ${JSON.stringify(c)} iteration ${it}`));
    });
}

describe('all-to-all data paths', () => {
  // Small thresholds so that test sizes take the single-copy paths (and the streaming copies of
  // large chunks, SWITCH_MESH_STREAM_BYTES).
  const SMALL = { SWITCH_MESH_ADOPT_BYTES: '4096', SWITCH_MESH_CROSS_MEMORY_BYTES: '1024', SWITCH_MESH_STREAM_BYTES: '4096' };

  it.each([2, 3])('plain arrays are read in place (cross-memory attach, then their pages in the shared heap) with the same results, %i devices', async (devices) => {
    const seed = randomInt(1, 2 ** 30);
    const list = cases();
    const reports = await launchWith(SMALL, devices, { seed, cases: list });
    check(reports, seed, list);
    for (const rep of reports) {
      const [f32, bf16, tiny, , heap, v] = rep.stats;
      // First iteration by cross-memory attach (where the system allows it), later ones from the heap.
      if (rep.stats[0].crossMemory) {
        expect(f32.bytesCrossMemory, `rank ${rep.rank}: float32 plain, cross-memory`).toBeGreaterThan(0);
        // allToAllv: a sender goes by cross-memory attach when its chunks average ≥ 1024 bytes.
        let want = 0;
        for (let q = 0; q < devices; q++) {
          if (q === rep.rank) continue;
          let toPeers = 0;
          for (let p = 0; p < devices; p++) if (p !== q) toPeers += count(seed, 5, q, p, list[5].n) as number;
          if (Math.floor(toPeers / (devices - 1)) * 4 >= 1024) want += (count(seed, 5, q, rep.rank, list[5].n) as number) * 4 * list[5].iterations;
        }
        expect(v.bytesCrossMemory, `rank ${rep.rank}: allToAllv, cross-memory`).toBe(want);
      }
      expect(f32.bytesReadInPlace - f32.bytesCrossMemory, `rank ${rep.rank}: float32 plain, adopted pages`).toBeGreaterThan(0);
      expect(bf16.bytesReadInPlace, `rank ${rep.rank}: bf16 plain, adopted pages`).toBeGreaterThan(0);
      expect(bf16.bytesCrossMemory).toBe(0);   // a bf16 wire never goes by cross-memory attach
      expect(tiny.bytesReadInPlace).toBe(0);   // below the thresholds: staged
      expect(heap.bytesReadInPlace).toBeGreaterThan(0);
      expect(rep.stats[7].bytesReadInPlace, `rank ${rep.rank}: a resizable buffer is not adopted`).toBe(0);
    }
  });

  // Each ISA this CPU runs (the default run above is the best one): the same results on each.
  it.each(['portable', 'avx2', 'avx512'] as const)('the %s kernels (SWITCH_TRANSFORMER_ISA) give the same results on every path', async (isa) => {
    const order = ['portable', 'avx2', 'avx512'];
    if (order.indexOf(isa) > order.indexOf(cpuInfo().bestIsa)) return; // this CPU cannot run it
    const seed = randomInt(1, 2 ** 30);
    const list = cases();
    const reports = await launchWith({ ...SMALL, SWITCH_TRANSFORMER_ISA: isa }, 2, { seed, cases: list });
    check(reports, seed, list);
    for (const rep of reports) expect(rep.stats[1].bytesReadInPlace, `${isa}: bf16 plain, adopted pages`).toBeGreaterThan(0);
  });

  it('SWITCH_MESH_CROSS_MEMORY=0 and SWITCH_MESH_ADOPT_BYTES=0 stage every plain array, with the same results', async () => {
    const seed = randomInt(1, 2 ** 30);
    const list = cases();
    const reports = await launchWith({ ...SMALL, SWITCH_MESH_CROSS_MEMORY: '0', SWITCH_MESH_ADOPT_BYTES: '0' }, 3, { seed, cases: list });
    check(reports, seed, list);
    for (const rep of reports) {
      list.forEach((c, i) => {
        expect(rep.stats[i].crossMemory).toBe(false);
        expect(rep.stats[i].bytesCrossMemory).toBe(0);
        if (!c.heap) expect(rep.stats[i].bytesReadInPlace, `rank ${rep.rank} case ${i}`).toBe(0);
      });
    }
  });

  it('cross-memory attach alone (no page moves) gives the same results', async () => {
    const seed = randomInt(1, 2 ** 30);
    const list = cases();
    const reports = await launchWith({ ...SMALL, SWITCH_MESH_ADOPT_BYTES: '0' }, 2, { seed, cases: list });
    check(reports, seed, list);
    for (const rep of reports) {
      expect(rep.stats[1].bytesReadInPlace).toBe(0);   // bf16 plain: staged
      if (rep.stats[0].crossMemory) expect(rep.stats[0].bytesCrossMemory).toBe(rep.stats[0].bytesReadInPlace);
    }
  });
});
