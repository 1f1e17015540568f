// bfloat16 conversion (SPEC §2): round to nearest even on the top 16 bits of a float32; NaN stays
// a quiet NaN with its sign, ±Inf and ±0 stay, subnormals round, overflow gives ±Inf. The native
// kernels check every argument (TypeError/RangeError with a stable `code`) and run threaded SIMD.
import { native } from './native.js';

/**
 * Rounds each float32 of `src` to bfloat16 (the bits, in a Uint16Array). Writes into `dst` when
 * given (its length must equal `src.length`) and returns the array written.
 */
export function toBfloat16(src: Float32Array, dst?: Uint16Array): Uint16Array {
  return native.toBfloat16(src, dst) as Uint16Array;
}

/** Widens bfloat16 bits to float32 (exact). Writes into `dst` when given; returns the array written. */
export function fromBfloat16(src: Uint16Array, dst?: Float32Array): Float32Array {
  return native.fromBfloat16(src, dst) as Float32Array;
}

/**
 * `fromBfloat16(toBfloat16(src))` in one pass: float32 values rounded to the nearest bfloat16, what
 * a bf16 wire does to them. `dst` may be `src` itself (in place). Returns the array written.
 */
export function roundBfloat16(src: Float32Array, dst?: Float32Array): Float32Array {
  return native.roundBfloat16(src, dst) as Float32Array;
}
