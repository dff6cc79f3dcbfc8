'use strict';
// A box of a runtime: start, stop, kill, state, info, metrics, and commands run in it.

const { koffi, ExecOptions } = require('./native');
const { callSync, callAsync, takeString } = require('./call');
const { Status, AbortError, closedError } = require('./errors');
const { Execution } = require('./execution');
const { cString, optionalCString, cStringArray, integer, U32_MAX } = require('./validate');

/** `enum boxlite_box_state`, indexed by value. */
const STATES = ['configured', 'starting', 'running', 'stopping', 'stopped', 'failed'];

/** The name of a boxlite_box_state value. */
function stateName(value) {
  return STATES[value] ?? `unknown(${value})`;
}

// Frees the handle of a box dropped without close() (the box itself stays).
const registry = new FinalizationRegistry((handle) => {
  try {
    callSync('boxlite_box_free', handle);
  } catch {
    // Already invalid (its runtime closed): nothing is left to free.
  }
});

/** An AbortError for `signal`, carrying its reason. */
function abortError(signal, cause = signal.reason) {
  return new AbortError('The operation was aborted', { cause });
}

/** `exec(cmd, opts)` and `exec(cmd, args?, opts)`: the arguments and the options. */
function splitArgs(args, options) {
  if (Array.isArray(args) || args == null) return [args ?? [], options ?? {}];
  return [[], args];
}

/** A handle to a box. Obtained from `Runtime.create` or `Runtime.get`; close it with `close()`. */
class Box {
  #handle;
  #runtime; // keeps the runtime, whose close would invalidate this handle, alive
  #closed = false;

  /**
   * @param {object} runtime the Runtime the handle belongs to
   * @param {bigint} handle a boxlite_box (koffi gives uint64_t handles as BigInts)
   */
  constructor(runtime, handle) {
    this.#runtime = runtime;
    this.#handle = handle;
    registry.register(this, handle, this);
    const id = [null];
    callSync('boxlite_box_id', handle, id);
    /** The box's id. */
    this.id = takeString(id[0]);
  }

  #live() {
    if (this.#closed) throw closedError(`box ${this.id}`);
    return this.#handle;
  }

  /**
   * Boots the box; resolves once its guest agent answers. When `signal` aborts, the box's VMM
   * is killed and this rejects with an AbortError, also when the boot had just succeeded.
   * @param {{ signal?: AbortSignal }} [options]
   */
  async start({ signal } = {}) {
    const handle = this.#live();
    if (signal?.aborted) throw abortError(signal);
    let killed = false;
    // Killed from the main thread: the start holds a worker and other calls may hold the rest,
    // so a kill queued for a worker could wait for the very boot it is meant to end. The start
    // then fails, and its rejection is replaced by the AbortError.
    const onAbort = () => {
      killed = true;
      try {
        callSync('boxlite_box_kill', handle);
      } catch {
        // The VMM may already be gone; the abort stands either way.
      }
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await callAsync('boxlite_box_start', handle);
    } catch (e) {
      if (!killed) throw e;
      throw abortError(signal, e);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    // The boot succeeded before the abort was seen: the box was killed all the same.
    if (killed) throw abortError(signal);
  }

  /** Stops the box (a clean guest shutdown, else its VMM is terminated); up to ~20 s. */
  async stop() {
    await callAsync('boxlite_box_stop', this.#live());
  }

  /** Kills the box's VMM at once (SIGKILL), without asking the guest to shut down. */
  async kill() {
    await callAsync('boxlite_box_kill', this.#live());
  }

  /**
   * The box's current state.
   * @returns {Promise<'configured'|'starting'|'running'|'stopping'|'stopped'|'failed'>}
   */
  async state() {
    const out = [0];
    await callAsync('boxlite_box_get_state', this.#live(), out);
    return stateName(out[0]);
  }

  /** Everything known about the box (id, name, state, options, dir, ...), parsed from JSON. */
  async info() {
    const out = [null];
    await callAsync('boxlite_box_info_json', this.#live(), out);
    return JSON.parse(takeString(out[0]));
  }

  /** The box's resource use (cpu_percent, rss_bytes, start timings), parsed from JSON. */
  async metrics() {
    const out = [null];
    await callAsync('boxlite_box_metrics_json', this.#live(), out);
    return JSON.parse(takeString(out[0]));
  }

  /**
   * Runs a command in the box (booting it first when it is not running).
   *
   * When `signal` aborts while the call is under way, this rejects with an AbortError once the
   * call returned (an execution that came back is freed, which kills its command); when this
   * call is the one booting the box, the box's VMM is killed at once (as in `start()`), so the
   * boot ends early.
   * @param {string} cmd the program, looked up in the guest's PATH
   * @param {string[]} [args]
   * @param {object} [options] ExecOptions: env, cwd, uid, gid, timeoutMs, stdin, signal
   * @returns {Promise<Execution>}
   */
  async exec(cmd, args, options) {
    const [argv, opts] = splitArgs(args, options);
    const { env = {}, cwd, uid, gid, timeoutMs, stdin = false, signal } = opts;
    const handle = this.#live();
    if (signal?.aborted) throw abortError(signal);
    // Checked here: koffi would cut a string at a NUL and turn -1 or NaN into other numbers.
    const fullArgv = [cString(cmd, 'cmd'), ...cStringArray(argv, 'args')];
    const envList = Object.entries(env).map(([k, v]) => {
      const key = cString(k, 'exec option env key');
      if (key === '' || key.includes('=')) {
        throw new TypeError(`exec option env key must be non-empty and without '=', got ${JSON.stringify(key)}`);
      }
      return `${key}=${cString(String(v), `exec option env.${key}`)}`;
    });
    const id = (v, what) => (v == null ? -1 : integer(v, what, { max: U32_MAX }));
    const cOptions = {
      struct_size: koffi.sizeof(ExecOptions),
      argv: fullArgv,
      argc: fullArgv.length,
      env: envList.length ? envList : null,
      envc: envList.length,
      cwd: optionalCString(cwd, 'exec option cwd'),
      uid: id(uid, 'exec option uid'),
      gid: id(gid, 'exec option gid'),
      timeout_ms: timeoutMs == null ? 0 : integer(timeoutMs, 'exec option timeoutMs'),
      stdin: Boolean(stdin),
    };
    const out = [0];
    if (!signal) {
      await callAsync('boxlite_box_exec', handle, cOptions, out);
      return this.#execution(out[0], stdin, signal);
    }
    // boxlite_box_exec boots the box when it is not running (up to its ready timeout): whether
    // this call is the one booting it is noted first, so that an abort kills only a boot of
    // its own (a box already running, or being started by another call, is left alone).
    const before = await this.state();
    if (signal.aborted) throw abortError(signal);
    const booting = before !== 'running' && before !== 'starting';
    let aborted = false;
    // Killed from the main thread, as in start(): the exec holds a worker, and a kill queued
    // behind busy workers could wait for the very boot it is meant to end.
    const onAbort = () => {
      aborted = true;
      if (!booting) return;
      try {
        callSync('boxlite_box_kill', handle);
      } catch {
        // The VMM may already be gone; the abort stands either way.
      }
    };
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await callAsync('boxlite_box_exec', handle, cOptions, out);
    } catch (e) {
      if (!aborted) throw e;
      throw abortError(signal, e);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
    if (aborted) {
      // The command started before the abort was seen: freeing its handle kills it.
      try {
        callSync('boxlite_exec_free', out[0]);
      } catch {
        // Already invalid: nothing is left to free.
      }
      throw abortError(signal);
    }
    return this.#execution(out[0], stdin, signal);
  }

  /** The Execution of a handle boxlite_box_exec returned; the handle is freed if that fails. */
  #execution(execHandle, stdin, signal) {
    try {
      return new Execution(execHandle, this, { stdin, signal });
    } catch (e) {
      callSync('boxlite_exec_free', execHandle);
      throw e;
    }
  }

  /**
   * Runs a command to its end and captures its output. Rejects when the command's output
   * fails (a BoxliteError: the box killed or stopped meanwhile, a guest error) or the signal
   * aborts (an AbortError).
   * @param {string} cmd
   * @param {string[]} [args]
   * @param {object} [options] as for exec, without stdin
   * @returns {Promise<{ stdout: Buffer, stderr: Buffer, exitCode: number, signal: number }>}
   */
  async run(cmd, args, options) {
    const [argv, opts] = splitArgs(args, options);
    const execution = await this.exec(cmd, argv, { ...opts, stdin: false });
    try {
      const stdout = [];
      const stderr = [];
      // An output error (the box killed or stopped meanwhile, a guest error) is collected
      // here rather than left as an unhandled 'error' event; wait() rejects with it too.
      const errors = [];
      for (const [stream, chunks] of [[execution.stdout, stdout], [execution.stderr, stderr]]) {
        stream.on('data', (chunk) => chunks.push(chunk));
        stream.on('error', (e) => errors.push(e));
      }
      const { exitCode, signal } = await execution.wait();
      if (errors.length) throw errors[0];
      return { stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr), exitCode, signal };
    } finally {
      execution.close();
    }
  }

  /** Frees the handle (the box itself stays; see `Runtime.remove`). A second call does nothing. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    registry.unregister(this);
    try {
      callSync('boxlite_box_free', this.#handle);
    } catch (e) {
      // Closing the runtime already invalidated the handle: it is freed either way.
      if (e.status !== Status.BOXLITE_INVALID_HANDLE) throw e;
    }
  }
}

module.exports = { Box, stateName };
