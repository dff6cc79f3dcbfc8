//! The C entry points for runtimes, box options, boxes and one-shot runs, and the helpers every
//! entry point shares (status, errors, strings, out parameters, panic catching).

use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boxlite_lifecycle::{
    Assets, BoxHandle, BoxOptions, BoxState, Disk, ExecRequest, Root, Runtime, RuntimeOptions,
};

use crate::error::{Error, Result};
use crate::registry::{self, Kind};

/// The ABI's version: bumped on every incompatible change (it is the soname's major number).
pub const BOXLITE_ABI_VERSION: u32 = 0;

/// What a call did. Values are stable; new ones are only ever added.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum boxlite_status {
    /// Success.
    BOXLITE_OK = 0,
    /// A NULL pointer where a value is required, invalid UTF-8, a value out of range, or box
    /// options that cannot work.
    BOXLITE_INVALID_ARGUMENT = 1,
    /// No box has that name or id prefix.
    BOXLITE_NOT_FOUND = 2,
    /// Another box already has that name.
    BOXLITE_ALREADY_EXISTS = 3,
    /// The box's state does not allow the call (e.g. removing a running box without force).
    BOXLITE_INVALID_STATE = 4,
    /// Nothing happened within the timeout.
    BOXLITE_TIMEOUT = 5,
    /// The guest agent failed, refused the request or went away.
    BOXLITE_GUEST_ERROR = 6,
    /// A file, socket or journal of the runtime could not be used.
    BOXLITE_IO = 7,
    /// A bug in the library (a caught panic); the message says where.
    BOXLITE_INTERNAL = 8,
    /// A NULL (0), freed or foreign handle.
    BOXLITE_INVALID_HANDLE = 9,
    /// A runtime asset (the shim, the guest kernel, the initramfs) was not found; the message
    /// names it, where it was looked for and how to build it.
    BOXLITE_ASSET_MISSING = 10,
    /// The box failed to boot; the message holds its crash report.
    BOXLITE_START_FAILED = 11,
}

/// A failed call's status and message. Free it with `boxlite_error_free`.
#[repr(C)]
#[derive(Debug)]
pub struct boxlite_error {
    /// The status the call returned.
    pub status: boxlite_status,
    /// What went wrong: NUL-terminated UTF-8, owned by the error.
    pub message: *mut c_char,
}

/// A runtime: the boxes of one home folder.
pub type boxlite_runtime = u64;
/// A box options builder.
pub type boxlite_options = u64;
/// A box.
pub type boxlite_box = u64;

/// The states of a box.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum boxlite_box_state {
    /// Recorded, never started.
    BOXLITE_BOX_CONFIGURED = 0,
    /// Booting.
    BOXLITE_BOX_STARTING = 1,
    /// Its guest agent is ready.
    BOXLITE_BOX_RUNNING = 2,
    /// Being stopped.
    BOXLITE_BOX_STOPPING = 3,
    /// Ended cleanly.
    BOXLITE_BOX_STOPPED = 4,
    /// Failed to start or ended abnormally.
    BOXLITE_BOX_FAILED = 5,
}

impl From<BoxState> for boxlite_box_state {
    fn from(state: BoxState) -> boxlite_box_state {
        use boxlite_box_state as S;
        match state {
            BoxState::Configured => S::BOXLITE_BOX_CONFIGURED,
            BoxState::Starting => S::BOXLITE_BOX_STARTING,
            BoxState::Running => S::BOXLITE_BOX_RUNNING,
            BoxState::Stopping => S::BOXLITE_BOX_STOPPING,
            BoxState::Stopped => S::BOXLITE_BOX_STOPPED,
            BoxState::Failed => S::BOXLITE_BOX_FAILED,
        }
    }
}

/// One box of a `boxlite_box_list`.
#[repr(C)]
#[derive(Debug)]
pub struct boxlite_box_entry {
    /// Its id (NUL-terminated).
    pub id: *mut c_char,
    /// Its name, or NULL.
    pub name: *mut c_char,
    /// Its state.
    pub state: boxlite_box_state,
}

/// The boxes of a runtime, oldest first. Free it with `boxlite_box_list_free`.
#[repr(C)]
#[derive(Debug)]
pub struct boxlite_box_list {
    /// The boxes.
    pub items: *mut boxlite_box_entry,
    /// How many.
    pub len: usize,
}

/// What `boxlite_run` captured. Free it with `boxlite_run_result_free`.
#[repr(C)]
#[derive(Debug)]
pub struct boxlite_run_result {
    /// All of stdout (NULL when empty; not NUL-terminated).
    pub stdout_data: *mut u8,
    /// Its length in bytes.
    pub stdout_len: usize,
    /// All of stderr (NULL when empty; not NUL-terminated).
    pub stderr_data: *mut u8,
    /// Its length in bytes.
    pub stderr_len: usize,
    /// The exit code, or -1 when a signal killed the command.
    pub exit_code: i32,
    /// The signal that killed the command, or 0.
    pub signal: i32,
    /// Whether the command's timeout killed it.
    pub timed_out: bool,
}

// ---- helpers shared by the entry points ----

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string())
}

fn c_string(text: impl Into<Vec<u8>>) -> CString {
    let mut bytes = text.into();
    bytes.retain(|&b| b != 0);
    CString::new(bytes).unwrap_or_default()
}

/// Runs an entry point's body: catches a panic, turns the result into a status and fills the
/// optional error out parameter.
pub(crate) unsafe fn call(
    err: *mut *mut boxlite_error,
    body: impl FnOnce() -> Result<()>,
) -> boxlite_status {
    let result = catch_unwind(AssertUnwindSafe(body))
        .unwrap_or_else(|payload| Err(Error::Internal(panic_message(&*payload))));
    let (status, error) = match result {
        Ok(()) => (boxlite_status::BOXLITE_OK, std::ptr::null_mut()),
        Err(e) => {
            let status = e.status();
            let message = c_string(e.to_string()).into_raw();
            let error = Box::into_raw(Box::new(boxlite_error { status, message }));
            (status, error)
        }
    };
    if err.is_null() {
        if !error.is_null() {
            // SAFETY: `error` came from Box::into_raw just above.
            unsafe { boxlite_error_free(error) };
        }
    } else {
        // SAFETY: the caller passes NULL or a writable `boxlite_error *` (checked for NULL).
        unsafe { *err = error };
    }
    status
}

/// Writes `value` to out parameter `out`, which must not be NULL.
pub(crate) unsafe fn put<T>(out: *mut T, what: &str, value: T) -> Result<()> {
    if out.is_null() {
        return Err(Error::InvalidArgument(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and, by the ABI contract, writable for a T.
    unsafe { out.write(value) };
    Ok(())
}

/// Writes `value` as a library-allocated JSON string to `out` (checked before anything is
/// allocated, so a NULL `out` leaks nothing).
pub(crate) unsafe fn put_json(out: *mut *mut c_char, value: &impl serde::Serialize) -> Result<()> {
    if out.is_null() {
        return Err(Error::InvalidArgument("out is NULL".to_string()));
    }
    let json = serde_json::to_string(value).map_err(|e| Error::Internal(e.to_string()))?;
    // SAFETY: non-NULL (checked above) and, by the ABI contract, writable.
    unsafe { put(out, "out", owned_string(&json)) }
}

/// The UTF-8 string at `ptr`, which must not be NULL.
pub(crate) unsafe fn text<'a>(ptr: *const c_char, what: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::InvalidArgument(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and, by the ABI contract, a NUL-terminated string.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes
        .to_str()
        .map_err(|_| Error::InvalidArgument(format!("{what} is not valid UTF-8")))
}

/// The UTF-8 string at `ptr`, or `None` when it is NULL.
pub(crate) unsafe fn opt_text<'a>(ptr: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded ABI contract.
        unsafe { text(ptr, what) }.map(Some)
    }
}

/// The `len` UTF-8 strings of the array at `ptr` (NULL only when `len` is 0).
pub(crate) unsafe fn texts(
    ptr: *const *const c_char,
    len: usize,
    what: &str,
) -> Result<Vec<String>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if ptr.is_null() {
        return Err(Error::InvalidArgument(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and, by the ABI contract, an array of `len` string pointers.
    let items = unsafe { std::slice::from_raw_parts(ptr, len) };
    items
        .iter()
        .enumerate()
        // SAFETY: each item is a NUL-terminated string by the ABI contract (NULL is refused).
        .map(|(i, &p)| unsafe { text(p, &format!("{what}[{i}]")) }.map(str::to_string))
        .collect()
}

/// An open runtime, as the registry holds it.
pub(crate) struct Rt {
    runtime: Runtime,
}

impl std::ops::Deref for Rt {
    type Target = Runtime;
    fn deref(&self) -> &Runtime {
        &self.runtime
    }
}

fn runtime(id: boxlite_runtime) -> Result<Arc<Rt>> {
    registry::get::<Rt>(id, Kind::Runtime).map(|(rt, _)| rt)
}

fn options(id: boxlite_options) -> Result<Arc<Mutex<BoxOptions>>> {
    registry::get::<Mutex<BoxOptions>>(id, Kind::Options).map(|(o, _)| o)
}

/// Changes the options of builder `id`.
fn edit(id: boxlite_options, f: impl FnOnce(&mut BoxOptions)) -> Result<()> {
    let options = options(id)?;
    f(&mut boxlite_proto::sync::lock(&options));
    Ok(())
}

/// A box handle and the runtime it belongs to; the runtime must still be open.
pub(crate) fn box_handle(id: boxlite_box) -> Result<(Arc<BoxHandle>, boxlite_runtime)> {
    let (handle, owner) = registry::get::<BoxHandle>(id, Kind::Box)?;
    Ok((handle, owner))
}

fn owned_string(text: &str) -> *mut c_char {
    c_string(text).into_raw()
}

fn owned_bytes(bytes: Vec<u8>) -> (*mut u8, usize) {
    if bytes.is_empty() {
        return (std::ptr::null_mut(), 0);
    }
    let len = bytes.len();
    (Box::into_raw(bytes.into_boxed_slice()).cast::<u8>(), len)
}

/// Frees what `owned_bytes` returned.
unsafe fn free_bytes(data: *mut u8, len: usize) {
    if !data.is_null() {
        // SAFETY: `data`/`len` came from `owned_bytes` (a boxed slice of exactly `len` bytes).
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, len)) });
    }
}

/// The folder this library was loaded from (the program's, when linked statically).
fn library_dir() -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: Dl_info is plain pointers and integers; all zeroes is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let here = boxlite_version as *const std::ffi::c_void;
    // SAFETY: dladdr only reads the address and fills `info`.
    if unsafe { libc::dladdr(here, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the dynamic loader.
    let file = unsafe { CStr::from_ptr(info.dli_fname) };
    let file = PathBuf::from(std::ffi::OsStr::from_bytes(file.to_bytes()));
    Some(file.parent()?.to_path_buf())
}

/// Asset `file` as `scripts/install.sh` lays it out next to this library
/// (`<libdir>/boxlite/<file>`), unless `$BOXLITE_RUNTIME_DIR` names the folder to use.
fn installed(file: &str) -> Option<PathBuf> {
    if std::env::var_os("BOXLITE_RUNTIME_DIR").is_some() {
        return None;
    }
    Some(library_dir()?.join("boxlite").join(file)).filter(|p| p.is_file())
}

// ---- version and errors ----

/// The library's version, e.g. "0.1.0" (static; do not free).
#[no_mangle]
pub extern "C" fn boxlite_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The ABI version the library implements (`BOXLITE_ABI_VERSION` of its header).
#[no_mangle]
pub extern "C" fn boxlite_abi_version() -> u32 {
    BOXLITE_ABI_VERSION
}

/// The name of a status, e.g. "BOXLITE_NOT_FOUND", or "BOXLITE_UNKNOWN" for a value this
/// library does not know (static; do not free).
#[no_mangle]
pub extern "C" fn boxlite_status_name(status: i32) -> *const c_char {
    use boxlite_status as S;
    const NAMES: [(S, &str); 12] = [
        (S::BOXLITE_OK, "BOXLITE_OK\0"),
        (S::BOXLITE_INVALID_ARGUMENT, "BOXLITE_INVALID_ARGUMENT\0"),
        (S::BOXLITE_NOT_FOUND, "BOXLITE_NOT_FOUND\0"),
        (S::BOXLITE_ALREADY_EXISTS, "BOXLITE_ALREADY_EXISTS\0"),
        (S::BOXLITE_INVALID_STATE, "BOXLITE_INVALID_STATE\0"),
        (S::BOXLITE_TIMEOUT, "BOXLITE_TIMEOUT\0"),
        (S::BOXLITE_GUEST_ERROR, "BOXLITE_GUEST_ERROR\0"),
        (S::BOXLITE_IO, "BOXLITE_IO\0"),
        (S::BOXLITE_INTERNAL, "BOXLITE_INTERNAL\0"),
        (S::BOXLITE_INVALID_HANDLE, "BOXLITE_INVALID_HANDLE\0"),
        (S::BOXLITE_ASSET_MISSING, "BOXLITE_ASSET_MISSING\0"),
        (S::BOXLITE_START_FAILED, "BOXLITE_START_FAILED\0"),
    ];
    let name = NAMES
        .iter()
        .find(|(s, _)| *s as i32 == status)
        .map_or("BOXLITE_UNKNOWN\0", |(_, name)| name);
    name.as_ptr().cast()
}

/// Frees an error (NULL is allowed).
#[no_mangle]
pub unsafe extern "C" fn boxlite_error_free(err: *mut boxlite_error) {
    if err.is_null() {
        return;
    }
    // SAFETY: by the ABI contract `err` came from the library (Box::into_raw in `call`).
    let err = unsafe { Box::from_raw(err) };
    if !err.message.is_null() {
        // SAFETY: the message came from CString::into_raw in `call`.
        drop(unsafe { CString::from_raw(err.message) });
    }
}

/// Frees a string the library returned (NULL is allowed).
#[no_mangle]
pub unsafe extern "C" fn boxlite_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: by the ABI contract `s` came from the library (CString::into_raw).
        drop(unsafe { CString::from_raw(s) });
    }
}

// ---- runtimes ----

/// Opens the runtime of home folder `home` (NULL: `$BOXLITE_HOME`, else
/// `$XDG_DATA_HOME/boxlite`, else `~/.local/share/boxlite`) and recovers its boxes. Blocks for
/// the recovery: a few file reads per box.
#[no_mangle]
pub unsafe extern "C" fn boxlite_runtime_open(
    home: *const c_char,
    out: *mut boxlite_runtime,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    // SAFETY: the ABI contract (lib.rs) covers every pointer below.
    unsafe {
        boxlite_runtime_open_with_assets(
            home,
            std::ptr::null(),
            std::ptr::null(),
            std::ptr::null(),
            out,
            err,
        )
    }
}

/// Like `boxlite_runtime_open`, with explicit paths for the runtime's assets: the
/// `boxlite-shim` binary, the guest kernel and the default initramfs (each NULL: searched in
/// `$BOXLITE_RUNTIME_DIR`, `boxlite/` next to this library, `<prefix>/lib/boxlite`, then the
/// build caches).
#[no_mangle]
pub unsafe extern "C" fn boxlite_runtime_open_with_assets(
    home: *const c_char,
    shim: *const c_char,
    kernel: *const c_char,
    initrd: *const c_char,
    out: *mut boxlite_runtime,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        let path = |p, what| unsafe { opt_text(p, what) }.map(|s| s.map(PathBuf::from));
        if out.is_null() {
            return Err(Error::InvalidArgument("out is NULL".to_string()));
        }
        let assets = Assets {
            shim: path(shim, "shim")?.or_else(|| installed("boxlite-shim")),
            kernel: path(kernel, "kernel")?.or_else(|| installed("vmlinux")),
            initrd: path(initrd, "initrd")?.or_else(|| installed("initramfs.cpio")),
        };
        let options = RuntimeOptions {
            home: path(home, "home")?,
            assets,
            ..RuntimeOptions::default()
        };
        let rt = Rt {
            runtime: Runtime::open(options)?,
        };
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        unsafe { put(out, "out", registry::insert(Kind::Runtime, 0, Arc::new(rt))) }
    };
    // SAFETY: the ABI contract (lib.rs) covers every pointer below.
    unsafe { call(err, body) }
}

/// Closes a runtime: its box and exec handles become invalid, and the boxes it started that are
/// not detached stop. Blocks only to end this runtime's executions (at once).
#[no_mangle]
pub unsafe extern "C" fn boxlite_runtime_close(
    rt: boxlite_runtime,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        let runtime = registry::remove::<Rt>(rt, Kind::Runtime)?;
        for exec in registry::remove_owned::<crate::exec::Exec>(rt, Kind::Exec) {
            exec.close();
        }
        drop(registry::remove_owned::<BoxHandle>(rt, Kind::Box));
        drop(runtime);
        Ok(())
    };
    // SAFETY: the ABI contract (lib.rs) covers `err`.
    unsafe { call(err, body) }
}

// ---- box options ----

/// A new box options builder with the defaults: 1 vCPU, 512 MiB, the default root, not
/// detached. Free it with `boxlite_options_free`.
#[no_mangle]
pub unsafe extern "C" fn boxlite_options_new(
    out: *mut boxlite_options,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        if out.is_null() {
            return Err(Error::InvalidArgument("out is NULL".to_string()));
        }
        let options = Arc::new(Mutex::new(BoxOptions::default()));
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        unsafe { put(out, "out", registry::insert(Kind::Options, 0, options)) }
    };
    // SAFETY: the ABI contract (lib.rs) covers `out` and `err`.
    unsafe { call(err, body) }
}

/// Frees a box options builder.
#[no_mangle]
pub unsafe extern "C" fn boxlite_options_free(
    options: boxlite_options,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || registry::remove::<Mutex<BoxOptions>>(options, Kind::Options).map(drop);
    // SAFETY: the ABI contract (lib.rs) covers `err`.
    unsafe { call(err, body) }
}

/// Names the box (1 to 64 letters, digits, '-', '_', '.'; checked at create). NULL: no name.
#[no_mangle]
pub unsafe extern "C" fn boxlite_options_set_name(
    options: boxlite_options,
    name: *const c_char,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        let name = unsafe { opt_text(name, "name") }?.map(str::to_string);
        edit(options, |o| o.name = name)
    };
    // SAFETY: the ABI contract (lib.rs) covers `name` and `err`.
    unsafe { call(err, body) }
}

/// Sets the number of vCPUs (1 to 32).
#[no_mangle]
pub unsafe extern "C" fn boxlite_options_set_cpus(
    options: boxlite_options,
    cpus: u32,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        let cpus = u8::try_from(cpus)
            .ok()
            .filter(|c| (1..=32).contains(c))
            .ok_or_else(|| Error::InvalidArgument(format!("{cpus} vCPUs: use 1 to 32")))?;
        edit(options, |o| o.cpus = cpus)
    };
    // SAFETY: the ABI contract (lib.rs) covers `err`.
    unsafe { call(err, body) }
}

/// Sets the guest memory in MiB (64 or more).
#[no_mangle]
pub unsafe extern "C" fn boxlite_options_set_memory_mib(
    options: boxlite_options,
    mib: u32,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        if mib < 64 {
            return Err(Error::InvalidArgument(format!(
                "{mib} MiB of memory: use 64 or more"
            )));
        }
        edit(options, |o| o.memory_mib = mib)
    };
    // SAFETY: the ABI contract (lib.rs) covers `err`.
    unsafe { call(err, body) }
}

/// Boots the box on an ext4 image of the user's as its root (never written: the box runs on a
/// copy-on-write overlay). NULL: back to the default root.
#[no_mangle]
pub unsafe extern "C" fn boxlite_options_set_root_image(
    options: boxlite_options,
    path: *const c_char,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        let root =
            unsafe { opt_text(path, "path") }?.map_or(Root::Default, |p| Root::Image(p.into()));
        edit(options, |o| o.root = root)
    };
    // SAFETY: the ABI contract (lib.rs) covers `path` and `err`.
    unsafe { call(err, body) }
}

/// Boots the box on a kernel and an initramfs (NULL: none) of the user's, whose `/init` must be
/// the boxlite agent.
#[no_mangle]
pub unsafe extern "C" fn boxlite_options_set_kernel(
    options: boxlite_options,
    kernel: *const c_char,
    initrd: *const c_char,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        let root = Root::Kernel {
            // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
            kernel: unsafe { text(kernel, "kernel") }?.into(),
            // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
            initrd: unsafe { opt_text(initrd, "initrd") }?.map(PathBuf::from),
        };
        edit(options, |o| o.root = root)
    };
    // SAFETY: the ABI contract (lib.rs) covers `kernel`, `initrd` and `err`.
    unsafe { call(err, body) }
}

/// Attaches a raw disk image (after the root image, if any; 16 disks at most).
#[no_mangle]
pub unsafe extern "C" fn boxlite_options_add_disk(
    options: boxlite_options,
    path: *const c_char,
    read_only: bool,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        let path = PathBuf::from(unsafe { text(path, "path") }?);
        edit(options, |o| o.disks.push(Disk { path, read_only }))
    };
    // SAFETY: the ABI contract (lib.rs) covers `path` and `err`.
    unsafe { call(err, body) }
}

/// Adds (or replaces) a variable of the environment of every command run in the box.
#[no_mangle]
pub unsafe extern "C" fn boxlite_options_add_env(
    options: boxlite_options,
    key: *const c_char,
    value: *const c_char,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        let key = unsafe { text(key, "key") }?.to_string();
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        let value = unsafe { text(value, "value") }?.to_string();
        if key.is_empty() || key.contains('=') {
            return Err(Error::InvalidArgument(format!(
                "environment variable {key:?}: a name without '='"
            )));
        }
        edit(options, |o| {
            o.env.retain(|(k, _)| *k != key);
            o.env.push((key, value));
        })
    };
    // SAFETY: the ABI contract (lib.rs) covers `key`, `value` and `err`.
    unsafe { call(err, body) }
}

/// Sets the working directory of commands that name none (NULL: the agent's, `/`).
#[no_mangle]
pub unsafe extern "C" fn boxlite_options_set_working_dir(
    options: boxlite_options,
    dir: *const c_char,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        let dir = unsafe { opt_text(dir, "dir") }?.map(str::to_string);
        edit(options, |o| o.working_dir = dir)
    };
    // SAFETY: the ABI contract (lib.rs) covers `dir` and `err`.
    unsafe { call(err, body) }
}

/// Whether the box outlives the runtime that starts it (else closing the runtime or ending the
/// process stops it).
#[no_mangle]
pub unsafe extern "C" fn boxlite_options_set_detach(
    options: boxlite_options,
    detach: bool,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    // SAFETY: the ABI contract (lib.rs) covers `err`.
    unsafe { call(err, || edit(options, |o| o.detach = detach)) }
}

/// Whether the box is removed when it stops.
#[no_mangle]
pub unsafe extern "C" fn boxlite_options_set_auto_remove(
    options: boxlite_options,
    auto_remove: bool,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    // SAFETY: the ABI contract (lib.rs) covers `err`.
    unsafe { call(err, || edit(options, |o| o.auto_remove = auto_remove)) }
}

/// How long the guest may take to become ready, in ms (0: the default, 30 s or
/// `$BOXLITE_GUEST_READY_TIMEOUT`).
#[no_mangle]
pub unsafe extern "C" fn boxlite_options_set_ready_timeout_ms(
    options: boxlite_options,
    timeout_ms: u64,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms));
        edit(options, |o| o.ready_timeout = timeout)
    };
    // SAFETY: the ABI contract (lib.rs) covers `err`.
    unsafe { call(err, body) }
}

// ---- boxes ----

fn register_box(rt: boxlite_runtime, handle: BoxHandle) -> boxlite_box {
    registry::insert(Kind::Box, rt, Arc::new(handle))
}

/// The options of builder `options`, or the defaults for 0.
fn options_or_default(options: boxlite_options) -> Result<BoxOptions> {
    if options == 0 {
        return Ok(BoxOptions::default());
    }
    let options = self::options(options)?;
    let copy = boxlite_proto::sync::lock(&options).clone();
    Ok(copy)
}

/// Creates a box (state configured) from `options` (0: the defaults) without starting it. The
/// builder can be freed or reused afterwards. Free the handle with `boxlite_box_free`.
#[no_mangle]
pub unsafe extern "C" fn boxlite_create(
    rt: boxlite_runtime,
    options: boxlite_options,
    out: *mut boxlite_box,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        if out.is_null() {
            return Err(Error::InvalidArgument("out is NULL".to_string()));
        }
        let runtime = runtime(rt)?;
        let handle = runtime.create(options_or_default(options)?)?;
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        unsafe { put(out, "out", register_box(rt, handle)) }
    };
    // SAFETY: the ABI contract (lib.rs) covers `out` and `err`.
    unsafe { call(err, body) }
}

/// Finds a box by exact name, exact id or unique id prefix. Free the handle with
/// `boxlite_box_free`.
#[no_mangle]
pub unsafe extern "C" fn boxlite_get(
    rt: boxlite_runtime,
    name_or_id: *const c_char,
    out: *mut boxlite_box,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        let query = unsafe { text(name_or_id, "name_or_id") }?;
        if out.is_null() {
            return Err(Error::InvalidArgument("out is NULL".to_string()));
        }
        let handle = runtime(rt)?.get(query)?;
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        unsafe { put(out, "out", register_box(rt, handle)) }
    };
    // SAFETY: the ABI contract (lib.rs) covers `name_or_id`, `out` and `err`.
    unsafe { call(err, body) }
}

/// Removes a box and its folder. An active box is refused (`BOXLITE_INVALID_STATE`) unless
/// `force`, which kills it first (blocks up to a few seconds for the kill).
#[no_mangle]
pub unsafe extern "C" fn boxlite_remove(
    rt: boxlite_runtime,
    name_or_id: *const c_char,
    force: bool,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        let query = unsafe { text(name_or_id, "name_or_id") }?;
        runtime(rt)?.remove(query, force)?;
        Ok(())
    };
    // SAFETY: the ABI contract (lib.rs) covers `name_or_id` and `err`.
    unsafe { call(err, body) }
}

/// Every box of the runtime, oldest first, with its state. Free it with
/// `boxlite_box_list_free`.
#[no_mangle]
pub unsafe extern "C" fn boxlite_list(
    rt: boxlite_runtime,
    out: *mut *mut boxlite_box_list,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        if out.is_null() {
            return Err(Error::InvalidArgument("out is NULL".to_string()));
        }
        let infos = runtime(rt)?.list()?;
        let items: Box<[boxlite_box_entry]> = infos
            .iter()
            .map(|info| boxlite_box_entry {
                id: owned_string(&info.id),
                name: info
                    .name
                    .as_deref()
                    .map_or(std::ptr::null_mut(), owned_string),
                state: info.state.into(),
            })
            .collect();
        let len = items.len();
        let items = Box::into_raw(items).cast::<boxlite_box_entry>();
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        unsafe {
            put(
                out,
                "out",
                Box::into_raw(Box::new(boxlite_box_list { items, len })),
            )
        }
    };
    // SAFETY: the ABI contract (lib.rs) covers `out` and `err`.
    unsafe { call(err, body) }
}

/// Frees a box list (NULL is allowed).
#[no_mangle]
pub unsafe extern "C" fn boxlite_box_list_free(list: *mut boxlite_box_list) {
    if list.is_null() {
        return;
    }
    // SAFETY: by the ABI contract `list` came from `boxlite_list` (Box::into_raw).
    let list = unsafe { Box::from_raw(list) };
    // SAFETY: `items`/`len` came from a boxed slice in `boxlite_list`.
    let items = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(list.items, list.len)) };
    for item in items.iter() {
        // SAFETY: both strings came from `owned_string` (or are NULL).
        unsafe {
            boxlite_string_free(item.id);
            boxlite_string_free(item.name);
        }
    }
}

/// Frees a box handle (the box itself stays; see `boxlite_remove`).
#[no_mangle]
pub unsafe extern "C" fn boxlite_box_free(
    b: boxlite_box,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    // SAFETY: the ABI contract (lib.rs) covers `err`.
    unsafe {
        call(err, || {
            registry::remove::<BoxHandle>(b, Kind::Box).map(drop)
        })
    }
}

/// The box's id, a string to free with `boxlite_string_free`.
#[no_mangle]
pub unsafe extern "C" fn boxlite_box_id(
    b: boxlite_box,
    out: *mut *mut c_char,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        if out.is_null() {
            return Err(Error::InvalidArgument("out is NULL".to_string()));
        }
        let (handle, _) = box_handle(b)?;
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        unsafe { put(out, "out", owned_string(handle.id())) }
    };
    // SAFETY: the ABI contract (lib.rs) covers `out` and `err`.
    unsafe { call(err, body) }
}

/// The box's current state (brought up to date with its VMM).
#[no_mangle]
pub unsafe extern "C" fn boxlite_box_get_state(
    b: boxlite_box,
    out: *mut boxlite_box_state,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        if out.is_null() {
            return Err(Error::InvalidArgument("out is NULL".to_string()));
        }
        let state = box_handle(b)?.0.state()?;
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        unsafe { put(out, "out", state.into()) }
    };
    // SAFETY: the ABI contract (lib.rs) covers `out` and `err`.
    unsafe { call(err, body) }
}

/// Everything known about the box as a JSON object (id, name, state, created_unix_ms, pid,
/// reason, exit, options with the environment's values hidden, dir); new fields may appear.
/// Free the string with `boxlite_string_free`.
#[no_mangle]
pub unsafe extern "C" fn boxlite_box_info_json(
    b: boxlite_box,
    out: *mut *mut c_char,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        let info = box_handle(b)?.0.info()?;
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        unsafe { put_json(out, &info) }
    };
    // SAFETY: the ABI contract (lib.rs) covers `out` and `err`.
    unsafe { call(err, body) }
}

/// The box's resource use as a JSON object (cpu_percent, rss_bytes, start timings; null when
/// unknown). Free the string with `boxlite_string_free`.
#[no_mangle]
pub unsafe extern "C" fn boxlite_box_metrics_json(
    b: boxlite_box,
    out: *mut *mut c_char,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        let metrics = box_handle(b)?.0.metrics()?;
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        unsafe { put_json(out, &metrics) }
    };
    // SAFETY: the ABI contract (lib.rs) covers `out` and `err`.
    unsafe { call(err, body) }
}

/// Starts the box and returns once its guest agent answers. Blocks for the boot: up to the
/// box's ready timeout (30 s by default).
#[no_mangle]
pub unsafe extern "C" fn boxlite_box_start(
    b: boxlite_box,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || Ok(box_handle(b)?.0.start()?);
    // SAFETY: the ABI contract (lib.rs) covers `err`.
    unsafe { call(err, body) }
}

/// Stops the box: the guest shuts down, else its VMM is terminated, then killed. Blocks up to
/// about 20 s (agent 5 s + guest shutdown 10 s + terminate 5 s) in the worst case.
#[no_mangle]
pub unsafe extern "C" fn boxlite_box_stop(
    b: boxlite_box,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    // SAFETY: the ABI contract (lib.rs) covers `err`.
    unsafe { call(err, || Ok(box_handle(b)?.0.stop()?)) }
}

/// Kills the box's VMM at once (SIGKILL), without asking the guest to shut down; a start in
/// progress on another thread then fails. Blocks up to a few seconds for the kill.
#[no_mangle]
pub unsafe extern "C" fn boxlite_box_kill(
    b: boxlite_box,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    // SAFETY: the ABI contract (lib.rs) covers `err`.
    unsafe { call(err, || Ok(box_handle(b)?.0.kill()?)) }
}

// ---- one-shot runs ----

/// Creates a box from `options` (0: the defaults), runs `argv` (`argc` strings) in it, stops and
/// removes the box, and returns everything the command wrote (up to 64 MiB) and how it ended.
/// Blocks for the boot, the command and the stop. Free `*out` with `boxlite_run_result_free`.
#[no_mangle]
pub unsafe extern "C" fn boxlite_run(
    rt: boxlite_runtime,
    options: boxlite_options,
    argv: *const *const c_char,
    argc: usize,
    out: *mut *mut boxlite_run_result,
    err: *mut *mut boxlite_error,
) -> boxlite_status {
    let body = || {
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        let argv = unsafe { texts(argv, argc, "argv") }?;
        if argv.is_empty() {
            return Err(Error::InvalidArgument("argv is empty".to_string()));
        }
        if out.is_null() {
            return Err(Error::InvalidArgument("out is NULL".to_string()));
        }
        let runtime = runtime(rt)?;
        let handle = runtime.create(options_or_default(options)?)?;
        let result = handle.run(ExecRequest::new(argv));
        let stopped = handle.stop();
        let removed = runtime.remove(handle.id(), true);
        let output = result?;
        stopped?;
        removed?;
        let (stdout_data, stdout_len) = owned_bytes(output.stdout);
        let (stderr_data, stderr_len) = owned_bytes(output.stderr);
        let run = boxlite_run_result {
            stdout_data,
            stdout_len,
            stderr_data,
            stderr_len,
            exit_code: output.status.code().unwrap_or(-1),
            signal: output.status.signal().unwrap_or(0),
            timed_out: output.status.timed_out,
        };
        // SAFETY: the ABI contract (lib.rs): NULL or valid pointers.
        unsafe { put(out, "out", Box::into_raw(Box::new(run))) }
    };
    // SAFETY: the ABI contract (lib.rs) covers `argv`, `out` and `err`.
    unsafe { call(err, body) }
}

/// Frees a run result (NULL is allowed).
#[no_mangle]
pub unsafe extern "C" fn boxlite_run_result_free(result: *mut boxlite_run_result) {
    if result.is_null() {
        return;
    }
    // SAFETY: by the ABI contract `result` came from `boxlite_run` (Box::into_raw), and its
    // buffers from `owned_bytes`.
    unsafe {
        let result = Box::from_raw(result);
        free_bytes(result.stdout_data, result.stdout_len);
        free_bytes(result.stderr_data, result.stderr_len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_internal_error_with_its_message() {
        let mut err: *mut boxlite_error = std::ptr::null_mut();
        // SAFETY: `err` is a writable local.
        let status = unsafe { call(&mut err, || panic!("boom in the body")) };
        assert_eq!(status, boxlite_status::BOXLITE_INTERNAL);
        assert!(!err.is_null());
        // SAFETY: `call` filled `err` with a library-allocated error.
        unsafe {
            assert_eq!((*err).status, boxlite_status::BOXLITE_INTERNAL);
            let message = CStr::from_ptr((*err).message).to_str().unwrap();
            assert!(message.contains("boom in the body"), "{message}");
            boxlite_error_free(err);
        }
        // SAFETY: a NULL error out parameter is allowed.
        let status = unsafe { call(std::ptr::null_mut(), || panic!("again")) };
        assert_eq!(status, boxlite_status::BOXLITE_INTERNAL);
    }

    #[test]
    fn status_names_cover_unknown_values() {
        // SAFETY: boxlite_status_name returns static NUL-terminated strings.
        let name = |s| {
            // SAFETY: boxlite_status_name returns a static NUL-terminated string.
            unsafe { CStr::from_ptr(boxlite_status_name(s)) }
                .to_str()
                .unwrap()
        };
        assert_eq!(
            name(boxlite_status::BOXLITE_TIMEOUT as i32),
            "BOXLITE_TIMEOUT"
        );
        assert_eq!(name(-7), "BOXLITE_UNKNOWN");
    }
}
