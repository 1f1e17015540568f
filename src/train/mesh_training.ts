// Training on the device mesh (SPEC §3). Strategy 'data': every device holds the whole model,
// trains on its B/N rows of each global batch, and the gradients are all-reduced (float32 on the
// wire, a fixed summation order) before the identical optimizer steps. With the Switch layers'
// groupSize set to one device's tokens this computes what one device computes on the global batch,
// to float32 rounding. Strategy 'expert-data': every Switch layer is the mesh layer (device c holds
// experts c·E/N … (c+1)·E/N − 1, tokens reach them by all-to-all, bf16 on the wire by default);
// router, attention, norms, embeddings and dense layers are replicated and their gradients
// all-reduced (float32); the expert gradients come out of the layer's backward already summed over
// the devices. With the float32 wire it matches one device on the same global batch (groupSize =
// one device's tokens), with bf16 one device in precision 'bf16-wire'. Checkpoints gather the
// experts (and their optimizer state): the same layout as a single-device checkpoint.
import { fileURLToPath } from 'node:url';
import { rangeError } from '../errors.js';
import { launchMesh } from '../mesh/launch.js';
import type { MpiLaunchOptions } from '../mesh/mpi.js';
import type { ModelConfig } from '../model/config.js';
import { readCheckpoint } from './checkpoint.js';
import type { DatasetOptions } from '../data/dataset.js';
import type { StepReport, EvaluationReport, TrainerOptions } from './trainer.js';

export type MeshStrategy = 'data' | 'expert-data';

export interface MeshTrainingOptions {
  devices: number;
  strategy?: MeshStrategy;
  /**
   * expert-data only: what crosses devices in the Switch layers' all-to-alls (default 'bf16'; the
   * model's precision follows it: 'bf16' ⇔ 'bf16-wire'). Gradients are always all-reduced in float32.
   */
  wire?: 'float32' | 'bf16';
  model: Partial<ModelConfig>;
  /** How each device rebuilds the same data (they all tokenize the same corpus). */
  data: DatasetOptions;
  trainer: Omit<TrainerOptions, 'train' | 'validation' | 'dataParallel' | 'tokenizer'>;
  steps: number;
  /** Evaluate on the validation split at the end (rank 0). */
  evaluate?: boolean;
  evalBatches?: number;
  /**
   * Continue from this checkpoint (a single-device one or one a mesh run wrote: the same layout).
   * Its model configuration is the base of `model` (options given there override it); its
   * tokenizer, optimizer state, data position and random streams are restored on every device.
   */
  resume?: string;
  /** Rank 0 writes a checkpoint here at the end. */
  checkpoint?: string;
  /** Rank 0 prints a progress line per step on stderr. */
  progress?: boolean;
  threadsPerDevice?: number;
  timeoutMs?: number;
  /** The mesh's transport: 'shared-memory' (default, this host) or 'mpi' (see launchMesh). */
  backend?: 'shared-memory' | 'mpi';
  /** Options of the MPI backend (launcher command and arguments, library). */
  mpi?: MpiLaunchOptions;
}

export interface MeshTrainingResult {
  history: StepReport[];
  /** Steps taken in all (a resumed run counts the checkpoint's). */
  step: number;
  evaluation?: EvaluationReport;
  params: number;
  /** Final parameters by name (expert-data: the experts gathered from every device, single-device layout). */
  parameters?: Record<string, Float32Array>;
}

export async function trainOnMesh(options: MeshTrainingOptions & { returnParameters?: boolean }): Promise<MeshTrainingResult> {
  const strategy = options.strategy ?? 'data';
  if (strategy !== 'data' && strategy !== 'expert-data')
    throw rangeError('ERR_SWITCH_OPTION', `strategy must be 'data' or 'expert-data', got '${String(strategy)}'`);
  if (!Number.isInteger(options.devices) || options.devices < 1)
    throw rangeError('ERR_SWITCH_OPTION', `option 'devices' must be an integer >= 1, got ${options.devices}`);
  let args: MeshTrainingOptions = options;
  if (options.resume) args = { ...args, model: { ...readCheckpoint(options.resume).config, ...definedOnly(options.model) } };
  if (strategy === 'expert-data') {
    const wire = expertDataWire(args);
    const experts = args.model.numExperts ?? 8;
    if (experts % options.devices !== 0)
      throw rangeError('ERR_SWITCH_OPTION', `strategy 'expert-data' needs numExperts (${experts}) to be a multiple of the devices (${options.devices})`);
    args = { ...args, wire, model: { ...args.model, precision: wire === 'bf16' ? 'bf16-wire' : 'float32' } };
  } else if (options.wire !== undefined) {
    throw rangeError('ERR_SWITCH_OPTION', "option 'wire' applies to strategy 'expert-data' only (data parallelism all-reduces in float32)");
  }
  const program = fileURLToPath(new URL('./mesh_program.js', import.meta.url));
  const results = await launchMesh<MeshTrainingResult>(program, {
    devices: options.devices, axes: { data: options.devices }, wire: args.wire ?? 'float32', args,
    threadsPerDevice: options.threadsPerDevice, timeoutMs: options.timeoutMs ?? 600_000,
    heapBytes: 16 * 1024 * 1024, backend: options.backend, mpi: options.mpi,
  });
  return results[0];
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The wire of an expert-data run: the option, else the model's precision if given, else bf16 (SPEC §3). */
function expertDataWire(options: MeshTrainingOptions): 'float32' | 'bf16' {
  const precision = options.model.precision;
  if (options.wire !== undefined && options.wire !== 'float32' && options.wire !== 'bf16')
    throw rangeError('ERR_SWITCH_OPTION', `option 'wire' must be 'float32' or 'bf16', got '${String(options.wire)}'`);
  const fromPrecision = precision === undefined ? undefined : precision === 'bf16-wire' ? 'bf16' : 'float32';
  if (options.wire !== undefined && fromPrecision !== undefined && options.wire !== fromPrecision)
    throw rangeError('ERR_SWITCH_OPTION', `option 'wire' ('${options.wire}') contradicts the model's precision ('${precision}')`);
  return options.wire ?? fromPrecision ?? 'bf16';
}
