// The mesh launcher (SPEC §3): N device processes running one program (SPMD), one shared arena.
// The launcher only watches: its event loop never blocks, the devices synchronise among
// themselves on futexes in the arena. When a device fails (dies, crashes, throws, exits early)
// the launcher marks it lost in the arena and wakes every sleeper, so the others' collectives
// throw ERR_MESH_PEER_LOST; then it waits a short grace period, kills what is left, unmaps the
// arena (an unlinked memfd: nothing remains in /dev/shm) and rejects with the cause.
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { native } from '../native.js';
import { codedError, rangeError, typeError, type CodedError } from '../errors.js';
import { Device, type DeviceConfig, type Wire } from './device.js';
import { deviceError, type ReportedError } from './report.js';
import { launchOverMpi, type MpiLaunchOptions } from './mpi.js';

export interface LaunchOptions {
  /** Number of device processes (1 ... 64). */
  devices: number;
  /** Named axes, sizes multiplying to `devices`, in mesh order (last fastest). Default `{ data: devices }`. */
  axes?: Record<string, number>;
  /** What crosses devices: 'float32' (default) or 'bf16'; each collective may override it. */
  wire?: Wire;
  /** Bound on every wait inside a collective, in ms (default 60000): ERR_MESH_TIMEOUT. */
  timeoutMs?: number;
  /** Passed to every device's program (structured-cloned). */
  args?: unknown;
  /** Threads of the native kernels in each device (default: the cores divided among the devices). */
  threadsPerDevice?: number;
  /** Each device's staging slot per group, in bytes (default 2 MiB); larger collectives are chunked. */
  slotBytes?: number;
  /**
   * Each device's shared heap, in bytes (default 256 MiB, reserved lazily): `device.alloc(n)` carves
   * Float32Arrays from it, and an all-to-all reads a float32 send buffer there in place. A plain
   * send buffer of 32 KiB or more that an all-to-all sees a second time has its whole pages moved
   * here too (SWITCH_MESH_ADOPT_BYTES sets the size, 0 never), so that it is read in place as well.
   */
  heapBytes?: number;
  /**
   * Bind each device to its own CPUs (device r: CPUs r·t ... r·t + t − 1 of those this process may
   * use, t = threadsPerDevice; ignored when they do not fit). Default true, as Open MPI binds the
   * ranks of a job that fits on the cores: unbound, two devices often end up time-sharing one core
   * and every exchange pays a context switch (bench/RESULTS.md: 1 KiB all-to-all ~9 µs unbound,
   * ~1 µs bound). Pass false (or set SWITCH_MESH_PIN=0) on a machine where other work keeps the
   * cores busy.
   */
  pinDevices?: boolean;
  /** After a device fails, how long the others get to report before they are killed (default 2000 ms). */
  graceMs?: number;
  /** Node options of the device processes (default: none). */
  execArgv?: string[];
  /**
   * Where the devices run: 'shared-memory' (default; processes on this host over one arena) or
   * 'mpi' (ranks started by `mpirun` over an MPI library, on one host or many: see `mpi`).
   * The program, the Device API and the results are the same.
   */
  backend?: 'shared-memory' | 'mpi';
  /** Options of the MPI backend. */
  mpi?: MpiLaunchOptions;
}

/** The program's default export: runs once in every device process. */
export type DeviceProgram<A = unknown, R = unknown> = (device: import('./device.js').Device, args: A) => R | Promise<R>;

const DEFAULT_SLOT_BYTES = 2 * 1024 * 1024;
const DEFAULT_HEAP_BYTES = 256 * 1024 * 1024;
const AXIS_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const CHILD_ENTRY = fileURLToPath(new URL('./child.js', import.meta.url));
/** The descriptor number of the arena in every device process. */
const ARENA_FD = 4;

interface ChildReport {
  type: 'ready' | 'result' | 'error';
  value?: unknown;
  error?: ReportedError;
}

interface Running {
  children: ChildProcess[];
  abort(reason: Error): void;
}

const running = new Set<Running>();
let signalHandlersInstalled = false;

function onSignal(signal: NodeJS.Signals): void {
  for (const r of [...running]) r.abort(codedError('ERR_MESH_LAUNCH', `mesh launch interrupted by ${signal}`));
  removeSignalHandlers();
  // Nobody else listens: behave as if we had not been here (the default action ends the process).
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}
function onExit(): void {
  for (const r of running) for (const c of r.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}
function installSignalHandlers(): void {
  if (signalHandlersInstalled) return;
  signalHandlersInstalled = true;
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', onExit);
}
function removeSignalHandlers(): void {
  if (!signalHandlersInstalled) return;
  signalHandlersInstalled = false;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  process.off('exit', onExit);
}

/** CPUs this process may run on. */
function availableCpus(): number {
  return typeof availableParallelism === 'function' ? availableParallelism() : (native.cpuInfo().hardwareThreads as number);
}

/** Checks the options and returns the axes in mesh order. */
function checkOptions(options: LaunchOptions): { axes: [string, number][]; wire: Wire; timeoutMs: number; slotBytes: number; heapBytes: number; threads: number; graceMs: number } {
  if (options === null || typeof options !== 'object') throw typeError('ERR_SWITCH_ARG_TYPE', "launchMesh: 'options' must be an object");
  const { devices } = options;
  if (!Number.isInteger(devices) || devices < 1 || devices > 64)
    throw rangeError('ERR_SWITCH_OPTION', `launchMesh: option 'devices' must be an integer in [1, 64], got ${String(devices)}`);
  const axesOption = options.axes ?? { data: devices };
  if (axesOption === null || typeof axesOption !== 'object' || Array.isArray(axesOption))
    throw typeError('ERR_SWITCH_OPTION', "launchMesh: option 'axes' must be an object of axis sizes like { data: 2, model: 2 }");
  const axes = Object.entries(axesOption);
  if (axes.length < 1 || axes.length > 4)
    throw rangeError('ERR_SWITCH_OPTION', `launchMesh: option 'axes' must name 1 to 4 axes, got ${axes.length}`);
  let product = 1;
  for (const [name, size] of axes) {
    if (!AXIS_NAME.test(name))
      throw rangeError('ERR_SWITCH_OPTION', `launchMesh: axis name ${JSON.stringify(name)} must be an identifier`);
    if (!Number.isInteger(size) || size < 1)
      throw rangeError('ERR_SWITCH_OPTION', `launchMesh: axis '${name}' must have a positive integer size, got ${String(size)}`);
    product *= size;
  }
  if (product !== devices)
    throw rangeError('ERR_SWITCH_OPTION', `launchMesh: the axis sizes (${axes.map(([n, s]) => `${n}: ${s}`).join(', ')}) multiply to ${product}, not to devices = ${devices}`);
  const wire = options.wire ?? 'float32';
  if (wire !== 'float32' && wire !== 'bf16')
    throw rangeError('ERR_SWITCH_OPTION', `launchMesh: option 'wire' must be 'float32' or 'bf16', got ${JSON.stringify(wire)}`);
  const timeoutMs = options.timeoutMs ?? 60_000;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1)
    throw rangeError('ERR_SWITCH_OPTION', `launchMesh: option 'timeoutMs' must be a positive integer, got ${String(timeoutMs)}`);
  const slotBytes = options.slotBytes ?? DEFAULT_SLOT_BYTES;
  if (!Number.isInteger(slotBytes) || slotBytes < 65536 || slotBytes > 2 ** 30 || slotBytes % 4096 !== 0)
    throw rangeError('ERR_SWITCH_OPTION', `launchMesh: option 'slotBytes' must be a multiple of 4096 in [65536, 2^30], got ${String(slotBytes)}`);
  const heapBytes = options.heapBytes ?? DEFAULT_HEAP_BYTES;
  if (!Number.isInteger(heapBytes) || heapBytes < 0 || heapBytes > 2 ** 34 || heapBytes % 4096 !== 0)
    throw rangeError('ERR_SWITCH_OPTION', `launchMesh: option 'heapBytes' must be a multiple of 4096 in [0, 2^34], got ${String(heapBytes)}`);
  const cores = native.cpuInfo().hardwareThreads as number;
  const threads = options.threadsPerDevice ?? Math.max(1, Math.floor(cores / devices));
  if (!Number.isInteger(threads) || threads < 1 || threads > 256)
    throw rangeError('ERR_SWITCH_OPTION', `launchMesh: option 'threadsPerDevice' must be an integer in [1, 256], got ${String(threads)}`);
  const graceMs = options.graceMs ?? 2000;
  if (!Number.isFinite(graceMs) || graceMs < 0)
    throw rangeError('ERR_SWITCH_OPTION', `launchMesh: option 'graceMs' must be a non-negative number, got ${String(graceMs)}`);
  return { axes, wire, timeoutMs, slotBytes, heapBytes, threads, graceMs };
}

function programHref(programUrl: string | URL): string {
  if (programUrl instanceof URL) return programUrl.href;
  if (typeof programUrl !== 'string' || programUrl.length === 0)
    throw typeError('ERR_SWITCH_ARG_TYPE', "launchMesh: 'programUrl' must be a URL (or a path) of an ES module");
  if (/^[a-z][a-z0-9+.-]*:/i.test(programUrl) && !/^[a-z]:[\\/]/i.test(programUrl)) return programUrl;
  return pathToFileURL(programUrl).href;
}

function lostError(rank: number, code: number | null, signal: NodeJS.Signals | null): CodedError {
  const how = signal ? `killed by ${signal}` : `exited with code ${code} before returning`;
  return Object.assign(codedError('ERR_MESH_PEER_LOST', `mesh: device rank ${rank} was lost (${how})`), { rank });
}

/**
 * Starts `devices` processes that each import `programUrl` and call its default export
 * `(device, args)`; resolves to their return values in rank order.
 */
export async function launchMesh<R = unknown>(programUrl: string | URL, options: LaunchOptions): Promise<R[]> {
  const href = programHref(programUrl);
  const { axes, wire, timeoutMs, slotBytes, heapBytes, threads, graceMs } = checkOptions(options);
  if (href.startsWith('file:') && !existsSync(fileURLToPath(href)))
    throw typeError('ERR_MESH_LAUNCH', `launchMesh: the program ${href} does not exist`);
  try {
    structuredClone(options.args);
  } catch (e) {
    throw typeError('ERR_SWITCH_ARG_TYPE', `launchMesh: option 'args' must be structured-clonable: ${(e as Error).message}`);
  }
  const backend = options.backend ?? 'shared-memory';
  if (backend !== 'shared-memory' && backend !== 'mpi')
    throw rangeError('ERR_SWITCH_OPTION', `launchMesh: option 'backend' must be 'shared-memory' or 'mpi', got ${JSON.stringify(backend)}`);
  const devices = options.devices;
  if (options.pinDevices !== undefined && typeof options.pinDevices !== 'boolean')
    throw typeError('ERR_SWITCH_OPTION', `launchMesh: option 'pinDevices' must be a boolean, got ${String(options.pinDevices)}`);
  // SWITCH_MESH_PIN=0 changes the default (for machines shared with other work).
  const pin = (options.pinDevices ?? process.env.SWITCH_MESH_PIN !== '0') && devices * threads <= availableCpus();
  if (backend === 'mpi') return launchOverMpi<R>(href, options, { axes, wire, timeoutMs, threads, pin });
  const created = native.meshCreateArena(axes.map(([, s]) => s), slotBytes, heapBytes) as { fd: number; arena: unknown };
  const arena = created.arena;

  return new Promise<R[]>((resolve, reject) => {
    const children: ChildProcess[] = [];
    const results: unknown[] = new Array(devices);
    const hasResult = new Array<boolean>(devices).fill(false);
    const exited = new Array<boolean>(devices).fill(false);
    const errors = new Map<number, Error>();
    let firstFailure: Error | undefined;
    let abortReason: Error | undefined;
    let graceTimer: NodeJS.Timeout | undefined;
    let settled = false;

    const killAll = () => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    };
    const settle = () => {
      if (settled || exited.some((e) => !e)) return;
      settled = true;
      if (graceTimer) clearTimeout(graceTimer);
      const lost = native.meshArenaLostRank(arena) as number;
      native.meshArenaClose(arena);
      running.delete(state);
      if (running.size === 0) removeSignalHandlers();
      if (abortReason) return reject(abortReason);
      if (firstFailure) {
        // The first rank marked lost in the arena is the cause; the others' errors are its echoes.
        return reject(errors.get(lost) ?? firstFailure);
      }
      resolve(results as R[]);
    };
    const fail = (rank: number, error: Error) => {
      if (!errors.has(rank)) errors.set(rank, error);
      native.meshArenaMarkLost(arena, rank);
      if (firstFailure) return;
      firstFailure = error;
      graceTimer = setTimeout(killAll, graceMs);
    };
    const state: Running = {
      children,
      abort(reason: Error) {
        abortReason ??= reason;
        killAll();
      },
    };
    running.add(state);
    installSignalHandlers();

    const config = (rank: number): DeviceConfig & Record<string, unknown> => ({
      rank, axes, wire, timeoutMs, programUrl: href, parentPid: process.pid, fd: ARENA_FD, threads, pin,
      oversubscribed: devices * threads > availableCpus(),
      crossMemoryProbe: native.meshCrossMemoryProbe() as number,
    });
    try {
      for (let rank = 0; rank < devices; rank++) {
        const child = fork(CHILD_ENTRY, [], {
          stdio: ['inherit', 'inherit', 'inherit', 'ipc', created.fd],
          serialization: 'advanced',
          execArgv: options.execArgv ?? [],
          env: { ...process.env, SWITCH_MESH_DEVICE: JSON.stringify(config(rank)) },
        });
        children.push(child);
        child.on('message', (m: ChildReport) => {
          if (m?.type === 'ready') {
            const cannot = (e: Error) => fail(rank, Object.assign(codedError('ERR_MESH_LAUNCH', `mesh: cannot send the args to device rank ${rank}: ${e.message}`), { rank }));
            try {
              child.send({ type: 'start', args: options.args }, (e) => e && cannot(e));
            } catch (e) {
              cannot(e as Error);
            }
          } else if (m?.type === 'result') {
            results[rank] = m.value;
            hasResult[rank] = true;
          } else if (m?.type === 'error' && m.error) {
            fail(rank, deviceError(rank, m.error));
          }
        });
        child.on('error', (e) => fail(rank, Object.assign(codedError('ERR_MESH_LAUNCH', `mesh: device rank ${rank} could not start: ${e.message}`), { rank })));
        // 'close', not 'exit': it comes after every message of the device has been delivered
        // (a device sends its result and exits at once; 'exit' can overtake the result).
        child.on('close', (code, signal) => {
          exited[rank] = true;
          if (!hasResult[rank] && !errors.has(rank)) fail(rank, lostError(rank, code, signal));
          else if (hasResult[rank]) native.meshArenaMarkFinished(arena, rank);
          settle();
        });
      }
    } catch (e) {
      state.abort(codedError('ERR_MESH_LAUNCH', `mesh: could not start the devices: ${(e as Error).message}`));
      for (let r = children.length; r < devices; r++) exited[r] = true;
      if (children.length === 0) settle();
    } finally {
      native.meshArenaCloseFd(arena);   // the devices hold their own copies
    }
  });
}

/**
 * A mesh of one device inside this process (no child process): every group has one member, so
 * collectives only apply the wire (bf16 rounding) to this device's own data. For single-device
 * runs of code written for a mesh, and tests. The arena is freed when the Device is collected.
 */
export function singleDevice(options: { wire?: Wire; axes?: Record<string, number>; timeoutMs?: number } = {}): Device {
  const checked = checkOptions({ devices: 1, axes: options.axes, wire: options.wire, timeoutMs: options.timeoutMs });
  const created = native.meshCreateArena(checked.axes.map(([, s]) => s), checked.slotBytes, checked.heapBytes) as { fd: number; arena: unknown };
  const handle = native.meshAttach(created.fd, 0, checked.axes.map(([name]) => name), checked.timeoutMs, 0, 0);
  native.meshArenaCloseFd(created.arena);
  // The device's own mapping keeps the memory; the launcher-side handle can go.
  native.meshArenaClose(created.arena);
  return new Device(handle, { rank: 0, axes: checked.axes, wire: checked.wire, timeoutMs: checked.timeoutMs });
}
