//! The protocol between the test host and the runner: lines on QEMU's serial console.
//!
//! | line (anywhere in it; kernel messages may interleave) | meaning |
//! |---|---|
//! | `HARNESS-OUTER-INIT` | the test host's `/init` started |
//! | `HARNESS-MARK <name>` | a timing mark set by a case (`mark <name>`) |
//! | `HARNESS-FAIL <reason>` | the case failed (`fail <reason>`) |
//! | `HARNESS-TEST-EXIT <status>` | the case ended with that status |
//! | `HARNESS-NO-KVM <reason>` | the test host has no `/dev/kvm`: the tier cannot run |
//! | `HARNESS-ERROR <reason>` | the test host's `/init` hit a problem |
//! | `guest\| ...BOXLITE-GUEST-INIT-OK` | the nested guest's `/init` ran (its console, relayed) |
//! | `shim\| ...` | the shim's stderr, relayed: never an event |
//! | `Kernel panic - not syncing...` | the test host's kernel panicked |

use std::time::Duration;

/// Mark a case sets right before it spawns the shim.
pub const MARK_SHIM_SPAWN: &str = "shim-spawn";
/// Mark a case may set itself when the guest marker reaches it another way than the console.
pub const MARK_GUEST_INIT: &str = "guest-init";
/// What the guest's `/init` prints first.
pub const GUEST_INIT_MARKER: &str = "BOXLITE-GUEST-INIT-OK";
/// Prefix the helper library puts before each relayed guest console line.
pub const GUEST_PREFIX: &str = "guest| ";
/// Prefix the helper library puts before each relayed line of the shim's stderr.
pub const SHIM_PREFIX: &str = "shim| ";

/// Something the runner recognises on a console line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The test host's `/init` started.
    OuterInit,
    /// `HARNESS-MARK <name>`.
    Mark(String),
    /// The nested guest's `/init` marker.
    GuestInit,
    /// `HARNESS-FAIL <reason>`.
    Fail(String),
    /// `HARNESS-TEST-EXIT <status>`.
    TestExit(i32),
    /// `HARNESS-NO-KVM <reason>`.
    NoKvm(String),
    /// `HARNESS-ERROR <reason>`.
    HostError(String),
    /// The test host's kernel panicked (the whole line).
    HostPanic(String),
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OuterInit => write!(f, "test host /init"),
            Self::Mark(name) => write!(f, "mark {name}"),
            Self::GuestInit => write!(f, "guest /init"),
            Self::Fail(reason) => write!(f, "fail: {reason}"),
            Self::TestExit(code) => write!(f, "test exit {code}"),
            Self::NoKvm(reason) => write!(f, "no /dev/kvm: {reason}"),
            Self::HostError(reason) => write!(f, "test host error: {reason}"),
            Self::HostPanic(line) => write!(f, "test host panic: {line}"),
        }
    }
}

/// The text after `token` on `line`, trimmed, if `token` occurs.
fn after<'a>(line: &'a str, token: &str) -> Option<&'a str> {
    line.find(token).map(|i| line[i + token.len()..].trim())
}

/// Recognises the event on one console line (without its line ending), if any. Lines relayed
/// from the guest console or the shim's stderr carry no harness events (a guest cannot forge a
/// test exit); a relayed guest line can only be the guest `/init` marker.
pub fn classify(line: &str) -> Option<Event> {
    if let Some(guest) = after(line, GUEST_PREFIX) {
        return guest
            .contains(GUEST_INIT_MARKER)
            .then_some(Event::GuestInit);
    }
    if line.contains(SHIM_PREFIX) {
        return None;
    }
    if let Some(rest) = after(line, "HARNESS-TEST-EXIT ") {
        let digits: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .collect();
        return digits.parse().ok().map(Event::TestExit);
    }
    if let Some(rest) = after(line, "HARNESS-MARK ") {
        let name = rest.split_whitespace().next()?;
        return Some(if name == MARK_GUEST_INIT {
            Event::GuestInit
        } else {
            Event::Mark(name.to_owned())
        });
    }
    if let Some(rest) = after(line, "HARNESS-FAIL ") {
        return Some(Event::Fail(rest.to_owned()));
    }
    if let Some(rest) = after(line, "HARNESS-NO-KVM") {
        return Some(Event::NoKvm(rest.to_owned()));
    }
    if let Some(rest) = after(line, "HARNESS-ERROR") {
        return Some(Event::HostError(rest.to_owned()));
    }
    if line.contains("HARNESS-OUTER-INIT") {
        return Some(Event::OuterInit);
    }
    if line.contains("Kernel panic - not syncing") {
        return Some(Event::HostPanic(line.trim().to_owned()));
    }
    None
}

/// The events of one run, each at its time since QEMU was spawned.
#[derive(Debug, Default, Clone)]
pub struct Timeline {
    /// Events in the order they were seen.
    pub events: Vec<(Duration, Event)>,
}

impl Timeline {
    /// Records the event of `line` seen at `at`, if it has one.
    pub fn observe(&mut self, at: Duration, line: &str) -> Option<&Event> {
        let event = classify(line)?;
        self.events.push((at, event));
        self.events.last().map(|(_, e)| e)
    }

    fn first(&self, pred: impl Fn(&Event) -> bool) -> Option<(usize, Duration)> {
        self.events
            .iter()
            .enumerate()
            .find(|(_, (_, e))| pred(e))
            .map(|(i, (t, _))| (i, *t))
    }

    /// QEMU spawn → the test host's `/init`.
    pub fn outer_init(&self) -> Option<Duration> {
        self.first(|e| *e == Event::OuterInit).map(|(_, t)| t)
    }

    /// The first `shim-spawn` mark → the first guest `/init` marker after it.
    pub fn shim_to_guest_init(&self) -> Option<Duration> {
        let (i, spawn) = self.first(|e| matches!(e, Event::Mark(m) if m == MARK_SHIM_SPAWN))?;
        self.events[i..]
            .iter()
            .find(|(_, e)| *e == Event::GuestInit)
            .map(|(t, _)| t.saturating_sub(spawn))
    }

    /// The status of the last `HARNESS-TEST-EXIT` line.
    pub fn test_exit(&self) -> Option<i32> {
        self.events.iter().rev().find_map(|(_, e)| match e {
            Event::TestExit(code) => Some(*code),
            _ => None,
        })
    }

    /// The reason on the first `HARNESS-NO-KVM` line.
    pub fn no_kvm(&self) -> Option<&str> {
        self.events.iter().find_map(|(_, e)| match e {
            Event::NoKvm(reason) => Some(reason.as_str()),
            _ => None,
        })
    }

    /// Reasons given by `HARNESS-FAIL` and `HARNESS-ERROR` lines, in order.
    pub fn failures(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Fail(r) | Event::HostError(r) => Some(r.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The test host's kernel panic line, if it panicked.
    pub fn host_panic(&self) -> Option<&str> {
        self.events.iter().find_map(|(_, e)| match e {
            Event::HostPanic(line) => Some(line.as_str()),
            _ => None,
        })
    }
}

/// Cleans one raw serial line: drops trailing `\r`s and other control characters except tab.
pub fn clean_line(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .trim_end_matches(['\r', '\n'])
        .chars()
        .filter(|c| *c == '\t' || !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn protocol_lines() {
        assert_eq!(classify("HARNESS-OUTER-INIT"), Some(Event::OuterInit));
        assert_eq!(classify("HARNESS-TEST-EXIT 0"), Some(Event::TestExit(0)));
        assert_eq!(
            classify("HARNESS-TEST-EXIT 125  "),
            Some(Event::TestExit(125))
        );
        assert_eq!(
            classify("HARNESS-MARK shim-spawn"),
            Some(Event::Mark("shim-spawn".into()))
        );
        assert_eq!(classify("HARNESS-MARK guest-init"), Some(Event::GuestInit));
        assert_eq!(
            classify("HARNESS-FAIL shim exit: expected '0', got '1'"),
            Some(Event::Fail("shim exit: expected '0', got '1'".into()))
        );
        assert_eq!(
            classify("HARNESS-NO-KVM no /dev/kvm"),
            Some(Event::NoKvm("no /dev/kvm".into()))
        );
        assert_eq!(
            classify("HARNESS-ERROR cannot mount"),
            Some(Event::HostError("cannot mount".into()))
        );
    }

    #[test]
    fn interleaved_kernel_output_still_matches() {
        assert_eq!(
            classify("[    1.234] random: crng initHARNESS-TEST-EXIT 3"),
            Some(Event::TestExit(3))
        );
    }

    #[test]
    fn guest_marker_only_when_relayed() {
        assert_eq!(
            classify("guest| BOXLITE-GUEST-INIT-OK"),
            Some(Event::GuestInit)
        );
        assert_eq!(
            classify("guest| BOXLITE-GUEST-INIT-OK\r"),
            Some(Event::GuestInit)
        );
        assert_eq!(classify("guest| [ 0.5] booting"), None);
        // A failure message naming the marker is a failure, not the marker.
        assert_eq!(
            classify("HARNESS-FAIL guest console has no line matching 'BOXLITE-GUEST-INIT-OK'"),
            Some(Event::Fail(
                "guest console has no line matching 'BOXLITE-GUEST-INIT-OK'".into()
            ))
        );
        assert_eq!(classify("grep BOXLITE-GUEST-INIT-OK file"), None);
    }

    #[test]
    fn non_events() {
        for line in [
            "",
            "Linux version 6.1",
            "HARNESS-TEST-EXIT $rc",
            "HARNESS-MARK ",
            "+ echo HARNESS-TEST-EXIT",
        ] {
            assert_eq!(classify(line), None, "{line:?}");
        }
    }

    #[test]
    fn relayed_lines_cannot_forge_events() {
        assert_eq!(classify("guest| HARNESS-TEST-EXIT 0"), None);
        assert_eq!(classify("guest| HARNESS-MARK guest-init"), None);
        assert_eq!(
            classify(
                "shim| [boxlite-shim 9.0] INFO  VM ended: guest-panic: Kernel panic - not syncing"
            ),
            None
        );
    }

    #[test]
    fn guest_kernel_panic_is_not_a_host_panic() {
        assert_eq!(
            classify("guest| Kernel panic - not syncing: Attempted to kill init!"),
            None
        );
        assert!(matches!(
            classify("[ 2.0] Kernel panic - not syncing: Attempted to kill init!"),
            Some(Event::HostPanic(_))
        ));
    }

    #[test]
    fn timeline_intervals() {
        let mut t = Timeline::default();
        t.observe(ms(100), "Linux version");
        t.observe(ms(1000), "HARNESS-OUTER-INIT");
        t.observe(ms(1100), "guest| BOXLITE-GUEST-INIT-OK"); // before any spawn mark: ignored
        t.observe(ms(1200), "HARNESS-MARK shim-spawn");
        t.observe(ms(1300), "guest| noise");
        t.observe(ms(2700), "guest| BOXLITE-GUEST-INIT-OK");
        t.observe(ms(2900), "HARNESS-MARK shim-spawn");
        t.observe(ms(3000), "HARNESS-TEST-EXIT 0");
        assert_eq!(t.outer_init(), Some(ms(1000)));
        assert_eq!(t.shim_to_guest_init(), Some(ms(1500)));
        assert_eq!(t.test_exit(), Some(0));
        assert!(t.failures().is_empty());
        assert_eq!(t.no_kvm(), None);
    }

    #[test]
    fn timeline_without_events() {
        let t = Timeline::default();
        assert_eq!(t.outer_init(), None);
        assert_eq!(t.shim_to_guest_init(), None);
        assert_eq!(t.test_exit(), None);
        assert_eq!(t.host_panic(), None);
    }

    #[test]
    fn line_cleaning() {
        assert_eq!(clean_line(b"abc\r\r\n"), "abc");
        assert_eq!(clean_line(b"\x1b[0ma\tb\xff"), "[0ma\tb\u{fffd}");
    }
}
