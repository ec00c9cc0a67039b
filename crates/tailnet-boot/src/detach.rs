//! The one place with `unsafe`: asking `std::process::Command` to call `setsid()` in the child.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the child start a new session (no controlling terminal, its own process group), so it
/// outlives the caller and never gets the caller's terminal's SIGHUP.
pub(crate) fn new_session(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec; it only calls setsid(2) through
    // rustix (a raw syscall: async-signal-safe, no allocation, no locks) and converts its errno
    // into an io::Error without allocating.
    unsafe {
        command.pre_exec(|| match rustix::process::setsid() {
            Ok(_) => Ok(()),
            Err(errno) => Err(std::io::Error::from_raw_os_error(errno.raw_os_error())),
        });
    }
}
