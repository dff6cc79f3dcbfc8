'use strict';
// A command running in a box: its output as Readables (fed by the process's one poller), its
// stdin as a Writable, and its exit status.

const os = require('node:os');
const { Readable, Writable } = require('node:stream');
const { finished } = require('node:stream/promises');
const { native } = require('./native');
const { callSync, callAsync, takeError } = require('./call');
const { Status, AbortError, closedError } = require('./errors');
const { poller } = require('./poller');
const { integer } = require('./validate');

const STREAM_NONE = 0;
const STREAM_STDERR = 2;
// Shared by every execution: reads happen on the main thread only, one at a time.
const READ_BUFFER = Buffer.alloc(64 * 1024);

// Frees the handle of an execution dropped without close() (a safety net; close() is the rule).
const registry = new FinalizationRegistry((handle) => {
  try {
    callSync('boxlite_exec_free', handle);
  } catch {
    // Already invalid (its runtime closed): nothing is left to free.
  }
});

/** A signal as its number: a number as is, or a name such as 'SIGTERM'. */
function signalNumber(sig) {
  // Checked: koffi would turn 1.5 into 1 and NaN into 0 (0 signals nothing).
  if (typeof sig === 'number') return integer(sig, 'signal', { min: 1, max: 64 });
  const number = os.constants.signals[sig];
  if (number === undefined) throw new TypeError(`unknown signal '${sig}'`);
  return number;
}

/** A command started by `Box.exec`. Close it with `close()` once done. */
class Execution {
  #handle;
  #box; // keeps the box, hence the runtime, alive as long as the execution
  #fd;
  #paused = false;
  #outputEnded = false;
  #closed = false;
  #settled = false;
  #resolve;
  #reject;
  #result;
  #signal;
  #onAbort = () => this.#abort();

  /**
   * @param {bigint} handle a boxlite_exec (koffi gives uint64_t handles as BigInts)
   * @param {object} box the Box it runs in
   * @param {{ stdin?: boolean, signal?: AbortSignal }} options
   */
  constructor(handle, box, { stdin = false, signal } = {}) {
    const fd = [-1];
    callSync('boxlite_exec_fd', handle, fd);
    this.#handle = handle;
    this.#box = box;
    this.#fd = fd[0];
    this.#result = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // wait() hands the rejection to its caller; nobody waiting must not crash the process.
    this.#result.catch(() => {});
    const resume = () => this.#resume();
    /** The command's stdout. */
    this.stdout = new Readable({ read: resume });
    /** The command's stderr. */
    this.stderr = new Readable({ read: resume });
    /** The command's stdin (only when started with `stdin: true`), else null. */
    this.stdin = stdin ? this.#stdinWritable() : null;
    registry.register(this, handle, this);
    poller.add(this);
    if (signal) {
      this.#signal = signal;
      if (signal.aborted) this.#abort();
      else signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  /** The descriptor the poller watches (owned by the library: never read or closed here). */
  get fd() {
    return this.#fd;
  }

  /** Whether the poller should watch the descriptor (false while a reader applies backpressure). */
  get wantsOutput() {
    return !this.#paused;
  }

  /**
   * Reads the pending output without blocking; called by the poller when `fd` is readable.
   * A push() runs 'data' listeners synchronously, and one of them may close() the execution
   * (freeing the handle) or end the output: the loop stops as soon as that happened, rather
   * than reading a freed handle.
   */
  drain() {
    const { fn } = native();
    const stream = [STREAM_NONE];
    const n = [0];
    for (;;) {
      if (this.#closed || this.#outputEnded) return;
      const errOut = [null];
      const status = fn.boxlite_exec_read(this.#handle, stream, READ_BUFFER, READ_BUFFER.length, 0, n, errOut);
      const error = takeError(status, errOut[0]);
      if (status === Status.BOXLITE_TIMEOUT) return; // nothing more for now
      if (error) return this.#failOutput(error);
      if (n[0] === 0 && stream[0] === STREAM_NONE) return this.#endOutput();
      const target = stream[0] === STREAM_STDERR ? this.stderr : this.stdout;
      // Copied: READ_BUFFER is reused by the next read.
      const more = target.push(Buffer.from(READ_BUFFER.subarray(0, n[0])));
      if (this.#closed || this.#outputEnded) return; // a listener closed the execution
      if (!more) {
        this.#paused = true; // resumed by the Readable's next _read()
        return;
      }
    }
  }

  #resume() {
    if (!this.#paused) return;
    this.#paused = false;
    poller.wake();
  }

  #endOutput() {
    this.#outputEnded = true;
    poller.delete(this);
    this.stdout.push(null);
    this.stderr.push(null);
    const code = [-1];
    const sig = [0];
    const errOut = [null];
    const status = native().fn.boxlite_exec_wait(this.#handle, 0, code, sig, errOut);
    const error = takeError(status, errOut[0]);
    if (!error) return this.#settle({ exitCode: code[0], signal: sig[0] });
    if (status !== Status.BOXLITE_TIMEOUT) return this.#settle(null, error);
    // The output ended just before the exit status is known: wait for it on a worker.
    callAsync('boxlite_exec_wait', this.#handle, -1, code, sig).then(
      () => this.#settle({ exitCode: code[0], signal: sig[0] }),
      (e) => this.#settle(null, e),
    );
  }

  /**
   * The output failed (the box killed or stopped meanwhile, a guest error, the runtime
   * closed): wait() rejects with `error`. A stream is destroyed with the error only when
   * someone listens for 'error' (an async iterator, finished(), an explicit listener); else it
   * just ends, since an 'error' event nobody listens for would crash the process. Nothing
   * happens after close(): the handle is gone, and so is the interest in its output.
   */
  #failOutput(error) {
    if (this.#closed || this.#outputEnded) return;
    this.#outputEnded = true;
    poller.delete(this);
    // Settled first, so that an 'error' listener that calls wait() sees the BoxliteError.
    this.#settle(null, error);
    for (const stream of [this.stdout, this.stderr]) {
      if (stream.destroyed) continue;
      if (stream.listenerCount('error') > 0) stream.destroy(error);
      else stream.push(null);
    }
  }

  #settle(result, error) {
    if (this.#settled) return;
    this.#settled = true;
    this.#signal?.removeEventListener('abort', this.#onAbort);
    if (error) this.#reject(error);
    else this.#resolve(result);
  }

  #abort() {
    if (this.#settled) return;
    try {
      callSync('boxlite_exec_kill', this.#handle, 9);
    } catch {
      // The command may have ended already; the abort stands either way.
    }
    this.#settle(null, new AbortError('The execution was aborted', { cause: this.#signal.reason }));
  }

  #stdinWritable() {
    // Writes go through a worker (the call blocks while the guest holds a megabyte unread);
    // Writable calls write() again only after the callback, which is the backpressure.
    return new Writable({
      write: (chunk, _encoding, callback) => {
        if (this.#closed) return callback(closedError('the execution'));
        callAsync('boxlite_exec_write_stdin', this.#handle, chunk, chunk.length).then(() => callback(), callback);
      },
      final: (callback) => {
        if (this.#closed) return callback(closedError('the execution'));
        callAsync('boxlite_exec_close_stdin', this.#handle).then(() => callback(), callback);
      },
    });
  }

  /**
   * Resolves with how the command ended, once its output has been pushed to `stdout` and
   * `stderr`, and a stream in flowing mode (a 'data' listener or a pipe) has emitted 'end'.
   * Rejects with an AbortError when the `signal` given to exec aborted first, with the
   * BoxliteError of a failed output (the box killed or stopped during the command, a guest
   * error, the runtime closed), and with BOXLITE_INVALID_HANDLE after close().
   * @returns {Promise<{ exitCode: number, signal: number }>}
   */
  async wait() {
    const result = await this.#result;
    const flowing = [this.stdout, this.stderr].filter((s) => s.readableFlowing === true && !s.readableEnded);
    await Promise.all(flowing.map((s) => finished(s, { writable: false })));
    return result;
  }

  /**
   * Sends a signal to the command's process group. Synchronous: SIGKILL never waits (the
   * library aborts a stdin write in progress); another signal may wait for a stdin write that
   * the guest holds back. Throws a BoxliteError once the command has ended (there is no process
   * left to signal; wait() still reports how it ended), and BOXLITE_INVALID_HANDLE after
   * close(); a TypeError for an unknown signal name.
   * @param {string|number} [sig='SIGKILL'] a name such as 'SIGTERM', or a number
   */
  kill(sig = 'SIGKILL') {
    if (this.#closed) throw closedError('the execution');
    callSync('boxlite_exec_kill', this.#handle, signalNumber(sig));
  }

  /**
   * Frees the handle; a command still running is killed, its output streams end and a pending
   * wait() rejects. A second call does nothing.
   */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    registry.unregister(this);
    poller.delete(this);
    this.#settle(null, closedError('the execution'));
    if (!this.#outputEnded) {
      this.stdout.push(null);
      this.stderr.push(null);
    }
    this.stdin?.destroy();
    try {
      callSync('boxlite_exec_free', this.#handle);
    } catch (e) {
      // Closing the runtime already invalidated the handle: it is freed either way.
      if (e.status !== Status.BOXLITE_INVALID_HANDLE) throw e;
    }
  }
}

module.exports = { Execution };
