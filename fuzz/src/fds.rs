//! The fd-leak oracle: a device must close everything it opened once it and its host-side
//! peers are dropped, or a long-running VMM runs out of descriptors one guest action at a time.

/// How many descriptors this process has open (entries of `/proc/self/fd`; the directory
/// handle used to list them is counted every time, so it cancels out in a comparison).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

/// Panics (a finding) when more or fewer descriptors are open than `before`, the count taken
/// before the input's first action. Fuzz targets run one input at a time on one thread, so
/// nothing else opens or closes descriptors meanwhile.
pub fn assert_no_fd_leak(before: usize) {
    let after = open_fds();
    assert_eq!(
        before, after,
        "descriptor leak: {before} open before the input, {after} after it"
    );
}
