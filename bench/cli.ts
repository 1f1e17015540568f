#!/usr/bin/env node
// switch-bench: runs benchmark suites and prints a table (stdout), progress on stderr.
//   switch-bench [suite ...] [--json] [--threads 1,2] [--quick] [--compare blas,torch,mpi] [--list]
// With no suite named, every suite runs. Times are medians over repeats, measured in C++.
import { cpuInfo } from '../src/index.js';
import { measureMachinePeak } from './peak.js';
import type { BenchContext, BenchRecord, MachinePeak, Suite } from './suite.js';
import { suites } from './suites/index.js';

const USAGE = `usage: switch-bench [suite ...] [--json] [--threads 1,2] [--quick] [--compare blas,torch,mpi] [--list]
  suite           one or more of the suites below (default: all)
  --json          print one JSON array of records on stdout instead of the table
  --threads LIST  thread counts to run at, comma-separated (default: 1 and all cores)
  --quick         fewer sizes and repeats (a smoke run; the numbers are not the benchmark)
  --compare X,Y   also time baselines where a suite has them, in the same run: blas (the system's
                  cblas_sgemm: gemm), torch (PyTorch: layer, experts), mpi (Open MPI: collectives)
  --list          list the suites and exit`;

interface Options {
  suites: Suite[];
  json: boolean;
  threads: number[];
  quick: boolean;
  compare: string[];
  list: boolean;
}

class UsageError extends Error {}

function parseThreads(text: string | undefined): number[] {
  if (text === undefined) throw new UsageError('--threads needs a list, e.g. --threads 1,2');
  const counts = text.split(',').map((s) => Number(s.trim()));
  if (counts.length === 0 || counts.some((n) => !Number.isInteger(n) || n < 1 || n > 256))
    throw new UsageError(`--threads must list whole numbers in [1, 256], got '${text}'`);
  return [...new Set(counts)];
}

export function parseArgs(argv: string[]): Options {
  const hardware = cpuInfo().hardwareThreads;
  const options: Options = { suites: [], json: false, threads: [...new Set([1, hardware])], quick: false, compare: [], list: false };
  const named: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = () => inline ?? argv[++i];
    switch (flag) {
      case '--json': options.json = true; break;
      case '--quick': options.quick = true; break;
      case '--list': options.list = true; break;
      case '--threads': options.threads = parseThreads(value()); break;
      case '--compare': {
        const v = value();
        if (!v) throw new UsageError('--compare needs a baseline name, e.g. --compare blas');
        options.compare.push(...v.split(',').filter(Boolean));
        break;
      }
      case '--help': case '-h': throw new UsageError('');
      default:
        if (arg.startsWith('-')) throw new UsageError(`unknown option '${arg}'`);
        named.push(arg);
    }
  }
  for (const name of named) {
    const suite = suites.find((s) => s.name === name);
    if (!suite) throw new UsageError(`unknown suite '${name}' (suites: ${suites.map((s) => s.name).join(', ')})`);
    if (!options.suites.includes(suite)) options.suites.push(suite);
  }
  if (options.suites.length === 0) options.suites = [...suites];
  return options;
}

// ---- the table ----

const FIXED = new Set(['suite', 'name', 'shape', 'threads', 'seconds', 'gflops', 'gbps', 'percentOfPeak']);

function formatSeconds(s: number): string {
  if (s < 1e-3) return `${(s * 1e6).toFixed(1)} us`;
  if (s < 1) return `${(s * 1e3).toFixed(2)} ms`;
  return `${s.toFixed(3)} s`;
}

function formatExtra(value: unknown): string {
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : value.toFixed(2);
  return String(value);
}

export function formatTable(records: BenchRecord[]): string {
  const extras: string[] = [];
  // Scalar extras become columns; structured ones (per-step breakdowns) are in --json only.
  for (const r of records) {
    for (const k of Object.keys(r)) {
      if (!FIXED.has(k) && r[k] !== undefined && (typeof r[k] !== 'object' || r[k] === null) && !extras.includes(k)) extras.push(k);
    }
  }
  const header = ['suite', 'name', 'shape', 'threads', 'median', 'rate', '% of peak', ...extras];
  const rows = records.map((r) => [
    r.suite, r.name, r.shape, String(r.threads), formatSeconds(r.seconds),
    r.gflops !== undefined ? `${r.gflops.toFixed(1)} GFLOP/s` : r.gbps !== undefined ? `${r.gbps.toFixed(2)} GB/s` : '',
    r.percentOfPeak !== undefined ? `${r.percentOfPeak.toFixed(1)}%` : '',
    ...extras.map((k) => (r[k] === undefined ? '' : formatExtra(r[k]))),
  ]);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c].length)));
  const line = (cells: string[]) => cells.map((cell, c) => (c >= 3 && c <= 6 ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

// ---- running ----

export async function runSuites(options: Options, log: (message: string) => void): Promise<BenchRecord[]> {
  let peak: MachinePeak | undefined;
  const ctx: BenchContext = {
    threads: options.threads,
    quick: options.quick,
    compare: options.compare,
    log,
    async peak() {
      peak ??= measureMachinePeak(options.threads, options.quick, log);
      return peak;
    },
  };
  const records: BenchRecord[] = [];
  for (const suite of options.suites) {
    log(`suite ${suite.name}: ${suite.description}`);
    records.push(...(await suite.run(ctx)));
  }
  return records;
}

async function main(argv: string[]): Promise<number> {
  let options: Options;
  try {
    options = parseArgs(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    if (error.message) process.stderr.write(`switch-bench: ${error.message}\n`);
    process.stderr.write(`${USAGE}\n`);
    return error.message ? 2 : 0;
  }
  if (options.list) {
    const width = Math.max(...suites.map((s) => s.name.length));
    process.stdout.write(suites.map((s) => `${s.name.padEnd(width)}  ${s.description}`).join('\n') + '\n');
    return 0;
  }
  const info = cpuInfo();
  const log = (message: string) => process.stderr.write(`[switch-bench] ${message}\n`);
  log(`isa ${info.isa}, ${info.hardwareThreads} hardware threads; threads ${options.threads.join(',')}${options.quick ? ', quick' : ''}`);
  const records = await runSuites(options, log);
  if (options.json) {
    process.stdout.write(JSON.stringify(records) + '\n');
  } else {
    process.stdout.write(`switch-bench ${new Date().toISOString()}  isa ${info.isa}  threads ${options.threads.join(',')}\n`);
    process.stdout.write('% of peak: of the FMA peak (GFLOP/s rows) or of memcpy bandwidth (GB/s rows) measured in this run at the same thread count.\n');
    process.stdout.write('GB/s count (bytes read + bytes written) / 2, which for memcpy is the bytes copied.\n\n');
    process.stdout.write(formatTable(records) + '\n');
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (error) => {
    process.stderr.write(`switch-bench: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
