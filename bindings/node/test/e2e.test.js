'use strict';
// Commands in a real box: streaming, stdin, backpressure, abort, signals, concurrency. Needs a
// host that boots guests: run with BOXLITE_E2E=1 (BOXLITE_RUNTIME_DIR naming the assets and
// BOXLITE_HOME a fresh folder). One box is shared by the tests, since each boot takes seconds.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { finished } = require('node:stream/promises');
const { setTimeout: sleep } = require('node:timers/promises');
const { Runtime } = require('..');

const E2E = process.env.BOXLITE_E2E === '1';
const SKIP_REASON = 'needs a host that boots boxes: set BOXLITE_E2E=1';
const TIMEOUT = { timeout: 60_000 };

/** Collects a Readable's chunks; `text()` is what it delivered so far. */
function collect(readable) {
  const chunks = [];
  readable.on('data', (chunk) => chunks.push(chunk));
  return { text: () => Buffer.concat(chunks).toString('utf8') };
}

/** Writes `chunk` to a Writable, resolving once it has been handed to the command. */
function write(writable, chunk) {
  return new Promise((resolve, reject) => writable.write(chunk, (e) => (e ? reject(e) : resolve())));
}

describe('a real box', () => {
  let rt;
  let box;

  before(async () => {
    if (!E2E) return;
    rt = await Runtime.open();
    box = await rt.create({ name: 'node-e2e', memoryMib: 256, env: { FROM: 'node' } });
    await box.start();
  }, TIMEOUT);

  after(async () => {
    if (!E2E) return;
    if (box) {
      await box.stop();
      box.close();
      await rt.remove('node-e2e');
    }
    await rt?.close();
  }, TIMEOUT);

  it('is running, with its id in info() and metrics as an object', TIMEOUT, async (t) => {
    if (!E2E) return t.skip(SKIP_REASON);
    assert.equal(await box.state(), 'running');
    assert.equal((await box.info()).id, box.id);
    assert.equal(typeof (await box.metrics()), 'object');
  });

  it('streams stdout and stderr apart and reports the exit code', TIMEOUT, async (t) => {
    if (!E2E) return t.skip(SKIP_REASON);
    const ex = await box.exec('sh', ['-c', 'echo out; echo err >&2; exit 3']);
    try {
      const out = collect(ex.stdout);
      const err = collect(ex.stderr);
      assert.deepEqual(await ex.wait(), { exitCode: 3, signal: 0 });
      assert.equal(out.text(), 'out\n');
      assert.equal(err.text(), 'err\n');
    } finally {
      ex.close();
    }
  });

  it('passes the box environment and per-exec env and cwd', TIMEOUT, async (t) => {
    if (!E2E) return t.skip(SKIP_REASON);
    const res = await box.run('sh', ['-c', 'echo "$FROM $EXTRA $(pwd)"'], { env: { EXTRA: 'x' }, cwd: '/dev' });
    assert.equal(res.stdout.toString(), 'node x /dev\n');
    assert.equal(res.exitCode, 0);
  });

  it('feeds stdin to cat in chunks and reads it back exactly', TIMEOUT, async (t) => {
    if (!E2E) return t.skip(SKIP_REASON);
    const ex = await box.exec('cat', [], { stdin: true });
    try {
      const out = collect(ex.stdout);
      for (const chunk of ['one\n', 'two\n', Buffer.from('three\n')]) await write(ex.stdin, chunk);
      ex.stdin.end();
      assert.deepEqual(await ex.wait(), { exitCode: 0, signal: 0 });
      assert.equal(out.text(), 'one\ntwo\nthree\n');
    } finally {
      ex.close();
    }
  });

  it('delivers a large output through a slow reader (backpressure)', TIMEOUT, async (t) => {
    if (!E2E) return t.skip(SKIP_REASON);
    const count = 200000;
    let expectedBytes = 0;
    for (let i = 1; i <= count; i++) expectedBytes += String(i).length + 1;
    const ex = await box.exec('seq', ['1', String(count)]);
    try {
      const chunks = [];
      for await (const chunk of ex.stdout) {
        chunks.push(chunk);
        if (chunks.length % 8 === 0) await sleep(5); // slower than the command writes
      }
      const text = Buffer.concat(chunks).toString();
      assert.equal(text.length, expectedBytes);
      assert.ok(text.startsWith('1\n2\n3\n'));
      assert.ok(text.endsWith('\n199999\n200000\n'));
      assert.deepEqual(await ex.wait(), { exitCode: 0, signal: 0 });
    } finally {
      ex.close();
    }
  });

  it('an aborted signal kills the command and wait() rejects with an AbortError', TIMEOUT, async (t) => {
    if (!E2E) return t.skip(SKIP_REASON);
    const ac = new AbortController();
    const ex = await box.exec('sleep', ['30'], { signal: ac.signal });
    try {
      const started = Date.now();
      setTimeout(() => ac.abort(), 200);
      await assert.rejects(ex.wait(), { name: 'AbortError' });
      assert.ok(Date.now() - started < 5000, 'the abort took effect at once');
      // The kill ends the command, so its output ends too.
      await Promise.all([finished(ex.stdout.resume()), finished(ex.stderr.resume())]);
    } finally {
      ex.close();
    }
  });

  it("kill('SIGTERM') ends the command with signal 15", TIMEOUT, async (t) => {
    if (!E2E) return t.skip(SKIP_REASON);
    const ex = await box.exec('sleep', ['30']);
    try {
      await sleep(100);
      ex.kill('SIGTERM');
      const { signal } = await ex.wait();
      assert.equal(signal, 15);
    } finally {
      ex.close();
    }
  });

  it('runs 8 commands at once, each with its own output', TIMEOUT, async (t) => {
    if (!E2E) return t.skip(SKIP_REASON);
    const ns = [0, 1, 2, 3, 4, 5, 6, 7];
    const outputs = await Promise.all(
      ns.map(async (n) => {
        const ex = await box.exec('echo', [String(n)]);
        try {
          const out = collect(ex.stdout);
          assert.deepEqual(await ex.wait(), { exitCode: 0, signal: 0 });
          return out.text();
        } finally {
          ex.close();
        }
      }),
    );
    assert.deepEqual(outputs, ns.map((n) => `${n}\n`));
  });

  it('serves 8 commands waiting on stdin at once (no worker held per command)', TIMEOUT, async (t) => {
    if (!E2E) return t.skip(SKIP_REASON);
    const ns = [0, 1, 2, 3, 4, 5, 6, 7];
    const execs = await Promise.all(ns.map(() => box.exec('cat', [], { stdin: true })));
    try {
      const outs = execs.map((ex) => collect(ex.stdout));
      await Promise.all(execs.map((ex, n) => write(ex.stdin, `${n}\n`).then(() => ex.stdin.end())));
      await Promise.all(execs.map((ex) => ex.wait()));
      assert.deepEqual(outs.map((o) => o.text()), ns.map((n) => `${n}\n`));
    } finally {
      for (const ex of execs) ex.close();
    }
  });

  it('box.run captures a command', TIMEOUT, async (t) => {
    if (!E2E) return t.skip(SKIP_REASON);
    const res = await box.run('echo', ['hi']);
    assert.equal(res.stdout.toString(), 'hi\n');
    assert.equal(res.stderr.length, 0);
    assert.equal(res.exitCode, 0);
    assert.equal(res.signal, 0);
  });

  it("close() from a 'data' listener stops the output without an error", TIMEOUT, async (t) => {
    if (!E2E) return t.skip(SKIP_REASON);
    const ex = await box.exec('seq', ['1', '200000']);
    let chunks = 0;
    ex.stdout.on('data', () => {
      chunks += 1;
      ex.close(); // frees the handle while the poller is draining it
    });
    ex.stderr.resume();
    await assert.rejects(ex.wait(), { code: 'BOXLITE_INVALID_HANDLE' });
    await Promise.all([finished(ex.stdout), finished(ex.stderr)]);
    await sleep(300); // a drain of the freed handle would have failed (and crashed) by now
    assert.ok(chunks >= 1);
    ex.close();
  });

  it('abort during exec on a running box rejects with an AbortError and leaves the box running', TIMEOUT, async (t) => {
    if (!E2E) return t.skip(SKIP_REASON);
    const ac = new AbortController();
    const pending = box.exec('sleep', ['30'], { signal: ac.signal });
    setImmediate(() => ac.abort());
    await assert.rejects(pending, { name: 'AbortError' });
    assert.equal(await box.state(), 'running');
  });

  it('abort during an exec that boots the box kills the boot', TIMEOUT, async (t) => {
    if (!E2E) return t.skip(SKIP_REASON);
    const other = await rt.create({ name: 'node-e2e-abort', memoryMib: 256 });
    try {
      const ac = new AbortController();
      const started = Date.now();
      const pending = other.exec('echo', ['never'], { signal: ac.signal });
      setTimeout(() => ac.abort(), 100); // a boot takes longer than that
      await assert.rejects(pending, { name: 'AbortError' });
      assert.ok(Date.now() - started < 30_000, 'the abort ended the boot');
    } finally {
      other.close();
      await rt.remove('node-e2e-abort', { force: true });
    }
  });

  it('a box killed during a command rejects wait() and run() instead of crashing', TIMEOUT, async (t) => {
    if (!E2E) return t.skip(SKIP_REASON);
    const other = await rt.create({ name: 'node-e2e-kill', memoryMib: 256 });
    try {
      // No 'error' listener on either stream: an 'error' event would be uncaught.
      const ex = await other.exec('sleep', ['30']);
      // Settled into a value at once: a rejection before the await below is not unhandled.
      const running = other.run('sleep', ['30']).then((r) => ({ r }), (e) => ({ e }));
      await sleep(300);
      await other.kill();
      const outcome = await ex.wait().then((r) => ({ r }), (e) => ({ e }));
      // The output fails (a BoxliteError), or at worst ends with the command killed.
      if (outcome.e) assert.equal(outcome.e.name, 'BoxliteError', String(outcome.e));
      else assert.notDeepEqual(outcome.r, { exitCode: 0, signal: 0 });
      const ran = await running;
      if (ran.e) assert.equal(ran.e.name, 'BoxliteError', String(ran.e));
      else assert.ok(ran.r.exitCode !== 0 || ran.r.signal !== 0);
      await sleep(100);
      ex.close();
    } finally {
      other.close();
      await rt.remove('node-e2e-kill', { force: true });
    }
  });

  it('rt.run boots a box for one command and removes it', TIMEOUT, async (t) => {
    if (!E2E) return t.skip(SKIP_REASON);
    const res = await rt.run(['echo', 'hello'], { memoryMib: 256 });
    assert.equal(res.stdout.toString(), 'hello\n');
    assert.equal(res.exitCode, 0);
    assert.equal(res.timedOut, false);
    assert.deepEqual((await rt.list()).map((b) => b.name), ['node-e2e']);
  });
});
