'use strict';
// The C ABI of libboxlite (include/boxlite.h) declared through koffi, loaded on first use so
// that `require('boxlite')` works (errors, constants, types) even where the library is absent.

const koffi = require('koffi');
const { loadFirst } = require('./discovery');

/** The ABI this binding was written against (BOXLITE_ABI_VERSION of boxlite.h). */
const ABI_VERSION = 0;

// Struct layouts, as in boxlite.h. Pointers the library hands back are read as `void *`
// (BigInt addresses) so that the binding can free them after decoding.
const ErrorStruct = koffi.struct('boxlite_error', { status: 'int32_t', message: 'const char *' });
const BoxEntry = koffi.struct('boxlite_box_entry', {
  id: 'const char *',
  name: 'const char *',
  state: 'int32_t',
});
const BoxList = koffi.struct('boxlite_box_list', { items: 'void *', len: 'size_t' });
const RunResult = koffi.struct('boxlite_run_result', {
  stdout_data: 'void *',
  stdout_len: 'size_t',
  stderr_data: 'void *',
  stderr_len: 'size_t',
  exit_code: 'int32_t',
  signal: 'int32_t',
  timed_out: 'bool',
});
const ExecOptions = koffi.struct('boxlite_exec_options', {
  struct_size: 'size_t',
  argv: 'const char **',
  argc: 'size_t',
  env: 'const char **',
  envc: 'size_t',
  cwd: 'const char *',
  uid: 'int64_t',
  gid: 'int64_t',
  timeout_ms: 'uint64_t',
  stdin: 'bool',
});
koffi.struct('pollfd', { fd: 'int', events: 'short', revents: 'short' });

const ERR = '_Out_ void **err';
const PROTOTYPES = {
  boxlite_version: 'const char *boxlite_version()',
  boxlite_abi_version: 'uint32_t boxlite_abi_version()',
  boxlite_status_name: 'const char *boxlite_status_name(int32_t status)',
  boxlite_error_free: 'void boxlite_error_free(void *err)',
  boxlite_string_free: 'void boxlite_string_free(void *s)',
  boxlite_runtime_open: `int32_t boxlite_runtime_open(const char *home, _Out_ uint64_t *out, ${ERR})`,
  boxlite_runtime_open_with_assets:
    'int32_t boxlite_runtime_open_with_assets(const char *home, const char *shim, ' +
    `const char *kernel, const char *initrd, _Out_ uint64_t *out, ${ERR})`,
  boxlite_runtime_close: `int32_t boxlite_runtime_close(uint64_t rt, ${ERR})`,
  boxlite_options_new: `int32_t boxlite_options_new(_Out_ uint64_t *out, ${ERR})`,
  boxlite_options_free: `int32_t boxlite_options_free(uint64_t o, ${ERR})`,
  boxlite_options_set_name: `int32_t boxlite_options_set_name(uint64_t o, const char *name, ${ERR})`,
  boxlite_options_set_cpus: `int32_t boxlite_options_set_cpus(uint64_t o, uint32_t cpus, ${ERR})`,
  boxlite_options_set_memory_mib: `int32_t boxlite_options_set_memory_mib(uint64_t o, uint32_t mib, ${ERR})`,
  boxlite_options_set_root_image: `int32_t boxlite_options_set_root_image(uint64_t o, const char *path, ${ERR})`,
  boxlite_options_set_kernel:
    `int32_t boxlite_options_set_kernel(uint64_t o, const char *kernel, const char *initrd, ${ERR})`,
  boxlite_options_add_disk: `int32_t boxlite_options_add_disk(uint64_t o, const char *path, bool ro, ${ERR})`,
  boxlite_options_add_env: `int32_t boxlite_options_add_env(uint64_t o, const char *k, const char *v, ${ERR})`,
  boxlite_options_set_working_dir: `int32_t boxlite_options_set_working_dir(uint64_t o, const char *dir, ${ERR})`,
  boxlite_options_set_detach: `int32_t boxlite_options_set_detach(uint64_t o, bool detach, ${ERR})`,
  boxlite_options_set_auto_remove: `int32_t boxlite_options_set_auto_remove(uint64_t o, bool auto_remove, ${ERR})`,
  boxlite_options_set_ready_timeout_ms:
    `int32_t boxlite_options_set_ready_timeout_ms(uint64_t o, uint64_t ms, ${ERR})`,
  boxlite_create: `int32_t boxlite_create(uint64_t rt, uint64_t o, _Out_ uint64_t *out, ${ERR})`,
  boxlite_get: `int32_t boxlite_get(uint64_t rt, const char *name_or_id, _Out_ uint64_t *out, ${ERR})`,
  boxlite_remove: `int32_t boxlite_remove(uint64_t rt, const char *name_or_id, bool force, ${ERR})`,
  boxlite_list: `int32_t boxlite_list(uint64_t rt, _Out_ void **out, ${ERR})`,
  boxlite_box_list_free: 'void boxlite_box_list_free(void *list)',
  boxlite_box_free: `int32_t boxlite_box_free(uint64_t b, ${ERR})`,
  boxlite_box_id: `int32_t boxlite_box_id(uint64_t b, _Out_ void **out, ${ERR})`,
  boxlite_box_get_state: `int32_t boxlite_box_get_state(uint64_t b, _Out_ int32_t *out, ${ERR})`,
  boxlite_box_info_json: `int32_t boxlite_box_info_json(uint64_t b, _Out_ void **out, ${ERR})`,
  boxlite_box_metrics_json: `int32_t boxlite_box_metrics_json(uint64_t b, _Out_ void **out, ${ERR})`,
  boxlite_box_start: `int32_t boxlite_box_start(uint64_t b, ${ERR})`,
  boxlite_box_stop: `int32_t boxlite_box_stop(uint64_t b, ${ERR})`,
  // Newer than the header copy in include/: kills the box's VMM at once (SIGKILL).
  boxlite_box_kill: `int32_t boxlite_box_kill(uint64_t b, ${ERR})`,
  boxlite_run:
    'int32_t boxlite_run(uint64_t rt, uint64_t o, const char **argv, size_t argc, ' +
    `_Out_ void **out, ${ERR})`,
  boxlite_run_result_free: 'void boxlite_run_result_free(void *result)',
  boxlite_box_exec:
    `int32_t boxlite_box_exec(uint64_t b, const boxlite_exec_options *o, _Out_ uint64_t *out, ${ERR})`,
  boxlite_exec_fd: `int32_t boxlite_exec_fd(uint64_t e, _Out_ int32_t *fd, ${ERR})`,
  boxlite_exec_read:
    'int32_t boxlite_exec_read(uint64_t e, _Out_ int32_t *stream, _Out_ uint8_t *buf, size_t len, ' +
    `int64_t timeout_ms, _Out_ size_t *n, ${ERR})`,
  boxlite_exec_wait:
    'int32_t boxlite_exec_wait(uint64_t e, int64_t timeout_ms, _Out_ int32_t *exit_code, ' +
    `_Out_ int32_t *signal, ${ERR})`,
  boxlite_exec_write_stdin: `int32_t boxlite_exec_write_stdin(uint64_t e, const uint8_t *data, size_t len, ${ERR})`,
  boxlite_exec_close_stdin: `int32_t boxlite_exec_close_stdin(uint64_t e, ${ERR})`,
  boxlite_exec_kill: `int32_t boxlite_exec_kill(uint64_t e, int32_t signal, ${ERR})`,
  boxlite_exec_free: `int32_t boxlite_exec_free(uint64_t e, ${ERR})`,
};

// libc, for the output poller: poll(2) and its wake-up eventfd.
const LIBC_PROTOTYPES = {
  poll: 'int poll(_Inout_ pollfd *fds, unsigned long nfds, int timeout)',
  eventfd: 'int eventfd(unsigned int initval, int flags)',
  read: 'long read(int fd, _Out_ uint8_t *buf, size_t len)',
  write: 'long write(int fd, const uint8_t *buf, size_t len)',
};

let loaded = null;

/**
 * The loaded library: `{ fn, libc, file }`, where `fn` maps each C name to its koffi function.
 * Throws the discovery error, or an ABI mismatch error, on first use and on every use after.
 */
function native() {
  if (loaded) return loaded;
  const { handle, file } = loadFirst((f) => koffi.load(f));
  const fn = {};
  for (const [name, proto] of Object.entries(PROTOTYPES)) fn[name] = handle.func(proto);
  const abi = fn.boxlite_abi_version();
  if (abi !== ABI_VERSION) {
    throw new Error(
      `${file} implements boxlite ABI version ${abi}, but this binding needs version ` +
        `${ABI_VERSION}: install a libboxlite and a boxlite package of the same release.`,
    );
  }
  const libcHandle = koffi.load('libc.so.6');
  const libc = {};
  for (const [name, proto] of Object.entries(LIBC_PROTOTYPES)) libc[name] = libcHandle.func(proto);
  loaded = { fn, libc, file };
  return loaded;
}

module.exports = { native, koffi, ABI_VERSION, ErrorStruct, BoxEntry, BoxList, RunResult, ExecOptions };
