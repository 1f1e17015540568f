// Faults of the device mesh: a device that dies, throws, exits or is late; a launcher that dies
// or is interrupted; bad options and mismatched calls. After each: no device process and no
// shared memory left.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { launchMesh } from 'switch-transformer';

const PROGRAM = new URL('./fixtures/mesh-faults.mjs', import.meta.url);
const LAUNCHER = new URL('./fixtures/mesh-launcher.mjs', import.meta.url);

let dir = '';
// The arena is an unlinked memfd named 'switch-transformer-mesh' (native/mesh/arena.cc): nothing
// of it should ever appear in /dev/shm. Other processes on the machine (other test runs, other
// programs) create and remove /dev/shm entries at any time, so only names the mesh would use count.
const MESH_NAME = /switch-transformer/i;
const meshShm = () => readdirSync('/dev/shm').filter((name) => MESH_NAME.test(name)).sort();
let shmBefore: string[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mesh-faults-'));
  shmBefore = meshShm();
});
/** /dev/shm entries with a mesh name that appeared since the test began (none may). */
const newMeshShm = () => meshShm().filter((name) => !shmBefore.includes(name));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].startsWith('Z');
  } catch {
    return false;
  }
};
const pids = (n: number) => Array.from({ length: n }, (_, r) => Number(readFileSync(join(dir, `pid-${r}`), 'utf8')));
const caught = (name: string) => JSON.parse(readFileSync(join(dir, name), 'utf8'));
async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(10);
  }
}

/** Nothing of the mesh remains: the device processes, /dev/shm entries, the arena in this process. */
function expectCleanedUp(devicePids: number[]): void {
  for (const pid of devicePids) expect(alive(pid), `device process ${pid} still alive`).toBe(false);
  expect(newMeshShm()).toEqual([]);
  expect(readFileSync('/proc/self/maps', 'utf8')).not.toContain('switch-transformer-mesh');
  for (const fd of readdirSync('/proc/self/fd')) {
    let target = '';
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      // closed meanwhile
    }
    expect(target).not.toContain('switch-transformer-mesh');
  }
}

describe('mesh faults', () => {
  it('a device SIGKILLed in the middle of an all-to-all: every other device throws ERR_MESH_PEER_LOST naming it within 2 s, the launch rejects, nothing is left', async () => {
    const launch = launchMesh(PROGRAM, { devices: 4, timeoutMs: 30000, args: { mode: 'kill', dir, perPeer: 300000 } });
    const settled = launch.then(() => undefined, (e) => e as Error & { code?: string; rank?: number });
    await waitFor(() => [0, 1, 2, 3].every((r) => existsSync(join(dir, `running-${r}`))), 20000);
    const devicePids = pids(4);
    const killedAt = Date.now();
    process.kill(devicePids[2], 'SIGKILL');
    const error = await settled;
    expect(error).toBeInstanceOf(Error);
    expect(error!.code).toBe('ERR_MESH_PEER_LOST');
    expect(error!.rank).toBe(2);
    expect(error!.message).toMatch(/rank 2/);
    for (const r of [0, 1, 3]) {
      const c = caught(`caught-${r}.json`);
      expect(c.code).toBe('ERR_MESH_PEER_LOST');
      expect(c.rank).toBe(2);
      expect(c.message).toMatch(/rank 2 was lost/);
      expect(c.t - killedAt).toBeLessThan(2000);
    }
    expectCleanedUp(devicePids);
  });

  it.each([
    ['by cross-memory attach', { SWITCH_MESH_ADOPT_BYTES: '0' }],
    ['staged through the slots', { SWITCH_MESH_ADOPT_BYTES: '0', SWITCH_MESH_CROSS_MEMORY: '0' }],
  ])('a device SIGKILLed while its peers read its plain arrays %s: they throw ERR_MESH_PEER_LOST within 2 s, nothing is left', async (_path, env) => {
    const saved = { ...process.env };
    Object.assign(process.env, env);
    let launch: Promise<unknown>;
    try {
      launch = launchMesh(PROGRAM, { devices: 3, timeoutMs: 30000, args: { mode: 'kill', dir, perPeer: 200000 } });
    } finally {
      for (const k of Object.keys(env)) if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k];
    }
    const settled = launch.then(() => undefined, (e) => e as Error & { code?: string; rank?: number });
    await waitFor(() => [0, 1, 2].every((r) => existsSync(join(dir, `running-${r}`))), 20000);
    const devicePids = pids(3);
    const killedAt = Date.now();
    process.kill(devicePids[1], 'SIGKILL');
    const error = await settled;
    expect(error).toBeInstanceOf(Error);
    expect(error!.code).toBe('ERR_MESH_PEER_LOST');
    expect(error!.rank).toBe(1);
    for (const r of [0, 2]) {
      const c = caught(`caught-${r}.json`);
      expect(c.code).toBe('ERR_MESH_PEER_LOST');
      expect(c.rank).toBe(1);
      expect(c.t - killedAt).toBeLessThan(2000);
    }
    expectCleanedUp(devicePids);
  });

  it('a device that throws: the launch rejects with its error naming its rank, the others and their later collectives get ERR_MESH_PEER_LOST', async () => {
    const error = await launchMesh(PROGRAM, { devices: 3, args: { mode: 'throw', dir, victim: 1 } }).then(() => undefined, (e) => e);
    expect(error).toBeInstanceOf(RangeError);
    expect(error.code).toBe('E_ON_PURPOSE');
    expect(error.rank).toBe(1);
    expect(error.message).toMatch(/^mesh device rank 1: the program of this device failed on purpose/);
    for (const r of [0, 2]) {
      expect(caught(`caught-${r}.json`)).toMatchObject({ code: 'ERR_MESH_PEER_LOST', rank: 1 });
      expect(caught(`again-${r}.json`)).toMatchObject({ code: 'ERR_MESH_PEER_LOST', rank: 1 });
    }
    expectCleanedUp(pids(3));
  });

  it('a device that exits early with process.exit is lost too', async () => {
    const error = await launchMesh(PROGRAM, { devices: 2, args: { mode: 'exit', dir, victim: 0 } }).then(() => undefined, (e) => e);
    expect(error).toMatchObject({ code: 'ERR_MESH_PEER_LOST', rank: 0 });
    expect(error.message).toMatch(/rank 0 was lost \(exited with code 3/);
    expect(caught('caught-1.json')).toMatchObject({ code: 'ERR_MESH_PEER_LOST', rank: 0 });
    expectCleanedUp(pids(2));
  });

  it('timeoutMs bounds every wait: ERR_MESH_TIMEOUT, and the late device is killed', async () => {
    const t0 = Date.now();
    const error = await launchMesh(PROGRAM, { devices: 2, timeoutMs: 300, graceMs: 100, args: { mode: 'timeout', dir, victim: 1 } })
      .then(() => undefined, (e) => e);
    expect(error).toMatchObject({ code: 'ERR_MESH_TIMEOUT', rank: 1 });
    expect(error.message).toMatch(/rank 0: mesh: rank 0 timed out after 300 ms waiting for rank 1/);
    expect(Date.now() - t0).toBeLessThan(4000);
    expectCleanedUp(pids(2));
  });

  for (const signal of ['SIGKILL', 'SIGINT'] as const) {
    it(`a launcher that gets ${signal} leaves no device behind`, async () => {
      const launcher = spawn(process.execPath, [new URL(LAUNCHER).pathname, new URL(PROGRAM).pathname, dir, '3'], { stdio: 'ignore' });
      const exited = new Promise<{ code: number | null; signal: string | null }>((r) => launcher.on('exit', (code, sig) => r({ code, signal: sig })));
      await waitFor(() => [0, 1, 2].every((r) => existsSync(join(dir, `pid-${r}`))), 20000);
      await sleep(100);
      const devicePids = pids(3);
      // While it runs, the arena is the memfd the name pattern looks for, mapped by every device, and not a /dev/shm file.
      for (const pid of devicePids) expect(readFileSync(`/proc/${pid}/maps`, 'utf8')).toMatch(/memfd:switch-transformer-mesh/);
      expect(newMeshShm()).toEqual([]);
      launcher.kill(signal);
      expect((await exited).signal).toBe(signal);
      await waitFor(() => devicePids.every((p) => !alive(p)), 2000);
      expect(newMeshShm()).toEqual([]);
    });
  }
});

describe('mesh argument checks', () => {
  it('rejects bad launch options with coded errors and starts nothing', async () => {
    const bad = async (options: object) => launchMesh(PROGRAM, options as never).then(() => undefined, (e) => e);
    expect(await bad({ devices: 4, axes: { data: 3, model: 2 } })).toMatchObject({ name: 'RangeError', code: 'ERR_SWITCH_OPTION', message: expect.stringMatching(/multiply to 6, not to devices = 4/) });
    expect(await bad({ devices: 0 })).toMatchObject({ name: 'RangeError', code: 'ERR_SWITCH_OPTION' });
    expect(await bad({ devices: 2, wire: 'fp16' })).toMatchObject({ name: 'RangeError', code: 'ERR_SWITCH_OPTION' });
    expect(await bad({ devices: 2, axes: { 'bad name': 2 } })).toMatchObject({ code: 'ERR_SWITCH_OPTION' });
    expect(await bad({ devices: 2, timeoutMs: -1 })).toMatchObject({ code: 'ERR_SWITCH_OPTION' });
    expect(await bad({ devices: 2, slotBytes: 1000 })).toMatchObject({ code: 'ERR_SWITCH_OPTION' });
    expect(await launchMesh(PROGRAM, { devices: 2, args: { f: () => 1 } }).then(() => undefined, (e) => e)).toMatchObject({ name: 'TypeError', code: 'ERR_SWITCH_ARG_TYPE' });
    const missing = await launchMesh(new URL('./fixtures/no-such-program.mjs', import.meta.url), { devices: 2 }).then(() => undefined, (e) => e);
    expect(missing).toMatchObject({ name: 'TypeError', code: 'ERR_MESH_LAUNCH' });
  });

  it('rejects bad collective arguments inside a device with coded errors, and the mesh stays usable', async () => {
    const results = await launchMesh<{ caught: { label: string; name: string; code: string; message: string }[]; ok: number[] }>(
      PROGRAM, { devices: 2, args: { mode: 'badargs', dir } });
    for (const { caught: list, ok } of results) {
      const by = Object.fromEntries(list.map((c) => [c.label, c]));
      expect(by['unknown axis']).toMatchObject({ name: 'RangeError', code: 'ERR_SWITCH_OPTION', message: expect.stringMatching(/unknown axis "expert"; the mesh has axes 'data'/) });
      expect(by['bad wire']).toMatchObject({ name: 'RangeError', code: 'ERR_SWITCH_OPTION' });
      expect(by['allToAll not a multiple']).toMatchObject({ name: 'RangeError', code: 'ERR_SWITCH_SHAPE', message: expect.stringMatching(/multiple of 2/) });
      expect(by['allToAll recv size']).toMatchObject({ name: 'RangeError', code: 'ERR_SWITCH_SHAPE', message: expect.stringMatching(/'recv' must have 6 elements/) });
      expect(by['allReduce recv size']).toMatchObject({ code: 'ERR_SWITCH_SHAPE' });
      expect(by['allGather recv size']).toMatchObject({ code: 'ERR_SWITCH_SHAPE', message: expect.stringMatching(/must have 6 elements/) });
      expect(by['reduceScatter send size']).toMatchObject({ code: 'ERR_SWITCH_SHAPE' });
      expect(by['broadcast root']).toMatchObject({ name: 'RangeError', code: 'ERR_SWITCH_OPTION' });
      expect(by['not a Float32Array']).toMatchObject({ name: 'TypeError', code: 'ERR_SWITCH_ARG_TYPE' });
      expect(by['overlap']).toMatchObject({ name: 'RangeError', code: 'ERR_SWITCH_SHAPE', message: expect.stringMatching(/overlap/) });
      expect(by['allToAllv counts length']).toMatchObject({ code: 'ERR_SWITCH_SHAPE' });
      expect(by['allToAllv counts sum']).toMatchObject({ code: 'ERR_SWITCH_SHAPE' });
      expect(by['allToAllv own chunk']).toMatchObject({ code: 'ERR_SWITCH_SHAPE', message: expect.stringMatching(/chunk to itself/) });
      expect(by['alloc beyond the heap']).toMatchObject({ name: 'RangeError', code: 'ERR_SWITCH_RANGE', message: expect.stringMatching(/heapBytes/) });
      expect(by['alloc negative']).toMatchObject({ name: 'RangeError', code: 'ERR_SWITCH_RANGE' });
      expect(ok).toEqual([2, 2, 2]);
    }
  });

  it('mismatched collectives throw ERR_MESH_MISMATCH on both devices', async () => {
    const results = await launchMesh<{ name: string; code: string; message: string }[][]>(PROGRAM, { devices: 2, args: { mode: 'mismatch', dir } });
    for (const list of results) {
      expect(list).toHaveLength(1);
      expect(list[0]).toMatchObject({ name: 'RangeError', code: 'ERR_MESH_MISMATCH', message: expect.stringMatching(/allReduce\(n=4.*allGather\(n=4|allGather\(n=4.*allReduce\(n=4/) });
    }
  });
});
