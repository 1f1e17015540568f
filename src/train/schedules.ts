// Learning-rate schedules, as functions of the 0-based step.
import { rangeError } from '../errors.js';

export type ScheduleName = 'constant' | 'inverse-sqrt';

export interface ScheduleOptions {
  /** Peak learning rate. */
  lr: number;
  /** Linear warm-up steps (0: none). */
  warmupSteps?: number;
}

export type Schedule = (step: number) => number;

/** Linear warm-up from lr/warmup to lr, then constant. */
export function constantWithWarmup({ lr, warmupSteps = 0 }: ScheduleOptions): Schedule {
  check(lr, warmupSteps);
  return (step) => (warmupSteps > 0 && step < warmupSteps ? (lr * (step + 1)) / warmupSteps : lr);
}

/**
 * Linear warm-up to lr, then lr · sqrt(warmup / (step + 1)): T5's 1/sqrt(max(step, warmup))
 * schedule, scaled so that its peak is lr.
 */
export function inverseSqrt({ lr, warmupSteps = 0 }: ScheduleOptions): Schedule {
  check(lr, warmupSteps);
  const w = Math.max(1, warmupSteps);
  return (step) => (step + 1 <= w ? (lr * (step + 1)) / w : lr * Math.sqrt(w / (step + 1)));
}

export function createSchedule(name: ScheduleName, options: ScheduleOptions): Schedule {
  if (name === 'constant') return constantWithWarmup(options);
  if (name === 'inverse-sqrt') return inverseSqrt(options);
  throw rangeError('ERR_SWITCH_OPTION', `schedule must be 'constant' or 'inverse-sqrt', got '${String(name)}'`);
}

function check(lr: number, warmupSteps: number): void {
  if (!(lr >= 0) || !Number.isFinite(lr)) throw rangeError('ERR_SWITCH_OPTION', `option 'lr' must be a finite number >= 0, got ${lr}`);
  if (!Number.isInteger(warmupSteps) || warmupSteps < 0)
    throw rangeError('ERR_SWITCH_OPTION', `option 'warmupSteps' must be an integer >= 0, got ${warmupSteps}`);
}
