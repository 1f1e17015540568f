import { describe, expect, it } from 'vitest';
import { fromBfloat16, roundBfloat16, toBfloat16 } from 'switch-transformer';

// SPEC §2 by value, independently of the kernels' integer trick: the nearer of the two bf16
// neighbours of |x| (exact in double), ties to the even one, past the largest finite → Inf;
// NaN → its top 16 bits with the quiet bit set.
const word = new Uint32Array(1);
const single = new Float32Array(word.buffer);
function bitsToFloat(u: number): number {
  word[0] = u >>> 0;
  return single[0];
}
function referenceBfloat16(bits: number): number {
  const u = bits >>> 0;
  const sign = (u >>> 16) & 0x8000;
  const x = bitsToFloat(u);
  if (Number.isNaN(x)) return ((u >>> 16) | 0x0040) & 0xffff;
  if (!Number.isFinite(x)) return sign | 0x7f80;
  const lower = (u & 0x7fffffff) >>> 16;
  const upper = lower + 1;
  const value = Math.abs(x);
  const lo = bitsToFloat(lower << 16);
  const hi = upper === 0x7f80 ? 2 ** 128 : bitsToFloat(upper << 16);
  const below = value - lo;
  const above = hi - value;
  const chosen = below < above ? lower : below > above ? upper : lower % 2 === 0 ? lower : upper;
  return sign | chosen;
}

const SPECIAL_BITS = [
  0x00000000, 0x80000000, // ±0
  0x7f800000, 0xff800000, // ±Inf
  0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fffffff, 0xffffffff, 0x7fbfffff, // NaNs, quiet and signalling
  0x7f7fffff, 0xff7fffff, 0x7f7f8000, 0x7f7f7fff, 0x7f7f0000, // around the largest finite bf16
  0x00000001, 0x80000001, 0x00008000, 0x00018000, 0x00008001, 0x007fffff, 0x807fffff, 0x00800000, // subnormals
  0x3f800000, 0x3f808000, 0x3f818000, 0x3f807fff, 0x3f808001, 0xbf808000, // 1 and its ties
];

function randomBits(n: number): Uint32Array {
  const bits = new Uint32Array(n);
  for (let i = 0; i < n; i++) bits[i] = (Math.random() * 2 ** 32) >>> 0;
  return bits;
}

/** Random bit patterns (every class: NaN, subnormal, huge), ordinary values, and the special cases. */
function testInput(n: number): Float32Array {
  const bits = randomBits(n);
  const x = new Float32Array(bits.buffer);
  for (let i = 0; i < n; i += 3) x[i] = (Math.random() - 0.5) * 10 ** ((Math.random() - 0.5) * 20);
  for (let i = 0; i < SPECIAL_BITS.length && i < n; i++) bits[(i * 7919) % n] = SPECIAL_BITS[i];
  return x;
}

function expectBfloat16Of(src: Float32Array, out: Uint16Array): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  let wrong = 0;
  let first = '';
  for (let i = 0; i < src.length; i++) {
    const want = referenceBfloat16(bits[i]);
    if (out[i] !== want) {
      if (wrong++ === 0) first = `element ${i}: ${bits[i].toString(16)} -> ${out[i].toString(16)}, want ${want.toString(16)}`;
    }
  }
  expect(first).toBe('');
  expect(wrong).toBe(0);
}

describe('toBfloat16 / fromBfloat16 / roundBfloat16', () => {
  // Lengths below a SIMD vector, odd tails, several threaded chunks, and past the streaming threshold.
  it.each([0, 1, 7, 17, 10_007, 300_001, 3_000_017])('agree with the SPEC rule on %i values', (n) => {
    const src = testInput(n);
    const out = toBfloat16(src);
    expect(out).toBeInstanceOf(Uint16Array);
    expect(out.length).toBe(n);
    expectBfloat16Of(src, out);

    const back = fromBfloat16(out);
    expect(back).toBeInstanceOf(Float32Array);
    const backBits = new Uint32Array(back.buffer);
    const rounded = roundBfloat16(src);
    const roundedBits = new Uint32Array(rounded.buffer);
    for (let i = 0; i < n; i++) {
      if (backBits[i] !== (out[i] << 16) >>> 0) throw new Error(`fromBfloat16 element ${i}`);
      if (roundedBits[i] !== backBits[i]) throw new Error(`roundBfloat16 element ${i}`);
    }
  });

  it('covers every bf16 bit pattern on the way back', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const dst = new Float32Array(65536).fill(NaN);
    const back = fromBfloat16(all, dst);
    expect(back).toBe(dst);
    const bits = new Uint32Array(dst.buffer);
    for (let h = 0; h < 65536; h++) expect(bits[h]).toBe((h << 16) >>> 0);
    // And the round trip is the identity on every bf16 (NaNs included: they are already quiet).
    const again = toBfloat16(back);
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
      expect(again[h]).toBe(isNaN ? h | 0x40 : h);
    }
  });

  it('writes into the dst given, views with an offset included, and returns it', () => {
    const src = testInput(1000);
    const backing = new Uint16Array(1010).fill(0xdead);
    const dst = backing.subarray(5, 1005);
    expect(toBfloat16(src, dst)).toBe(dst);
    expectBfloat16Of(src, dst);
    expect(backing[4]).toBe(0xdead);
    expect(backing[1005]).toBe(0xdead);

    const wide = new Float32Array(1000).fill(NaN);
    expect(fromBfloat16(dst, wide)).toBe(wide);
    expect(roundBfloat16(src, wide)).toBe(wide);
    expect(Array.from(wide)).toEqual(Array.from(fromBfloat16(toBfloat16(src))));
  });

  it('gives the same answer when dst shares memory with src', () => {
    const n = 4099;
    const src = testInput(n);
    const want = toBfloat16(src);
    const wantRound = roundBfloat16(src);

    const alias = new Float32Array(src); // dst over the first half of src's own bytes
    const out = toBfloat16(alias, new Uint16Array(alias.buffer, 0, n));
    expect(Array.from(out)).toEqual(Array.from(want));

    const inPlace = new Float32Array(src);
    expect(roundBfloat16(inPlace, inPlace)).toBe(inPlace);
    expect(new Uint32Array(inPlace.buffer)).toEqual(new Uint32Array(wantRound.buffer));

    const shifted = new Float32Array(n + 1);
    shifted.set(src, 1);
    const overlapping = new Float32Array(shifted.buffer, 0, n); // dst one element before src
    roundBfloat16(shifted.subarray(1), overlapping);
    expect(new Uint32Array(overlapping.buffer, 0, n)).toEqual(new Uint32Array(wantRound.buffer));

    const narrow = toBfloat16(src);
    const widened = new Float32Array(n);
    const shared = new Uint16Array(widened.buffer, 2 * n, n); // src in the second half of dst's bytes
    shared.set(narrow);
    fromBfloat16(shared, widened);
    expect(new Uint32Array(widened.buffer)).toEqual(new Uint32Array(wantRound.buffer));
  });

  it('reads views of a SharedArrayBuffer', () => {
    const src = new Float32Array(new SharedArrayBuffer(4 * 64));
    src.set(testInput(64));
    const dst = new Uint16Array(new SharedArrayBuffer(2 * 64));
    expectBfloat16Of(src, toBfloat16(src, dst));
  });
});

describe('bad calls', () => {
  const detached = (): Float32Array => {
    const buffer = new ArrayBuffer(16);
    const view = new Float32Array(buffer);
    structuredClone(buffer, { transfer: [buffer] });
    return view;
  };
  const detached16 = (): Uint16Array => {
    const buffer = new ArrayBuffer(8);
    const view = new Uint16Array(buffer);
    structuredClone(buffer, { transfer: [buffer] });
    return view;
  };
  type Call = [string, () => unknown, string, string, string];
  const f4 = () => new Float32Array(4);
  const u4 = () => new Uint16Array(4);
  // [what, call, error class, code, argument named in the message]
  const table: Call[] = [
    ['toBfloat16()', () => (toBfloat16 as unknown as () => unknown)(), 'TypeError', 'ERR_SWITCH_ARG_TYPE', 'src'],
    ['toBfloat16(array)', () => toBfloat16([1, 2] as unknown as Float32Array), 'TypeError', 'ERR_SWITCH_ARG_TYPE', 'src'],
    ['toBfloat16(Float64Array)', () => toBfloat16(new Float64Array(4) as unknown as Float32Array), 'TypeError', 'ERR_SWITCH_ARG_TYPE', 'src'],
    ['toBfloat16(Uint16Array)', () => toBfloat16(u4() as unknown as Float32Array), 'TypeError', 'ERR_SWITCH_ARG_TYPE', 'src'],
    ['toBfloat16(string)', () => toBfloat16('abcd' as unknown as Float32Array), 'TypeError', 'ERR_SWITCH_ARG_TYPE', 'src'],
    ['toBfloat16(array-like)', () => toBfloat16({ length: 4 } as unknown as Float32Array), 'TypeError', 'ERR_SWITCH_ARG_TYPE', 'src'],
    ['toBfloat16(DataView)', () => toBfloat16(new DataView(new ArrayBuffer(16)) as unknown as Float32Array), 'TypeError', 'ERR_SWITCH_ARG_TYPE', 'src'],
    ['toBfloat16(null)', () => toBfloat16(null as unknown as Float32Array), 'TypeError', 'ERR_SWITCH_ARG_TYPE', 'src'],
    ['toBfloat16(detached)', () => toBfloat16(detached()), 'TypeError', 'ERR_SWITCH_DETACHED', 'src'],
    ['toBfloat16(src, short dst)', () => toBfloat16(f4(), new Uint16Array(3)), 'RangeError', 'ERR_SWITCH_SHAPE', 'dst'],
    ['toBfloat16(src, long dst)', () => toBfloat16(f4(), new Uint16Array(5)), 'RangeError', 'ERR_SWITCH_SHAPE', 'dst'],
    ['toBfloat16(src, Float32Array)', () => toBfloat16(f4(), f4() as unknown as Uint16Array), 'TypeError', 'ERR_SWITCH_ARG_TYPE', 'dst'],
    ['toBfloat16(src, Int16Array)', () => toBfloat16(f4(), new Int16Array(4) as unknown as Uint16Array), 'TypeError', 'ERR_SWITCH_ARG_TYPE', 'dst'],
    ['toBfloat16(src, null)', () => toBfloat16(f4(), null as unknown as Uint16Array), 'TypeError', 'ERR_SWITCH_ARG_TYPE', 'dst'],
    ['toBfloat16(src, detached)', () => toBfloat16(new Float32Array(4), detached16()), 'TypeError', 'ERR_SWITCH_DETACHED', 'dst'],
    ['fromBfloat16()', () => (fromBfloat16 as unknown as () => unknown)(), 'TypeError', 'ERR_SWITCH_ARG_TYPE', 'src'],
    ['fromBfloat16(Float32Array)', () => fromBfloat16(f4() as unknown as Uint16Array), 'TypeError', 'ERR_SWITCH_ARG_TYPE', 'src'],
    ['fromBfloat16(Uint8Array)', () => fromBfloat16(new Uint8Array(8) as unknown as Uint16Array), 'TypeError', 'ERR_SWITCH_ARG_TYPE', 'src'],
    ['fromBfloat16(number)', () => fromBfloat16(4 as unknown as Uint16Array), 'TypeError', 'ERR_SWITCH_ARG_TYPE', 'src'],
    ['fromBfloat16(detached)', () => fromBfloat16(detached16()), 'TypeError', 'ERR_SWITCH_DETACHED', 'src'],
    ['fromBfloat16(src, short dst)', () => fromBfloat16(u4(), new Float32Array(2)), 'RangeError', 'ERR_SWITCH_SHAPE', 'dst'],
    ['fromBfloat16(src, Float64Array)', () => fromBfloat16(u4(), new Float64Array(4) as unknown as Float32Array), 'TypeError', 'ERR_SWITCH_ARG_TYPE', 'dst'],
    ['fromBfloat16(src, detached)', () => fromBfloat16(new Uint16Array(4), detached()), 'TypeError', 'ERR_SWITCH_DETACHED', 'dst'],
    ['roundBfloat16()', () => (roundBfloat16 as unknown as () => unknown)(), 'TypeError', 'ERR_SWITCH_ARG_TYPE', 'src'],
    ['roundBfloat16(Uint16Array)', () => roundBfloat16(u4() as unknown as Float32Array), 'TypeError', 'ERR_SWITCH_ARG_TYPE', 'src'],
    ['roundBfloat16(detached)', () => roundBfloat16(detached()), 'TypeError', 'ERR_SWITCH_DETACHED', 'src'],
    ['roundBfloat16(src, long dst)', () => roundBfloat16(f4(), new Float32Array(8)), 'RangeError', 'ERR_SWITCH_SHAPE', 'dst'],
    ['roundBfloat16(src, Uint16Array)', () => roundBfloat16(f4(), u4() as unknown as Float32Array), 'TypeError', 'ERR_SWITCH_ARG_TYPE', 'dst'],
    ['roundBfloat16(src, detached)', () => roundBfloat16(new Float32Array(4), detached()), 'TypeError', 'ERR_SWITCH_DETACHED', 'dst'],
  ];

  it.each(table)('%s throws a coded error', (_what, call, errorClass, code, argument) => {
    let thrown: unknown;
    try {
      call();
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(errorClass === 'TypeError' ? TypeError : RangeError);
    expect((thrown as { code?: string }).code).toBe(code);
    expect((thrown as Error).message).toContain(argument);
  });

  it('leaves the process working after every bad call', () => {
    for (const [, call] of table) expect(call).toThrow();
    expect(Array.from(fromBfloat16(toBfloat16(new Float32Array([1.5, -0, Infinity]))))).toEqual([1.5, -0, Infinity]);
  });
});
