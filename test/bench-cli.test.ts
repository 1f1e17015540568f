import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';

// The CLI as users run it (dist/bench/cli.js, compiled by `npm test`'s pretest). Only the shape
// of the output is checked: benchmarks are not tests, and these --quick numbers mean nothing.
const cli = fileURLToPath(new URL('../dist/bench/cli.js', import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 120_000 });

describe('switch-bench', () => {
  it('is the package bin and starts with a shebang', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    expect(pkg.bin['switch-bench']).toBe('./dist/bench/cli.js');
    expect(readFileSync(cli, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
  });

  it('--quick --json prints one JSON array of records', () => {
    const result = run('peak', 'bf16', '--quick', '--json', '--threads', '1,2');
    expect(result.status, result.stderr).toBe(0);
    const records = JSON.parse(result.stdout) as Array<Record<string, unknown>>;
    expect(Array.isArray(records)).toBe(true);
    expect(result.stderr).toContain('[switch-bench]'); // progress goes to stderr, not into the JSON
    const suites = new Set(records.map((r) => r.suite));
    expect([...suites].sort()).toEqual(['bf16', 'peak']);
    for (const r of records) {
      expect(typeof r.name).toBe('string');
      expect(typeof r.shape).toBe('string');
      expect([1, 2]).toContain(r.threads);
      expect(r.seconds as number).toBeGreaterThan(0);
      const rate = (r.gflops ?? r.gbps) as number;
      expect(Number.isFinite(rate) && rate > 0, `${r.suite} ${r.name}`).toBe(true);
      expect(Number.isFinite(r.percentOfPeak as number), `${r.suite} ${r.name} percentOfPeak`).toBe(true);
    }
    // The limits, at each thread count asked for, and every bf16 direction and implementation.
    for (const threads of [1, 2]) {
      expect(records.some((r) => r.suite === 'peak' && r.name === 'memcpy' && r.threads === threads && typeof r.gbps === 'number')).toBe(true);
      expect(records.some((r) => r.suite === 'peak' && String(r.name).startsWith('fma') && r.threads === threads && typeof r.gflops === 'number')).toBe(true);
      for (const direction of ['toBfloat16', 'fromBfloat16'])
        for (const impl of ['reference', 'portable'])
          expect(records.some((r) => r.suite === 'bf16' && r.name === `${direction} ${impl}` && r.threads === threads && typeof r.percentOfPeak === 'number')).toBe(true);
    }
  });

  it('generate: the decoder and the forward over the sequence, per model and thread count', () => {
    const result = run('generate', '--quick', '--json', '--threads', '1');
    expect(result.status, result.stderr).toBe(0);
    const records = JSON.parse(result.stdout) as Array<Record<string, number | string>>;
    const names = records.filter((r) => r.suite === 'generate').map((r) => r.name).sort();
    expect(names).toEqual(['dense decoder', 'dense forward over the sequence', 'switch-e8 decoder', 'switch-e8 forward over the sequence']);
    for (const r of records.filter((r) => r.suite === 'generate')) {
      expect(r.threads).toBe(1);
      expect(r.seconds as number).toBeGreaterThan(0);
      expect(r.tokensPerSecond as number).toBeCloseTo(1 / (r.seconds as number), 6);
      if (String(r.name).endsWith('decoder')) {
        expect(Number.isFinite(r.percentOfPeak as number) && (r.gbps as number) > 0).toBe(true);
        expect(r.speedupVsWindow as number).toBeGreaterThan(0);
      }
    }
    // One Switch token reads the embedding, 4 blocks' attention and 2 dense + 2 one-expert layers.
    const D = 256, F = 1024, V = 8193;
    const switchBytes = 4 * (V * D + 4 * 4 * D * D + 4 * 2 * D * F + 2 * D * 8);
    expect(records.find((r) => r.name === 'switch-e8 decoder')!.weightBytesPerToken).toBe(switchBytes);
  });

  it('prints a table by default, and lists its suites', () => {
    const table = run('peak', '--quick', '--threads', '1');
    expect(table.status, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/suite\s+name\s+shape\s+threads\s+median\s+rate\s+% of peak/);
    expect(table.stdout).toContain('GFLOP/s');
    const list = run('--list');
    expect(list.status).toBe(0);
    expect(list.stdout).toMatch(/^peak\s/m);
    expect(list.stdout).toMatch(/^bf16\s/m);
  });

  it.each([
    [['--bogus'], 'unknown option'],
    [['nosuchsuite'], 'unknown suite'],
    [['--threads', '0'], '--threads'],
    [['--threads', 'a,b'], '--threads'],
    [['--threads'], '--threads'],
    [['--compare'], '--compare'],
  ])('rejects %j with usage and exit code 2', (args, message) => {
    const result = run(...args);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(message);
    expect(result.stdout).toBe('');
  });
});

describe('the benchmark bindings', () => {
  it.each([
    ['benchFmaPeak', ['avx1024', 1], 'ERR_SWITCH_RANGE'],
    ['benchFmaPeak', ['portable', 0], 'ERR_SWITCH_RANGE'],
    ['benchFmaPeak', ['portable'], 'ERR_SWITCH_ARG_TYPE'],
    ['benchMemcpy', [-1, 1], 'ERR_SWITCH_RANGE'],
    ['benchMemcpy', ['64', 1], 'ERR_SWITCH_ARG_TYPE'],
    ['benchMemcpy', [1024, 1, 0], 'ERR_SWITCH_RANGE'],
    ['benchMemcpy', [1024, 1, 1, -1], 'ERR_SWITCH_RANGE'],
    ['benchStreamCopy', [1024, 1.5], 'ERR_SWITCH_RANGE'],
    ['benchBf16', ['sideways', 16, 1, 'reference'], 'ERR_SWITCH_RANGE'],
    ['benchBf16', ['toBfloat16', 0, 1, 'reference'], 'ERR_SWITCH_RANGE'],
    ['benchBf16', ['toBfloat16', 16, 1, 'sse9'], 'ERR_SWITCH_RANGE'],
    ['benchBf16', ['toBfloat16', 16, 1, 7], 'ERR_SWITCH_ARG_TYPE'],
    ['benchBf16', ['toBfloat16', 16, 1], 'ERR_SWITCH_ARG_TYPE'],
  ])('%s(%j) throws %s', async (fn, args, code) => {
    const { native } = await import('../src/native.js');
    expect(() => native[fn](...args)).toThrow(expect.objectContaining({ code }));
  });

  it('measures a tiny conversion', async () => {
    const { native } = await import('../src/native.js');
    const m = native.benchBf16('fromBfloat16', 1000, 1, 'portable', 1, 0);
    expect(m.seconds).toBeGreaterThan(0);
    expect(m.gbps).toBeGreaterThan(0);
    expect(m.repeats).toBe(1);
  });
});

describe('layer suite: the interleaved torch comparison', () => {
  it('alternates a warm-up, then rounds of ours and the baseline, and takes the median of the ratios', async () => {
    const { interleavedTorch } = await import('../bench/suites/layer.js');
    const calls: string[] = [];
    const baseline = [99, 0.5, 0.3, 0.9, 0.7, 0.1]; // the warm-up's answer first
    const torch = {
      time: async (repeats: number) => {
        calls.push(`torch ${repeats}`);
        return { seconds: baseline[calls.filter((c) => c.startsWith('torch')).length - 1], rows: 17 };
      },
    };
    const c = await interleavedTorch(() => { calls.push('ours'); }, torch, 5, 3);
    // One warm-up step each, then per round 3 of ours followed by one request of 3 steps.
    expect(calls).toEqual(['ours', 'torch 1', ...Array.from({ length: 5 }, () => ['ours', 'ours', 'ours', 'torch 3']).flat()]);
    expect(c.rounds).toHaveLength(5);
    expect(c.torchRows).toBe(17);
    expect(c.torchSeconds).toBe(0.5); // median of the rounds' baseline, not the warm-up
    for (const r of c.rounds) expect(Number.isFinite(r) && r > 0).toBe(true);
    expect(c.speedup).toBe([...c.rounds].sort((a, b) => a - b)[2]);
  });
});
