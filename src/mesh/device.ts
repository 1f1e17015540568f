// One device of a mesh (SPEC §3), as its program sees it: its rank, its coordinates on the named
// axes, and the collectives over the whole mesh or one axis. Collectives complete synchronously
// (a device process has nothing else to do while it waits) and return the array they filled;
// callers may `await` them all the same.
import { native } from '../native.js';
import { rangeError, typeError } from '../errors.js';

export type Wire = 'float32' | 'bf16';

export interface CollectiveOptions {
  /** Run within this axis' groups (devices sharing every other coordinate); default: the whole mesh. */
  axis?: string;
  /** Override the mesh's wire for this call (e.g. float32 for gradients). */
  wire?: Wire;
}

export interface BroadcastOptions extends CollectiveOptions {
  /** The sending device's index within the group (default 0). */
  root?: number;
}

export interface MeshStats {
  /** Collective calls since the start (or `resetStats`). */
  calls: number;
  /** Seconds spent inside collectives. */
  seconds: number;
  /** Of those, seconds spent waiting for peers. */
  waitSeconds: number;
  /** Bytes this device wrote to the wire. */
  bytesSent: number;
  /** Bytes this device received by reading the sender's own buffer (one copy, not two). */
  bytesReadInPlace: number;
  /** Of those, bytes read from a peer's process memory by cross-memory attach (plain arrays). */
  bytesCrossMemory: number;
  /** Whether this device may read its peers' memory (cross-memory attach; SWITCH_MESH_CROSS_MEMORY=0 turns it off). */
  crossMemory: boolean;
}

/** What the launcher tells each device process (the JSON in its environment). */
export interface DeviceConfig {
  rank: number;
  /** [name, size] in the mesh's order (the last axis varies fastest). */
  axes: [string, number][];
  wire: Wire;
  timeoutMs: number;
}

/**
 * @internal The native functions a device's collectives run on: the shared-memory arena of
 * `launchMesh` (the default) or an MPI library (`backend: 'mpi'`). Same arguments, same results.
 */
export interface Transport {
  group(handle: unknown, kind: number): { ranks: number[]; index: number };
  barrier(handle: unknown, kind: number): void;
  broadcast(handle: unknown, kind: number, buffer: Float32Array, root: number, wire: number): Float32Array;
  allReduce(handle: unknown, kind: number, send: Float32Array, recv: Float32Array, wire: number): Float32Array;
  allGather(handle: unknown, kind: number, send: Float32Array, recv: Float32Array, wire: number): Float32Array;
  reduceScatter(handle: unknown, kind: number, send: Float32Array, recv: Float32Array, wire: number): Float32Array;
  allToAll(handle: unknown, kind: number, send: Float32Array, recv: Float32Array, wire: number): Float32Array;
  /** The last allToAll's two arrays again (the caller checked they are the same, at the same length); false: make the full call. */
  allToAllAgain?(handle: unknown, kind: number, wire: number): boolean;
  allToAllv(handle: unknown, kind: number, send: Float32Array, sendCounts: Int32Array | number[], recv: Float32Array,
            recvCounts: Int32Array | number[], wire: number): Float32Array;
  alloc(handle: unknown, n: number): Float32Array;
  benchAllToAll(handle: unknown, kind: number, send: Float32Array, recv: Float32Array, wire: number, repeats: number): Float64Array;
  stats(handle: unknown): MeshStats;
  resetStats(handle: unknown): void;
  setTimeout(handle: unknown, timeoutMs: number): void;
}

/** The transport over the shared-memory arena of one host. */
export const SHARED_MEMORY: Transport = {
  group: native.meshGroup, barrier: native.meshBarrier, broadcast: native.meshBroadcast,
  allReduce: native.meshAllReduce, allGather: native.meshAllGather, reduceScatter: native.meshReduceScatter,
  allToAll: native.meshAllToAll, allToAllAgain: native.meshAllToAllAgain, allToAllv: native.meshAllToAllv, alloc: native.meshAlloc,
  benchAllToAll: native.meshBenchAllToAll,
  stats: native.meshStats, resetStats: native.meshResetStats, setTimeout: native.meshSetTimeout,
};

const WIRE_CODE: Record<Wire, number> = { float32: 0, bf16: 1 };
const NO_OPTIONS: CollectiveOptions = Object.freeze({});
/** allToAll arrays up to this many elements are remembered for the next call (below the 32 KiB page adoption). */
const SMALL_ELEMENTS = 8191;

function isFloat32Array(v: unknown): v is Float32Array {
  return v instanceof Float32Array;
}

export class Device {
  /** This device's index in the mesh, 0 ... size − 1. */
  readonly rank: number;
  /** Devices in the mesh. */
  readonly size: number;
  /** Axis sizes by name, in the mesh's order. */
  readonly axes: Readonly<Record<string, number>>;
  /** This device's coordinate on each axis (row-major: the last axis varies fastest). */
  readonly coords: Readonly<Record<string, number>>;
  /** The mesh's wire precision (each call may override it). */
  readonly wire: Wire;
  readonly timeoutMs: number;
  readonly #handle: unknown;
  readonly #t: Transport;
  readonly #axisNames: string[];
  readonly #groups = new Map<string, { ranks: number[]; index: number }>();
  #lastSend: Float32Array | undefined;
  #lastRecv: Float32Array | undefined;
  #lastLength = -1;

  /** @internal Devices are made by the mesh launcher, one per process. */
  constructor(handle: unknown, config: DeviceConfig, transport: Transport = SHARED_MEMORY) {
    this.#handle = handle;
    this.#t = transport;
    this.rank = config.rank;
    this.wire = config.wire;
    this.timeoutMs = config.timeoutMs;
    this.#axisNames = config.axes.map(([name]) => name);
    const axes: Record<string, number> = {};
    const coords: Record<string, number> = {};
    let size = 1;
    for (const [name, n] of config.axes) size *= n;
    let stride = size;
    for (const [name, n] of config.axes) {
      stride /= n;
      axes[name] = n;
      coords[name] = Math.floor(config.rank / stride) % n;
    }
    this.size = size;
    this.axes = Object.freeze(axes);
    this.coords = Object.freeze(coords);
  }

  /** Devices in this device's group along `axis` (the whole mesh when omitted). */
  groupSize(axis?: string): number {
    return this.#group(axis).ranks.length;
  }

  /** This device's index within its group along `axis` (its rank when omitted). */
  groupIndex(axis?: string): number {
    return this.#group(axis).index;
  }

  /** The mesh ranks of this device's group along `axis`, by index within the group. */
  groupRanks(axis?: string): number[] {
    return [...this.#group(axis).ranks];
  }

  /** Returns when every device of the group has entered the barrier. */
  barrier(options: CollectiveOptions = NO_OPTIONS): void {
    this.#t.barrier(this.#handle, this.#kind(options, 'barrier'));
  }

  /** Copies the root's `buffer` into every device's `buffer` (in place). */
  broadcast(buffer: Float32Array, options: BroadcastOptions = {}): Float32Array {
    const kind = this.#kind(options, 'broadcast');
    const root = options.root ?? 0;
    const size = this.groupSize(options.axis);
    if (!Number.isInteger(root) || root < 0 || root >= size)
      throw rangeError('ERR_SWITCH_OPTION', `broadcast: option 'root' must be an integer in [0, ${size - 1}] (an index within the group), got ${String(root)}`);
    return this.#t.broadcast(this.#handle, kind, buffer, root, this.#wire(options, 'broadcast'));
  }

  /**
   * recv = Σ over the group of each device's `send` (float32 sums in group order, so the result is
   * bit-identical run to run and on every device; on a bf16 wire each contribution is rounded
   * before it is summed). `recv` defaults to a new array; it may be `send` itself.
   */
  allReduce(send: Float32Array, recv?: Float32Array | CollectiveOptions, options?: CollectiveOptions): Float32Array {
    const [out, opts] = this.#recvAndOptions(recv, options, () => new Float32Array(lengthOf(send, 'allReduce')));
    return this.#t.allReduce(this.#handle, this.#kind(opts, 'allReduce'), send, out, this.#wire(opts, 'allReduce'));
  }

  /** recv: [P, n], chunk q = device q's `send` ([n]). */
  allGather(send: Float32Array, recv?: Float32Array | CollectiveOptions, options?: CollectiveOptions): Float32Array {
    const [out, opts] = this.#recvAndOptions(recv, options, (o) => new Float32Array(lengthOf(send, 'allGather') * this.groupSize(o.axis)));
    return this.#t.allGather(this.#handle, this.#kind(opts, 'allGather'), send, out, this.#wire(opts, 'allGather'));
  }

  /** send: [P, n]; recv: [n] = Σ_q chunk (this index) of device q's `send`, in group order. */
  reduceScatter(send: Float32Array, recv?: Float32Array | CollectiveOptions, options?: CollectiveOptions): Float32Array {
    const [out, opts] = this.#recvAndOptions(recv, options, (o) => {
      const P = this.groupSize(o.axis);
      const n = lengthOf(send, 'reduceScatter');
      if (n % P !== 0)
        throw rangeError('ERR_SWITCH_SHAPE', `reduceScatter: argument 'send' must have a multiple of ${P} elements (one chunk per peer), got ${n}`);
      return new Float32Array(n / P);
    });
    return this.#t.reduceScatter(this.#handle, this.#kind(opts, 'reduceScatter'), send, out, this.#wire(opts, 'reduceScatter'));
  }

  /** send, recv: [P, n]; chunk p of `send` goes to peer p, chunk q of `recv` came from peer q. */
  allToAll(send: Float32Array, recv?: Float32Array | CollectiveOptions, options?: CollectiveOptions): Float32Array {
    // The common call, (send, recv, options), without allocating: it sets the latency floor.
    if (recv instanceof Float32Array) {
      const opts = options ?? NO_OPTIONS;
      const kind = this.#kind(opts, 'allToAll'), wire = this.#wire(opts, 'allToAll');
      // The same two arrays as last time (a layer's workspaces, a benchmark's loop), still whole (a
      // detached or shrunk buffer changes its length): the native side reuses their checked views.
      if (send === this.#lastSend && recv === this.#lastRecv && send.length === this.#lastLength &&
          recv.length === this.#lastLength && this.#t.allToAllAgain?.(this.#handle, kind, wire)) return recv;
      const out = this.#t.allToAll(this.#handle, kind, send, recv, wire);
      // Held only while small (what the native side remembers is below the page-adoption size).
      const small = send.length <= SMALL_ELEMENTS;
      this.#lastSend = small ? send : undefined;
      this.#lastRecv = small ? recv : undefined;
      this.#lastLength = send.length;
      return out;
    }
    const [out, opts] = this.#recvAndOptions(recv, options, () => new Float32Array(lengthOf(send, 'allToAll')));
    return this.#t.allToAll(this.#handle, this.#kind(opts, 'allToAll'), send, out, this.#wire(opts, 'allToAll'));
  }

  /**
   * For benchmarks: `repeats` × (a barrier, then `allToAll(send, recv, options)`), the loop and its
   * clock inside native code (as an MPI program times itself); returns each all-to-all's seconds.
   * Every device of the group must call it with the same `repeats`.
   */
  benchAllToAll(send: Float32Array, recv: Float32Array, repeats: number, options: CollectiveOptions = NO_OPTIONS): Float64Array {
    if (!Number.isInteger(repeats) || repeats < 1)
      throw rangeError('ERR_SWITCH_RANGE', `benchAllToAll: 'repeats' must be a positive integer, got ${String(repeats)}`);
    return this.#t.benchAllToAll(this.#handle, this.#kind(options, 'benchAllToAll'), send, recv,
      this.#wire(options, 'benchAllToAll'), repeats);
  }

  /**
   * All-to-all with per-peer sizes: `send` holds sendCounts[p] elements for each peer p, packed in
   * peer order; `recv` receives recvCounts[q] elements from each peer q, packed the same way.
   * recvCounts[q] must equal peer q's sendCounts[this index] (checked: ERR_MESH_MISMATCH).
   */
  allToAllv(send: Float32Array, sendCounts: ArrayLike<number>, recv: Float32Array, recvCounts: ArrayLike<number>,
            options: CollectiveOptions = NO_OPTIONS): Float32Array {
    const kind = this.#kind(options, 'allToAllv');
    const counts = (c: ArrayLike<number>, name: string): Int32Array | number[] => {
      if (c instanceof Int32Array) return c;
      if (Array.isArray(c)) return c;
      if (c && typeof c === 'object' && typeof (c as ArrayLike<number>).length === 'number') return Array.from(c);
      throw typeError('ERR_SWITCH_ARG_TYPE', `allToAllv: argument '${name}' must be an Int32Array or an array of counts`);
    };
    return this.#t.allToAllv(this.#handle, kind, send, counts(sendCounts, 'sendCounts'), recv,
      counts(recvCounts, 'recvCounts'), this.#wire(options, 'allToAllv'));
  }

  /**
   * A Float32Array of n elements in this device's shared heap (see `heapBytes` of `launchMesh`;
   * never freed; over MPI an ordinary array). An all-to-all on the float32 wire whose `send` lives there is read by the peers
   * in place: one copy instead of two. Allocate dispatch buffers once and reuse them.
   */
  alloc(n: number): Float32Array {
    if (!Number.isInteger(n) || n < 0)
      throw rangeError('ERR_SWITCH_RANGE', `alloc: 'n' must be a non-negative integer, got ${String(n)}`);
    return this.#t.alloc(this.#handle, n);
  }

  /**
   * The receive counts of an `allToAllv`: given how many elements this device sends to each peer
   * of the group, returns how many each peer sends to it (one small all-to-all, float32 wire:
   * counts up to 2^24 are exact).
   */
  exchangeCounts(sendCounts: ArrayLike<number>, options: Pick<CollectiveOptions, 'axis'> = {}): Int32Array {
    const P = this.groupSize(options.axis);
    if (!sendCounts || typeof sendCounts.length !== 'number' || sendCounts.length !== P)
      throw rangeError('ERR_SWITCH_SHAPE', `exchangeCounts: argument 'sendCounts' must have one count per peer (${P})`);
    const send = new Float32Array(P);
    for (let p = 0; p < P; p++) {
      const c = sendCounts[p];
      if (!Number.isInteger(c) || c < 0 || c > 2 ** 24)
        throw rangeError('ERR_SWITCH_RANGE', `exchangeCounts: sendCounts[${p}] must be an integer in [0, 2^24], got ${String(c)}`);
      send[p] = c;
    }
    const recv = this.allToAll(send, new Float32Array(P), { axis: options.axis, wire: 'float32' });
    return Int32Array.from(recv);
  }

  /** Time and bytes spent in collectives since the start or the last `resetStats()`. */
  stats(): MeshStats {
    return this.#t.stats(this.#handle);
  }

  resetStats(): void {
    this.#t.resetStats(this.#handle);
  }

  /** Changes the bound on every wait of this device's later collectives. */
  setTimeout(timeoutMs: number): void {
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1)
      throw rangeError('ERR_SWITCH_OPTION', `setTimeout: 'timeoutMs' must be a positive integer, got ${String(timeoutMs)}`);
    this.#t.setTimeout(this.#handle, timeoutMs);
  }

  #group(axis: string | undefined): { ranks: number[]; index: number } {
    const key = axis ?? '';
    let g = this.#groups.get(key);
    if (!g) {
      g = this.#t.group(this.#handle, this.#kind({ axis }, 'group')) as { ranks: number[]; index: number };
      this.#groups.set(key, g);
    }
    return g;
  }

  #kind(options: CollectiveOptions, fn: string): number {
    if (options === null || typeof options !== 'object')
      throw typeError('ERR_SWITCH_ARG_TYPE', `${fn}: options must be an object like { axis, wire }`);
    const axis = options.axis;
    if (axis === undefined) return 0;
    const i = this.#axisNames.indexOf(axis);
    if (i < 0)
      throw rangeError('ERR_SWITCH_OPTION', `${fn}: unknown axis ${JSON.stringify(axis)}; the mesh has axes ${this.#axisNames.map((a) => `'${a}'`).join(', ')}`);
    return i + 1;
  }

  #wire(options: CollectiveOptions, fn: string): number {
    if (options.wire === undefined) return WIRE_CODE[this.wire];
    const wire = options.wire;
    const code = WIRE_CODE[wire as Wire];
    if (code === undefined || !Object.hasOwn(WIRE_CODE, wire))
      throw rangeError('ERR_SWITCH_OPTION', `${fn}: option 'wire' must be 'float32' or 'bf16', got ${JSON.stringify(wire)}`);
    return code;
  }

  #recvAndOptions(recv: Float32Array | CollectiveOptions | undefined, options: CollectiveOptions | undefined,
                  allocate: (o: CollectiveOptions) => Float32Array): [Float32Array, CollectiveOptions] {
    // (The collectives take a shortcut around this when `recv` is given: see allToAll.)
    if (isFloat32Array(recv)) return [recv, options ?? {}];
    if (recv !== undefined && options !== undefined)
      throw typeError('ERR_SWITCH_ARG_TYPE', "argument 'recv' must be a Float32Array");
    const opts = (recv as CollectiveOptions | undefined) ?? {};
    if (opts === null || typeof opts !== 'object' || ArrayBuffer.isView(opts))
      throw typeError('ERR_SWITCH_ARG_TYPE', "argument 'recv' must be a Float32Array (or pass options { axis, wire })");
    return [allocate(opts), opts];
  }
}

function lengthOf(send: unknown, fn: string): number {
  if (!isFloat32Array(send)) throw typeError('ERR_SWITCH_ARG_TYPE', `${fn}: argument 'send' must be a Float32Array`);
  return send.length;
}
