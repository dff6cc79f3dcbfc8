'use strict';
// Loading libboxlite: discovery, the version and ABI checks, status names. Host-only.

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const boxlite = require('..');

const PACKAGE_DIR = path.join(__dirname, '..');

/** Runs `code` in a fresh node with `env` (merged into ours); returns its stderr and status. */
function runNode(code, env) {
  const res = spawnSync(process.execPath, ['-e', code], {
    cwd: PACKAGE_DIR,
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  return { status: res.status, stderr: res.stderr };
}

test('loads the library named by BOXLITE_LIBRARY, with ABI version 0', () => {
  assert.ok(process.env.BOXLITE_LIBRARY, 'run the tests with BOXLITE_LIBRARY set');
  assert.equal(boxlite.libraryPath(), process.env.BOXLITE_LIBRARY);
  assert.equal(boxlite.abiVersion(), 0);
  assert.match(boxlite.version(), /^\d+\.\d+\.\d+/);
});

test('every status constant has the name the library gives it', () => {
  assert.equal(Object.keys(boxlite.Status).length, 12);
  for (const [name, value] of Object.entries(boxlite.Status)) {
    assert.equal(boxlite.statusName(value), name);
  }
  assert.equal(boxlite.statusName(1000), 'BOXLITE_UNKNOWN');
});

test('a BoxliteError carries the status name and number', () => {
  const err = new boxlite.BoxliteError(boxlite.Status.BOXLITE_NOT_FOUND, 'no such box');
  assert.ok(err instanceof Error);
  assert.equal(err.name, 'BoxliteError');
  assert.equal(err.code, 'BOXLITE_NOT_FOUND');
  assert.equal(err.status, 2);
  assert.equal(err.message, 'no such box');
});

test('a missing BOXLITE_LIBRARY gives a load error naming the path and the install script', () => {
  const missing = '/nonexistent/boxlite-test/libboxlite.so';
  const { status, stderr } = runNode("require('.').version()", { BOXLITE_LIBRARY: missing });
  assert.notEqual(status, 0);
  assert.match(stderr, /libboxlite could not be loaded/);
  assert.ok(stderr.includes(`${missing} (BOXLITE_LIBRARY): not found`), stderr);
  assert.match(stderr, /scripts\/install\.sh/);
});

test('require() succeeds without the library; the first call reports it', () => {
  const code =
    "const b = require('.'); if (b.Status.BOXLITE_NOT_FOUND !== 2) process.exit(3);" +
    'b.Runtime.open().then(() => process.exit(4), (e) => { console.error(e.message); process.exit(5); });';
  const { status, stderr } = runNode(code, { BOXLITE_LIBRARY: '/nonexistent/libboxlite.so' });
  assert.equal(status, 5, stderr);
  assert.match(stderr, /libboxlite could not be loaded/);
});

test('a file that is not a shared library is reported with the loader error', () => {
  const { status, stderr } = runNode("require('.').version()", { BOXLITE_LIBRARY: __filename });
  assert.notEqual(status, 0);
  assert.ok(stderr.includes(`${__filename} (BOXLITE_LIBRARY): `), stderr);
  assert.doesNotMatch(stderr, /not found/);
});
