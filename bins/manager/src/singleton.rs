//! The singleton lock as `manager` uses it: pick the backend, turn its errors into exit codes.
use std::os::fd::{AsFd, BorrowedFd};
use std::process::ExitCode;
use std::str::FromStr;

use fifo_secrets::SecretSource;
use singleton_lock::{
    EtcdGuard, EtcdLock, EtcdLockConfig, EtcdTls, LockError, LockFile, LockGuard, LostSignal,
};

use crate::exit::{self, fail};
use crate::{Globals, LockBackend};

/// A held singleton lock; dropping it releases the lock.
#[derive(Debug)]
pub enum Held {
    /// flock on the local lock file.
    Local(LockGuard),
    /// A lease-backed key in etcd.
    Etcd(EtcdGuard),
}

impl Held {
    /// The fd that carries the lock, when the backend has one (an inherited copy keeps it held).
    pub fn lock_fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Held::Local(guard) => Some(guard.as_fd()),
            Held::Etcd(_) => None,
        }
    }

    /// Fires when the lock is lost while held (etcd: lease expired, keepalive failed, key
    /// deleted). A local flock cannot be lost while its fd is open.
    pub fn lost(&self) -> Option<LostSignal> {
        match self {
            Held::Local(_) => None,
            Held::Etcd(guard) => Some(guard.lost()),
        }
    }

    /// One line on what is held, for logs.
    pub fn describe(&self) -> String {
        match self {
            Held::Local(guard) => format!("lock file {}", guard.path().display()),
            Held::Etcd(guard) => format!(
                "etcd lock {} (fencing token {})",
                guard.key(),
                guard.fencing_token()
            ),
        }
    }
}

/// The local lock file chosen by the flags.
pub fn local_lock(globals: &Globals) -> LockFile {
    LockFile::new(
        globals
            .lock_file
            .clone()
            .unwrap_or_else(|| singleton_lock::default_lock_path("manager")),
    )
}

/// The etcd lock chosen by the flags (reads the password source, if any).
pub fn etcd_lock(globals: &Globals) -> Result<EtcdLock, ExitCode> {
    if globals.etcd_endpoints.is_empty() {
        return Err(fail(
            exit::USAGE,
            "--lock-backend etcd needs --etcd-endpoints URL[,URL…]",
        ));
    }
    let mut config = EtcdLockConfig::new(globals.etcd_endpoints.clone(), globals.lock_name.clone());
    config.ttl = globals.lock_ttl;
    if globals.etcd_ca.is_some() || globals.etcd_cert.is_some() {
        let mut tls = EtcdTls::new();
        tls.ca_cert = globals.etcd_ca.clone();
        tls.client_cert = globals.etcd_cert.clone();
        tls.client_key = globals.etcd_key.clone();
        config.tls = Some(tls);
    }
    if let (Some(user), Some(source)) = (&globals.etcd_user, &globals.etcd_password) {
        let password = SecretSource::from_str(source)
            .and_then(|source| source.read())
            .map_err(|err| fail(exit::ERROR, format_args!("--etcd-password: {err}")))?;
        // etcd-client takes the password as a String; this copy lives only in the client.
        config.user = Some((user.clone(), password.expose().to_vec()));
    }
    EtcdLock::new(config).map_err(|err| lock_error(&err))
}

/// Takes the singleton lock without waiting, or returns the exit code to leave with:
/// 3 with the holder named on stderr when another instance has it.
pub fn hold(globals: &Globals) -> Result<Held, ExitCode> {
    let held = match globals.lock_backend {
        LockBackend::Local => local_lock(globals).try_acquire().map(Held::Local),
        LockBackend::Etcd => etcd_lock(globals)?.try_acquire().map(Held::Etcd),
    };
    let held = held.map_err(|err| lock_error(&err))?;
    tracing::info!("holding the {}", held.describe());
    Ok(held)
}

/// One line on stderr for a lock error, and its exit code.
pub fn lock_error(err: &LockError) -> ExitCode {
    match err {
        LockError::Held { .. } => fail(
            exit::LOCK_HELD,
            format_args!("another instance holds the lock: {err}"),
        ),
        other => fail(exit::ERROR, other),
    }
}
