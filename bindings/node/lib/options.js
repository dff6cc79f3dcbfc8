'use strict';
// Turns a JS BoxOptions object into a boxlite_options builder (every setter is a cheap,
// synchronous call).

const { callSync } = require('./call');

// Each option: how it is applied to the builder `o`. Unknown keys are refused, so that a typo
// ('memoryMB') is not silently ignored.
const SETTERS = {
  name: (o, v) => callSync('boxlite_options_set_name', o, v),
  cpus: (o, v) => callSync('boxlite_options_set_cpus', o, v),
  memoryMib: (o, v) => callSync('boxlite_options_set_memory_mib', o, v),
  rootImage: (o, v) => callSync('boxlite_options_set_root_image', o, v),
  workingDir: (o, v) => callSync('boxlite_options_set_working_dir', o, v),
  detach: (o, v) => callSync('boxlite_options_set_detach', o, Boolean(v)),
  autoRemove: (o, v) => callSync('boxlite_options_set_auto_remove', o, Boolean(v)),
  readyTimeoutMs: (o, v) => callSync('boxlite_options_set_ready_timeout_ms', o, v),
  disks: (o, disks) => {
    for (const { path, readOnly = false } of disks) {
      callSync('boxlite_options_add_disk', o, path, Boolean(readOnly));
    }
  },
  env: (o, env) => {
    for (const [key, value] of Object.entries(env)) {
      callSync('boxlite_options_add_env', o, key, String(value));
    }
  },
};

/**
 * Calls `use(builder)` with a boxlite_options builder set from `options` (kernel and initrd go
 * together through one setter), and frees the builder afterwards, whatever happens.
 * @template T
 * @param {object} options BoxOptions
 * @param {(builder: number) => Promise<T>} use
 * @returns {Promise<T>}
 */
async function withOptions(options, use) {
  const out = [0];
  callSync('boxlite_options_new', out);
  const builder = out[0];
  try {
    for (const [key, value] of Object.entries(options)) {
      if (value === undefined || key === 'kernel' || key === 'initrd') continue;
      const set = SETTERS[key];
      if (!set) throw new TypeError(`unknown box option '${key}'`);
      set(builder, value);
    }
    if (options.kernel !== undefined || options.initrd !== undefined) {
      callSync('boxlite_options_set_kernel', builder, options.kernel ?? null, options.initrd ?? null);
    }
    return await use(builder);
  } finally {
    callSync('boxlite_options_free', builder);
  }
}

module.exports = { withOptions };
