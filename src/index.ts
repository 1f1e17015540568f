// switch-transformer: the package root.
import { native, type CpuInfo } from './native.js';

export type { CpuInfo } from './native.js';
export * from './errors.js';

/** Which instruction set the native kernels run, and on how many threads. */
export function cpuInfo(): CpuInfo {
  return native.cpuInfo();
}

/** Sets the number of threads of the native kernels (1 ... 256). Results do not depend on it. */
export function setNumThreads(n: number): void {
  native.setNumThreads(n);
}

/** Forces an instruction set for the native kernels ('portable' or 'avx2'), e.g. to compare paths. */
export function setIsa(isa: 'avx2' | 'portable'): void {
  native.setIsa(isa);
}

export { matmul, groupedMatmul, groupedMatmulWeightGrad } from './matmul.js';
export type { MatmulOptions, GroupedMatmulOptions, GroupedMatmulWeightGradOptions } from './matmul.js';
export { toBfloat16, fromBfloat16, roundBfloat16 } from './bf16.js';
// The device mesh: processes as cores over shared memory (SPEC §3).
export { launchMesh, singleDevice, Device } from './mesh/index.js';
export type { LaunchOptions, DeviceProgram, Wire, CollectiveOptions, BroadcastOptions, MeshStats } from './mesh/index.js';
export { SwitchFeedForward } from './layers/switch.js';
export type {
  SwitchFeedForwardOptions, SwitchFeedForwardOutput, SwitchFeedForwardBackward, SwitchGrads, Precision, Activation,
  SecondExpertPolicy,
} from './layers/switch.js';
export { DenseFeedForward } from './layers/dense.js';
export type { DenseFeedForwardOptions, DenseGrads } from './layers/dense.js';
export type {
  FeedForwardLayer, FeedForwardOutput, FeedForwardBackward, ForwardOptions, RoutingStats,
} from './layers/types.js';
