//! The kernel command line.

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::load_cmdline;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::error::{Error, Result};
use crate::layout::{CMDLINE_MAX_SIZE, CMDLINE_START};

/// Validates `cmdline` and writes it, NUL-terminated, at [`CMDLINE_START`]. Returns its length
/// without the NUL.
pub fn write(mem: &GuestMemoryMmap, cmdline: &str) -> Result<usize> {
    if let Some(bad) = cmdline.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(Error::InvalidConfig(format!(
            "kernel command line contains {bad:?}; only printable ASCII is accepted"
        )));
    }
    let parsed = Cmdline::try_from(cmdline, CMDLINE_MAX_SIZE).map_err(|e| {
        Error::InvalidConfig(format!(
            "kernel command line is not usable ({e}); it must be printable ASCII of at most {} bytes",
            CMDLINE_MAX_SIZE - 1
        ))
    })?;
    load_cmdline(mem, GuestAddress(CMDLINE_START), &parsed).map_err(|e| Error::BootSetup {
        what: "kernel command line",
        reason: e.to_string(),
    })?;
    Ok(cmdline.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::create_guest_memory;
    use vm_memory::Bytes;

    #[test]
    fn writes_a_nul_terminated_line() {
        let mem = create_guest_memory(16).unwrap();
        assert_eq!(write(&mem, "console=ttyS0 panic=-1").unwrap(), 22);
        let mut buf = [0u8; 23];
        mem.read_slice(&mut buf, GuestAddress(CMDLINE_START))
            .unwrap();
        assert_eq!(&buf, b"console=ttyS0 panic=-1\0");
    }

    #[test]
    fn refuses_overlong_and_non_ascii_lines() {
        let mem = create_guest_memory(16).unwrap();
        let long = "a".repeat(CMDLINE_MAX_SIZE);
        assert!(matches!(write(&mem, &long), Err(Error::InvalidConfig(_))));
        assert!(matches!(
            write(&mem, "init=/sbin/\u{e9}"),
            Err(Error::InvalidConfig(_))
        ));
    }
}
