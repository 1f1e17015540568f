// The device mesh over MPI: the same program, Device API and results as the shared-memory mesh,
// for meshes that outgrow one host. `launchMesh(url, { backend: 'mpi', ... })` starts the devices
// with `mpirun` (Open MPI); each rank runs mpi_child.js, which attaches to the MPI library at run
// time (native/mesh/mpi.h) and runs the program. Rank 0 broadcasts the args and gathers the return
// values over MPI, so only rank 0 must run on the launcher's host (Open MPI puts it on the first
// host). A program that throws aborts the job (MPI_Abort), and the launch rejects with its error.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { availableParallelism, hostname, tmpdir } from 'node:os';
import { join, delimiter } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deserialize, serialize } from 'node:v8';
import { native } from '../native.js';
import { codedError, typeError } from '../errors.js';
import type { MeshStats, Transport, Wire } from './device.js';
import { deviceError, type ReportedError } from './report.js';

/** Options of the MPI backend (`launchMesh(url, { backend: 'mpi', mpi: { ... } })`). */
export interface MpiLaunchOptions {
  /** The launcher command (default `mpirun`, found on PATH). */
  command?: string;
  /** More arguments for it, before the program: e.g. `['--hostfile', 'hosts']`. */
  args?: string[];
  /**
   * The MPI shared library each rank loads (default: Open MPI's `libmpi.so.40`, then
   * `libmpi.so`; or the environment variable SWITCH_MPI_LIBRARY).
   */
  library?: string;
}

/** What the launcher tells every rank (the JSON in SWITCH_MESH_MPI, exported to every host). */
export interface MpiChildConfig {
  programUrl: string;
  axes: [string, number][];
  wire: Wire;
  timeoutMs: number;
  threads: number;
  library: string;
  /** Rank 0 reads the args here and writes the results here (on the launcher's host). */
  dir: string;
  launcherPid: number;
  launcherHost: string;
}

/** The mark of a rank's error on its stderr (one line), read by the launcher. */
export const ERROR_MARK = '\u001eswitch-transformer-mesh-error ';

/** The transport of a Device whose collectives run on MPI. */
export const MPI: Transport = {
  group: native.mpiGroup, barrier: native.mpiBarrier, broadcast: native.mpiBroadcast,
  allReduce: native.mpiAllReduce, allGather: native.mpiAllGather, reduceScatter: native.mpiReduceScatter,
  allToAll: native.mpiAllToAll, allToAllv: native.mpiAllToAllv, benchAllToAll: native.mpiBenchAllToAll,
  // No shared heap across hosts: an ordinary array (MPI reads it in place anyway).
  alloc: (_handle: unknown, n: number) => new Float32Array(n),
  stats: native.mpiStats as (handle: unknown) => MeshStats, resetStats: native.mpiResetStats, setTimeout: native.mpiSetTimeout,
};

const CHILD_ENTRY = fileURLToPath(new URL('./mpi_child.js', import.meta.url));

function onPath(command: string): boolean {
  if (command.includes('/')) return existsSync(command);
  return (process.env.PATH ?? '').split(delimiter).some((d) => d && existsSync(join(d, command)));
}

/** @internal launchMesh with `backend: 'mpi'` (options already checked by launchMesh). */
export function launchOverMpi<R>(href: string, options: { devices: number; args?: unknown; mpi?: MpiLaunchOptions },
                                 checked: { axes: [string, number][]; wire: Wire; timeoutMs: number; threads: number; pin: boolean }): Promise<R[]> {
  const mpi = options.mpi ?? {};
  if (mpi === null || typeof mpi !== 'object')
    throw typeError('ERR_SWITCH_OPTION', "launchMesh: option 'mpi' must be an object like { command, args, library }");
  const command = mpi.command ?? 'mpirun';
  if (typeof command !== 'string' || command.length === 0)
    throw typeError('ERR_SWITCH_OPTION', "launchMesh: option 'mpi.command' must be a non-empty string");
  const extra = mpi.args ?? [];
  if (!Array.isArray(extra) || extra.some((a) => typeof a !== 'string'))
    throw typeError('ERR_SWITCH_OPTION', "launchMesh: option 'mpi.args' must be an array of strings");
  const library = mpi.library ?? process.env.SWITCH_MPI_LIBRARY ?? '';
  if (typeof library !== 'string') throw typeError('ERR_SWITCH_OPTION', "launchMesh: option 'mpi.library' must be a string");
  if (!onPath(command))
    return Promise.reject(codedError('ERR_MESH_MPI', `launchMesh: the MPI backend needs '${command}' (Open MPI: Debian's openmpi-bin), which is not on PATH`));

  const dir = mkdtempSync(join(tmpdir(), 'switch-mesh-mpi-'));
  writeFileSync(join(dir, 'args.v8'), serialize(options.args));
  const config: MpiChildConfig = {
    programUrl: href, axes: checked.axes, wire: checked.wire, timeoutMs: checked.timeoutMs, threads: checked.threads,
    library, dir, launcherPid: process.pid, launcherHost: hostname(),
  };
  const cpus = typeof availableParallelism === 'function' ? availableParallelism() : 1;
  const argv = ['-np', String(options.devices), '-x', 'SWITCH_MESH_MPI',
    // Open MPI refuses more ranks than cores unless told; binding follows pinDevices (by default:
    // bound to cores when the devices fit on this host's, as on the shared-memory mesh).
    ...(options.devices > cpus && !extra.includes('--hostfile') ? ['--oversubscribe'] : []),
    ...(extra.includes('--bind-to') ? [] : ['--bind-to', checked.pin ? 'core' : 'none']),
    ...extra, process.execPath, CHILD_ENTRY];
  const env: NodeJS.ProcessEnv = { ...process.env, SWITCH_MESH_MPI: JSON.stringify(config) };
  if (process.getuid?.() === 0) {
    env.OMPI_ALLOW_RUN_AS_ROOT = '1';
    env.OMPI_ALLOW_RUN_AS_ROOT_CONFIRM = '1';
  }
  return new Promise<R[]>((resolve, reject) => {
    const child = spawn(command, argv, { env, stdio: ['ignore', 'inherit', 'pipe'] });
    const errors = new Map<number, Error>();
    const tail: string[] = [];
    let pending = '';
    const killOnExit = () => child.kill('SIGTERM');
    process.once('exit', killOnExit);
    // Ranks' stderr passes through, except the error marks (one line each).
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => {
      pending += text;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        const at = line.indexOf(ERROR_MARK);
        if (at >= 0) {
          try {
            const { rank, error } = JSON.parse(line.slice(at + ERROR_MARK.length)) as { rank: number; error: ReportedError };
            if (!errors.has(rank)) errors.set(rank, deviceError(rank, error));
          } catch {
            process.stderr.write(line + '\n');
          }
          continue;
        }
        tail.push(line);
        if (tail.length > 20) tail.shift();
        process.stderr.write(line + '\n');
      }
    });
    const finish = (error: Error | null, value?: R[]) => {
      process.off('exit', killOnExit);
      rmSync(dir, { recursive: true, force: true });
      if (error) reject(error);
      else resolve(value!);
    };
    child.on('error', (e) => finish(codedError('ERR_MESH_MPI', `launchMesh: cannot start '${command}': ${e.message}`)));
    child.on('close', (code, signal) => {
      if (pending) process.stderr.write(pending);
      const results = join(dir, 'results.v8');
      if (errors.size > 0) {
        // The lowest rank that threw is the cause; a peer's ERR_MESH_* is its echo.
        const ranks = [...errors.keys()].sort((a, b) => a - b);
        const cause = ranks.find((r) => !(errors.get(r) as { code?: string }).code?.startsWith('ERR_MESH_')) ?? ranks[0];
        return finish(errors.get(cause)!);
      }
      if (code === 0 && existsSync(results)) {
        try {
          const parts = deserialize(readFileSync(results)) as Uint8Array[];
          return finish(null, parts.map((p) => deserialize(p) as R));
        } catch (e) {
          return finish(codedError('ERR_MESH_MPI', `launchMesh: cannot read the devices' results: ${(e as Error).message}`));
        }
      }
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      finish(Object.assign(codedError('ERR_MESH_PEER_LOST', `mesh (MPI): '${command}' ${how} before every device returned${tail.length ? `:\n${tail.join('\n')}` : ''}`), { rank: -1 }));
    });
  });
}
