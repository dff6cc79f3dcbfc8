//! Shared pieces of the boxlite fuzz targets (`fuzz_targets/`): a guest driver's side of split
//! virtqueues laid out from fuzz input ([`ring`]), and the open-descriptor count the fd-leak
//! oracles compare ([`fds`]), and the entry each structured target runs its input through
//! ([`input`]).

pub mod fds;
pub mod input;
pub mod ring;
