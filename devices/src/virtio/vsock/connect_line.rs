//! The host side of Firecracker's vsock handshake: a program that connects to the device's
//! Unix socket first sends `CONNECT <port>\n`, naming the guest port it wants.

use std::io::{ErrorKind, Read};

/// The longest accepted command line, newline included. `CONNECT 4294967294\n` is 19 bytes;
/// the slack allows extra spaces or a `\r`.
pub const MAX_LINE: usize = 32;

/// Why a host program's command was refused (its stream is then closed).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectLineError {
    /// No newline within [`MAX_LINE`] bytes.
    #[error("no newline within {MAX_LINE} bytes")]
    TooLong,
    /// The stream ended before the newline.
    #[error("the stream closed before the end of the line")]
    Eof,
    /// The line is not `CONNECT <port>`.
    #[error("expected `CONNECT <port>`, got {0:?}")]
    Malformed(String),
    /// The port is not a decimal number below 2^32 - 1 (`VMADDR_PORT_ANY`).
    #[error("invalid port {0:?}")]
    BadPort(String),
    /// Reading the stream failed.
    #[error("read failed: {0}")]
    Io(ErrorKind),
}

/// Parses one command line (without its newline): `CONNECT <port>`, the keyword in any case,
/// words separated by whitespace.
pub fn parse_connect(line: &[u8]) -> Result<u32, ConnectLineError> {
    let text = std::str::from_utf8(line)
        .map_err(|_| ConnectLineError::Malformed(String::from_utf8_lossy(line).into_owned()))?;
    let mut words = text.split_whitespace();
    let (Some(keyword), Some(port), None) = (words.next(), words.next(), words.next()) else {
        return Err(ConnectLineError::Malformed(text.to_owned()));
    };
    if !keyword.eq_ignore_ascii_case("connect") {
        return Err(ConnectLineError::Malformed(text.to_owned()));
    }
    let bad_port = || ConnectLineError::BadPort(port.to_owned());
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_port());
    }
    match port.parse::<u32>() {
        Ok(p) if p != u32::MAX => Ok(p),
        _ => Err(bad_port()),
    }
}

/// Collects a command line from a non-blocking stream across wake-ups.
///
/// It reads one byte at a time so that it never consumes anything past the newline: bytes the
/// program sends right after the command belong to the guest.
#[derive(Debug, Default)]
pub struct LineReader {
    line: Vec<u8>,
}

impl LineReader {
    /// Reads what `stream` has. `Ok(None)`: the line is not complete yet (the stream would
    /// block); `Ok(Some(port))`: a valid command; `Err`: refuse the program.
    pub fn read_from<R: Read>(&mut self, stream: &mut R) -> Result<Option<u32>, ConnectLineError> {
        loop {
            let mut byte = [0u8; 1];
            match stream.read(&mut byte) {
                Ok(0) => return Err(ConnectLineError::Eof),
                Ok(_) if byte[0] == b'\n' => return parse_connect(&self.line).map(Some),
                Ok(_) if self.line.len() + 1 >= MAX_LINE => return Err(ConnectLineError::TooLong),
                Ok(_) => self.line.push(byte[0]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(ConnectLineError::Io(e.kind())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn valid_commands() {
        assert_eq!(parse_connect(b"CONNECT 52"), Ok(52));
        assert_eq!(parse_connect(b"connect 0"), Ok(0));
        assert_eq!(parse_connect(b"Connect   2695\r"), Ok(2695));
        assert_eq!(parse_connect(b"CONNECT 4294967294"), Ok(u32::MAX - 1));
    }

    #[test]
    fn garbage_and_bad_ports_are_refused() {
        let malformed = |s: &str| Err(ConnectLineError::Malformed(s.to_owned()));
        assert_eq!(parse_connect(b""), malformed(""));
        assert_eq!(parse_connect(b"CONNECT"), malformed("CONNECT"));
        assert_eq!(parse_connect(b"LISTEN 52"), malformed("LISTEN 52"));
        assert_eq!(parse_connect(b"CONNECT 52 53"), malformed("CONNECT 52 53"));
        assert!(matches!(
            parse_connect(b"CONNECT \xff\xfe"),
            Err(ConnectLineError::Malformed(_))
        ));
        let bad = |s: &str| Err(ConnectLineError::BadPort(s.to_owned()));
        assert_eq!(parse_connect(b"CONNECT -1"), bad("-1"));
        assert_eq!(parse_connect(b"CONNECT +5"), bad("+5"));
        assert_eq!(parse_connect(b"CONNECT 0x34"), bad("0x34"));
        assert_eq!(parse_connect(b"CONNECT 4294967295"), bad("4294967295"));
        assert_eq!(parse_connect(b"CONNECT 99999999999"), bad("99999999999"));
    }

    #[test]
    fn line_reader_waits_for_the_newline_and_leaves_the_rest_unread() {
        let (mut host, mut dev) = UnixStream::pair().unwrap();
        dev.set_nonblocking(true).unwrap();
        let mut reader = LineReader::default();
        host.write_all(b"CONN").unwrap();
        assert_eq!(reader.read_from(&mut dev), Ok(None));
        host.write_all(b"ECT 52\nhello").unwrap();
        assert_eq!(reader.read_from(&mut dev), Ok(Some(52)));
        let mut rest = [0u8; 5];
        dev.read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"hello");
    }

    #[test]
    fn line_reader_refuses_overlong_lines_and_early_eof() {
        let (mut host, mut dev) = UnixStream::pair().unwrap();
        dev.set_nonblocking(true).unwrap();
        host.write_all(&[b'1'; 100]).unwrap();
        assert_eq!(
            LineReader::default().read_from(&mut dev),
            Err(ConnectLineError::TooLong)
        );

        let (mut host, mut dev) = UnixStream::pair().unwrap();
        host.write_all(b"CONNECT 5").unwrap();
        drop(host);
        assert_eq!(
            LineReader::default().read_from(&mut dev),
            Err(ConnectLineError::Eof)
        );
    }
}
