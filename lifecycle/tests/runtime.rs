//! The runtime without a VM: records, lookup, states, start failures, recovery, and several
//! processes sharing one home. Shims here are stand-ins (`false`, a sleeping script).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use boxlite_lifecycle::testing::TestHome;
use boxlite_lifecycle::{
    Assets, BoxOptions, BoxState, Error, Root, Runtime, RuntimeOptions, Timeouts,
};

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn open(home: &TestHome, shim: Option<PathBuf>) -> Runtime {
    Runtime::open(RuntimeOptions {
        home: Some(home.path().join("home")),
        assets: Assets {
            shim,
            ..Assets::default()
        },
        timeouts: Timeouts {
            agent: Duration::from_millis(200),
            guest_shutdown: Duration::from_millis(200),
            terminate: Duration::from_secs(2),
            kill: Duration::from_secs(2),
            poll: Duration::from_millis(5),
        },
    })
    .unwrap()
}

/// Options whose kernel exists (the stand-in shims never read it).
fn options(home: &TestHome, name: Option<&str>) -> BoxOptions {
    let kernel = home.path().join("vmlinux");
    std::fs::write(&kernel, b"not a kernel").unwrap();
    BoxOptions {
        name: name.map(str::to_string),
        root: Root::Kernel {
            kernel,
            initrd: None,
        },
        ready_timeout: Some(Duration::from_millis(500)),
        ..BoxOptions::default()
    }
}

#[test]
fn boxes_are_found_by_name_then_id_then_unique_prefix() {
    let home = TestHome::new();
    let rt = open(&home, None);
    let web = rt.create(options(&home, Some("web"))).unwrap();
    let other = rt.create(options(&home, None)).unwrap();
    assert_eq!(rt.get("web").unwrap().id(), web.id());
    assert_eq!(rt.get(web.id()).unwrap().id(), web.id());
    // Ids are 24 hex digits: a prefix long enough to be unique finds it.
    assert_eq!(rt.get(&other.id()[..10]).unwrap().id(), other.id());
    assert!(matches!(
        rt.get("nothing-like-it"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(rt.get(""), Err(Error::NotFound { .. })));
    let err = rt.create(options(&home, Some("web"))).unwrap_err();
    assert!(matches!(err, Error::NameTaken { .. }), "{err}");
    assert_eq!(rt.list().unwrap().len(), 2);
}

#[test]
fn an_ambiguous_prefix_lists_the_matches() {
    let home = TestHome::new();
    let rt = open(&home, None);
    // With 40 boxes, some two share a first hex digit.
    let ids: Vec<String> = (0..40)
        .map(|_| rt.create(options(&home, None)).unwrap().id().to_string())
        .collect();
    let shared = ids
        .iter()
        .find(|id| ids.iter().filter(|o| o[..1] == id[..1]).count() > 1)
        .unwrap();
    match rt.get(&shared[..1]) {
        Err(Error::Ambiguous { matches, .. }) => {
            assert!(matches.len() > 1);
            assert!(matches.contains(shared));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_created_box_is_configured_with_private_options() {
    let home = TestHome::new();
    let rt = open(&home, None);
    let mut opts = options(&home, Some("secretive"));
    opts.env = vec![("TOKEN".into(), "sentinel-9f2c".into())];
    let b = rt.create(opts).unwrap();
    let info = b.info().unwrap();
    assert_eq!(info.state, BoxState::Configured);
    assert_eq!(info.options.unwrap().env[0].1, "<hidden>");
    let stored = info.dir.join("options.json");
    let mode = std::fs::metadata(&stored).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(&info.dir).unwrap().permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    // The journal holds no env.
    let journal = std::fs::read(rt.home().join("journal")).unwrap();
    assert!(!String::from_utf8_lossy(&journal).contains("sentinel-9f2c"));
}

#[test]
fn a_shim_that_dies_at_once_leaves_a_failed_box_with_its_reason() {
    let home = TestHome::new();
    let shim = script(
        home.path(),
        "dying-shim",
        "echo 'shim: cannot open /dev/kvm' >&2; exit 1",
    );
    let rt = open(&home, Some(shim));
    let b = rt.create(options(&home, Some("doomed"))).unwrap();
    let err = b.start().unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, Error::StartFailed { step: "ready", .. }),
        "{text}"
    );
    assert!(text.contains("cannot open /dev/kvm"), "{text}");
    let info = b.info().unwrap();
    assert_eq!(info.state, BoxState::Failed);
    assert!(info.reason.unwrap().contains("ready"));
    // Failed boxes can start again (and fail again, the record kept).
    assert!(b.start().is_err());
    assert_eq!(b.state().unwrap(), BoxState::Failed);
}

#[test]
fn a_guest_that_never_gets_ready_times_out_and_its_shim_is_stopped() {
    let home = TestHome::new();
    let shim = script(home.path(), "silent-shim", "exec sleep 60");
    let rt = open(&home, Some(shim));
    let b = rt.create(options(&home, None)).unwrap();
    let err = b.start().unwrap_err().to_string();
    assert!(err.contains("timed out"), "{err}");
    assert_eq!(b.state().unwrap(), BoxState::Failed);
    assert!(home.live_shims().is_empty());
    // The reaper recorded how the shim ended: killed by SIGKILL.
    let exit = b.info().unwrap().exit.expect("an exit record");
    assert_eq!(exit.end, boxlite_lifecycle::ShimEnd::Signal { signal: 9 });
}

#[test]
fn a_missing_shim_is_named_with_how_to_build_it() {
    let home = TestHome::new();
    let rt = open(&home, Some(home.path().join("no-such-shim")));
    let b = rt.create(options(&home, None)).unwrap();
    let err = b.start().unwrap_err();
    assert!(matches!(err, Error::AssetMissing { .. }), "{err}");
    let err = err.to_string();
    assert!(
        err.contains("no-such-shim") && err.contains("cargo build"),
        "{err}"
    );
    // Nothing was started: the box is as it was.
    assert_eq!(b.state().unwrap(), BoxState::Configured);
}

#[test]
fn invalid_transitions_are_refused() {
    let home = TestHome::new();
    let rt = open(&home, None);
    let b = rt.create(options(&home, None)).unwrap();
    // Stopping a box that never ran changes nothing.
    b.stop().unwrap();
    assert_eq!(b.state().unwrap(), BoxState::Configured);
    rt.remove(b.id(), false).unwrap();
    assert!(matches!(b.state(), Err(Error::NotFound { .. })));
    assert!(matches!(b.start(), Err(Error::NotFound { .. })));
}

#[test]
fn the_env_never_reaches_argv_environment_or_logs_of_a_shim() {
    let home = TestHome::new();
    // A stand-in shim that reports what it was given, then dies.
    let report = home.path().join("seen");
    let shim = script(
        home.path(),
        "nosy-shim",
        &format!("{{ echo \"$0 $*\"; env; }} > {}; exit 1", report.display()),
    );
    let rt = open(&home, Some(shim));
    let mut opts = options(&home, None);
    opts.env = vec![("API_KEY".into(), "sentinel-7d1e".into())];
    let b = rt.create(opts).unwrap();
    assert!(b.start().is_err());
    let seen = std::fs::read_to_string(&report).unwrap();
    assert!(!seen.contains("sentinel-7d1e"), "{seen}");
    for entry in walk(rt.home()) {
        if entry.file_name().is_some_and(|n| n == "options.json") {
            continue;
        }
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("sentinel-7d1e"),
            "{} holds the secret",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_corrupt_box_folder_is_an_error_not_a_panic() {
    let home = TestHome::new();
    let rt = open(&home, None);
    let b = rt.create(options(&home, Some("garbled"))).unwrap();
    let dir = b.info().unwrap().dir;
    std::fs::write(dir.join("options.json"), [0xffu8; 100]).unwrap();
    std::fs::write(dir.join("shim.pid"), b"\x00\x01 not a pid").unwrap();
    std::fs::write(dir.join("exit"), b"{\"pid\":").unwrap();
    assert_eq!(b.info().unwrap().options, None);
    let err = b.start().unwrap_err().to_string();
    assert!(err.contains("options.json"), "{err}");
    // Still listed, still removable.
    assert_eq!(rt.list().unwrap().len(), 1);
    rt.remove("garbled", true).unwrap();
    assert!(rt.list().unwrap().is_empty());
}
