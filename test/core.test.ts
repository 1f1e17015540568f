import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { cpuInfo, roundBfloat16, setIsa, setNumThreads, toBfloat16, fromBfloat16, type Isa } from 'switch-transformer';

// The ISAs this CPU runs, in order: each level runs the ones before it.
const ALL_ISAS: Isa[] = ['portable', 'avx2', 'avx512'];
const supportedIsas = (): Isa[] => ALL_ISAS.slice(0, ALL_ISAS.indexOf(cpuInfo().bestIsa) + 1);

describe('cpuInfo', () => {
  it('reports the ISA, the features and the threads', () => {
    const info = cpuInfo();
    expect(ALL_ISAS).toContain(info.isa);
    expect(ALL_ISAS).toContain(info.bestIsa);
    expect(info.threads).toBeGreaterThanOrEqual(1);
    expect(info.hardwareThreads).toBeGreaterThanOrEqual(1);
    expect(info.features.sse2).toBe(true); // the x86-64 baseline
    if (info.bestIsa !== 'portable') {
      expect(info.features.avx2 && info.features.fma && info.features.f16c && info.features.avx).toBe(true);
    }
    // avx512 is the best exactly when the CPU and OS have its features.
    expect(info.bestIsa === 'avx512').toBe(info.features.avx512);
    setNumThreads(1);
    expect(cpuInfo().threads).toBe(1);
    setNumThreads(info.threads);
  });

  it('rejects a bad thread count with a coded RangeError', () => {
    expect(() => setNumThreads(0)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_RANGE', name: 'RangeError' }));
    expect(() => setNumThreads(1.5)).toThrow(RangeError);
    expect(() => setNumThreads(257)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_RANGE' }));
    expect(() => setNumThreads('2' as unknown as number)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_ARG_TYPE' }));
    expect(() => (setNumThreads as unknown as () => void)()).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_ARG_TYPE' }));
  });
});

describe('setIsa', () => {
  it('forces each path the CPU runs and back', () => {
    const best = cpuInfo().bestIsa;
    for (const isa of supportedIsas()) {
      setIsa(isa);
      expect(cpuInfo().isa).toBe(isa);
    }
    setIsa(best);
    expect(cpuInfo().isa).toBe(best);
    // A level past the best is refused and changes nothing.
    for (const isa of ALL_ISAS.slice(ALL_ISAS.indexOf(best) + 1)) {
      expect(() => setIsa(isa)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_UNSUPPORTED', name: 'RangeError' }));
      expect(cpuInfo().isa).toBe(best);
    }
  });

  it('follows SWITCH_TRANSFORMER_ISA at load, and ignores a value it cannot run', () => {
    const isaAtLoad = (value: string) => {
      const child = spawnSync(process.execPath, ['--input-type=module', '-e',
        "const m = await import('switch-transformer'); const x = new Float32Array([1.00390625, NaN]); " +
        "console.log(m.cpuInfo().isa, Array.from(m.toBfloat16(x)).join(','))"],
      { env: { ...process.env, SWITCH_TRANSFORMER_ISA: value }, encoding: 'utf8' });
      expect(child.status, child.stderr).toBe(0);
      return child.stdout.trim();
    };
    expect(isaAtLoad('portable')).toBe('portable 16256,32704');
    expect(isaAtLoad('no-such-isa')).toBe(`${cpuInfo().bestIsa} 16256,32704`);
    // avx2 and avx512 where the CPU runs them, else the best it has.
    for (const isa of ['avx2', 'avx512'] as const)
      expect(isaAtLoad(isa)).toBe(`${supportedIsas().includes(isa) ? isa : cpuInfo().bestIsa} 16256,32704`);
  });

  it('rejects an unknown ISA with a coded error', () => {
    expect(() => setIsa('avx1024' as Isa)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_RANGE', name: 'RangeError' }));
    expect(() => setIsa(2 as unknown as Isa)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_ARG_TYPE', name: 'TypeError' }));
    expect(() => (setIsa as unknown as () => void)()).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_ARG_TYPE' }));
  });
});

describe('the same bf16 bits on every path and thread count', () => {
  it('portable vs avx2 vs avx512, 1, 2 and 3 threads', () => {
    const info = cpuInfo();
    // Random bit patterns (NaNs, subnormals, huge values), long enough for several threaded chunks.
    const n = 400_003;
    const bits = new Uint32Array(n);
    for (let i = 0; i < n; i++) bits[i] = (Math.random() * 2 ** 32) >>> 0;
    const src = new Float32Array(bits.buffer);
    const runs: Array<{ label: string; narrow: Uint16Array; wide: Uint32Array; rounded: Uint32Array }> = [];
    const isas = supportedIsas();
    try {
      for (const isa of isas) {
        setIsa(isa);
        for (const threads of [1, 2, 3]) {
          setNumThreads(threads);
          const narrow = toBfloat16(src, new Uint16Array(n).fill(0xdead));
          const wide = new Uint32Array(fromBfloat16(narrow, new Float32Array(n).fill(NaN)).buffer);
          const rounded = new Uint32Array(roundBfloat16(src, new Float32Array(n).fill(NaN)).buffer);
          runs.push({ label: `${isa} x${threads}`, narrow, wide, rounded });
        }
      }
    } finally {
      setIsa(info.isa);
      setNumThreads(info.threads);
    }
    const first = runs[0];
    for (let i = 0; i < n; i++) if (first.wide[i] !== (first.narrow[i] << 16) >>> 0) throw new Error(`element ${i}`);
    // The index of the first difference (-1: identical); a plain loop, as toEqual on 400k elements is slow.
    const firstDifference = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
      return a.length === b.length ? -1 : a.length;
    };
    for (const run of runs.slice(1)) {
      expect(firstDifference(run.narrow, first.narrow), `${run.label} toBfloat16`).toBe(-1);
      expect(firstDifference(run.wide, first.wide), `${run.label} fromBfloat16`).toBe(-1);
      expect(firstDifference(run.rounded, first.rounded), `${run.label} roundBfloat16`).toBe(-1);
    }
    expect(runs.length).toBe(isas.length * 3);
  });
});

describe('adviseHugePages (a hint for the layers\' large buffers)', () => {
  it('keeps the contents, reports the aligned bytes it advised, and ignores small buffers', async () => {
    const { native } = await import('../src/native.js');
    // 9 MB: at least three aligned 2 MB pages inside, whatever the start address.
    const big = new Float32Array((9 << 20) / 4);
    for (let i = 0; i < big.length; i += 4099) big[i] = i + 0.5;
    const advised = native.adviseHugePages(big.buffer) as number;
    expect(advised % (2 << 20)).toBe(0);
    // Where the kernel offers transparent huge pages at all, the interior pages are advised.
    const { existsSync, readFileSync } = await import('node:fs');
    const thp = '/sys/kernel/mm/transparent_hugepage/enabled';
    if (process.platform === 'linux' && existsSync(thp) && !readFileSync(thp, 'utf8').includes('[never]'))
      expect(advised).toBeGreaterThanOrEqual(2 << 20);
    expect(advised).toBeLessThanOrEqual(9 << 20);
    for (let i = 0; i < big.length; i += 4099) expect(big[i]).toBe(i + 0.5);
    expect(big[1]).toBe(0);
    expect(native.adviseHugePages(new ArrayBuffer(1000))).toBe(0);
  });

  it('rejects anything but an ArrayBuffer with a coded TypeError', async () => {
    const { native } = await import('../src/native.js');
    for (const bad of [new Float32Array(4), 3, null, undefined, {}]) {
      expect(() => native.adviseHugePages(bad)).toThrowError(expect.objectContaining({ name: 'TypeError', code: 'ERR_SWITCH_ARG_TYPE' }));
    }
    expect(() => native.adviseHugePages()).toThrow(TypeError);
  });
});

describe('alignedOffset and the layers\' reused buffers', () => {
  it('gives the offset of the first 64-byte aligned address, where every reused view starts', async () => {
    const { native } = await import('../src/native.js');
    const { Workspace } = await import('../src/layers/switch_steps.js');
    for (const bytes of [64, 1000, 5 << 20]) {
      const off = native.alignedOffset(new ArrayBuffer(bytes)) as number;
      expect(Number.isInteger(off) && off >= 0 && off < 64).toBe(true);
    }
    const ws = new Workspace(true);
    const a = ws.f32('a', 1001);
    expect(a.byteOffset).toBe(native.alignedOffset(a.buffer));
    expect(a.length).toBe(1001);
    expect(a.byteOffset + a.byteLength).toBeLessThanOrEqual(a.buffer.byteLength);
    a.fill(3);
    // The same name, smaller: the same memory; larger: a new aligned buffer.
    expect(ws.f32('a', 10).buffer).toBe(a.buffer);
    const b = ws.u8('a', 5000);
    expect(b.buffer).not.toBe(a.buffer);
    expect(b.byteOffset).toBe(native.alignedOffset(b.buffer));
    expect(() => native.alignedOffset(new Float32Array(4))).toThrowError(expect.objectContaining({ code: 'ERR_SWITCH_ARG_TYPE' }));
  });
});
