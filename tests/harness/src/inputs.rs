//! Checks on the files the tier needs (kernels, shim, busybox) before any QEMU starts, so a
//! missing or wrong input is reported once, clearly, instead of as N identical test failures.

use std::path::{Path, PathBuf};

use crate::error::{HarnessError, Result};

/// ELF program header type of the dynamic loader path.
const PT_INTERP: u32 = 3;

/// What is wrong with a binary that must be a static x86-64 ELF, if anything.
pub fn static_elf_problem(data: &[u8]) -> Option<String> {
    if data.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Some("not an ELF file".into());
    }
    // EI_CLASS = 2 (64-bit), EI_DATA = 1 (little endian).
    if data.get(4) != Some(&2) || data.get(5) != Some(&1) {
        return Some("not a 64-bit little-endian ELF".into());
    }
    let u16_at = |off: usize| {
        data.get(off..off + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u64_at = |off: usize| {
        data.get(off..off + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return Some("truncated ELF header".into());
    };
    for i in 0..usize::from(phnum) {
        let off = usize::try_from(phoff)
            .ok()
            .and_then(|p| p.checked_add(i * usize::from(phentsize)));
        let Some(ty) = off.and_then(|o| data.get(o..o.checked_add(4)?)) else {
            return Some("truncated ELF program headers".into());
        };
        if u32::from_le_bytes([ty[0], ty[1], ty[2], ty[3]]) == PT_INTERP {
            return Some("dynamically linked (has an ELF interpreter); the test host has no shared libraries".into());
        }
    }
    None
}

/// What is wrong with a kernel image that QEMU's `-kernel` must boot through PVH, if anything.
pub fn vmlinux_problem(data: &[u8]) -> Option<String> {
    (data.get(..4) != Some(b"\x7fELF".as_slice()))
        .then(|| "not an ELF vmlinux (QEMU's microvm boots the uncompressed PVH vmlinux)".into())
}

/// What is wrong with a bzImage, if anything (the setup header carries `HdrS` at 0x202).
pub fn bzimage_problem(data: &[u8]) -> Option<String> {
    (data.get(0x202..0x206) != Some(b"HdrS".as_slice()))
        .then(|| "no `HdrS` boot protocol signature at 0x202 (not a bzImage)".into())
}

/// Reads a required input, turning absence into [`HarnessError::MissingInput`].
pub fn read_input(what: &'static str, path: &Path, hint: &'static str) -> Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(data) => Ok(data),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(HarnessError::MissingInput {
            what,
            path: path.to_owned(),
            hint,
        }),
        Err(e) => Err(HarnessError::file("read", path, e)),
    }
}

/// Turns a problem found by one of the `*_problem` checks into an error.
pub fn check(what: &'static str, path: &Path, problem: Option<String>) -> Result<()> {
    match problem {
        None => Ok(()),
        Some(reason) => Err(HarnessError::BadInput {
            what,
            path: path.to_owned(),
            reason,
        }),
    }
}

/// Reads an input with [`read_input`] and vets it with `problem` (one of the `*_problem`
/// checks) through [`check`].
pub fn load_input(
    what: &'static str,
    path: &Path,
    hint: &'static str,
    problem: fn(&[u8]) -> Option<String>,
) -> Result<Vec<u8>> {
    let data = read_input(what, path, hint)?;
    check(what, path, problem(&data))?;
    Ok(data)
}

/// Finds `program` the way a shell would: as given when it contains `/`, else in `$PATH`.
pub fn find_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header with `phnum` program headers of the given types.
    fn elf(types: &[u32]) -> Vec<u8> {
        let mut d = vec![0u8; 64 + 56 * types.len()];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        d[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        d[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for (i, t) in types.iter().enumerate() {
            d[64 + 56 * i..68 + 56 * i].copy_from_slice(&t.to_le_bytes());
        }
        d
    }

    #[test]
    fn static_and_dynamic_elfs() {
        assert_eq!(static_elf_problem(&elf(&[1, 1, 4])), None);
        assert!(static_elf_problem(&elf(&[6, PT_INTERP, 1]))
            .unwrap()
            .contains("dynamically linked"));
    }

    #[test]
    fn odd_input_does_not_panic() {
        assert!(static_elf_problem(b"").is_some());
        assert!(static_elf_problem(b"#!/bin/sh\n").is_some());
        let mut truncated = elf(&[1, 1]);
        truncated.truncate(80);
        assert!(static_elf_problem(&truncated)
            .unwrap()
            .contains("truncated"));
        let mut huge = elf(&[1]);
        huge[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(static_elf_problem(&huge).is_some());
        assert!(bzimage_problem(b"short").is_some());
        assert!(vmlinux_problem(b"").is_some());
    }

    #[test]
    fn kernel_signatures() {
        assert_eq!(vmlinux_problem(&elf(&[])), None);
        let mut bz = vec![0u8; 0x300];
        assert!(bzimage_problem(&bz).is_some());
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(bzimage_problem(&bz), None);
    }
}
