//! Shared pieces of the boxlite fuzz targets (`fuzz_targets/`): a guest driver's side of split
//! virtqueues laid out from fuzz input ([`ring`]), and the open-descriptor count the fd-leak
//! oracles compare ([`fds`]).

pub mod fds;
pub mod ring;
