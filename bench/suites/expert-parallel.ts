// Suite `expert-parallel`: a training step (forward + backward) of the expert-parallel Switch layer
// (SPEC §3, expert + data) on 1, 2 and 4 devices with T tokens per device (weak scaling: every
// device brings its own batch), D = 512, F = 2048, E = 8, capacity factor 1.25, one kernel thread
// per device. Each row: the step's median seconds (the slowest device), its split into compute and
// communication (seconds inside collectives, device.stats(); `waitSeconds` of those spent waiting
// for a peer, i.e. load imbalance rather than copying), tokens/s over the mesh and the ratio to one
// device, and the CPU seconds of the step (the slowest device): on a machine whose cores are busy
// with other work, wall-clock scaling measures the scheduler, CPU seconds the layer. The machine
// is shared: configurations run interleaved in rounds and rows report the median over all rounds'
// repeats. speedupVsOneDevice is against the single-device layer without a
// mesh (same process setup, one thread). Target (issue #4): 2 devices ≥ 1.7× the tokens/s of one.
// T = tokens per device, D = d_model, F = d_ff, E = experts.
import { availableParallelism } from 'node:os';
import { launchMesh, type Wire } from '../../src/index.js';
import type { BenchRecord, Suite } from '../suite.js';
import { median } from '../measure.js';
import type { ExpertParallelArgs, ExpertParallelResult } from './expert-parallel-program.js';

const PROGRAM = new URL('./expert-parallel-program.js', import.meta.url);

interface Config { devices: number; wire: Wire; plain?: boolean }

export const expertParallelSuite: Suite = {
  name: 'expert-parallel',
  description: 'expert-parallel Switch layer forward+backward on 1, 2, 4 devices (T=4096 per device, D=512, F=2048, E=8): compute vs communication, tokens/s',
  async run(ctx) {
    const shape = ctx.quick ? { T: 512, D: 128, F: 512, E: 8 } : { T: 4096, D: 512, F: 2048, E: 8 };
    const rounds = ctx.quick ? 1 : 3;
    const repeats = ctx.quick ? 2 : 3;
    const configs: Config[] = [
      { devices: 1, wire: 'float32', plain: true }, { devices: 1, wire: 'float32' }, { devices: 2, wire: 'bf16' }, { devices: 2, wire: 'float32' },
      { devices: 4, wire: 'bf16' }, { devices: 4, wire: 'float32' },
    ];
    const samples = new Map<Config, ExpertParallelResult[][]>(configs.map((c) => [c, []]));
    for (let round = 0; round < rounds; round++) {
      for (const c of configs) {
        ctx.log(`expert-parallel: round ${round + 1}/${rounds}, ${c.plain ? 'single-device layer' : `${c.devices} device(s), ${c.wire} wire`}`);
        const args: ExpertParallelArgs = { ...shape, wire: c.wire, warmup: 1, repeats, plain: c.plain };
        const results = await launchMesh<ExpertParallelResult>(PROGRAM, {
          devices: c.devices, axes: { data: c.devices }, wire: c.wire, timeoutMs: 600_000, threadsPerDevice: 1, args,
          heapBytes: 256 * 1024 * 1024,
        });
        samples.get(c)!.push(results);
      }
    }
    const records: BenchRecord[] = [];
    let oneDevice = 0, oneDeviceCpu = 0;
    for (const c of configs) {
      // Per repeat, the step takes as long as its slowest device; compute and communication of that device.
      const step: number[] = [], comm: number[] = [], wait: number[] = [], cpu: number[] = [];
      let bytes = 0, dropped = 0;
      for (const results of samples.get(c)!) {
        for (let i = 0; i < results[0].step.length; i++) {
          const slowest = results.reduce((a, b) => (b.step[i] > a.step[i] ? b : a));
          step.push(slowest.step[i]);
          cpu.push(Math.max(...results.map((r) => r.cpu[i])));
          comm.push(slowest.comm[i]);
          wait.push(slowest.wait[i]);
          bytes = slowest.bytesSent[i];
        }
        dropped = results[0].droppedFraction;
      }
      const seconds = median(step);
      const commSeconds = median(comm);
      const tokensPerSecond = (c.devices * shape.T) / seconds;
      const cpuSeconds = median(cpu);
      if (c.plain) {
        oneDevice = tokensPerSecond;
        oneDeviceCpu = cpuSeconds;
      }
      records.push({
        suite: 'expert-parallel',
        name: c.plain ? 'single-device layer (baseline)' : `${c.devices} device${c.devices > 1 ? 's' : ''} ${c.wire} wire`,
        shape: `T=${shape.T}/device D=${shape.D} F=${shape.F} E=${shape.E}`,
        threads: 1,
        seconds,
        devices: c.devices,
        wire: c.wire,
        computeSeconds: seconds - commSeconds,
        commSeconds,
        waitSeconds: median(wait),
        bytesSentPerDevice: bytes,
        tokensPerSecond,
        speedupVsOneDevice: oneDevice > 0 ? tokensPerSecond / oneDevice : undefined,
        cpuSeconds,
        // The speedup with a free core per device, if the step took its CPU seconds: n × the
        // baseline's CPU seconds over this step's (polling peers costs CPU too, so it is not flattered).
        cpuBoundSpeedup: oneDeviceCpu > 0 ? (c.devices * oneDeviceCpu) / cpuSeconds : undefined,
        cores: availableParallelism(),
        droppedFraction: dropped,
        samples: step.length,
      });
    }
    return records;
  },
};
