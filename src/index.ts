// switch-transformer: the package root.
import { native, type CpuInfo, type Isa } from './native.js';

export type { CpuInfo, Isa } from './native.js';
export * from './errors.js';

/** Which instruction set the native kernels run, and on how many threads. */
export function cpuInfo(): CpuInfo {
  return native.cpuInfo();
}

/** Sets the number of threads of the native kernels (1 ... 256). Results do not depend on it. */
export function setNumThreads(n: number): void {
  native.setNumThreads(n);
}

/** Forces an instruction set for the native kernels ('portable', 'avx2' or 'avx512'), e.g. to compare paths. */
export function setIsa(isa: Isa): void {
  native.setIsa(isa);
}

export { matmul, groupedMatmul, groupedMatmulWeightGrad } from './matmul.js';
export type { MatmulOptions, GroupedMatmulOptions, GroupedMatmulWeightGradOptions } from './matmul.js';
export { toBfloat16, fromBfloat16, roundBfloat16 } from './bf16.js';
// The device mesh: processes as cores over shared memory (SPEC §3).
export { launchMesh, singleDevice, Device } from './mesh/index.js';
export type { LaunchOptions, DeviceProgram, Wire, CollectiveOptions, BroadcastOptions, MeshStats, MpiLaunchOptions } from './mesh/index.js';
// The language model, its training and data (issue 5).
export * as modelKernels from './model/kernels.js';
export { SwitchTransformerLM, setDefaultFeedForwardFactory } from './model/model.js';
export type { Decoder, FeedForwardFactory, FeedForwardSpec, ForwardResult, GenerateOptions, ModelOptions, Parameter, SwitchLayerStats } from './model/model.js';
export { defaultModelConfig, resolveModelConfig, isSwitchBlock } from './model/config.js';
export type { ModelConfig } from './model/config.js';
export { Random, truncatedNormal } from './model/random.js';
export type { RandomState } from './model/random.js';
export { AdamW, Adafactor, createOptimizer } from './train/optimizers.js';
export type { Optimizer, OptimizerState, OptimizerName, AdamWOptions, AdafactorOptions, OptimizerParameter } from './train/optimizers.js';
export { constantWithWarmup, inverseSqrt, createSchedule } from './train/schedules.js';
export type { Schedule, ScheduleName, ScheduleOptions } from './train/schedules.js';
export { clipGradientNorm } from './train/clip.js';
export { brownCorpus, loadTextCorpus, splitCorpus, stripBrownTags } from './data/corpus.js';
export type { TextDocument, CorpusSplit } from './data/corpus.js';
export { WordTokenizer, ByteTokenizer, tokenizerFromJSON, splitWords, UNKNOWN_WORD } from './data/tokenizer.js';
export type { Tokenizer, TokenizerJSON } from './data/tokenizer.js';
export { BatchLoader, sequentialBatches } from './data/loader.js';
export type { Batch, LoaderState, LoaderOptions } from './data/loader.js';
export { prepareDataset } from './data/dataset.js';
export type { Dataset, DatasetOptions } from './data/dataset.js';
export { SwitchFeedForward } from './layers/switch.js';
export type {
  SwitchFeedForwardOptions, SwitchFeedForwardOutput, SwitchFeedForwardBackward, SwitchGrads, Precision, Activation,
  SecondExpertPolicy,
} from './layers/switch.js';
export { DenseFeedForward } from './layers/dense.js';
export type { DenseFeedForwardOptions, DenseGrads } from './layers/dense.js';
export type { DenseMeshStrategy } from './layers/dense_mesh.js';
export type {
  FeedForwardLayer, FeedForwardOutput, FeedForwardBackward, ForwardOptions, RoutingStats,
} from './layers/types.js';
export { Trainer, evaluateModel } from './train/trainer.js';
export type { TrainerOptions, StepReport, EvaluationReport, FitOptions, FitResult } from './train/trainer.js';
export { saveCheckpoint, loadCheckpoint, readCheckpoint, CHECKPOINT_FORMAT } from './train/checkpoint.js';
export type { CheckpointContents, TrainingState } from './train/checkpoint.js';
export { encodeSafetensors, decodeSafetensors, readSafetensors, writeFileAtomic, writeDirectoryAtomic } from './train/safetensors.js';
export type { Tensor } from './train/safetensors.js';
export { trainOnMesh } from './train/mesh_training.js';
export type { MeshTrainingOptions, MeshTrainingResult, MeshStrategy } from './train/mesh_training.js';
export type { DataParallel } from './train/trainer.js';
