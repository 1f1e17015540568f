// The mesh over MPI (launchMesh with backend 'mpi'): the same programs give bit-identical results
// on both transports — every collective on { data: 2, model: 2 } (whole mesh and each axis, both
// wires, sizes 0 to ~9000, NaN/±Inf/subnormal inputs) and the expert-parallel Switch layer — and a
// failing, mismatched or late rank ends the launch with a coded error instead of a hang.
// The shared-memory mesh itself is checked against plain references in mesh.test.ts.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { launchMesh, trainOnMesh, type LaunchOptions } from 'switch-transformer';

const COLLECTIVES = new URL('./fixtures/mesh-collectives.mjs', import.meta.url);
const SWITCH = new URL('./fixtures/switch-mesh.mjs', import.meta.url);
const FAULTS = new URL('./fixtures/mesh-mpi-faults.mjs', import.meta.url);

function hasMpirun(): boolean {
  try {
    execFileSync('mpirun', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const MPI = hasMpirun();

const randomInt = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));

/** Bitwise equality of everything two runs returned (typed arrays compared by their bytes). */
function expectIdentical(a: unknown, b: unknown, where: string): void {
  if (ArrayBuffer.isView(a)) {
    expect(ArrayBuffer.isView(b), where).toBe(true);
    const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength), y = new Uint8Array((b as ArrayBufferView).buffer, (b as ArrayBufferView).byteOffset, (b as ArrayBufferView).byteLength);
    expect(x.length, `${where}: length`).toBe(y.length);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) expect.fail(`${where}: byte ${i} differs (${x[i]} vs ${y[i]})`);
    return;
  }
  if (Array.isArray(a)) {
    expect(Array.isArray(b) && b.length === a.length, `${where}: array length`).toBe(true);
    a.forEach((v, i) => expectIdentical(v, (b as unknown[])[i], `${where}[${i}]`));
    return;
  }
  if (a && typeof a === 'object') {
    expect(Object.keys(b as object).sort(), `${where}: keys`).toEqual(Object.keys(a).sort());
    for (const k of Object.keys(a)) expectIdentical((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${where}.${k}`);
    return;
  }
  expect(Object.is(a, b), `${where}: ${String(a)} vs ${String(b)}`).toBe(true);
}

async function onBoth<R>(program: URL, options: LaunchOptions): Promise<[R[], R[]]> {
  const shm = await launchMesh<R>(program, options);
  const mpi = await launchMesh<R>(program, { ...options, backend: 'mpi' });
  return [shm, mpi];
}

/** A temporary folder with a small text corpus of `files` files; `use` gets (folder, corpus). */
async function withCorpus(files: number, use: (dir: string, corpus: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-mpi-'));
  try {
    const folder = join(dir, 'corpus');
    mkdirSync(folder);
    const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'and', 'dog', 'ran', 'far', 'away', 'home'];
    for (let d = 0; d < files; d++)
      writeFileSync(join(folder, `d${d}.txt`), Array.from({ length: 300 }, (_, i) => words[(i * 5 + d * 3 + (i % 7)) % 12]).join(' '));
    await use(dir, folder);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function rejection(p: Promise<unknown>): Promise<Error & { code?: string; rank?: number }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string; rank?: number };
  }
  throw new Error('the launch resolved; expected it to reject');
}

describe.runIf(MPI)('mesh over MPI', () => {
  it('every collective equals the shared-memory mesh bit for bit on { data: 2, model: 2 }', async () => {
    const cases: Record<string, unknown>[] = [];
    for (const axis of [undefined, 'data', 'model'])
      for (const wire of ['float32', 'bf16']) {
        for (const n of [1, randomInt(2, 300), randomInt(4097, 9000)])
          for (const op of ['allToAll', 'allReduce', 'allGather', 'reduceScatter', 'broadcast'])
            cases.push({ op, n, axis, wire, specials: op !== 'allReduce' && op !== 'reduceScatter', root: op === 'broadcast' ? randomInt(0, 1) : undefined });
        cases.push({ op: 'barrier', n: 0, axis, wire });
        cases.push({ op: 'allToAllInPlace', n: randomInt(1, 5000), axis, wire, specials: true });
        cases.push({ op: 'allToAllHeap', n: randomInt(1, 300), axis, wire, specials: true });
        cases.push({ op: 'allToAllReuse', n: randomInt(1, 2000), axis, wire, specials: true });
        cases.push({ op: 'benchAllToAll', n: randomInt(1, 3000), axis, wire, specials: true, repeats: randomInt(1, 3) });
        cases.push({ op: 'allReduceInPlace', n: randomInt(1, 9000), axis, wire });
        cases.push({ op: 'allToAllv', n: randomInt(1, 6000), axis, wire, specials: true });
        cases.push({ op: 'allToAll', n: 0, axis, wire });
      }
    const seed = randomInt(1, 2 ** 30);
    type Report = { rank: number; size: number; coords: Record<string, number>; out: Float32Array[] };
    const [shm, mpi] = await onBoth<Report>(COLLECTIVES, { devices: 4, axes: { data: 2, model: 2 }, timeoutMs: 30000, args: { seed, cases } });
    expect(mpi.map((r) => r.rank)).toEqual([0, 1, 2, 3]);
    expect(mpi.map((r) => r.coords)).toEqual(shm.map((r) => r.coords));
    for (let rank = 0; rank < 4; rank++)
      cases.forEach((c, i) => expectIdentical(shm[rank].out[i], mpi[rank].out[i], `seed ${seed} rank ${rank} case ${i} ${JSON.stringify(c)}`));
  }, 60000);

  it('the expert-parallel Switch layer equals the shared-memory mesh bit for bit (float32 and bf16 wire)', async () => {
    const r = (() => { let s = randomInt(1, 2 ** 30); return () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1; })();
    const arr = (n: number) => Float32Array.from({ length: n }, r);
    const base = { dModel: 6, dFF: 8, numExperts: 4, seed: randomInt(1, 999) };
    const cases = [
      { kind: 'switch', opts: { ...base, capacityFactor: 1.0, minCapacity: 1, zLossCoef: 0.1 }, x: arr(2 * 16 * 6), dy: arr(2 * 16 * 6), routerScale: 20, steps: 2 },
      { kind: 'switch', opts: { ...base, topK: 2, minCapacity: 1, precision: 'bf16-wire' }, x: arr(2 * 8 * 6), dy: arr(2 * 8 * 6), routerScale: 10 },
      { kind: 'dense', opts: { dModel: 6, dFF: 8, seed: 3 }, x: arr(2 * 5 * 6), dy: arr(2 * 5 * 6) },
    ];
    for (const wire of ['float32', 'bf16'] as const) {
      const [shm, mpi] = await onBoth(SWITCH, { devices: 2, axes: { data: 2 }, wire, timeoutMs: 30000, threadsPerDevice: 1, args: { cases } });
      expectIdentical(shm, mpi, `wire ${wire}`);
    }
  }, 60000);

  it("trainOnMesh with backend 'mpi' gives the shared-memory mesh's training run bit for bit (expert-data, bf16 wire)", async () => {
    await withCorpus(4, async (_dir, folder) => {
      const options = {
        devices: 2, strategy: 'expert-data' as const, steps: 3, threadsPerDevice: 1, returnParameters: true,
        model: { dModel: 16, numHeads: 2, numLayers: 2, dFF: 24, maxSeqLen: 8, numExperts: 4, groupSize: 16, seed: randomInt(1, 99) },
        data: { corpus: folder, validationFraction: 0.2 }, trainer: { batchSize: 4, seqLen: 8, lr: 5e-3, warmupSteps: 1, seed: 1 },
      };
      const shm = await trainOnMesh(options);
      const mpi = await trainOnMesh({ ...options, backend: 'mpi' });
      expect(mpi.history).toHaveLength(3);
      const strip = (h: typeof shm.history) => h.map(({ loss, auxLoss, gradNorm, tokensPerExpert, droppedFraction }) => ({ loss, auxLoss, gradNorm, tokensPerExpert, droppedFraction }));
      expectIdentical(strip(shm.history), strip(mpi.history), 'history');
      expectIdentical(shm.parameters, mpi.parameters, 'parameters');
    });
  }, 120000);

  it('switch-train --backend mpi trains on MPI ranks and prints the summary', async () => {
    await withCorpus(3, async (dir, folder) => {
      const cli = new URL('../dist/src/cli/train.js', import.meta.url).pathname;
      const out = execFileSync(process.execPath, [cli, '--batch', '2', '--seq', '8', '--d-model', '16', '--layers', '2', '--heads', '2',
        '--d-ff', '32', '--experts', '4', '--eval-batches', '1', '--devices', '2', '--strategy', 'expert-data', '--backend', 'mpi',
        '--steps', '2', '--corpus', folder, '--no-checkpoint', '--json', '--quiet'], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      expect(JSON.parse(out)).toMatchObject({ steps: 2, devices: 2, strategy: 'expert-data' });
      expect(() => execFileSync(process.execPath, [cli, '--mpi-args', 'x', '--steps', '1'], { stdio: 'pipe' })).toThrow(/--mpi-args applies to --backend mpi only/);
    });
  }, 120000);

  it('a rank that throws ends the launch with its error, class, code and rank', async () => {
    const e = await rejection(launchMesh(FAULTS, { devices: 3, backend: 'mpi', timeoutMs: 30000, args: { mode: 'throw', victim: 1 } }));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.code).toBe('ERR_SWITCH_RANGE');
    expect(e.rank).toBe(1);
    expect(e.message).toMatch(/mesh device rank 1: planned failure on rank 1/);
  }, 60000);

  it('allToAllv counts that disagree throw ERR_MESH_MISMATCH on every rank', async () => {
    const e = await rejection(launchMesh(FAULTS, { devices: 2, backend: 'mpi', timeoutMs: 30000, args: { mode: 'mismatch' } }));
    expect(e.code).toBe('ERR_MESH_MISMATCH');
    expect(e.message).toMatch(/counts disagree/);
  }, 60000);

  it('a rank that never comes makes the others time out (timeoutMs bounds every wait)', async () => {
    const started = Date.now();
    const e = await rejection(launchMesh(FAULTS, { devices: 2, backend: 'mpi', timeoutMs: 500, args: { mode: 'late', victim: 1, sleepMs: 20000 } }));
    expect(e.code).toBe('ERR_MESH_TIMEOUT');
    expect(e.rank).toBe(0);
    expect(Date.now() - started).toBeLessThan(15000);
  }, 60000);

  it('a library that cannot be loaded gives ERR_MESH_MPI', async () => {
    const e = await rejection(launchMesh(FAULTS, { devices: 2, backend: 'mpi', mpi: { library: '/nonexistent/libmpi.so' }, args: { mode: 'ok' } }));
    expect(e.code).toBe('ERR_MESH_MPI');
    expect(e.message).toMatch(/cannot load the MPI library/);
  }, 60000);
});

describe('mesh over MPI: options', () => {
  it('rejects an unknown backend and bad MPI options with coded errors', async () => {
    await expect(launchMesh(FAULTS, { devices: 2, backend: 'tcp' as 'mpi' })).rejects.toMatchObject({ name: 'RangeError', code: 'ERR_SWITCH_OPTION' });
    await expect(launchMesh(FAULTS, { devices: 2, backend: 'mpi', mpi: { args: [1 as unknown as string] } })).rejects.toMatchObject({ name: 'TypeError', code: 'ERR_SWITCH_OPTION' });
    await expect(launchMesh(FAULTS, { devices: 2, backend: 'mpi', mpi: { command: '' } })).rejects.toMatchObject({ code: 'ERR_SWITCH_OPTION' });
  });

  it('names the missing launcher command', async () => {
    await expect(launchMesh(FAULTS, { devices: 2, backend: 'mpi', mpi: { command: 'no-such-mpirun-here' } }))
      .rejects.toMatchObject({ code: 'ERR_MESH_MPI', message: expect.stringMatching(/no-such-mpirun-here.*not on PATH/) });
  });
});
