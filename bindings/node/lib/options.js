'use strict';
// Turns a JS BoxOptions object into a boxlite_options builder (every setter is a cheap,
// synchronous call).

const { callSync } = require('./call');
const { cString, optionalCString, integer, u32 } = require('./validate');

// Each option: how it is applied to the builder `o`. Unknown keys are refused, so that a typo
// ('memoryMB') is not silently ignored.
// Strings and numbers are checked first (validate.js): koffi would cut a string at a NUL and
// turn -1 or NaN into another number without a word.
const SETTERS = {
  name: (o, v) => callSync('boxlite_options_set_name', o, cString(v, 'box option name')),
  cpus: (o, v) => callSync('boxlite_options_set_cpus', o, u32(v, 'box option cpus')),
  memoryMib: (o, v) => callSync('boxlite_options_set_memory_mib', o, u32(v, 'box option memoryMib')),
  rootImage: (o, v) => callSync('boxlite_options_set_root_image', o, cString(v, 'box option rootImage')),
  workingDir: (o, v) => callSync('boxlite_options_set_working_dir', o, cString(v, 'box option workingDir')),
  detach: (o, v) => callSync('boxlite_options_set_detach', o, Boolean(v)),
  autoRemove: (o, v) => callSync('boxlite_options_set_auto_remove', o, Boolean(v)),
  readyTimeoutMs: (o, v) =>
    callSync('boxlite_options_set_ready_timeout_ms', o, integer(v, 'box option readyTimeoutMs')),
  disks: (o, disks) => {
    if (!Array.isArray(disks)) throw new TypeError('box option disks must be an array of { path, readOnly }');
    disks.forEach(({ path, readOnly = false }, i) => {
      callSync('boxlite_options_add_disk', o, cString(path, `box option disks[${i}].path`), Boolean(readOnly));
    });
  },
  env: (o, env) => {
    for (const [key, value] of Object.entries(env)) {
      const k = cString(key, 'box option env key');
      callSync('boxlite_options_add_env', o, k, cString(String(value), `box option env.${k}`));
    }
  },
};

/**
 * Calls `use(builder)` with a boxlite_options builder set from `options` (kernel and initrd go
 * together through one setter), and frees the builder afterwards, whatever happens.
 * @template T
 * @param {object} options BoxOptions
 * @param {(builder: bigint) => Promise<T>} use a boxlite_options handle (koffi gives uint64_t handles as BigInts)
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
      const kernel = optionalCString(options.kernel, 'box option kernel');
      const initrd = optionalCString(options.initrd, 'box option initrd');
      callSync('boxlite_options_set_kernel', builder, kernel, initrd);
    }
    return await use(builder);
  } finally {
    callSync('boxlite_options_free', builder);
  }
}

module.exports = { withOptions };
