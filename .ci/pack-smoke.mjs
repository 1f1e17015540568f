// Runs inside an empty project that installed the packed tarball with no compiler on PATH.
import * as st from 'switch-transformer';
import assert from 'node:assert/strict';

const info = st.cpuInfo();
assert.ok(info.threads >= 1);
const loaded = (await import('node:module')).createRequire(import.meta.url).resolve('switch-transformer');
assert.ok(loaded.includes('node_modules/switch-transformer'), loaded);
if (typeof st.toBfloat16 === 'function') {
  const x = new Float32Array([1, -2.5, 3.140625, Infinity]);
  const back = st.fromBfloat16(st.toBfloat16(x));
  assert.deepEqual(Array.from(back), [1, -2.5, 3.140625, Infinity]);
}
if (typeof st.matmul === 'function') {
  const a = new Float32Array([1, 2, 3, 4]);
  const b = new Float32Array([5, 6, 7, 8]);
  const c = st.matmul(a, b, { m: 2, n: 2, k: 2 });
  assert.deepEqual(Array.from(c), [19, 22, 43, 50]);
}
console.log('pack-and-install: 1 passed, 0 failed');
