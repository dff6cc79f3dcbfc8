'use strict';
// Checks of the values handed to C. koffi cuts a string at its first NUL ('a\0b' reaches the
// library as 'a') and converts numbers without a word (-1 as a uint64_t is u64::MAX, NaN is
// 0, 1.5 is 1), so each value is checked here, before any C call.

const { BoxliteError, Status } = require('./errors');

const U32_MAX = 0xffffffff;

/**
 * `value` when it is a string without NUL; else a TypeError (not a string) or a BoxliteError
 * BOXLITE_INVALID_ARGUMENT (a NUL, which C would silently cut the string at).
 * @param {unknown} value
 * @param {string} what how the error names the value, e.g. 'box option name'
 * @returns {string}
 */
function cString(value, what) {
  if (typeof value !== 'string') throw new TypeError(`${what} must be a string, got ${typeof value}`);
  if (value.includes('\0')) {
    throw new BoxliteError(Status.BOXLITE_INVALID_ARGUMENT, `${what} contains a NUL character: ${JSON.stringify(value)}`);
  }
  return value;
}

/** As `cString`, but null and undefined give null (C's NULL: the default). */
function optionalCString(value, what) {
  return value == null ? null : cString(value, what);
}

/**
 * `value` when it is a safe integer in [min, max]; else a TypeError (not an integer: NaN,
 * 1.5, '3', 2 ** 60) or a RangeError (out of range, e.g. -1).
 * @param {unknown} value
 * @param {string} what
 * @param {{ min?: number, max?: number }} [range] default: 0 to Number.MAX_SAFE_INTEGER
 * @returns {number}
 */
function integer(value, what, { min = 0, max = Number.MAX_SAFE_INTEGER } = {}) {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new TypeError(`${what} must be an integer, got ${typeof value === 'number' ? value : typeof value}`);
  }
  if (value < min || value > max) throw new RangeError(`${what} must be between ${min} and ${max}, got ${value}`);
  return value;
}

/** An integer that fits a uint32_t. */
function u32(value, what) {
  return integer(value, what, { max: U32_MAX });
}

/** An array of strings without NUL (argv). */
function cStringArray(value, what) {
  if (!Array.isArray(value)) throw new TypeError(`${what} must be an array of strings`);
  return value.map((s, i) => cString(s, `${what}[${i}]`));
}

module.exports = { cString, optionalCString, integer, u32, cStringArray, U32_MAX };
