'use strict';
// Finds libboxlite.so: $BOXLITE_LIBRARY, else pkg-config's libdir, else the usual prefixes.

const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const LIBRARY_FILE = 'libboxlite.so';
const PREFIXES = ['/usr/local/lib', '/usr/lib'];
const INSTALL_HINT =
  'Install the library from a boxlite checkout with `scripts/install.sh` ' +
  '(PREFIX=/usr/local by default), or point BOXLITE_LIBRARY at a built libboxlite.so.';

/** The libdir pkg-config reports for boxlite, or null (no pkg-config, no boxlite.pc). */
function pkgConfigLibdir() {
  const res = spawnSync('pkg-config', ['--variable=libdir', 'boxlite'], { encoding: 'utf8' });
  if (res.error || res.status !== 0) return null;
  const dir = res.stdout.trim();
  return dir === '' ? null : dir;
}

/**
 * The candidate paths, in search order, each with where it came from (`file` null: that
 * source gave no path). An explicit
 * $BOXLITE_LIBRARY is the only candidate: silently loading another library than the one asked
 * for would hide a wrong path.
 */
function candidates(env = process.env) {
  if (env.BOXLITE_LIBRARY) return [{ file: env.BOXLITE_LIBRARY, from: 'BOXLITE_LIBRARY' }];
  const found = [];
  const libdir = pkgConfigLibdir();
  if (libdir) found.push({ file: path.join(libdir, LIBRARY_FILE), from: 'pkg-config libdir' });
  else found.push({ file: null, from: 'pkg-config --variable=libdir boxlite' });
  for (const prefix of PREFIXES) found.push({ file: path.join(prefix, LIBRARY_FILE), from: 'prefix' });
  return found;
}

/**
 * Loads the first candidate that exists with `load(file)`; throws an error naming every place
 * looked at (and why each failed) and how to install the library.
 */
function loadFirst(load, env = process.env) {
  const tried = [];
  for (const { file, from } of candidates(env)) {
    if (file === null) {
      tried.push(`  ${from}: no answer (pkg-config missing, or no boxlite.pc on its path)`);
      continue;
    }
    if (!fs.existsSync(file)) {
      tried.push(`  ${file} (${from}): not found`);
      continue;
    }
    try {
      return { handle: load(file), file };
    } catch (e) {
      tried.push(`  ${file} (${from}): ${e.message}`);
    }
  }
  const looked = env.BOXLITE_LIBRARY
    ? 'BOXLITE_LIBRARY is set, so only its path was tried (unset it to search pkg-config and ' +
      `${PREFIXES.join(', ')}):`
    : 'Looked in $BOXLITE_LIBRARY (unset), `pkg-config --variable=libdir boxlite`, then ' +
      `${PREFIXES.join(', ')}:`;
  const err = new Error(`libboxlite could not be loaded. ${looked}\n${tried.join('\n')}\n${INSTALL_HINT}`);
  err.code = 'BOXLITE_LIBRARY_NOT_FOUND';
  throw err;
}

module.exports = { candidates, loadFirst };
