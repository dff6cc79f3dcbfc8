//! TEMPORARY placeholder until the qcow2 branch merges (never committed).
use std::path::Path;
pub fn create_overlay(_base: &Path, _overlay: &Path) -> std::io::Result<()> {
    Err(std::io::Error::other("overlay support is being merged"))
}
