// The shape of a benchmark suite of `switch-bench`. Each suite lives in bench/suites/<name>.ts
// and is listed in bench/suites/index.ts.

/** One measured row; `--json` prints an array of these. */
export interface BenchRecord {
  suite: string;
  name: string;
  /** e.g. "1024x768x3072" or "T=2048 D=512 F=2048 E=8". */
  shape: string;
  threads: number;
  /** Median seconds of one run. */
  seconds: number;
  gflops?: number;
  gbps?: number;
  /** Percentage of the machine's measured limit (FMA peak or memcpy bandwidth) at this thread count. */
  percentOfPeak?: number;
  /** Anything else a suite reports (ratio to a baseline, tokens/s, ...). */
  [extra: string]: unknown;
}

/** The machine's measured limits, each the fastest of its repeats, from the `peak` suite (run first whenever a suite needs them). */
export interface MachinePeak {
  /** FMA peak GFLOP/s by thread count. */
  fmaGflops: Record<number, number>;
  /** memcpy bandwidth by thread count, in GB/s of bytes copied (each byte read once and written once). */
  memcpyGbps: Record<number, number>;
  /** The instruction set whose loop gave fmaGflops (the active one: 'avx2' FMA, or 'portable' SSE2 mul+add). */
  isa: 'avx2' | 'portable';
  /** Seconds of the fastest run of the measurements above (a limit: bench/peak.ts), by thread count. */
  fmaSeconds: Record<number, number>;
  memcpySeconds: Record<number, number>;
  /** The memcpy size measured. */
  memcpyBytes: number;
  /** The same copy with non-temporal stores (no read-for-ownership), same count as memcpyGbps. */
  streamCopyGbps: Record<number, number>;
  streamCopySeconds: Record<number, number>;
}

export interface BenchContext {
  /** Thread counts to run at: 1 and all cores by default. */
  threads: number[];
  /** `--quick`: fewer shapes and repeats (a smoke run). */
  quick: boolean;
  /** `--compare X` baselines asked for (e.g. 'blas'). */
  compare: string[];
  /** Measures the machine's limits once and caches them for the run. */
  peak(): Promise<MachinePeak>;
  /** Progress to stderr. */
  log(message: string): void;
}

export interface Suite {
  name: string;
  description: string;
  run(ctx: BenchContext): Promise<BenchRecord[]>;
}
