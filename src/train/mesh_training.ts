// Training on the device mesh (SPEC §3). Strategy 'data': every device holds the whole model,
// trains on its B/N rows of each global batch, and the gradients are all-reduced (float32 on the
// wire, a fixed summation order) before the identical optimizer steps. With the Switch layers'
// groupSize set to one device's tokens this computes what one device computes on the global batch,
// to float32 rounding. 'expert-data' (experts placed along data, all-to-all dispatch) needs the
// mesh Switch layer and is not available yet.
import { fileURLToPath } from 'node:url';
import { codedError, rangeError } from '../errors.js';
import { launchMesh } from '../mesh/launch.js';
import type { ModelConfig } from '../model/config.js';
import type { DatasetOptions } from '../data/dataset.js';
import type { StepReport, EvaluationReport, TrainerOptions } from './trainer.js';

export type MeshStrategy = 'data' | 'expert-data';

export interface MeshTrainingOptions {
  devices: number;
  strategy?: MeshStrategy;
  model: Partial<ModelConfig>;
  /** How each device rebuilds the same data (they all tokenize the same corpus). */
  data: DatasetOptions;
  trainer: Omit<TrainerOptions, 'train' | 'validation' | 'dataParallel' | 'tokenizer'>;
  steps: number;
  /** Evaluate on the validation split at the end (rank 0). */
  evaluate?: boolean;
  evalBatches?: number;
  /** Rank 0 writes a checkpoint here at the end. */
  checkpoint?: string;
  /** Rank 0 prints a progress line per step on stderr. */
  progress?: boolean;
  threadsPerDevice?: number;
  timeoutMs?: number;
}

export interface MeshTrainingResult {
  history: StepReport[];
  evaluation?: EvaluationReport;
  params: number;
  /** Final parameters of rank 0 by name (every replica holds the same). */
  parameters?: Record<string, Float32Array>;
}

export async function trainOnMesh(options: MeshTrainingOptions & { returnParameters?: boolean }): Promise<MeshTrainingResult> {
  const strategy = options.strategy ?? 'data';
  if (strategy === 'expert-data')
    throw codedError('ERR_SWITCH_UNSUPPORTED', "strategy 'expert-data' needs the mesh Switch layer, which this build does not have yet");
  if (strategy !== 'data') throw rangeError('ERR_SWITCH_OPTION', `strategy must be 'data' or 'expert-data', got '${String(strategy)}'`);
  if (!Number.isInteger(options.devices) || options.devices < 1)
    throw rangeError('ERR_SWITCH_OPTION', `option 'devices' must be an integer >= 1, got ${options.devices}`);
  const program = fileURLToPath(new URL('./mesh_program.js', import.meta.url));
  const results = await launchMesh<MeshTrainingResult>(program, {
    devices: options.devices, axes: { data: options.devices }, wire: 'float32', args: options,
    threadsPerDevice: options.threadsPerDevice, timeoutMs: options.timeoutMs ?? 600_000,
    heapBytes: 16 * 1024 * 1024,
  });
  return results[0];
}
