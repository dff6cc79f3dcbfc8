'use strict';
// Calls into libboxlite: every C call takes a trailing `boxlite_error **err`, which these
// helpers supply, decode into a BoxliteError and free.

const { native, koffi, ErrorStruct } = require('./native');
const { BoxliteError } = require('./errors');

/** The BoxliteError for `status` (null for BOXLITE_OK); frees the C error either way. */
function takeError(status, errPtr) {
  let message = null;
  if (errPtr) {
    message = koffi.decode(errPtr, ErrorStruct).message;
    native().fn.boxlite_error_free(errPtr);
  }
  if (status === 0) return null;
  return new BoxliteError(status, message ?? `boxlite call failed (status ${status})`);
}

/**
 * Calls `name` on this thread (only for calls that never block) and throws a BoxliteError on
 * failure. Out-parameters are the caller's one-element arrays, filled on return.
 */
function callSync(name, ...args) {
  const errOut = [null];
  const error = takeError(native().fn[name](...args, errOut), errOut[0]);
  if (error) throw error;
}

/**
 * Calls `name` on a libuv worker thread, so a blocking call never blocks the event loop;
 * resolves once it returned BOXLITE_OK (out-parameter arrays are filled by then).
 */
function callAsync(name, ...args) {
  const fn = native().fn[name];
  return new Promise((resolve, reject) => {
    const errOut = [null];
    fn.async(...args, errOut, (jsError, status) => {
      if (jsError) return reject(jsError);
      const error = takeError(status, errOut[0]);
      if (error) reject(error);
      else resolve();
    });
  });
}

/** Decodes, then frees, a string the library returned. */
function takeString(ptr) {
  const text = koffi.decode.string(ptr);
  native().fn.boxlite_string_free(ptr);
  return text;
}

module.exports = { callSync, callAsync, takeError, takeString };
