// Float32 matrix products on the native kernels: the plain matmul and the grouped expert matmuls
// of the Switch layer (dispatch → experts → combine). M, N, K = product sizes; E = experts.
// All arrays are row-major and dense. Every argument is checked natively before memory is touched:
// a wrong type throws TypeError (code ERR_SWITCH_ARG_TYPE, ERR_SWITCH_DETACHED or ERR_SWITCH_OPTION),
// a wrong length or an index out of range throws RangeError (ERR_SWITCH_SHAPE, ERR_SWITCH_RANGE),
// and the message names the argument and the expected shape.
import { native } from './native.js';

export interface MatmulOptions {
  /** Rows of the product. */
  m: number;
  /** Columns of the product. */
  n: number;
  /** Depth: columns of op(a), rows of op(b). */
  k: number;
  /** `a` holds Aᵀ, shape (k, m), instead of A (m, k). */
  transA?: boolean;
  /** `b` holds Bᵀ, shape (n, k), instead of B (k, n). */
  transB?: boolean;
  /** Where to write the product (m·n elements); a new array when absent. Must not overlap `a` or `b`. */
  out?: Float32Array;
  /** Add the product into `out` instead of overwriting it (needs `out`). */
  accumulate?: boolean;
}

/**
 * C (m, n) = [C +] op(A) (m, k) · op(B) (k, n). Returns the array written (`options.out` or a new one).
 * @example matmul(a, b, { m: 2, n: 2, k: 2 })
 */
export function matmul(a: Float32Array, b: Float32Array, options: MatmulOptions): Float32Array {
  return native.matmul(a, b, options) as Float32Array;
}

export interface GroupedMatmulOptions {
  /** Columns of x (d_model for the expert input layer). */
  k: number;
  /** Columns of the output (d_ff for the expert input layer). */
  n: number;
  /**
   * Row i of the product takes row gather[i] of x (the dispatch index list), length offsets[E];
   * x then has any number of rows. Without it x holds the offsets[E] rows in dispatched order.
   */
  gather?: Int32Array;
  /**
   * Row i of the product is added into row scatter[i] of the output (the combine), in row order,
   * length offsets[E]. The output then has `outRows` rows (or out.length / n).
   */
  scatter?: Int32Array;
  /** With `scatter`: row i is multiplied by scale[i] (the gate) before it is added. Length offsets[E]. */
  scale?: Float32Array;
  /** `w` holds each expert's weight transposed, (E, n, k), instead of (E, k, n). */
  transW?: boolean;
  /** With `scatter` and no `out`: rows of the new, zeroed output (tokens). */
  outRows?: number;
  /** Where to write: (offsets[E], n), or (outRows, n) with `scatter`. A new array when absent. */
  out?: Float32Array;
  /** Add into `out` instead of overwriting it (needs `out`; scattered rows are always added). */
  accumulate?: boolean;
}

/**
 * The grouped expert matmul: expert e (rows offsets[e] … offsets[e+1]−1 of the dispatched order)
 * multiplies its rows of x by its own weight w[e] (k, n). The gather is folded into the kernel's
 * packing (no copy of x is made) and the scatter-with-scale into its write-back.
 * `offsets` (E + 1) starts at 0 and never decreases; `w` is (E, k, n) or (E, n, k) with `transW`.
 * Returns the array written.
 */
export function groupedMatmul(
  x: Float32Array,
  w: Float32Array,
  offsets: Int32Array,
  options: GroupedMatmulOptions,
): Float32Array {
  return native.groupedMatmul(x, w, offsets, options) as Float32Array;
}

export interface GroupedMatmulWeightGradOptions {
  /** Columns of x: rows of each dw[e]. */
  k: number;
  /** Columns of dy: columns of each dw[e]. */
  n: number;
  /** Row i of the group takes row gatherX[i] of x (length offsets[E]); without it x is (offsets[E], k). */
  gatherX?: Int32Array;
  /** Row i of the group takes row gatherDy[i] of dy (length offsets[E]); without it dy is (offsets[E], n). */
  gatherDy?: Int32Array;
  /** Where to write dw (E, k, n); a new array when absent. */
  out?: Float32Array;
  /** Add into `out` (gradient accumulation; needs `out`). */
  accumulate?: boolean;
}

/**
 * The weight gradient of the grouped matmul: dw[e] (k, n) = [dw[e] +] Σ over the rows i of group e
 * of x[gatherX[i]]ᵀ · dy[gatherDy[i]], the gathers folded into the packing. An empty group gets
 * zeros (or is left as is with `accumulate`). Returns the array written, (E, k, n).
 */
export function groupedMatmulWeightGrad(
  x: Float32Array,
  dy: Float32Array,
  offsets: Int32Array,
  options: GroupedMatmulWeightGradOptions,
): Float32Array {
  return native.groupedMatmulWeightGrad(x, dy, offsets, options) as Float32Array;
}
