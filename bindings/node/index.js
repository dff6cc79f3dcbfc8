'use strict';
// boxlite: embeddable microVMs, through libboxlite's C ABI.

const { native } = require('./lib/native');
const { Runtime } = require('./lib/runtime');
const { Box } = require('./lib/box');
const { Execution } = require('./lib/execution');
const { Status, statusName, BoxliteError, AbortError } = require('./lib/errors');

/** The library's version, e.g. '0.1.0'. Loads the library. */
function version() {
  return native().fn.boxlite_version();
}

/** The ABI version the loaded library implements (this binding needs 0). */
function abiVersion() {
  return native().fn.boxlite_abi_version();
}

/** The path of the loaded libboxlite.so. */
function libraryPath() {
  return native().file;
}

module.exports = {
  Runtime,
  Box,
  Execution,
  BoxliteError,
  AbortError,
  Status,
  statusName,
  version,
  abiVersion,
  libraryPath,
};
