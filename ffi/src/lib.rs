//! libboxlite: the boxlite runtime ([`boxlite_lifecycle`]) behind a stable C ABI.
//!
//! # Rules of the ABI
//! - Objects are opaque, checked handles (`uint64_t` ids into a registry, never pointers): a
//!   NULL (0), freed or foreign handle gives `BOXLITE_INVALID_HANDLE`, never undefined behaviour.
//! - Every call returns a `boxlite_status` and takes an optional `boxlite_error **err`: on
//!   failure, when `err` is not NULL, `*err` receives the status and a message (free it with
//!   `boxlite_error_free`); on success `*err` is set to NULL.
//! - Strings are NUL-terminated UTF-8; invalid UTF-8 gives `BOXLITE_INVALID_ARGUMENT`. What the
//!   library allocates is freed with the matching `boxlite_*_free`.
//! - No panic crosses the boundary: each entry point catches it and returns
//!   `BOXLITE_INTERNAL` (build the library with `--profile release-ffi`, which unwinds).
//! - Thread-safe: any call from any thread. Calls return at once unless their documentation
//!   says they block, and for how long.
//!
//! # Safety
//! One contract for every function: each pointer argument is NULL or valid for what its
//! documentation says (a NUL-terminated string, an array of the given length, a writable out
//! parameter). NULL where a value is required gives `BOXLITE_INVALID_ARGUMENT`.

#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
// The safety contract is the same for every entry point and is stated once above.
#![allow(clippy::missing_safety_doc)]
#![allow(non_camel_case_types)]

mod abi;
mod error;
mod exec;
mod registry;

pub use abi::*;
pub use error::Error;
pub use exec::*;
