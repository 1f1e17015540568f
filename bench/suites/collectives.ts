// Suite `collectives`: all-to-all and all-reduce of the device mesh, 2 and 4 devices, 1 KiB to
// 16 MiB per peer (all-to-all) or per buffer (all-reduce), float32 and bf16 wire, timed inside the
// device processes (a barrier, then one collective, per repeat; each device's median, the slowest
// device reported). Payload GB/s count float32 bytes whatever the wire: all-to-all (P − 1) × bytes
// per peer sent by each device; all-reduce 2 (P − 1) / P × bytes (the bus bandwidth of a
// reduce-scatter + all-gather). All-to-all rows, on the mesh's defaults (devices bound to cores
// where they fit, as Open MPI binds its ranks): `float32` / `bf16` (plain Float32Arrays: read in
// place from the shared heap once their pages moved there, else by cross-memory attach (float32)
// or staged), `heap` (send buffer from `device.alloc`), `staged` (SWITCH_MESH_ADOPT_BYTES=0 and
// SWITCH_MESH_CROSS_MEMORY=0: every chunk through the arena's slots, two copies, the bf16 wire
// converting on both copies), `unbound` (pinDevices: false), `native loop` (the same call timed in
// a loop inside C++, Device.benchAllToAll: like for like with the Open MPI program, which times
// itself in C), `bf16 rounding alone` (no collective: each device's own share of a bf16 wire's
// conversions, the floor of a bf16 all-to-all on one host, against the float32 all-to-all in its
// timeVsFloat32). With `--compare mpi`, `over MPI` rows run the same device program on the MPI
// transport (float32 and bf16 wire: what the JS binding and the wire add to Open MPI, like for like
// with the JS-call rows; the bf16 wire there moves 16-bit words). `--compare mpi` times Open MPI's
// MPI_Alltoall / MPI_Allreduce (bench/baselines, built with mpicc, shared-memory transport) in
// the same rounds, and each mesh row gets `speedupVsMpi`. The `latency:` rows time the 1 KiB
// all-to-all alone over many launches (see latencyLaunches). The machine is shared: every measurement
// runs once per round, rounds interleave the variants and the baseline, and rows report the
// median over rounds.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchMesh, type Wire } from '../../src/index.js';
import type { BenchRecord, Suite } from '../suite.js';
import { median } from '../measure.js';
import type { CollectivesBenchArgs, CollectivesBenchResult } from './collectives-program.js';

const PROGRAM = new URL('./collectives-program.js', import.meta.url);
const KiB = 1024;
const MiB = 1024 * 1024;

type Op = 'allToAll' | 'allReduce';
interface Variant {
  op: Op; wire: Wire; heap: boolean; label: string; pin?: boolean; env?: Record<string, string>; staged?: boolean; backend?: 'mpi';
  /** Timed in a loop inside native code (like the Open MPI baseline), not per JavaScript call. */
  nativeLoop?: boolean;
  /** No collective: each device's own bf16 rounding and widening of the payload (the wire's floor). */
  roundingOnly?: boolean;
}

const STAGED = { SWITCH_MESH_ADOPT_BYTES: '0', SWITCH_MESH_CROSS_MEMORY: '0' };
const VARIANTS: Variant[] = [
  { op: 'allToAll', wire: 'float32', heap: false, label: 'allToAll float32' },
  // The same all-to-all timed the way Open MPI's is: the loop and the clock inside C++.
  { op: 'allToAll', wire: 'float32', heap: false, nativeLoop: true, label: 'allToAll float32 native loop' },
  { op: 'allToAll', wire: 'float32', heap: true, label: 'allToAll float32 heap' },
  { op: 'allToAll', wire: 'float32', heap: false, env: STAGED, staged: true, label: 'allToAll float32 staged' },
  { op: 'allToAll', wire: 'bf16', heap: false, label: 'allToAll bf16' },
  { op: 'allToAll', wire: 'bf16', heap: true, label: 'allToAll bf16 heap' },
  { op: 'allToAll', wire: 'bf16', heap: false, env: STAGED, staged: true, label: 'allToAll bf16 staged' },
  // What a bf16 wire cannot avoid on one host, with no peers: every device rounds its outgoing
  // chunks to 16-bit words and widens as many incoming ones (its own chunk: one rounding copy).
  { op: 'allToAll', wire: 'bf16', heap: false, roundingOnly: true, label: 'bf16 rounding alone' },
  { op: 'allToAll', wire: 'float32', heap: false, pin: false, label: 'allToAll float32 unbound' },
  { op: 'allReduce', wire: 'float32', heap: false, label: 'allReduce float32' },
  { op: 'allReduce', wire: 'bf16', heap: false, label: 'allReduce bf16' },
  // The same programs on the MPI transport (with --compare mpi): what the mesh adds to Open MPI.
  { op: 'allToAll', wire: 'float32', heap: false, backend: 'mpi', label: 'allToAll float32 over MPI' },
  // The bf16 wire where the wire is a transport: MPI moves the 16-bit words, half the bytes.
  { op: 'allToAll', wire: 'bf16', heap: false, backend: 'mpi', label: 'allToAll bf16 over MPI' },
  { op: 'allReduce', wire: 'float32', heap: false, backend: 'mpi', label: 'allReduce float32 over MPI' },
];

function sizeName(bytes: number): string {
  return bytes >= MiB ? `${bytes / MiB} MiB` : `${bytes / KiB} KiB`;
}

/** The package root (the folder with bench/baselines), above this module in bench/ or dist/bench/. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'bench', 'baselines'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('collectives: cannot find bench/baselines above the suite');
}

function which(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Builds the MPI baseline (once per source change) and returns its path, or undefined without mpicc. */
function buildMpiBaseline(log: (m: string) => void): string | undefined {
  if (!which('mpicc') || !which('mpirun')) {
    log('collectives: --compare mpi needs mpicc and mpirun (Debian openmpi-bin, libopenmpi-dev); skipped');
    return undefined;
  }
  const source = join(packageRoot(), 'bench', 'baselines', 'mpi_alltoall.c');
  const outDir = join(tmpdir(), 'switch-bench-mpi');
  mkdirSync(outDir, { recursive: true });
  const binary = join(outDir, 'mpi_alltoall');
  if (!existsSync(binary) || statSync(binary).mtimeMs < statSync(source).mtimeMs) {
    log(`collectives: building ${binary}`);
    execFileSync('mpicc', ['-O2', '-o', binary, source], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  return binary;
}

function runMpi(binary: string, devices: number, op: Op, sizes: number[], warmup: Warmup): Map<number, number> {
  // The same untimed warm-up budget as the mesh's device program (collectives-program.ts).
  const out = execFileSync('mpirun', ['--allow-run-as-root', '--oversubscribe', '-np', String(devices),
    '--mca', 'btl', 'self,vader', binary, op === 'allToAll' ? 'alltoall' : 'allreduce', `--warmup=${warmup.seconds}`,
    `--max-warmup=${warmup.maxCalls}`, ...sizes.map(String)],
  { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const seconds = new Map<number, number>();
  for (const line of out.split('\n')) {
    if (!line.startsWith('{')) continue;
    const row = JSON.parse(line) as { bytes: number; seconds: number };
    seconds.set(row.bytes, row.seconds);
  }
  return seconds;
}

/** Seconds of timed calls per size, and of untimed warm-up calls before them (mesh and Open MPI alike). */
const budgetSeconds = (quick: boolean): number => (quick ? 0.05 : 0.25);
/** Untimed calls before a size's timed ones, mesh and Open MPI alike: for `seconds`, in at most `maxCalls`. */
interface Warmup { seconds: number; maxCalls: number }
const warmupFor = (quick: boolean): Warmup => ({ seconds: budgetSeconds(quick), maxCalls: 20_000 });

async function runMesh(devices: number, v: Variant, sizes: number[], quick: boolean,
                       warmup = warmupFor(quick)): Promise<Map<number, number>> {
  const largest = Math.max(...sizes) * (v.op === 'allToAll' ? devices : 1);
  const args: CollectivesBenchArgs = {
    op: v.op, wire: v.wire, sizes, sendInHeap: v.heap, nativeLoop: v.nativeLoop, roundingOnly: v.roundingOnly,
    budgetSeconds: budgetSeconds(quick), minRepeats: quick ? 3 : 7, maxRepeats: quick ? 50 : 400,
    warmupSeconds: warmup.seconds, maxWarmups: warmup.maxCalls,
  };
  // The device processes take the environment when they are forked, inside launchMesh's call.
  const saved = { ...process.env };
  Object.assign(process.env, v.env ?? {});
  let launched: Promise<CollectivesBenchResult[]>;
  try {
    launched = launchMesh<CollectivesBenchResult>(PROGRAM, {
      devices, wire: v.wire, timeoutMs: 120_000, threadsPerDevice: 1, args, pinDevices: v.pin, backend: v.backend,
      // Send buffers are allocated per size (never freed) from the heap, or moved there (plain ones).
      heapBytes: Math.ceil((2 * largest + MiB) / 4096) * 4096,
    });
  } finally {
    for (const k of Object.keys(v.env ?? {})) if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k];
  }
  const results = await launched;
  const seconds = new Map<number, number>();
  sizes.forEach((bytes, i) => seconds.set(bytes, Math.max(...results.map((r) => median(r.times[i])))));
  return seconds;
}

function payloadBytes(op: Op, devices: number, bytes: number): number {
  return op === 'allToAll' ? (devices - 1) * bytes : (2 * (devices - 1) / devices) * bytes;
}

export const collectivesSuite: Suite = {
  name: 'collectives',
  description: 'mesh all-to-all and all-reduce, 2 and 4 devices, 1 KiB-16 MiB, float32/bf16 wire (--compare mpi: Open MPI)',
  async run(ctx) {
    const sizes = ctx.quick ? [KiB, 256 * KiB, 4 * MiB] : [KiB, 4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, MiB, 4 * MiB, 16 * MiB];
    const rounds = ctx.quick ? 1 : 3;
    const mpi = ctx.compare.includes('mpi') ? buildMpiBaseline(ctx.log) : undefined;
    const records: BenchRecord[] = [];
    for (const devices of [2, 4]) {
      // Unbound rows only where binding applies (the devices fit on the cores).
      const variants = VARIANTS.filter((v) => (v.pin !== false || devices <= availableParallelism()) && (v.backend !== 'mpi' || mpi !== undefined));
      // key → bytes → seconds of each round
      const measured = new Map<string, Map<number, number[]>>();
      const keep = (key: string, seconds: Map<number, number>) => {
        const byKey = measured.get(key) ?? new Map<number, number[]>();
        for (const [bytes, s] of seconds) byKey.set(bytes, [...(byKey.get(bytes) ?? []), s]);
        measured.set(key, byKey);
      };
      for (let round = 0; round < rounds; round++) {
        for (const v of variants) {
          ctx.log(`collectives: ${devices} devices, ${v.label}, round ${round + 1}/${rounds}`);
          keep(v.label, await runMesh(devices, v, sizes, ctx.quick));
        }
        if (mpi)
          for (const op of ['allToAll', 'allReduce'] as const) {
            ctx.log(`collectives: ${devices} ranks, Open MPI ${op}, round ${round + 1}/${rounds}`);
            keep(`mpi ${op}`, runMpi(mpi, devices, op, sizes, warmupFor(ctx.quick)));
          }
      }
      const at = (key: string, bytes: number): number | undefined => {
        const s = measured.get(key)?.get(bytes);
        return s && s.length > 0 ? median(s) : undefined;
      };
      for (const bytes of sizes) {
        const shape = `P=${devices} ${sizeName(bytes)}${' per peer'}`;
        for (const v of variants) {
          const seconds = at(v.label, bytes)!;
          const record: BenchRecord = {
            suite: 'collectives', name: `mesh ${v.label}`, shape: v.op === 'allToAll' ? shape : `P=${devices} ${sizeName(bytes)} buffer`,
            threads: 1, seconds, gbps: payloadBytes(v.op, devices, bytes) / seconds / 1e9,
            devices, bytes, op: v.op, wire: v.wire, sendInHeap: v.heap, microseconds: seconds * 1e6,
          };
          const baseline = at(`mpi ${v.op}`, bytes);
          if (baseline !== undefined) record.speedupVsMpi = baseline / seconds;
          if (v.op === 'allToAll' && v.wire === 'bf16') {
            // Against the float32 wire on the same path (plain, heap, staged).
            const twin = v.roundingOnly ? 'allToAll float32' : v.label.replace('bf16', 'float32');
            record.timeVsFloat32 = seconds / at(twin, bytes)!;
            if (!v.staged && !v.backend && !v.roundingOnly) record.timeVsFloat32Staged = seconds / at('allToAll float32 staged', bytes)!;
          }
          if (v.op === 'allReduce' && v.wire === 'bf16') record.timeVsFloat32 = seconds / at('allReduce float32', bytes)!;
          records.push(record);
        }
        for (const op of ['allToAll', 'allReduce'] as const) {
          const seconds = at(`mpi ${op}`, bytes);
          if (seconds === undefined) continue;
          records.push({
            suite: 'collectives', name: `Open MPI ${op === 'allToAll' ? 'MPI_Alltoall' : 'MPI_Allreduce'}`,
            shape: op === 'allToAll' ? shape : `P=${devices} ${sizeName(bytes)} buffer`, threads: 1, seconds,
            gbps: payloadBytes(op, devices, bytes) / seconds / 1e9, devices, bytes, op, wire: 'float32', microseconds: seconds * 1e6,
          });
        }
      }
      records.push(...await latencyLaunches(devices, mpi, ctx.quick, ctx.log));
    }
    return records;
  },
};

/**
 * The 1 KiB all-to-all over many short launches, each timing that one size: the float32 call from
 * JavaScript, the native loop and Open MPI, interleaved. At this size the time depends on the
 * launch (4 devices on 2 cores read 4.3 µs in one, 6.7–9 µs in the next, bound to cores or not:
 * how the host schedules them), so the rows report the median of the launches' times, with the fastest and slowest. Each launch
 * warms up for one second whatever the count of calls, on both sides: 4 devices on 2 cores take
 * ~0.3 s after their start to settle (in one launch 6.5–12 µs a call, then 4.2 µs), and the
 * suite's usual warm-up, 0.25 s in at most 20,000 calls, ends inside that.
 */
async function latencyLaunches(devices: number, mpi: string | undefined, quick: boolean,
                               log: (m: string) => void): Promise<BenchRecord[]> {
  const launches = quick ? 2 : 9;
  const warmup: Warmup = quick ? warmupFor(quick) : { seconds: 1, maxCalls: 1e7 };
  const rows: [label: string, variant: Variant | undefined][] = [
    ['allToAll float32', VARIANTS.find((v) => v.label === 'allToAll float32')],
    ['allToAll float32 native loop', VARIANTS.find((v) => v.label === 'allToAll float32 native loop')],
    ...(mpi ? [['Open MPI MPI_Alltoall', undefined] as [string, undefined]] : []),
  ];
  const times = new Map<string, number[]>(rows.map(([label]) => [label, []]));
  for (let k = 0; k < launches; k++) {
    log(`collectives: ${devices} devices, 1 KiB latency, launch ${k + 1}/${launches}`);
    for (const [label, v] of rows) {
      const seconds = v ? await runMesh(devices, v, [KiB], quick, warmup) : runMpi(mpi!, devices, 'allToAll', [KiB], warmup);
      times.get(label)!.push(seconds.get(KiB)!);
    }
  }
  const mpiMedian = mpi ? median(times.get('Open MPI MPI_Alltoall')!) : undefined;
  return rows.map(([label, v]) => {
    const all = times.get(label)!;
    const seconds = median(all);
    const record: BenchRecord = {
      suite: 'collectives', name: `latency: ${v ? `mesh ${label}` : label}`, shape: `P=${devices} 1 KiB per peer, ${launches} launches`,
      threads: 1, seconds, devices, bytes: KiB, op: 'allToAll', wire: 'float32', microseconds: seconds * 1e6,
      fastestMicroseconds: Math.min(...all) * 1e6, slowestMicroseconds: Math.max(...all) * 1e6, launches,
    };
    if (v && mpiMedian !== undefined) record.speedupVsMpi = mpiMedian / seconds;
    return record;
  });
}
