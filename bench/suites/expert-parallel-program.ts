// The device program of the `expert-parallel` suite: a training step of the mesh Switch layer
// (forward + backward) on this device's T tokens, timed inside the device (a barrier, then the
// step, per repeat), with the seconds spent inside collectives from device.stats().
// T = tokens per device, D = d_model, F = d_ff, E = experts.
import type { Device, Wire } from '../../src/mesh/device.js';
import { SwitchFeedForward } from '../../src/layers/switch.js';
import { randomInput } from '../measure.js';

export interface ExpertParallelArgs {
  T: number;
  D: number;
  F: number;
  E: number;
  /** The layer's wire (the mesh's wire decides by default). */
  wire: Wire;
  warmup: number;
  repeats: number;
  /** The single-device layer (no mesh), the baseline. */
  plain?: boolean;
}

export interface ExpertParallelResult {
  rank: number;
  /** Per repeat: seconds of the step, of it inside collectives, and of that waiting for peers. */
  step: number[];
  /** Per repeat: CPU seconds this process used in the step (user + system, all its threads). */
  cpu: number[];
  comm: number[];
  wait: number[];
  bytesSent: number[];
  droppedFraction: number;
}

export default async function expertParallelProgram(device: Device, args: ExpertParallelArgs): Promise<ExpertParallelResult> {
  const { T, D, F, E } = args;
  const layer = new SwitchFeedForward({ dModel: D, dFF: F, numExperts: E, seed: 1, reuseGradients: true,
    precision: args.wire === 'bf16' ? 'bf16-wire' : 'float32', ...(args.plain ? {} : { mesh: device }) });
  const x = randomInput(T * D, 1 + device.rank);
  const dy = randomInput(T * D, 1000 + device.rank);
  const result: ExpertParallelResult = { rank: device.rank, step: [], cpu: [], comm: [], wait: [], bytesSent: [], droppedFraction: 0 };
  for (let it = 0; it < args.warmup + args.repeats; it++) {
    device.barrier();
    device.resetStats();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const out = await layer.forward(x, { training: true });
    await layer.backward(dy);
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(c0);
    const stats = device.stats();
    if (it < args.warmup) continue;
    result.step.push(seconds);
    result.cpu.push((cpu.user + cpu.system) / 1e6);
    result.comm.push(stats.seconds);
    result.wait.push(stats.waitSeconds);
    result.bytesSent.push(stats.bytesSent);
    result.droppedFraction = out.stats!.droppedFraction;
  }
  return result;
}
