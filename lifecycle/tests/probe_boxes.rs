//! The lifecycle with real shims and real KVM, on the probe tier: the guest is the bare-metal
//! probe (`probe=idle-ready`), which signals readiness like the agent, answers pings and
//! shutdowns, and otherwise idles: a box that costs milliseconds to boot on the local
//! `/dev/kvm`. Run by `scripts/test.sh --tier probe` (needs `BOXLITE_PROBE_DIR`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use boxlite_lifecycle::testing::TestHome;
use boxlite_lifecycle::{BoxOptions, BoxState, Root, Runtime, RuntimeOptions, ShimEnd, Timeouts};

fn probe_kernel() -> PathBuf {
    let dir = std::env::var_os("BOXLITE_PROBE_DIR")
        .expect("BOXLITE_PROBE_DIR (scripts/test.sh --tier probe sets it)");
    PathBuf::from(dir).join("probe-pvh")
}

fn open_at(home: &std::path::Path) -> Runtime {
    Runtime::open(RuntimeOptions {
        home: Some(home.to_path_buf()),
        timeouts: Timeouts {
            guest_shutdown: Duration::from_secs(5),
            ..Timeouts::default()
        },
        ..RuntimeOptions::default()
    })
    .unwrap()
}

fn probe_box(name: &str, detach: bool) -> BoxOptions {
    BoxOptions {
        name: Some(name.to_string()),
        memory_mib: 64,
        root: Root::Kernel {
            kernel: probe_kernel(),
            initrd: None,
        },
        kernel_args: vec!["probe=idle-ready".to_string()],
        detach,
        ready_timeout: Some(Duration::from_secs(20)),
        ..BoxOptions::default()
    }
}

/// SIGKILL to the shim `pid` this test started.
fn sigkill(pid: u32) {
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is a shim of this test.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

/// Polls `done` for up to 20 s.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs this test binary's `child_*` test named `name` in a new process with `home`.
fn child(name: &str, home: &std::path::Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--include-ignored"])
        .env("BOXLITE_CHILD_HOME", home)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn child_home() -> Option<PathBuf> {
    std::env::var_os("BOXLITE_CHILD_HOME").map(PathBuf::from)
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn a_box_starts_reports_itself_and_stops_through_its_guest() {
    let home = TestHome::new();
    let rt = open_at(home.path());
    let b = rt.create(probe_box("p1", false)).unwrap();
    b.start().unwrap();
    let info = b.info().unwrap();
    assert_eq!(info.state, BoxState::Running);
    let pid = info.pid.unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    let metrics = b.metrics().unwrap();
    assert!(metrics.rss_bytes.unwrap() > 0);
    let start = metrics.start.unwrap();
    assert!(start.ready_ms > 0.0 && start.spawn_ms > 0.0);
    b.stop().unwrap();
    let info = b.info().unwrap();
    assert_eq!(info.state, BoxState::Stopped);
    // The probe took the agent's shutdown and reset: a clean guest end.
    match info.exit.unwrap().end {
        ShimEnd::Vm { outcome, .. } => assert_eq!(outcome.name(), "guest-reset"),
        other => panic!("{other:?}"),
    }
    assert!(home.live_shims().is_empty());
    // And it starts again; its previous exit file is kept aside.
    b.start().unwrap();
    assert!(info.dir.join("exit.previous").exists());
    b.stop().unwrap();
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn child_starts_a_detached_box_and_leaves() {
    let Some(home) = child_home() else { return };
    open_at(&home)
        .create(probe_box("detached", true))
        .unwrap()
        .start()
        .unwrap();
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn a_detached_box_outlives_its_creator_and_is_reattached() {
    let home = TestHome::new();
    assert!(child("child_starts_a_detached_box_and_leaves", home.path())
        .wait()
        .unwrap()
        .success());
    let rt = open_at(home.path());
    let b = rt.get("detached").unwrap();
    assert_eq!(b.state().unwrap(), BoxState::Running);
    // Reattached: the guest answers without another boot.
    let before = b.info().unwrap().pid;
    b.stop().unwrap();
    assert_eq!(b.state().unwrap(), BoxState::Stopped);
    assert!(before.is_some());
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn child_starts_a_tied_box_and_waits() {
    let Some(home) = child_home() else { return };
    let rt = open_at(&home);
    rt.create(probe_box("tied", false))
        .unwrap()
        .start()
        .unwrap();
    // Killed by the parent from here on.
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn a_box_stops_when_the_program_that_started_it_is_killed() {
    let home = TestHome::new();
    let mut parent = child("child_starts_a_tied_box_and_waits", home.path());
    let rt = open_at(home.path());
    eventually("the tied box runs", || {
        rt.get("tied").and_then(|b| b.state()).ok() == Some(BoxState::Running)
    });
    parent.kill().unwrap();
    parent.wait().unwrap();
    eventually("the watchdog stops the box", || {
        home.live_shims().is_empty()
    });
    let state = rt.get("tied").unwrap().state().unwrap();
    assert!(
        matches!(state, BoxState::Stopped | BoxState::Failed),
        "{state}"
    );
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn a_shim_killed_while_running_leaves_a_failed_box_that_says_so() {
    let home = TestHome::new();
    let rt = open_at(home.path());
    let b = rt.create(probe_box("victim", false)).unwrap();
    b.start().unwrap();
    let pid = b.info().unwrap().pid.unwrap();
    sigkill(pid);
    eventually("the box is seen dead", || {
        b.state().ok() == Some(BoxState::Failed)
    });
    let info = b.info().unwrap();
    assert!(info.reason.unwrap().contains("signal 9"));
    assert_eq!(info.exit.unwrap().end, ShimEnd::Signal { signal: 9 });
    // It starts again.
    b.start().unwrap();
    b.stop().unwrap();
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn a_shim_killed_during_the_start_fails_the_start() {
    let home = TestHome::new();
    let rt = open_at(home.path());
    let b = rt.create(probe_box("early", false)).unwrap();
    let pid_file = b.info().unwrap().dir.join("shim.pid");
    // Kills the shim the moment its pid file appears (the spawn step), before readiness.
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
            {
                sigkill(pid);
                return true;
            }
            std::thread::yield_now();
        }
        false
    });
    let result = b.start();
    assert!(killer.join().unwrap());
    // Rarely the probe is ready before the kill lands; then the box dies right after.
    match result {
        // Rarely the probe is ready before the kill lands; then the box dies right after.
        Ok(()) => eventually("the box is seen dead", || {
            b.state().ok() == Some(BoxState::Failed)
        }),
        Err(e) => {
            let err = e.to_string();
            assert!(err.contains("failed to start"), "{err}");
            assert_eq!(b.state().unwrap(), BoxState::Failed);
        }
    }
    assert!(home.live_shims().is_empty());
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn after_a_host_reboot_active_boxes_are_stopped() {
    let home = TestHome::new();
    let rt = open_at(home.path());
    let b = rt.create(probe_box("before-reboot", true)).unwrap();
    b.start().unwrap();
    let pid = b.info().unwrap().pid.unwrap();
    // Another process that sees another boot id (a faked reboot).
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_lists_boxes", "--include-ignored"])
        .env("BOXLITE_CHILD_HOME", home.path())
        .env("BOXLITE_BOOT_ID", "a-later-boot")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let info = b.info().unwrap();
    assert_eq!(info.state, BoxState::Stopped);
    assert!(info.reason.unwrap().contains("rebooted"));
    // A real reboot would have taken the shim with it.
    sigkill(pid);
    eventually("the shim is gone", || home.live_shims().is_empty());
}

#[test]
#[ignore = "needs /dev/kvm and the probe guests: scripts/test.sh --tier probe"]
fn child_lists_boxes() {
    let Some(home) = child_home() else { return };
    assert!(!open_at(&home).list().unwrap().is_empty());
}
