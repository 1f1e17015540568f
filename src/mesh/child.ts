// The entry of a device process: attach the arena inherited from the launcher, wait for the
// program's arguments, run the program's default export, report its value or its error.
import { native } from '../native.js';
import { Device, type DeviceConfig } from './device.js';
import { describeError } from './report.js';

interface ChildConfig extends DeviceConfig {
  programUrl: string;
  parentPid: number;
  fd: number;
  threads: number;
  pin: boolean;
  /** More devices × threads than CPUs: devices share cores. */
  oversubscribed?: boolean;
  /** Address of the launcher's probe word for cross-memory attach (0: off). */
  crossMemoryProbe: number;
}

function send(message: unknown): Promise<void> {
  return new Promise((resolve, reject) => {
    process.send!(message, undefined, {}, (e) => (e ? reject(e) : resolve()));
  });
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env.SWITCH_MESH_DEVICE ?? 'null') as ChildConfig | null;
  if (!config || !process.send) {
    process.stderr.write('switch-transformer: the mesh device entry runs only under launchMesh\n');
    process.exit(2);
  }
  delete process.env.SWITCH_MESH_DEVICE;   // a nested launch starts from a clean slate
  // SWITCH_MESH_CROSS_MEMORY=0 turns the single-copy path of plain arrays off (every chunk is then
  // staged through the arena, as on systems that forbid reading a peer's memory).
  const probe = process.env.SWITCH_MESH_CROSS_MEMORY === '0' ? 0 : config.crossMemoryProbe ?? 0;
  const handle = native.meshAttach(config.fd, config.rank, config.axes.map(([name]) => name), config.timeoutMs, config.parentPid, probe);
  if (process.env.SWITCH_MESH_CROSS_MEMORY_BYTES !== undefined)
    native.meshSetCrossMemoryMinBytes(handle, Number(process.env.SWITCH_MESH_CROSS_MEMORY_BYTES));
  if (config.pin) native.meshPinCpus(config.rank * config.threads, config.threads);
  native.setNumThreads(config.threads);
  // How a waiting device waits: busy-polling first, then polling with sched_yield for up to a
  // millisecond (the core goes at once to whoever can use it, often the awaited peer), then
  // sleeping on the futex. Measured on 2 shared cores (bench/RESULTS.md): long busy spins collapse
  // when devices share cores, and sleeping early pays a wake-up of tens of µs on every round. A
  // device bound to its own core polls longer (50 µs, not 1): a yield there only hands the core to
  // some other program. With more devices than cores it does not busy-poll at all: the peer it
  // waits for is often the one descheduled on its own core, and every spin delays it (RESULTS.md,
  // "Wait policy"). Environment overrides for tuning.
  const spin = process.env.SWITCH_MESH_SPIN_US ?? (config.pin ? '50' : config.oversubscribed ? '0' : '1');
  const yieldUs = process.env.SWITCH_MESH_YIELD_US ?? '1000';
  native.meshSetWaitPolicy(handle, Number(spin), Number(yieldUs));
  // Ask for the arguments only now that a listener is in place (nothing sent earlier can be missed).
  const started = new Promise<unknown>((resolve) => {
    process.once('message', (m: { type: string; args: unknown }) => resolve(m.args));
  });
  await send({ type: 'ready' });
  const args = await started;
  try {
    const mod = (await import(config.programUrl)) as { default?: unknown };
    if (typeof mod.default !== 'function')
      throw Object.assign(new TypeError(`the mesh program ${config.programUrl} has no default export function (device, args)`), { code: 'ERR_MESH_LAUNCH' });
    const device = new Device(handle, config);
    const value = await (mod.default as (d: Device, a: unknown) => unknown)(device, args);
    native.meshDeviceMark(handle, 'finished');
    try {
      await send({ type: 'result', value });
    } catch (e) {
      throw Object.assign(new TypeError(`the program's return value cannot be sent to the launcher: ${(e as Error).message}`), { code: 'ERR_MESH_LAUNCH' });
    }
    process.exit(0);
  } catch (error) {
    // Peers blocked on this device learn at once that it will not come.
    native.meshDeviceMark(handle, 'lost');
    try {
      await send({ type: 'error', error: describeError(error) });
    } finally {
      process.exit(1);
    }
  }
}

void main();
