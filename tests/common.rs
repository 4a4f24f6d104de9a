//! Helpers shared by the test binaries (`it` and `load`).

/// Raises this process's file-descriptor limit to its hard ceiling: a test that holds a thousand sockets or more
/// must not run out of descriptors itself.
pub fn raise_fd_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}
