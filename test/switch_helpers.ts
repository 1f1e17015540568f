// Shared helpers of the Switch layer tests: fresh random inputs and tolerant comparisons.
import { expect, onTestFailed } from 'vitest';

/** A small seeded generator. Each test draws a fresh base seed, its n-th generator seed base + n;
 * a failing test prints the base, and SWITCH_TEST_SEED=base replays the test's inputs exactly. */
export function rng(seed = freshSeed()): { seed: number; next(): number } {
  let a = seed >>> 0;
  return {
    seed,
    next() {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    },
  };
}

let drawn: { test: string | undefined; base: number; count: number } | null = null;

function freshSeed(): number {
  const test = expect.getState().currentTestName;
  if (drawn === null || drawn.test !== test) {
    const replay = process.env.SWITCH_TEST_SEED;
    const base = replay !== undefined ? Number(replay) >>> 0 : (Math.random() * 2 ** 31) >>> 0;
    drawn = { test, base, count: 0 };
    try {
      onTestFailed(() => console.error(`${test}: its random inputs replay with SWITCH_TEST_SEED=${base}`));
    } catch {
      // Drawn outside a test (a module's top level): nothing to attach the message to.
    }
  }
  return (drawn.base + drawn.count++) >>> 0;
}

export function randomArray(n: number, r: { next(): number }, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let v = lo + (hi - lo) * r.next();
    if (v === 0) v = 0.5;
    out[i] = v;
  }
  return out;
}

/** max |a - b| ≤ atol + rtol · max |b| over the whole array (a scale-aware comparison). */
export function expectClose(a: ArrayLike<number>, b: ArrayLike<number>, rtol: number, atol: number, what: string): void {
  expect(a.length, `${what}: length`).toBe(b.length);
  let scale = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  let worst = 0, at = -1;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= worst)) { worst = d; at = i; }
  }
  const limit = atol + rtol * scale;
  expect(worst <= limit, `${what}: max |diff| ${worst} at ${at} (${a[at]} vs ${b[at]}) > ${limit}`).toBe(true);
}

export function expectAllFinite(a: ArrayLike<number>, what: string): void {
  for (let i = 0; i < a.length; i++)
    if (!Number.isFinite(a[i])) expect.fail(`${what}: element ${i} = ${a[i]} was not written`);
}
