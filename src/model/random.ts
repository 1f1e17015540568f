// A small seeded generator (xoshiro128**) whose whole state is four 32-bit words, so training can
// save it in a checkpoint and continue the same stream after a resume.

export type RandomState = [number, number, number, number];

export class Random {
  private s: Uint32Array;

  constructor(seed: number | RandomState = 0) {
    this.s = new Uint32Array(4);
    if (Array.isArray(seed)) {
      this.s.set(seed);
    } else {
      // splitmix32 spreads the seed over the four words (a zero state would stay zero).
      let x = (seed >>> 0) ^ 0x9e3779b9;
      for (let i = 0; i < 4; i++) {
        x = (x + 0x9e3779b9) >>> 0;
        let z = x;
        z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
        z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
        this.s[i] = (z ^ (z >>> 16)) >>> 0;
      }
      if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
    }
  }

  get state(): RandomState {
    return [this.s[0], this.s[1], this.s[2], this.s[3]];
  }

  set state(state: RandomState) {
    this.s.set(state);
  }

  /** A uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  uniform(): number {
    return this.nextUint32() / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** Standard normal (Box–Muller; one value per call, so the stream position is simple to reason about). */
  normal(): number {
    const u1 = (this.nextUint32() + 1) / 4294967297;
    const u2 = this.uniform();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  /** Fisher–Yates shuffle in place. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * §2.4 / Table 3 initialisation: truncated normal, mean 0, σ = sqrt(scale / fanIn), values beyond 2σ
 * redrawn.
 */
export function truncatedNormal(out: Float32Array, fanIn: number, scale: number, random: Random): Float32Array {
  const sigma = Math.sqrt(scale / fanIn);
  for (let i = 0; i < out.length; i++) {
    let z = random.normal();
    while (Math.abs(z) > 2) z = random.normal();
    out[i] = z * sigma;
  }
  return out;
}
