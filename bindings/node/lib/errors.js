'use strict';
// BoxliteError (a failed C call), AbortError, and the status codes of boxlite.h.

const { native } = require('./native');

/** The values of `enum boxlite_status` (stable; new ones are only ever added). */
const Status = Object.freeze({
  BOXLITE_OK: 0,
  BOXLITE_INVALID_ARGUMENT: 1,
  BOXLITE_NOT_FOUND: 2,
  BOXLITE_ALREADY_EXISTS: 3,
  BOXLITE_INVALID_STATE: 4,
  BOXLITE_TIMEOUT: 5,
  BOXLITE_GUEST_ERROR: 6,
  BOXLITE_IO: 7,
  BOXLITE_INTERNAL: 8,
  BOXLITE_INVALID_HANDLE: 9,
  BOXLITE_ASSET_MISSING: 10,
  BOXLITE_START_FAILED: 11,
});

/**
 * The library's name of a status (`boxlite_status_name`), e.g. 'BOXLITE_NOT_FOUND', or
 * 'BOXLITE_UNKNOWN' for a value it does not know. Loads the library.
 */
function statusName(status) {
  return native().fn.boxlite_status_name(status);
}

/** A failed libboxlite call: `code` is the status name, `status` its number. */
class BoxliteError extends Error {
  /**
   * @param {number} status a boxlite_status other than BOXLITE_OK
   * @param {string} message what the library said went wrong
   */
  constructor(status, message) {
    super(message);
    this.name = 'BoxliteError';
    this.status = status;
    this.code = statusName(status);
  }
}

/** The error of an operation cancelled through an AbortSignal (as Node's own AbortError). */
class AbortError extends Error {
  constructor(message = 'The operation was aborted', options = undefined) {
    super(message, options);
    this.name = 'AbortError';
    this.code = 'ABORT_ERR';
  }
}

/** The error for a handle this binding already closed (what the library would say of it). */
function closedError(what) {
  return new BoxliteError(Status.BOXLITE_INVALID_HANDLE, `${what} is closed`);
}

module.exports = { Status, statusName, BoxliteError, AbortError, closedError };
