// The one place that loads the native addon: a prebuilt binary from prebuilds/ when one matches
// this platform, otherwise the source build in build/Release.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { existsSync } from 'node:fs';

const require = createRequire(import.meta.url);

/** Finds the package root (the folder with binding.gyp) above this module, in src/ or dist/src/. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'binding.gyp'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('switch-transformer: cannot find the package root (binding.gyp) to load the native addon');
}

/**
 * The kernels' instruction sets, each able to run the kernels of the ones before it: 'avx512' runs
 * its AVX-512 kernels (the grouped matmul's small-group tile) and the AVX2 ones everywhere else.
 */
export type Isa = 'portable' | 'avx2' | 'avx512';

export interface CpuInfo {
  /** The instruction set the kernels run now. */
  isa: Isa;
  /** The fastest instruction set this CPU and OS support. */
  bestIsa: Isa;
  /** Threads the native kernels use. */
  threads: number;
  hardwareThreads: number;
  /** avx512: AVX-512 F, VL, BW and DQ, with the OS saving the opmask and ZMM state. */
  features: { sse2: boolean; avx: boolean; avx2: boolean; fma: boolean; f16c: boolean; avx512: boolean };
}

/** The raw addon. Each capability adds its functions; the typed API wraps them in src/. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type NativeAddon = Record<string, any> & {
  cpuInfo(): CpuInfo;
  setIsa(isa: Isa): void;
  setNumThreads(n: number): void;
  numThreads(): number;
};

const loadBinding = require('node-gyp-build') as (dir: string) => NativeAddon;

export const native: NativeAddon = loadBinding(packageRoot());
