//! Test cases: one `<name>.sh` file each in the cases directory, run as `/work/test.sh` inside
//! the test host. The leading comment block is the header:
//!
//! ```sh
//! #!/bin/sh
//! # description: shim boots the PVH vmlinux to the guest's /init
//! # timeout: 90
//! ```
//!
//! `description:` is required (one line); `timeout:` is in seconds (default
//! [`DEFAULT_TIMEOUT_S`]). Other comment lines are free text. The header ends at the first line
//! that is not a comment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{HarnessError, Result};

/// Timeout of a case whose header has no `timeout:`.
pub const DEFAULT_TIMEOUT_S: u64 = 90;
/// Largest timeout a header may ask for.
pub const MAX_TIMEOUT_S: u64 = 3600;

/// One test case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The file name without `.sh`; also the name of its report directory.
    pub name: String,
    /// The case file.
    pub path: PathBuf,
    /// The one-line description from the header.
    pub description: String,
    /// How long its QEMU may run before it is killed.
    pub timeout: Duration,
}

/// What a case header declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `description:` value.
    pub description: String,
    /// `timeout:` value, or the default.
    pub timeout: Duration,
}

/// A header problem: 1-based line number and reason.
pub type HeaderProblem = (usize, String);

/// Parses the header of a case script.
pub fn parse_header(text: &str) -> std::result::Result<Header, HeaderProblem> {
    let mut description = None;
    let mut timeout = None;
    let mut last_line = 0;
    for (idx, raw) in text.lines().enumerate() {
        let lineno = idx + 1;
        last_line = lineno;
        let line = raw.trim();
        if idx == 0 && line.starts_with("#!") {
            continue;
        }
        let Some(comment) = line.strip_prefix('#') else {
            break;
        };
        let Some((key, value)) = comment.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "description" => {
                if description.is_some() {
                    return Err((lineno, "second `description:` line".into()));
                }
                if value.is_empty() {
                    return Err((lineno, "empty `description:`".into()));
                }
                description = Some(value.to_owned());
            }
            "timeout" => {
                if timeout.is_some() {
                    return Err((lineno, "second `timeout:` line".into()));
                }
                timeout = Some(parse_timeout(value).map_err(|reason| (lineno, reason))?);
            }
            _ => {}
        }
    }
    let description = description.ok_or_else(|| {
        (
            last_line.max(1),
            "the header (leading comment lines) has no `# description: <one line>`".to_owned(),
        )
    })?;
    Ok(Header {
        description,
        timeout: timeout.unwrap_or(Duration::from_secs(DEFAULT_TIMEOUT_S)),
    })
}

/// Parses a `timeout:` value: whole seconds, optionally followed by `s`.
fn parse_timeout(value: &str) -> std::result::Result<Duration, String> {
    let digits = value.strip_suffix('s').unwrap_or(value).trim();
    match digits.parse::<u64>() {
        Ok(s) if (1..=MAX_TIMEOUT_S).contains(&s) => Ok(Duration::from_secs(s)),
        Ok(s) => Err(format!("timeout {s} s is outside 1..={MAX_TIMEOUT_S}")),
        Err(_) => Err(format!(
            "`timeout: {value}` is not a whole number of seconds"
        )),
    }
}

/// Checks that a case name is usable as a directory name and on a report line.
pub fn validate_name(name: &str) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() => {}
        _ => return Err("a case name must start with a lowercase letter or digit".into()),
    }
    if chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
        Ok(())
    } else {
        Err("a case name may only contain a-z, 0-9, `-` and `_`".into())
    }
}

/// Loads every `*.sh` case in `dir`, sorted by name.
pub fn discover(dir: &Path) -> Result<Vec<Case>> {
    let entries = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => HarnessError::MissingInput {
            what: "cases directory",
            path: dir.to_owned(),
            hint: "pass --cases-dir <dir> (the repository's is tests/harness/cases)",
        },
        _ => HarnessError::file("list", dir, e),
    })?;
    let mut cases = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| HarnessError::file("list", dir, e))?
            .path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".sh"))
        else {
            continue;
        };
        if !path.is_file() {
            continue;
        }
        validate_name(name).map_err(|reason| HarnessError::CaseName {
            path: path.clone(),
            reason,
        })?;
        let text =
            std::fs::read_to_string(&path).map_err(|e| HarnessError::file("read", &path, e))?;
        let header = parse_header(&text).map_err(|(line, reason)| HarnessError::CaseHeader {
            path: path.clone(),
            line,
            reason,
        })?;
        cases.push(Case {
            name: name.to_owned(),
            path,
            description: header.description,
            timeout: header.timeout,
        });
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

/// The cases whose name contains any of `filters` (all cases when `filters` is empty).
pub fn select(cases: Vec<Case>, filters: &[String]) -> Vec<Case> {
    if filters.is_empty() {
        return cases;
    }
    cases
        .into_iter()
        .filter(|c| filters.iter().any(|f| c.name.contains(f.as_str())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_header() {
        let h = parse_header(
            "#!/bin/sh\n# description: boots to init \n# Free text: ignored\n# timeout: 45\nrun_shim\n# timeout: x\n",
        )
        .unwrap();
        assert_eq!(h.description, "boots to init");
        assert_eq!(h.timeout, Duration::from_secs(45));
    }

    #[test]
    fn defaults_and_suffix() {
        let h = parse_header("# description: d\n").unwrap();
        assert_eq!(h.timeout, Duration::from_secs(DEFAULT_TIMEOUT_S));
        let h = parse_header("#description:d\n#timeout: 30s").unwrap();
        assert_eq!((h.description.as_str(), h.timeout.as_secs()), ("d", 30));
    }

    #[test]
    fn header_errors_name_the_line() {
        assert_eq!(parse_header("").unwrap_err().0, 1);
        assert!(parse_header("#!/bin/sh\necho\n# description: late\n")
            .unwrap_err()
            .1
            .contains("no `# description"));
        assert_eq!(
            parse_header("# description: d\n# timeout: soon\n")
                .unwrap_err()
                .0,
            2
        );
        assert!(parse_header("# description: d\n# timeout: 0\n").is_err());
        assert!(parse_header("# description: d\n# timeout: 99999999999999999999\n").is_err());
        assert!(parse_header("# description:\n").is_err());
        assert!(parse_header("# description: a\n# description: b\n").is_err());
        assert!(parse_header("# description: a\n# timeout: 1\n# timeout: 2\n").is_err());
    }

    #[test]
    fn names() {
        assert!(validate_name("boot-pvh-to-init").is_ok());
        assert!(validate_name("smp_2").is_ok());
        for bad in ["", "_build", "Boot", "a b", "a/b", "-x", "é"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn selection_by_substring() {
        let case = |n: &str| Case {
            name: n.into(),
            path: PathBuf::from(n),
            description: String::new(),
            timeout: Duration::from_secs(1),
        };
        let all = vec![case("boot-pvh"), case("boot-bz"), case("host-kvm")];
        assert_eq!(select(all.clone(), &[]).len(), 3);
        let names: Vec<_> = select(all.clone(), &["boot".into()])
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["boot-pvh", "boot-bz"]);
        assert_eq!(select(all, &["kvm".into(), "bz".into()]).len(), 2);
    }

    #[test]
    fn repository_cases_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases");
        let cases = discover(&dir).unwrap();
        assert!(cases.iter().any(|c| c.name == "host-kvm"), "{cases:?}");
    }
}
