// Option checking shared by the feed-forward layers: coded errors naming the option and what it expects.
import { rangeError, typeError } from '../errors.js';
import { native } from '../native.js';

export function optionError(name: string, expected: string, got: unknown): Error {
  return rangeError('ERR_SWITCH_OPTION', `option '${name}' must be ${expected}, got ${String(got)}`);
}

export function checkKnownOptions(options: object, known: readonly string[], layer: string): void {
  if (options === null || typeof options !== 'object')
    throw typeError('ERR_SWITCH_OPTION', `${layer} options must be an object`);
  for (const key of Object.keys(options))
    if (!known.includes(key))
      throw rangeError('ERR_SWITCH_OPTION', `${layer}: unknown option '${key}' (known: ${known.join(', ')})`);
}

export function positiveInteger(name: string, value: unknown, fallback?: number): number {
  const v = value === undefined ? fallback : value;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 2 ** 30)
    throw optionError(name, 'a positive integer', v);
  return v;
}

export function nonNegativeInteger(name: string, value: unknown, fallback: number): number {
  const v = value === undefined ? fallback : value;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 2 ** 30)
    throw optionError(name, 'a non-negative integer', v);
  return v;
}

export function finiteInRange(name: string, value: unknown, fallback: number, lo: number, hi: number,
  loOpen = false, hiOpen = false): number {
  const v = value === undefined ? fallback : value;
  const ok = typeof v === 'number' && Number.isFinite(v) && (loOpen ? v > lo : v >= lo) && (hiOpen ? v < hi : v <= hi);
  if (!ok) throw optionError(name, `a number in ${loOpen ? '(' : '['}${lo}, ${hi}${hiOpen ? ')' : ']'}`, v);
  return v as number;
}

export function oneOf<T extends string | number>(name: string, value: unknown, fallback: T, allowed: readonly T[]): T {
  const v = value === undefined ? fallback : value;
  if (!allowed.includes(v as T)) throw optionError(name, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`, v);
  return v as T;
}

export function seedOption(value: unknown): number {
  const v = value === undefined ? 0 : value;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw optionError('seed', 'a non-negative safe integer', v);
  return v;
}

export function booleanOption(name: string, value: unknown, fallback: boolean): boolean {
  const v = value === undefined ? fallback : value;
  if (typeof v !== 'boolean') throw optionError(name, 'a boolean', v);
  return v;
}

/** x (T, D): a Float32Array whose length is a positive multiple of D, all finite. */
export function checkTokens(name: string, x: unknown, D: number): number {
  if (!(x instanceof Float32Array)) throw typeError('ERR_SWITCH_ARG_TYPE', `argument '${name}' must be a Float32Array (T, ${D})`);
  if (x.length === 0 || x.length % D !== 0)
    throw rangeError('ERR_SWITCH_SHAPE',
      `argument '${name}' must have T · ${D} elements (shape (T, ${D}), T >= 1), got ${x.length}`);
  const i = native.switchFirstNonFinite(x) as number;
  if (i >= 0) throw rangeError('ERR_SWITCH_NAN', `argument '${name}' has a non-finite value (${x[i]}) at element ${i}`);
  return x.length / D;
}

export function checkParam(name: string, value: unknown, length: number, shape: string): Float32Array {
  if (!(value instanceof Float32Array)) throw typeError('ERR_SWITCH_ARG_TYPE', `parameter '${name}' must be a Float32Array ${shape}`);
  if (value.length !== length)
    throw rangeError('ERR_SWITCH_SHAPE', `parameter '${name}' must have ${length} elements (shape ${shape}), got ${value.length}`);
  return value;
}

/** Checks a value assigned to a layer's `trainingCalls` (a count of training calls, the state of its random streams). */
export function trainingCallsValue(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 2 ** 30)
    throw rangeError('ERR_SWITCH_OPTION', `'trainingCalls' must be an integer in [0, 2^30], got ${String(value)}`);
  return value;
}
