//! A writer for "newc" cpio archives (the format the Linux kernel unpacks as an initramfs).
//!
//! Each entry is a 110-byte ASCII header (`070701` and thirteen 8-digit hex fields), the
//! NUL-terminated name padded to a multiple of 4 bytes, then the data padded the same way.
//! The archive ends with an entry named `TRAILER!!!`. Entries are written as given: the caller
//! adds directories before their contents. Device nodes need no privileges here, which is why
//! the harness writes its own archives rather than running `cpio` as root.

use std::io::Write;

use crate::error::{HarnessError, Result};

/// Magic of the newc format (no checksums).
pub const NEWC_MAGIC: &str = "070701";
/// Name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";
/// Length of a newc header in bytes.
pub const HEADER_LEN: usize = 110;

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const PERM_MASK: u32 = 0o7777;

/// The fields of one newc header that vary between entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Inode number (unique per entry).
    pub ino: u32,
    /// File type and permission bits.
    pub mode: u32,
    /// Number of links.
    pub nlink: u32,
    /// Size of the data that follows the name.
    pub filesize: u32,
    /// Major number of a device node.
    pub rdevmajor: u32,
    /// Minor number of a device node.
    pub rdevminor: u32,
    /// Length of the name including its NUL.
    pub namesize: u32,
}

impl Header {
    /// The 110 ASCII bytes of this header. uid, gid, mtime, devmajor/devminor and check are 0,
    /// so that archives are reproducible and owned by root when unpacked.
    pub fn encode(&self) -> String {
        let fields = [
            self.ino,
            self.mode,
            0, // uid
            0, // gid
            self.nlink,
            0, // mtime
            self.filesize,
            0, // devmajor
            0, // devminor
            self.rdevmajor,
            self.rdevminor,
            self.namesize,
            0, // check
        ];
        let mut s = String::with_capacity(HEADER_LEN);
        s.push_str(NEWC_MAGIC);
        for f in fields {
            s.push_str(&format!("{f:08X}"));
        }
        s
    }
}

/// Bytes of zero padding that bring `len` to a multiple of 4.
pub fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Turns `path` into an archive name: no leading `/`, no empty, `.` or `..` components.
pub fn normalize_path(path: &str) -> Result<String> {
    let refuse = |reason| HarnessError::CpioEntry {
        path: path.to_owned(),
        reason,
    };
    if path.contains('\0') {
        return Err(refuse("contains a NUL byte"));
    }
    let trimmed = path.trim_start_matches('/');
    if trimmed.is_empty() {
        return Err(refuse("is empty or the root directory"));
    }
    for comp in trimmed.split('/') {
        match comp {
            "" => return Err(refuse("has an empty component (`//` or a trailing `/`)")),
            "." | ".." => return Err(refuse("has a `.` or `..` component")),
            _ => {}
        }
    }
    if trimmed == TRAILER {
        return Err(refuse("is the name reserved for the archive trailer"));
    }
    Ok(trimmed.to_owned())
}

/// Writes a newc archive entry by entry; call [`CpioWriter::finish`] to add the trailer.
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    offset: usize,
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive on `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            next_ino: 1,
            offset: 0,
        }
    }

    /// Adds a directory with permissions `perm` (e.g. `0o755`).
    pub fn dir(&mut self, path: &str, perm: u32) -> Result<()> {
        let name = normalize_path(path)?;
        self.entry(&name, S_IFDIR | (perm & PERM_MASK), 2, (0, 0), &[])
    }

    /// Adds a regular file with permissions `perm` and contents `data`.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<()> {
        let name = normalize_path(path)?;
        self.entry(&name, S_IFREG | (perm & PERM_MASK), 1, (0, 0), data)
    }

    /// Adds a symbolic link at `path` pointing to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let name = normalize_path(path)?;
        if target.is_empty() || target.contains('\0') {
            return Err(HarnessError::CpioEntry {
                path: path.to_owned(),
                reason: "symlink target is empty or contains a NUL byte",
            });
        }
        self.entry(&name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// Adds a character device node (e.g. `/dev/console` is 5:1).
    pub fn char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<()> {
        let name = normalize_path(path)?;
        self.entry(&name, S_IFCHR | (perm & PERM_MASK), 1, (major, minor), &[])
    }

    /// Writes the trailer and returns the underlying writer.
    pub fn finish(mut self) -> Result<W> {
        self.raw_entry(
            TRAILER,
            Header {
                nlink: 1,
                ..Header::default()
            },
            &[],
        )?;
        self.out
            .flush()
            .map_err(|e| HarnessError::io("writing a cpio archive", e))?;
        Ok(self.out)
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<()> {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.raw_entry(
            name,
            Header {
                ino,
                mode,
                nlink,
                rdevmajor: rdev.0,
                rdevminor: rdev.1,
                ..Header::default()
            },
            data,
        )
    }

    fn raw_entry(&mut self, name: &str, mut header: Header, data: &[u8]) -> Result<()> {
        let too_big = |reason| HarnessError::CpioEntry {
            path: name.to_owned(),
            reason,
        };
        header.filesize = u32::try_from(data.len()).map_err(|_| too_big("is 4 GiB or larger"))?;
        header.namesize = u32::try_from(name.len() + 1).map_err(|_| too_big("name too long"))?;
        let zeros = [0u8; 4];
        let head = header.encode();
        let name_pad = pad4(HEADER_LEN + name.len() + 1);
        let data_pad = pad4(data.len());
        let parts: [&[u8]; 5] = [
            head.as_bytes(),
            name.as_bytes(),
            &zeros[..1 + name_pad],
            data,
            &zeros[..data_pad],
        ];
        for part in parts {
            self.out
                .write_all(part)
                .map_err(|e| HarnessError::io("writing a cpio archive", e))?;
            self.offset += part.len();
        }
        debug_assert_eq!(self.offset % 4, 0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parsed entry: (name, mode, rdev, data).
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// Parses the entries of a newc archive.
    fn parse(archive: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let head = std::str::from_utf8(&archive[pos..pos + HEADER_LEN]).unwrap();
            assert_eq!(&head[..6], NEWC_MAGIC);
            let field = |i: usize| u32::from_str_radix(&head[6 + 8 * i..14 + 8 * i], 16).unwrap();
            let (mode, filesize, namesize) = (field(1), field(6) as usize, field(11) as usize);
            let name_start = pos + HEADER_LEN;
            let name = std::str::from_utf8(&archive[name_start..name_start + namesize - 1])
                .unwrap()
                .to_owned();
            assert_eq!(
                archive[name_start + namesize - 1],
                0,
                "name is NUL-terminated"
            );
            let data_start = name_start + namesize + pad4(HEADER_LEN + namesize);
            assert_eq!(data_start % 4, 0);
            let data = archive[data_start..data_start + filesize].to_vec();
            pos = data_start + filesize + pad4(filesize);
            if name == TRAILER {
                assert_eq!(pos, archive.len(), "nothing after the trailer");
                return out;
            }
            out.push((name, mode, (field(9), field(10)), data));
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("/bin", 0o755).unwrap();
        w.file("/bin/hello", 0o755, b"hello\n").unwrap();
        w.file("init", 0o644, b"12345678").unwrap();
        w.symlink("/bin/sh", "busybox").unwrap();
        w.dir("dev", 0o755).unwrap();
        w.char_device("/dev/console", 0o600, 5, 1).unwrap();
        w.file("empty", 0o600, b"").unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn header_fields_are_fixed_width_hex() {
        let h = Header {
            ino: 1,
            mode: 0o100_755,
            nlink: 1,
            filesize: 0x1234,
            rdevmajor: 5,
            rdevminor: 1,
            namesize: 11,
        };
        let s = h.encode();
        assert_eq!(s.len(), HEADER_LEN);
        let expected = [
            "070701", "00000001", "000081ED", "00000000", "00000000", "00000001", "00000000",
            "00001234", "00000000", "00000000", "00000005", "00000001", "0000000B", "00000000",
        ]
        .concat();
        assert_eq!(s, expected);
    }

    #[test]
    fn padding_to_four_bytes() {
        assert_eq!(pad4(0), 0);
        assert_eq!(pad4(1), 3);
        assert_eq!(pad4(2), 2);
        assert_eq!(pad4(3), 1);
        assert_eq!(pad4(4), 0);
        assert_eq!(pad4(HEADER_LEN + 5), 1);
    }

    #[test]
    fn entries_round_trip() {
        let archive = sample();
        assert_eq!(archive.len() % 4, 0);
        let entries = parse(&archive);
        let names: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/hello",
                "init",
                "bin/sh",
                "dev",
                "dev/console",
                "empty"
            ]
        );
        assert_eq!(entries[0].1, 0o040_755);
        assert_eq!(entries[1].1, 0o100_755);
        assert_eq!(entries[1].3, b"hello\n");
        assert_eq!(entries[2].3, b"12345678");
        assert_eq!(entries[3].1, 0o120_777);
        assert_eq!(entries[3].3, b"busybox");
        assert_eq!(entries[5].1, 0o020_600);
        assert_eq!(entries[5].2, (5, 1));
        assert!(entries[6].3.is_empty());
    }

    #[test]
    fn trailer_ends_the_archive() {
        let archive = CpioWriter::new(Vec::new()).finish().unwrap();
        // Header + "TRAILER!!!\0" (11 bytes) padded: 110 + 11 = 121 -> 124.
        assert_eq!(archive.len(), 124);
        let text = String::from_utf8(archive).unwrap();
        assert!(text.starts_with("07070100000000"));
        assert!(text.contains("TRAILER!!!\0"));
        // namesize field = 11
        assert_eq!(&text[6 + 8 * 11..6 + 8 * 12], "0000000B");
    }

    #[test]
    fn bad_paths_are_refused() {
        for bad in ["", "/", "a//b", "a/", "../x", "a/./b", "x\0y", "TRAILER!!!"] {
            assert!(normalize_path(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(normalize_path("/opt/boxlite/x").unwrap(), "opt/boxlite/x");
        let mut w = CpioWriter::new(Vec::new());
        assert!(w.symlink("a", "").is_err());
    }

    /// GNU cpio lists what we wrote (skipped when `cpio` is not installed).
    #[test]
    fn gnu_cpio_lists_the_archive() {
        use std::process::{Command, Stdio};
        let child = Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("cpio not installed; skipping");
            return;
        };
        child.stdin.take().unwrap().write_all(&sample()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "cpio -t failed: {out:?}");
        let listed = String::from_utf8(out.stdout).unwrap();
        let listed: Vec<_> = listed.lines().collect();
        assert_eq!(
            listed,
            [
                "bin",
                "bin/hello",
                "init",
                "bin/sh",
                "dev",
                "dev/console",
                "empty"
            ]
        );
    }
}
