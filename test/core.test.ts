import { describe, expect, it } from 'vitest';
import { cpuInfo, setNumThreads } from 'switch-transformer';

describe('cpuInfo', () => {
  it('reports the ISA and threads', () => {
    const info = cpuInfo();
    expect(['avx2', 'portable']).toContain(info.isa);
    expect(info.threads).toBeGreaterThanOrEqual(1);
    setNumThreads(1);
    expect(cpuInfo().threads).toBe(1);
    setNumThreads(info.threads);
  });

  it('rejects a bad thread count with a coded RangeError', () => {
    expect(() => setNumThreads(0)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_RANGE', name: 'RangeError' }));
    expect(() => setNumThreads(1.5)).toThrow(RangeError);
    expect(() => setNumThreads('2' as unknown as number)).toThrow(expect.objectContaining({ code: 'ERR_SWITCH_ARG_TYPE' }));
  });
});
