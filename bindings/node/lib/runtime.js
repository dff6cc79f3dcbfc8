'use strict';
// A runtime: the boxes of one home folder.

const { native, koffi, BoxEntry, BoxList, RunResult } = require('./native');
const { callAsync } = require('./call');
const { closedError } = require('./errors');
const { withOptions } = require('./options');
const { Box, stateName } = require('./box');
const { cString, optionalCString, cStringArray } = require('./validate');

// Closes a runtime dropped without close(); on a worker, since the close can block.
const registry = new FinalizationRegistry((handle) => {
  callAsync('boxlite_runtime_close', handle).catch(() => {});
});

/** A copy of `len` bytes at `ptr` (NULL when empty) that outlives the C buffer. */
function copyBytes(ptr, len) {
  // Buffer.from(ArrayBuffer) would share the C memory; from a Uint8Array it copies.
  return len ? Buffer.from(new Uint8Array(koffi.view(ptr, len))) : Buffer.alloc(0);
}

/** The runtime of a home folder. Open it with `Runtime.open`; close it with `close()`. */
class Runtime {
  #handle;
  #closed = false;

  /** @param {bigint} handle a boxlite_runtime (koffi gives uint64_t handles as BigInts; use `Runtime.open`) */
  constructor(handle) {
    this.#handle = handle;
    registry.register(this, handle, this);
  }

  /**
   * Opens the runtime of `home` (default: $BOXLITE_HOME, else $XDG_DATA_HOME/boxlite, else
   * ~/.local/share/boxlite) and recovers its boxes. `shim`, `kernel` and `initrd` override
   * the runtime's asset search.
   * @param {{ home?: string, shim?: string, kernel?: string, initrd?: string }} [options]
   * @returns {Promise<Runtime>}
   */
  static async open({ home, shim, kernel, initrd } = {}) {
    home = optionalCString(home, 'runtime option home');
    shim = optionalCString(shim, 'runtime option shim');
    kernel = optionalCString(kernel, 'runtime option kernel');
    initrd = optionalCString(initrd, 'runtime option initrd');
    const out = [0];
    if (shim !== null || kernel !== null || initrd !== null) {
      await callAsync('boxlite_runtime_open_with_assets', home, shim, kernel, initrd, out);
    } else {
      await callAsync('boxlite_runtime_open', home, out);
    }
    return new Runtime(out[0]);
  }

  #live() {
    if (this.#closed) throw closedError('the runtime');
    return this.#handle;
  }

  /**
   * Creates a box (state 'configured') without starting it.
   * @param {object} [options] BoxOptions
   * @returns {Promise<Box>}
   */
  async create(options = {}) {
    const handle = this.#live();
    const out = [0];
    await withOptions(options, (builder) => callAsync('boxlite_create', handle, builder, out));
    return new Box(this, out[0]);
  }

  /**
   * The box of that exact name, exact id or unique id prefix.
   * @param {string} nameOrId
   * @returns {Promise<Box>}
   */
  async get(nameOrId) {
    const out = [0];
    const handle = this.#live();
    await callAsync('boxlite_get', handle, cString(nameOrId, 'box name or id'), out);
    return new Box(this, out[0]);
  }

  /**
   * Every box of the runtime, oldest first.
   * @returns {Promise<Array<{ id: string, name: string|null, state: string }>>}
   */
  async list() {
    const out = [null];
    await callAsync('boxlite_list', this.#live(), out);
    try {
      const { items, len } = koffi.decode(out[0], BoxList);
      const entries = len ? koffi.decode(items, BoxEntry, len) : [];
      return entries.map(({ id, name, state }) => ({ id, name, state: stateName(state) }));
    } finally {
      native().fn.boxlite_box_list_free(out[0]);
    }
  }

  /**
   * Removes a box and its folder. An active box is refused (BOXLITE_INVALID_STATE) unless
   * `force`, which kills it first.
   * @param {string} nameOrId
   * @param {{ force?: boolean }} [options]
   */
  async remove(nameOrId, { force = false } = {}) {
    const handle = this.#live();
    await callAsync('boxlite_remove', handle, cString(nameOrId, 'box name or id'), Boolean(force));
  }

  /**
   * Creates a box, runs `argv` in it, stops and removes the box, and returns what the command
   * wrote (up to 64 MiB) and how it ended.
   * @param {string[]} argv
   * @param {object} [options] BoxOptions
   * @returns {Promise<{ stdout: Buffer, stderr: Buffer, exitCode: number, signal: number, timedOut: boolean }>}
   */
  async run(argv, options = {}) {
    const handle = this.#live();
    const args = cStringArray(argv, 'argv');
    const out = [null];
    await withOptions(options, (builder) => callAsync('boxlite_run', handle, builder, args, args.length, out));
    try {
      const r = koffi.decode(out[0], RunResult);
      return {
        stdout: copyBytes(r.stdout_data, r.stdout_len),
        stderr: copyBytes(r.stderr_data, r.stderr_len),
        exitCode: r.exit_code,
        signal: r.signal,
        timedOut: r.timed_out,
      };
    } finally {
      native().fn.boxlite_run_result_free(out[0]);
    }
  }

  /**
   * Closes the runtime: its box and execution handles become invalid, and the boxes it
   * started that are not detached stop. A second call does nothing.
   */
  async close() {
    if (this.#closed) return;
    this.#closed = true;
    registry.unregister(this);
    await callAsync('boxlite_runtime_close', this.#handle);
  }
}

module.exports = { Runtime };
