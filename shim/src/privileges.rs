//! What the shim gives up once the VM is built (its files, sockets and guest memory exist):
//! no new privileges through exec, no core dumps (a core file would hold the guest's memory),
//! and a bound on open files. Inherited descriptors were closed before (see `supervision`).

use std::io;

/// Open files the shim may hold from here on: the vsock device's host streams (at most
/// `MAX_CONNECTIONS`, 1024) plus the VM's own descriptors.
const MAX_OPEN_FILES: libc::rlim_t = 1280;

/// Applies the limits; the error says which step failed.
pub fn drop_after_setup() -> Result<(), String> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "cannot set no_new_privs: {}",
            io::Error::last_os_error()
        ));
    }
    set_limit(libc::RLIMIT_CORE, 0, "core dumps")?;
    // Never above what is open already plus the streams (a smaller hard limit stays).
    let open_now = open_descriptors().unwrap_or(0);
    let files = MAX_OPEN_FILES.max(open_now + 64);
    set_limit(libc::RLIMIT_NOFILE, files, "open files")
}

/// The type of a resource number (glibc and musl spell it differently).
#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

/// Lowers resource `resource` to `value` (soft and hard), keeping a lower hard limit.
fn set_limit(resource: Resource, value: libc::rlim_t, what: &str) -> Result<(), String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit we own.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
        return Err(format!(
            "cannot read the limit of {what}: {}",
            io::Error::last_os_error()
        ));
    }
    let value = value.min(limit.rlim_max);
    let lowered = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit reads the rlimit we own.
    if unsafe { libc::setrlimit(resource, &lowered) } != 0 {
        return Err(format!(
            "cannot limit {what} to {value}: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// How many descriptors the process has open.
fn open_descriptors() -> Option<libc::rlim_t> {
    let count = std::fs::read_dir("/proc/self/fd").ok()?.count();
    libc::rlim_t::try_from(count).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(resource: Resource) -> libc::rlimit {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the rlimit we own.
        assert_eq!(unsafe { libc::getrlimit(resource, &mut limit) }, 0);
        limit
    }

    #[test]
    fn limits_go_down_and_never_up() {
        // In a child, so the test process keeps its limits; the child allocates nothing on the
        // success path (fork in a multithreaded process allows only that).
        // SAFETY: see above; the child ends with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let before = limit(libc::RLIMIT_NOFILE);
            let ok = set_limit(libc::RLIMIT_CORE, 0, "core dumps").is_ok()
                && set_limit(libc::RLIMIT_NOFILE, 100, "open files").is_ok()
                && limit(libc::RLIMIT_CORE).rlim_max == 0
                && limit(libc::RLIMIT_NOFILE).rlim_max == before.rlim_max.min(100)
                // Raising it back is refused: the hard limit went down too.
                && set_limit(libc::RLIMIT_NOFILE, 200, "open files").is_ok()
                && limit(libc::RLIMIT_NOFILE).rlim_max == before.rlim_max.min(100);
            // SAFETY: ends the forked child without running the parent's destructors.
            unsafe { libc::_exit(i32::from(!ok)) };
        }
        let mut status = 0;
        // SAFETY: waits for the child we forked.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "status {status}"
        );
    }
}
