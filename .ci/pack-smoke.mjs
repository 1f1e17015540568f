// Runs inside an empty project that installed the packed tarball with no compiler on PATH.
import * as st from 'switch-transformer';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
let passed = 0;

const info = st.cpuInfo();
assert.ok(info.threads >= 1);
if (process.env.SWITCH_TRANSFORMER_ISA) assert.equal(info.isa, process.env.SWITCH_TRANSFORMER_ISA);
const loaded = require.resolve('switch-transformer');
assert.ok(loaded.includes('node_modules/switch-transformer'), loaded);

// The addon is the prebuilt binary: nothing was compiled at install (no build/), and the loader
// resolves prebuilds/linux-x64.
const packageDir = dirname(require.resolve('switch-transformer/package.json'));
assert.ok(!existsSync(join(packageDir, 'build')), 'a build/ folder exists: the install compiled the addon');
const gypBuild = createRequire(join(packageDir, 'package.json'))('node-gyp-build');
assert.match(gypBuild.path(packageDir), /prebuilds\/linux-x64\/[^/]+\.node$/);
passed++;

if (typeof st.toBfloat16 === 'function') {
  const x = new Float32Array([1, -2.5, 3.140625, Infinity, 1.00390625, -0]);
  const narrow = st.toBfloat16(x);
  assert.deepEqual(Array.from(narrow), [0x3f80, 0xc020, 0x4049, 0x7f80, 0x3f80, 0x8000]);
  const back = st.fromBfloat16(narrow, new Float32Array(6));
  assert.deepEqual(Array.from(back), [1, -2.5, 3.140625, Infinity, 1, -0]);
  assert.deepEqual(Array.from(st.roundBfloat16(x)), Array.from(back));
  assert.throws(() => st.toBfloat16(x, new Uint16Array(2)), { code: 'ERR_SWITCH_SHAPE' });
  passed++;
}
if (typeof st.matmul === 'function') {
  const a = new Float32Array([1, 2, 3, 4]);
  const b = new Float32Array([5, 6, 7, 8]);
  const c = st.matmul(a, b, { m: 2, n: 2, k: 2 });
  assert.deepEqual(Array.from(c), [19, 22, 43, 50]);
  passed++;
}
console.log(`pack-and-install (${info.isa}): ${passed} passed, 0 failed`);
