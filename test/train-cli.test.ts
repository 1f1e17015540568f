// switch-train on a tiny configuration: --json summary, checkpoint, --resume, --compare-dense,
// --report, and usage errors.
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../dist/src/cli/train.js', import.meta.url));
const tinyFlags = ['--batch', '2', '--seq', '8', '--d-model', '16', '--layers', '2', '--heads', '2', '--d-ff', '32', '--experts', '4', '--eval-every', '2', '--eval-batches', '2'];

function corpus(dir: string): string {
  const folder = join(dir, 'corpus');
  mkdirSync(folder);
  const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'and', 'dog', 'ran', 'far'];
  for (let d = 0; d < 6; d++)
    writeFileSync(join(folder, `doc${d}.txt`), Array.from({ length: 300 }, (_, i) => words[(i * 3 + d) % 10]).join(' '));
  return folder;
}

describe('switch-train', () => {
  it('trains, compares with dense, reports, checkpoints and resumes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switch-train-'));
    try {
      const data = corpus(dir);
      const ckpt = join(dir, 'ckpt'), report = join(dir, 'report.html');
      const { stdout, stderr } = await run(process.execPath, [cli, ...tinyFlags, '--steps', '4', '--corpus', data, '--checkpoint', ckpt,
        '--compare-dense', '--report', report, '--router-lr-scale', '0.5', '--json'], { cwd: dir });
      const summary = JSON.parse(stdout);
      expect(summary.context).toMatchObject({ lr: 2e-3, routerLrScale: 0.5 });
      for (const s of [summary, summary.dense]) {
        expect(s.steps).toBe(4);
        for (const key of ['trainLoss', 'valLoss', 'tokensPerSecond', 'params', 'droppedFraction'])
          expect(Number.isFinite(s[key]), key).toBe(true);
        expect(s.trainLoss).toBeGreaterThan(1);
        expect(s.lossCurve).toHaveLength(4);
      }
      expect(summary.params).toBeGreaterThan(summary.dense.params);  // the experts add parameters, not FLOPs
      expect(summary.dense.droppedFraction).toBe(0);
      expect(summary.sample.startsWith('the ')).toBe(true);
      expect(stderr).toMatch(/step 4\/4 loss [\d.]+ aux [\d.]+ \d+ tok\/s dropped [\d.]+% ETA/);
      expect(stderr).toMatch(/validation loss/);
      expect(existsSync(join(ckpt, 'model.safetensors'))).toBe(true);
      const html = readFileSync(report, 'utf8');
      expect(html).toContain('<svg');
      expect(html).toContain('Expert load');
      expect(html).not.toMatch(/<script|src="http/);
      const resumed = JSON.parse((await run(process.execPath, [cli, '--resume', ckpt, '--steps', '2', '--corpus', data,
        '--checkpoint', ckpt, '--json', '--quiet', '--eval-batches', '2'], { cwd: dir })).stdout);
      expect(resumed.steps).toBe(6);
      expect(resumed.config.numExperts).toBe(4);
      // --steps 0: a sample from the checkpoint, without training figures.
      const sampled = (await run(process.execPath, [cli, '--resume', ckpt, '--steps', '0', '--corpus', data, '--prompt', 'the cat',
        '--sample-tokens', '5', '--top-p', '0.9', '--no-checkpoint', '--quiet', '--eval-batches', '2'], { cwd: dir })).stdout;
      expect(sampled).toMatch(/^switch: 6 steps \(none in this run\), validation loss [\d.]+ \(perplexity [\d.]+\), [\d,]+ parameters$/m);
      expect(sampled).toMatch(/^sample: the cat( \S+){5}$/m);
      expect(sampled).not.toMatch(/NaN|tokens\/s/);
      const parallel = JSON.parse((await run(process.execPath, [cli, ...tinyFlags, '--devices', '2', '--steps', '2', '--corpus', data,
        '--no-checkpoint', '--json', '--quiet'], { cwd: dir })).stdout);
      expect(parallel).toMatchObject({ steps: 2, devices: 2, strategy: 'data' });
      expect(Number.isFinite(parallel.valLoss)).toBe(true);
      // Expert parallelism (bf16 wire by default); its checkpoint has the single-device layout and resumes on one device.
      const ckptExperts = join(dir, 'ckpt-experts');
      const experts = JSON.parse((await run(process.execPath, [cli, ...tinyFlags, '--devices', '2', '--strategy', 'expert-data', '--steps', '2',
        '--corpus', data, '--checkpoint', ckptExperts, '--json', '--quiet'], { cwd: dir })).stdout);
      expect(experts).toMatchObject({ steps: 2, devices: 2, strategy: 'expert-data', params: summary.params });
      expect(experts.sample).toMatch(/^the( \S+){30}$/);  // from the checkpoint, on one process
      expect(parallel.sample).toBeUndefined();  // --no-checkpoint: no model is left to sample from
      expect(Number.isFinite(experts.valLoss)).toBe(true);
      const resumedExperts = JSON.parse((await run(process.execPath, [cli, '--resume', ckptExperts, '--steps', '1', '--corpus', data,
        '--no-checkpoint', '--json', '--quiet', '--eval-batches', '2'], { cwd: dir })).stdout);
      expect(resumedExperts.steps).toBe(3);
      expect(resumedExperts.config).toMatchObject({ numExperts: 4, precision: 'bf16-wire' });
      const resumedOnMesh = JSON.parse((await run(process.execPath, [cli, '--devices', '2', '--strategy', 'expert-data', '--resume', ckptExperts,
        '--steps', '1', '--corpus', data, '--no-checkpoint', '--json', '--quiet', '--eval-batches', '2'], { cwd: dir })).stdout);
      expect(resumedOnMesh).toMatchObject({ steps: 3, strategy: 'expert-data', params: summary.params });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects bad flags with a usage message and exit code 2', async () => {
    await expect(run(process.execPath, [cli, '--bogus'])).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('Usage: switch-train') });
    await expect(run(process.execPath, [cli, '--steps', 'x', '--corpus', '/nonexistent'])).rejects.toMatchObject({ code: 2 });
    await expect(run(process.execPath, [cli, '--devices', '2'])).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('--steps') });
    // Sampling options are checked before any training.
    for (const [flag, value] of [['--top-p', '0'], ['--top-p', '1.5'], ['--temperature', '-1'], ['--sample-tokens', '-2']])
      await expect(run(process.execPath, [cli, flag, value, '--corpus', '/nonexistent'])).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining(flag) });
    await expect(run(process.execPath, [cli, '--strategy', 'expert-data'])).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('--steps') });
    await expect(run(process.execPath, [cli, '--wire', 'bf16', '--steps', '1'])).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('expert-data only') });
    await expect(run(process.execPath, [cli, '--strategy', 'expert-data', '--wire', 'f16', '--steps', '1'])).rejects.toMatchObject({ code: 2 });
    const help = await run(process.execPath, [cli, '--help']);
    expect(help.stdout).toContain('--compare-dense');
  });
});
