'use strict';
// A runtime on a temporary home: boxes created, listed, inspected and removed without booting
// any. Host-only.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Runtime, BoxliteError } = require('..');

const homes = [];

/** A runtime on a fresh home folder (removed after the tests). */
async function openTemp() {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'boxlite-node-'));
  homes.push(home);
  return Runtime.open({ home });
}

test.after(() => {
  for (const home of homes) fs.rmSync(home, { recursive: true, force: true });
});

test('a fresh home has no box', async () => {
  const rt = await openTemp();
  try {
    assert.deepEqual(await rt.list(), []);
  } finally {
    await rt.close();
  }
});

test('get and remove of an unknown box reject with BOXLITE_NOT_FOUND', async () => {
  const rt = await openTemp();
  try {
    await assert.rejects(rt.get('nope'), (e) => e instanceof BoxliteError && e.code === 'BOXLITE_NOT_FOUND' && e.status === 2);
    await assert.rejects(rt.remove('nope'), { name: 'BoxliteError', code: 'BOXLITE_NOT_FOUND' });
  } finally {
    await rt.close();
  }
});

test('create refuses a bad name with BOXLITE_INVALID_ARGUMENT and an unknown option with a TypeError', async () => {
  const rt = await openTemp();
  try {
    await assert.rejects(rt.create({ name: 'bad name!' }), (e) => {
      assert.equal(e.code, 'BOXLITE_INVALID_ARGUMENT');
      assert.match(e.message, /bad name!/);
      return true;
    });
    await assert.rejects(rt.create({ memoryMB: 256 }), { name: 'TypeError', message: /memoryMB/ });
    assert.deepEqual(await rt.list(), []);
  } finally {
    await rt.close();
  }
});

test('a created box is listed as configured, described by info(), found by get(), then removed', async () => {
  const rt = await openTemp();
  try {
    const box = await rt.create({
      name: 'node-host',
      cpus: 2,
      memoryMib: 256,
      env: { GREETING: 'hi' },
      workingDir: '/tmp',
      readyTimeoutMs: 10000,
    });
    assert.match(box.id, /^[0-9a-f]+$/);
    assert.deepEqual(await rt.list(), [{ id: box.id, name: 'node-host', state: 'configured' }]);
    assert.equal(await box.state(), 'configured');
    const info = await box.info();
    assert.equal(info.id, box.id);
    assert.equal(info.name, 'node-host');
    assert.equal(info.options.cpus, 2);
    assert.equal(info.options.memory_mib, 256);
    assert.equal(typeof (await box.metrics()), 'object');

    const again = await rt.get('node-host');
    assert.equal(again.id, box.id);
    again.close();
    await assert.rejects(rt.create({ name: 'node-host' }), { code: 'BOXLITE_ALREADY_EXISTS' });

    box.close();
    box.close(); // a second close does nothing
    await assert.rejects(box.state(), { code: 'BOXLITE_INVALID_HANDLE' });
    await rt.remove(box.id);
    assert.deepEqual(await rt.list(), []);
  } finally {
    await rt.close();
  }
});

test('a box of the same home is seen by a second runtime', async () => {
  const rt = await openTemp();
  const box = await rt.create({ name: 'shared' });
  box.close();
  await rt.close();
  const reopened = await Runtime.open({ home: homes[homes.length - 1] });
  try {
    assert.deepEqual((await reopened.list()).map((b) => b.name), ['shared']);
  } finally {
    await reopened.close();
  }
});

test('a closed runtime rejects every call; closing it twice does nothing', async () => {
  const rt = await openTemp();
  const box = await rt.create({ name: 'orphan' });
  await rt.close();
  await rt.close();
  await assert.rejects(rt.list(), { code: 'BOXLITE_INVALID_HANDLE', message: /runtime is closed/ });
  await assert.rejects(rt.create({}), { code: 'BOXLITE_INVALID_HANDLE' });
  await assert.rejects(rt.get('orphan'), { code: 'BOXLITE_INVALID_HANDLE' });
  // The runtime's close invalidated the box's handle; the library says so.
  await assert.rejects(box.state(), { code: 'BOXLITE_INVALID_HANDLE' });
  box.close();
});

test('a home that is a regular file rejects with a clear error', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'boxlite-node-'));
  homes.push(dir);
  const file = path.join(dir, 'not-a-folder');
  fs.writeFileSync(file, '');
  await assert.rejects(Runtime.open({ home: file }), (e) => {
    assert.ok(e instanceof BoxliteError);
    assert.equal(e.code, 'BOXLITE_IO');
    assert.ok(e.message.includes(file), e.message);
    return true;
  });
});

test('strings with a NUL and bad numbers are refused before any C call', async () => {
  const rt = await openTemp();
  try {
    // koffi would cut 'a\0b' to 'a': refused instead, as the library refuses a bad name.
    await assert.rejects(rt.create({ name: 'a\0b' }), (e) => {
      assert.ok(e instanceof BoxliteError);
      assert.equal(e.code, 'BOXLITE_INVALID_ARGUMENT');
      assert.match(e.message, /NUL/);
      return true;
    });
    await assert.rejects(rt.create({ env: { K: 'v\0w' } }), { code: 'BOXLITE_INVALID_ARGUMENT' });
    await assert.rejects(rt.create({ env: { 'K\0': 'v' } }), { code: 'BOXLITE_INVALID_ARGUMENT' });
    await assert.rejects(rt.create({ workingDir: '/tmp\0/x' }), { code: 'BOXLITE_INVALID_ARGUMENT' });
    await assert.rejects(rt.create({ disks: [{ path: '/d\0isk' }] }), { code: 'BOXLITE_INVALID_ARGUMENT' });
    await assert.rejects(rt.create({ kernel: '/k\0' }), { code: 'BOXLITE_INVALID_ARGUMENT' });
    await assert.rejects(rt.get('a\0b'), { code: 'BOXLITE_INVALID_ARGUMENT' });
    await assert.rejects(rt.remove('a\0b'), { code: 'BOXLITE_INVALID_ARGUMENT' });
    await assert.rejects(rt.run(['echo', 'a\0b']), { code: 'BOXLITE_INVALID_ARGUMENT' });
    await assert.rejects(Runtime.open({ home: '/tmp/x\0y' }), { code: 'BOXLITE_INVALID_ARGUMENT' });
    // -1 would be u64::MAX and NaN 0; 1.5 would be 1.
    await assert.rejects(rt.create({ readyTimeoutMs: -1 }), { name: 'RangeError', message: /readyTimeoutMs/ });
    await assert.rejects(rt.create({ readyTimeoutMs: NaN }), { name: 'TypeError', message: /readyTimeoutMs/ });
    await assert.rejects(rt.create({ cpus: 1.5 }), { name: 'TypeError', message: /cpus/ });
    await assert.rejects(rt.create({ memoryMib: 2 ** 32 }), { name: 'RangeError', message: /memoryMib/ });
    await assert.rejects(rt.create({ name: 7 }), { name: 'TypeError', message: /name/ });
    assert.deepEqual(await rt.list(), []);

    // exec checks its options before calling C, so a configured box is never booted here.
    const box = await rt.create({ name: 'checks' });
    try {
      await assert.rejects(box.exec('echo', ['a\0b']), { code: 'BOXLITE_INVALID_ARGUMENT' });
      await assert.rejects(box.exec('ec\0ho'), { code: 'BOXLITE_INVALID_ARGUMENT' });
      await assert.rejects(box.exec('echo', { env: { K: 'v\0' } }), { code: 'BOXLITE_INVALID_ARGUMENT' });
      await assert.rejects(box.exec('echo', { env: { 'K=V': 'x' } }), { name: 'TypeError' });
      await assert.rejects(box.exec('echo', { cwd: '/\0tmp' }), { code: 'BOXLITE_INVALID_ARGUMENT' });
      await assert.rejects(box.exec('echo', { uid: -1 }), { name: 'RangeError', message: /uid/ });
      await assert.rejects(box.exec('echo', { gid: 0.5 }), { name: 'TypeError', message: /gid/ });
      await assert.rejects(box.exec('echo', { timeoutMs: -5 }), { name: 'RangeError', message: /timeoutMs/ });
      await assert.rejects(box.run('echo', { timeoutMs: NaN }), { name: 'TypeError', message: /timeoutMs/ });
      assert.equal(await box.state(), 'configured');
    } finally {
      box.close();
      await rt.remove('checks');
    }
  } finally {
    await rt.close();
  }
});
