//! Drives the agent binary in `--listen-unix` mode with the host client (`GuestSession`): the
//! same protocol and code paths as in a guest, without a VM.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use boxlite_lifecycle::{
    Error, ExecRequest, ExitStatus, GuestSession, Output, Termination, DEFAULT_TIMEOUT,
};
use boxlite_proto::agent::{Event, Hello, Request, AGENT_PROTOCOL_VERSION, OUTPUT_CHUNK_LEN};
use boxlite_proto::{
    decode_frame, encode_frame, frame_payload_len, FRAME_HEADER_LEN, MAX_FRAME_LEN,
};

/// One agent process serving a Unix socket in its own directory.
struct TestAgent {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl TestAgent {
    fn start(name: &str) -> TestAgent {
        let dir = std::env::temp_dir().join(format!("bl-agent-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("agent.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_boxlite-agent"))
            .arg("--listen-unix")
            .arg(&socket)
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let agent = TestAgent { child, dir, socket };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match agent.session().ping() {
                Ok(info) => {
                    assert_eq!(info.version, AGENT_PROTOCOL_VERSION);
                    assert!(info.agent.starts_with("boxlite-agent "), "{}", info.agent);
                    return agent;
                }
                Err(e) if Instant::now() > deadline => panic!("agent did not come up: {e}"),
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn session(&self) -> GuestSession {
        GuestSession::unix(&self.socket)
    }

    fn run(&self, request: ExecRequest) -> boxlite_lifecycle::ExecOutput {
        self.session().exec(request).unwrap().output().unwrap()
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn exited(code: i32) -> ExitStatus {
    ExitStatus {
        termination: Termination::Exited(code),
        timed_out: false,
    }
}

fn sh(script: &str) -> ExecRequest {
    ExecRequest::new(["sh", "-c", script])
}

/// Whether `pid` is gone (not even a zombie) within `patience`.
fn process_disappears(pid: u32, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    while Path::new(&format!("/proc/{pid}")).exists() {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Whether `pid` has ended (gone, or a zombie nobody has collected yet) within `patience`.
fn process_ends(pid: u32, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                // The state follows the command name, which is in parentheses.
                let (_, rest) = stat.rsplit_once(')')?;
                rest.split_whitespace().next().map(str::to_string)
            });
        if matches!(state.as_deref(), None | Some("Z" | "X")) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Deterministic pseudo-random bytes (xorshift64).
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Reads one event from a raw connection (`None` at end of stream).
fn read_event(conn: &mut UnixStream) -> Option<Event> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    if conn.read_exact(&mut header).is_err() {
        return None;
    }
    let len = frame_payload_len(header).unwrap();
    let mut frame = header.to_vec();
    frame.resize(FRAME_HEADER_LEN + len, 0);
    conn.read_exact(&mut frame[FRAME_HEADER_LEN..]).unwrap();
    Some(decode_frame(&frame).unwrap())
}

/// Sends `bytes` on a fresh raw connection; returns the agent's error message and checks that
/// the agent then closed the connection.
fn refused_with(agent: &TestAgent, bytes: &[u8]) -> String {
    let mut conn = UnixStream::connect(&agent.socket).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    conn.write_all(bytes).unwrap();
    let message = match read_event(&mut conn) {
        Some(Event::Error { message }) => message,
        other => panic!("expected an error event, got {other:?}"),
    };
    assert!(read_event(&mut conn).is_none(), "connection left open");
    message
}

#[test]
fn echo_hello_exact_stdout() {
    let agent = TestAgent::start("echo");
    let out = agent.run(ExecRequest::new(["echo", "hello"]));
    assert_eq!(out.stdout, b"hello\n");
    assert_eq!(out.stderr, b"");
    assert_eq!(out.status, exited(0));
    assert!(out.status.success());
}

#[test]
fn exit_codes_and_command_not_found() {
    let agent = TestAgent::start("codes");
    assert_eq!(agent.run(ExecRequest::new(["true"])).status, exited(0));
    assert_eq!(agent.run(ExecRequest::new(["false"])).status, exited(1));
    assert_eq!(agent.run(sh("exit 42")).status, exited(42));

    let handle = agent
        .session()
        .exec(ExecRequest::new(["no-such-command-boxlite"]))
        .unwrap();
    assert_eq!(handle.pid(), None);
    let out = handle.output().unwrap();
    assert_eq!(out.status, exited(127));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("command not found"), "{stderr}");
    // The shell's own 127 comes through unchanged.
    assert_eq!(
        agent.run(sh("no-such-command-boxlite 2>/dev/null")).status,
        exited(127)
    );
}

#[test]
fn death_by_signal_is_reported() {
    let agent = TestAgent::start("signal");
    let out = agent.run(sh("kill -9 $$"));
    assert_eq!(
        out.status,
        ExitStatus {
            termination: Termination::Signaled(9),
            timed_out: false
        }
    );
    assert_eq!(out.status.signal(), Some(9));
}

#[test]
fn stderr_is_kept_apart_from_stdout() {
    let agent = TestAgent::start("stderr");
    let out = agent.run(sh("echo out; echo err >&2; echo out2"));
    assert_eq!(out.stdout, b"out\nout2\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.status, exited(0));
}

#[test]
fn stdin_is_piped_through_cat() {
    let agent = TestAgent::start("stdin");
    let data = pseudo_random(3 * 1024 * 1024 + 17);
    let handle = agent
        .session()
        .exec(ExecRequest::new(["cat"]).with_stdin())
        .unwrap();
    let control = handle.control();
    let input = data.clone();
    // From another thread: cat's output must be read while its input is written.
    let writer = thread::spawn(move || {
        control.write_stdin(&input).unwrap();
        control.close_stdin().unwrap();
    });
    let out = handle.output().unwrap();
    writer.join().unwrap();
    assert_eq!(out.status, exited(0));
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "stdin did not come back byte-exact");
}

#[test]
fn no_stdin_means_dev_null() {
    let agent = TestAgent::start("devnull");
    let out = agent.run(ExecRequest::new(["cat"]));
    assert_eq!(out.stdout, b"");
    assert_eq!(out.status, exited(0));
}

#[test]
fn ten_mib_of_output_arrive_byte_exact() {
    let agent = TestAgent::start("bulk");
    let data = pseudo_random(10 * 1024 * 1024);
    let file = agent.dir.join("bulk.bin");
    std::fs::write(&file, &data).unwrap();
    let mut handle = agent
        .session()
        .exec(ExecRequest::new([
            "cat".to_string(),
            file.display().to_string(),
        ]))
        .unwrap();
    let mut stdout = Vec::new();
    while let Some(output) = handle.next_output().unwrap() {
        match output {
            Output::Stdout(chunk) => {
                assert!(!chunk.is_empty() && chunk.len() <= OUTPUT_CHUNK_LEN);
                stdout.extend(chunk);
            }
            Output::Stderr(chunk) => panic!("unexpected stderr {chunk:?}"),
        }
    }
    assert_eq!(handle.status(), Some(exited(0)));
    assert_eq!(stdout.len(), data.len());
    assert!(stdout == data, "output is not byte-exact");
}

#[test]
fn a_slow_reader_loses_nothing() {
    let agent = TestAgent::start("slow");
    let data = pseudo_random(1024 * 1024);
    let file = agent.dir.join("data.bin");
    std::fs::write(&file, &data).unwrap();
    // Sizes across what the pipe, the agent's buffer and the socket hold while the host does
    // not read, all at once: whatever the buffer sizes of this machine, some command exits
    // with output still queued while its host lags longer than the drain grace.
    let lens: Vec<usize> = (64 * 1024..=data.len()).step_by(16 * 1024).collect();
    let handles: Vec<_> = lens
        .iter()
        .map(|len| {
            let argv =
                ["head", "-c", &len.to_string(), &file.display().to_string()].map(String::from);
            agent.session().exec(ExecRequest::new(argv)).unwrap()
        })
        .collect();
    thread::sleep(Duration::from_millis(800));
    for (len, handle) in lens.into_iter().zip(handles) {
        let out = handle.output().unwrap();
        assert_eq!(out.status, exited(0));
        assert_eq!(out.stdout.len(), len);
        assert!(out.stdout == data[..len], "{len} bytes not byte-exact");
    }
}

#[test]
fn eight_execs_run_concurrently() {
    let agent = TestAgent::start("concurrent");
    let barrier = agent.dir.join("barrier");
    std::fs::create_dir(&barrier).unwrap();
    // Each command registers, then waits until all eight have: run one after the other, the
    // first would wait forever (and be killed by its timeout).
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let script = format!(
                "touch {dir}/{i}; while [ $(ls {dir} | wc -l) -lt 8 ]; do sleep 0.02; done; echo done {i}",
                dir = barrier.display()
            );
            agent.session().exec(sh(&script).timeout_ms(60_000)).unwrap()
        })
        .collect();
    let pids: std::collections::HashSet<_> = handles.iter().map(|h| h.pid().unwrap()).collect();
    assert_eq!(pids.len(), 8);
    for (i, handle) in handles.into_iter().enumerate() {
        let out = handle.output().unwrap();
        assert_eq!(out.status, exited(0), "exec {i}");
        assert_eq!(out.stdout, format!("done {i}\n").into_bytes());
    }
}

#[test]
fn timeout_kills_the_command() {
    let agent = TestAgent::start("timeout");
    // No "too late": the command was killed before its sleep ended.
    let out = agent.run(sh("sleep 30; echo too late").timeout_ms(300));
    assert_eq!(
        out.status,
        ExitStatus {
            termination: Termination::Signaled(9),
            timed_out: true
        }
    );
    assert_eq!(out.stdout, b"");
    // A command that ends in time is not marked, and an absurd limit is no limit.
    assert_eq!(agent.run(sh("exit 3").timeout_ms(30_000)).status, exited(3));
    assert_eq!(
        agent.run(sh("exit 4").timeout_ms(u64::MAX)).status,
        exited(4)
    );
}

#[test]
fn kill_sends_the_signal_to_the_process_group() {
    let agent = TestAgent::start("kill");
    let handle = agent
        .session()
        .exec(ExecRequest::new(["sleep", "30"]))
        .unwrap();
    handle.kill(15).unwrap();
    assert_eq!(
        handle.wait().unwrap(),
        ExitStatus {
            termination: Termination::Signaled(15),
            timed_out: false
        }
    );

    // The shell traps the signal; its background sleep gets it too, so `wait` returns at once.
    let mut handle = agent
        .session()
        .exec(sh(
            "trap 'echo trapped; exit 3' TERM; echo armed; sleep 30 & wait",
        ))
        .unwrap();
    assert_eq!(
        handle.next_output().unwrap(),
        Some(Output::Stdout(b"armed\n".to_vec()))
    );
    handle.kill(15).unwrap();
    let out = handle.output().unwrap();
    assert_eq!(out.stdout, b"trapped\n");
    assert_eq!(out.status, exited(3));
}

#[test]
fn malformed_oversized_and_foreign_frames_close_only_their_connection() {
    let agent = TestAgent::start("badframes");
    // A command that outlives the bad connections and must still be served.
    let survivor = agent
        .session()
        .exec(sh("read line; echo got $line").with_stdin())
        .unwrap();

    // Garbage: right version, unknown request variant.
    let message = refused_with(&agent, &[2, 0, 0, 0, AGENT_PROTOCOL_VERSION as u8, 200]);
    assert!(message.contains("malformed"), "{message}");

    // A header announcing more than the limit.
    let message = refused_with(&agent, &((MAX_FRAME_LEN + 1) as u32).to_le_bytes());
    assert!(message.contains("exceeds"), "{message}");

    // Another protocol version.
    let mut foreign = Hello::new(Request::Ping);
    foreign.version = 99;
    let message = refused_with(&agent, &encode_frame(&foreign).unwrap());
    assert!(message.contains("version 99"), "{message}");

    // Garbage in the middle of an exec: the error, then its command is killed.
    let mut conn = UnixStream::connect(&agent.socket).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let hello = Hello::new(Request::Exec(ExecRequest::new(["sleep", "30"])));
    conn.write_all(&hello.to_frame().unwrap()).unwrap();
    let Some(Event::Started { pid }) = read_event(&mut conn) else {
        panic!("exec did not start");
    };
    conn.write_all(&[1, 0, 0, 0, 250]).unwrap();
    assert!(matches!(read_event(&mut conn), Some(Event::Error { .. })));
    assert!(read_event(&mut conn).is_none(), "connection left open");
    assert!(process_disappears(pid, Duration::from_secs(10)));

    survivor.write_stdin(b"hi\n").unwrap();
    let out = survivor.output().unwrap();
    assert_eq!(out.stdout, b"got hi\n");
    assert_eq!(out.status, exited(0));
    assert!(agent.session().ping().is_ok());
}

#[test]
fn environment_working_directory_and_user_are_applied() {
    let agent = TestAgent::start("env");
    let own_uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    let own_gid = String::from_utf8(Command::new("id").arg("-g").output().unwrap().stdout).unwrap();
    let (uid, gid) = if own_uid.trim() == "0" {
        (65534, 65534)
    } else {
        (
            own_uid.trim().parse().unwrap(),
            own_gid.trim().parse().unwrap(),
        )
    };
    let out = agent.run(
        sh("echo $FOO; pwd; id -u; id -g")
            .env("FOO", "bar baz")
            .env("PATH", "/usr/bin:/bin")
            .cwd(agent.dir.display().to_string())
            .user(uid, gid),
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("bar baz\n{}\n{uid}\n{gid}\n", agent.dir.display())
    );
    assert_eq!(out.status, exited(0));

    // Nothing leaks in from the agent's own environment; a default PATH is supplied.
    let out = agent.run(sh("echo \"$HOME|$PATH\""));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );

    let err = agent
        .session()
        .exec(ExecRequest::new(["true"]).cwd("/no/such/dir"))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Agent { message } if message.contains("working directory")),
        "{err}"
    );
    let err = agent
        .session()
        .exec(ExecRequest::new(Vec::<String>::new()))
        .unwrap_err();
    assert!(matches!(err, Error::Agent { .. }), "{err}");
}

#[test]
fn commands_start_with_no_blocked_signals() {
    let agent = TestAgent::start("sigmask");
    let out = agent.run(ExecRequest::new(["grep", "SigBlk", "/proc/self/status"]));
    assert_eq!(out.stdout, b"SigBlk:\t0000000000000000\n");
}

#[test]
fn orphans_are_reaped() {
    let agent = TestAgent::start("orphans");
    let out = agent.run(sh("sleep 0.3 >/dev/null 2>&1 & echo $!"));
    assert_eq!(out.status, exited(0));
    let orphan: u32 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Its shell is gone: the agent (a subreaper, like PID 1) must collect it, or it would stay
    // a zombie in /proc forever.
    assert!(process_disappears(orphan, Duration::from_secs(20)));
}

#[test]
fn background_process_holding_stdout_does_not_hold_the_exec() {
    let agent = TestAgent::start("background");
    let out = agent.run(sh("sleep 30 & echo $!"));
    assert_eq!(out.status, exited(0));
    // The exec ended while its background sleep still runs (it holds stdout open).
    let pid = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the background sleep {pid} is gone: the exec waited for it"
    );
    // SAFETY: kill with integer arguments only (the sleep we started).
    unsafe { libc::kill(pid.parse().unwrap(), libc::SIGKILL) };
}

#[test]
fn closing_the_connection_kills_the_command() {
    let agent = TestAgent::start("hangup");
    let handle = agent
        .session()
        .exec(ExecRequest::new(["sleep", "30"]))
        .unwrap();
    let pid = handle.pid().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    // A live control clone does not keep the connection (and the command) alive.
    let control = handle.control();
    drop(handle);
    assert!(process_disappears(pid, Duration::from_secs(10)));
    assert!(control.kill(15).is_err());
}

#[test]
fn shutdown_kills_commands_and_stops_the_agent() {
    let mut agent = TestAgent::start("shutdown");
    let running = agent
        .session()
        .exec(ExecRequest::new(["sleep", "30"]))
        .unwrap();
    let pid = running.pid().unwrap();
    agent.session().shutdown().unwrap();
    let deadline = Instant::now() + DEFAULT_TIMEOUT;
    let status = loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "agent did not exit");
        thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(!agent.socket.exists());
    // The agent is gone, so nobody may be left to collect it: ended is enough.
    assert!(process_ends(pid, Duration::from_secs(10)));
    // The agent exits without waiting for the command's connection: it either saw the kill
    // or was cut off.
    let outcome = running.wait();
    assert!(
        matches!(
            outcome,
            Err(_)
                | Ok(ExitStatus {
                    termination: Termination::Signaled(9),
                    ..
                })
        ),
        "{outcome:?}"
    );
}
