//! Running one command and streaming it here: stdout and stderr as they come, stdin forwarded
//! with `-i`, and the command's status to leave with.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use boxlite_lifecycle::{ExecControl, ExecHandle, ExecRequest};

use crate::args::ExecFlags;

/// How long past a command's timeout the host waits for the agent to report its end.
pub const HOST_TIMEOUT_GRACE: Duration = Duration::from_secs(10);

/// The request for `argv` with `flags`.
pub fn request(
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<String>,
    flags: &ExecFlags,
) -> ExecRequest {
    ExecRequest {
        env,
        cwd,
        uid: flags.user.map(|(uid, _)| uid),
        gid: flags.user.and_then(|(_, gid)| gid),
        stdin: flags.interactive,
        timeout_ms: flags
            .timeout
            .map(|t| t.as_millis().min(u128::from(u64::MAX)) as u64),
        ..ExecRequest::new(argv)
    }
}

/// Streams `handle` to this process's stdout and stderr; returns the status to leave with
/// (the command's code, or 128 + its signal).
pub fn stream(handle: ExecHandle, flags: &ExecFlags, grace: Duration) -> anyhow::Result<i32> {
    if flags.interactive {
        forward_stdin(handle.control());
    }
    // The agent enforces the timeout; this deadline covers an agent that stops answering.
    let armed = flags
        .timeout
        .map(|timeout| host_deadline(handle.control(), timeout + grace));
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let status = handle.stream(
        |bytes| {
            let _ = out.write_all(bytes).and_then(|_| out.flush());
        },
        |bytes| {
            let _ = err.write_all(bytes).and_then(|_| err.flush());
        },
    );
    drop(armed);
    let status = match (status, flags.timeout) {
        (Ok(status), _) => status,
        (Err(e), Some(timeout)) => anyhow::bail!(
            "the guest did not report the command's end within {:?} (its timeout plus a grace period): {e}",
            timeout + grace
        ),
        (Err(e), None) => return Err(e.into()),
    };
    if status.timed_out {
        eprintln!("boxlite: the command timed out and was killed");
    }
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128i32.saturating_add(signal),
        (None, None) => 1,
    })
}

/// Aborts the exec connection if it is still open after `after`; dropping the returned sender
/// disarms it.
fn host_deadline(control: ExecControl, after: Duration) -> mpsc::Sender<()> {
    let (disarm, disarmed) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = disarmed.recv_timeout(after) {
            log::warn!("the guest did not end the command within {after:?}; giving up on it");
            control.abort();
        }
    });
    disarm
}

/// Copies this process's stdin to the command until EOF, then closes the command's stdin.
fn forward_stdin(control: ExecControl) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut stdin = std::io::stdin().lock();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if control.write_stdin(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = control.close_stdin();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use boxlite_lifecycle::GuestSession;
    use boxlite_proto::agent::Event;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_silent_agent_is_given_up_on_after_the_timeout() {
        let tmp = boxlite_lifecycle::testing::TempDir::new();
        let path = tmp.path().join("agent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        // A fake agent: takes the request, says the command started, then says nothing more.
        let agent = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut header = [0u8; 4];
            conn.read_exact(&mut header).unwrap();
            let mut request = vec![0u8; u32::from_le_bytes(header) as usize];
            conn.read_exact(&mut request).unwrap();
            let started = boxlite_proto::encode_frame(&Event::Started { pid: 42 }).unwrap();
            conn.write_all(&started).unwrap();
            let mut rest = Vec::new();
            let _ = conn.read_to_end(&mut rest); // until the host gives up
        });
        let flags = ExecFlags {
            interactive: false,
            timeout: Some(Duration::from_millis(100)),
            user: None,
        };
        let handle = GuestSession::unix(&path)
            .exec(request(vec!["sleep".into()], Vec::new(), None, &flags))
            .unwrap();
        let err = stream(handle, &flags, Duration::from_millis(200)).unwrap_err();
        assert!(
            err.to_string().contains("did not report the command's end"),
            "{err}"
        );
        agent.join().unwrap();
    }
}
