// A small safetensors reader/writer for float32 tensors: 8-byte little-endian header length, a JSON
// header { name: { dtype: "F32", shape, data_offsets: [begin, end] }, "__metadata__": {...} } padded
// with spaces to a multiple of 8, then the raw little-endian data. And atomic file/directory writes.
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync, mkdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { codedError } from '../errors.js';

export interface Tensor {
  shape: number[];
  data: Float32Array;
}

export function encodeSafetensors(tensors: Record<string, Tensor>, metadata: Record<string, string> = {}): Buffer {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  const names = Object.keys(tensors);
  for (const name of names) {
    const { shape, data } = tensors[name];
    if (shape.reduce((a, b) => a * b, 1) !== data.length)
      throw codedError('ERR_CHECKPOINT', `tensor '${name}' has ${data.length} elements, not shape [${shape}]`);
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + headerBytes.length + offset);
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(out, 8);
  let at = 8 + headerBytes.length;
  for (const name of names) {
    const { data } = tensors[name];
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw codedError('ERR_CHECKPOINT', 'big-endian hosts are not supported');
    bytes.copy(out, at);
    at += data.byteLength;
  }
  return out;
}

export function decodeSafetensors(bytes: Buffer, source = 'safetensors'): { tensors: Record<string, Tensor>; metadata: Record<string, string> } {
  const fail = (why: string) => codedError('ERR_CHECKPOINT', `${source}: ${why}`);
  if (bytes.length < 8) throw fail('file shorter than its 8-byte header length');
  const headerLength = Number(bytes.readBigUInt64LE(0));
  if (headerLength > bytes.length - 8) throw fail(`header length ${headerLength} runs past the end of the file`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  } catch {
    throw fail('header is not JSON');
  }
  const dataStart = 8 + headerLength;
  const tensors: Record<string, Tensor> = {};
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = entry as unknown as Record<string, string>;
      continue;
    }
    if (entry.dtype !== 'F32') throw fail(`tensor '${name}' has dtype ${entry.dtype}; only F32 is supported`);
    const [begin, end] = entry.data_offsets;
    const n = entry.shape.reduce((a, b) => a * b, 1);
    if (!(begin >= 0 && end - begin === n * 4 && dataStart + end <= bytes.length))
      throw fail(`tensor '${name}' offsets [${begin}, ${end}] do not match shape [${entry.shape}] or the file size`);
    const data = new Float32Array(n);
    Buffer.from(data.buffer).set(bytes.subarray(dataStart + begin, dataStart + end));
    tensors[name] = { shape: entry.shape, data };
  }
  return { tensors, metadata };
}

export function readSafetensors(path: string) {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch {
    throw codedError('ERR_CHECKPOINT', `cannot read '${path}'`);
  }
  return decodeSafetensors(bytes, path);
}

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes the whole file to a temporary name in the same folder, fsyncs it, then renames it over `path`. */
export function writeFileAtomic(path: string, data: Buffer | string): void {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Date.now()}`);
  const fd = openSync(tmp, 'w');
  try {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let written = 0;
    while (written < buf.length) written += writeSync(fd, buf, written, buf.length - written);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  try {
    fsyncPath(dirname(path));
  } catch {
    // Some file systems cannot fsync a directory; the rename is still atomic.
  }
}

/**
 * Writes a directory atomically: `fill` writes into a fresh temporary sibling directory, whose
 * files are fsynced, then it is renamed into place (an existing directory is moved aside first and
 * removed after).
 */
export function writeDirectoryAtomic(dir: string, fill: (tmp: string) => void): void {
  const parent = dirname(dir);
  mkdirSync(parent, { recursive: true });
  const stamp = `${process.pid}-${Date.now()}`;
  const tmp = join(parent, `.${basename(dir)}.tmp-${stamp}`);
  mkdirSync(tmp);
  try {
    fill(tmp);
  } catch (error) {
    rmSync(tmp, { recursive: true, force: true });
    throw error;
  }
  fsyncPath(tmp);
  let old: string | undefined;
  if (existsSync(dir)) {
    old = join(parent, `.${basename(dir)}.old-${stamp}`);
    renameSync(dir, old);
  }
  renameSync(tmp, dir);
  try {
    fsyncPath(parent);
  } catch {
    // as above
  }
  if (old) rmSync(old, { recursive: true, force: true });
}
