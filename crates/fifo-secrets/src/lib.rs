//! Hand a secret to a child process through a named pipe in a private RAM-backed directory.
//!
//! A program that wants a password or key "in a file" (`ansible-vault --vault-password-file`,
//! `tailscale up --auth-key=file:…`) gets the path of a FIFO instead. The secret never
//! touches a disk, never appears in argv or the environment, and is handed to exactly one
//! reader: the FIFO is unlinked the moment a reader has opened it.
//!
//! - [`SecretSource`] parses `env:VAR`, `file:PATH`, `stdin`, `prompt`, `cmd:PROGRAM ARG…` and
//!   reads the secret into [`SecretBytes`]: `memfd_secret(2)` memory where the kernel has it,
//!   else mlocked, `MADV_DONTDUMP` memory; zeroed on drop; never printed.
//! - [`SecretDir`] is a 0700 directory on tmpfs/ramfs (`$XDG_RUNTIME_DIR` when RAM-backed,
//!   else `/dev/shm`), verified through its fd, removed on drop and cleaned up at the next
//!   start after a crash.
//! - [`SecretFifo::send`] waits for a reader with a timeout (never forever), checks the opened
//!   fd is the FIFO it created, writes every byte and removes the FIFO on every outcome.
//! - [`harden_process`] makes the process not dumpable and sets the core limit to 0.
//!
//! # Example
//!
//! ```
//! use fifo_secrets::{SecretBytes, SecretDir, SendOptions};
//! use std::time::Duration;
//!
//! let dir = SecretDir::create("doc-example")?;
//! let fifo = dir.fifo("token")?;
//! let path = fifo.path().to_owned();
//! // The reader: normally a child process given `path` on its command line.
//! let reader = std::thread::spawn(move || std::fs::read(path));
//!
//! let secret = SecretBytes::from_slice(b"hunter2")?;
//! let opts = SendOptions { open_timeout: Duration::from_secs(5), ..SendOptions::default() };
//! let report = fifo.send(&secret, &opts)?;
//! assert_eq!(report.bytes, 7);
//! assert_eq!(reader.join().unwrap()?, b"hunter2");
//! println!("{secret:?} protected by {:?}", secret.protections()); // SecretBytes(<7 bytes>)
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # One reader, once
//!
//! The first process to open the FIFO for reading gets the secret; the path is unlinked right
//! after, so a program that opens it a second time gets `ENOENT`. A program that never opens it
//! makes [`SecretFifo::send`] return [`SecretError::NoReader`] after `open_timeout`, with the
//! FIFO removed. See the README for the threat model.
//!
//! # Limitations
//!
//! - Root, and processes of the same uid that win the race to open a FIFO, are out of scope
//!   (the 0700 directory keeps every other uid out).
//! - A pipe has no acknowledgement: success means the kernel took every byte.
//! - `env:` leaves the value in this process's environment; a signal sent by another process
//!   during `prompt` leaves terminal echo off (Ctrl-C at the prompt is handled).
//!
//! # Kernel requirements
//!
//! Linux. `memfd_secret(2)` (5.14+, `CONFIG_SECRETMEM`) is used when present, else `mmap` +
//! `mlock` (bounded by `RLIMIT_MEMLOCK`) + `MADV_DONTDUMP` (3.4+); [`SecretBytes::protections`]
//! says which applied. FIFOs, `statfs`, `getrandom(2)` (3.17+), `prctl(PR_SET_DUMPABLE)`.
#![deny(unsafe_code)]

mod dir;
mod error;
mod harden;
mod memory;
mod source;
mod sys;

pub use dir::{SecretDir, SecretFifo, SendOptions, SendReport};
pub use error::SecretError;
pub use harden::{HardeningReport, current_hardening, harden_process};
pub use memory::{Protections, SecretBytes};
pub use source::{MAX_CMD_ARGS, MAX_SOURCE_SPEC, ReadOptions, SecretSource};

/// Probes whether this kernel offers `memfd_secret(2)`: `Ok(())` if a secret memory fd can be
/// created, else the OS error (`ENOSYS` when the kernel lacks it, `EINVAL`/`EPERM` when it is
/// disabled at boot).
///
/// # Errors
/// The error of the `memfd_secret` call.
pub fn memfd_secret_available() -> std::io::Result<()> {
    sys::memfd_secret().map(drop)
}
