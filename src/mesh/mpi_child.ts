// The entry of a device process under mpirun (see mpi.ts): attach to MPI, receive the args from
// rank 0, run the program's default export, gather the return values on rank 0, finalise. An
// error is reported on stderr (one marked line) and aborts the whole job.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { deserialize, serialize } from 'node:v8';
import { native } from '../native.js';
import { Device } from './device.js';
import { ERROR_MARK, MPI, type MpiChildConfig } from './mpi.js';
import { describeError } from './report.js';

async function main(): Promise<void> {
  const config = JSON.parse(process.env.SWITCH_MESH_MPI ?? 'null') as MpiChildConfig | null;
  if (!config) {
    process.stderr.write('switch-transformer: the MPI device entry runs only under launchMesh({ backend: "mpi" })\n');
    process.exit(2);
  }
  delete process.env.SWITCH_MESH_MPI;
  const watch = hostname() === config.launcherHost ? config.launcherPid : 0;
  let attached: { handle: unknown; rank: number; size: number };
  try {
    attached = native.mpiAttach(config.axes.map(([n]) => n), config.axes.map(([, s]) => s), config.timeoutMs, config.library, watch);
  } catch (error) {
    process.stderr.write(`${ERROR_MARK}${JSON.stringify({ rank: Number(process.env.OMPI_COMM_WORLD_RANK ?? -1), error: describeError(error) })}\n`);
    process.exit(1);
  }
  const { handle, rank } = attached;
  try {
    native.setNumThreads(config.threads);
    const args = deserialize(native.mpiBroadcastBytes(handle, rank === 0 ? readFileSync(join(config.dir, 'args.v8')) : undefined));
    const mod = (await import(config.programUrl)) as { default?: unknown };
    if (typeof mod.default !== 'function')
      throw Object.assign(new TypeError(`the mesh program ${config.programUrl} has no default export function (device, args)`), { code: 'ERR_MESH_LAUNCH' });
    const device = new Device(handle, { rank, axes: config.axes, wire: config.wire, timeoutMs: config.timeoutMs }, MPI);
    const value = await (mod.default as (d: Device, a: unknown) => unknown)(device, args);
    let bytes: Uint8Array;
    try {
      bytes = serialize(value);
    } catch (e) {
      throw Object.assign(new TypeError(`the program's return value cannot be sent to the launcher: ${(e as Error).message}`), { code: 'ERR_MESH_LAUNCH' });
    }
    const all = native.mpiGatherBytes(handle, bytes) as Uint8Array[] | undefined;
    if (rank === 0) {
      const file = join(config.dir, 'results.v8');
      writeFileSync(`${file}.tmp`, serialize(all));
      renameSync(`${file}.tmp`, file);
    }
    native.mpiFinalize(handle);
    process.exit(0);
  } catch (error) {
    process.stderr.write(`${ERROR_MARK}${JSON.stringify({ rank, error: describeError(error) })}\n`);
    native.mpiAbort(handle, 1);
  }
}

void main();
