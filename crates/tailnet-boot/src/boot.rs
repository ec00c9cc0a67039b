//! The bring-up loop: state check, key from the provider, `tailscale up`, classify, retry.
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::cli::{KeyPatterns, UpEvents, UpOutcome, UpRun, query_status, run_up, tailscale_down};
use crate::error::{BootError, KeyFailure, UpError};
use crate::status::{BackendState, TailnetStatus};

/// A file `tailscale up` reads the auth key from (`--auth-key=file:PATH`), typically a FIFO
/// that streams the key once. Only the path ever reaches the CLI's argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthKeyFile {
    path: PathBuf,
}

impl AuthKeyFile {
    /// A key file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Where keys come from. Asked once per attempt that needs a key (state `NeedsLogin`).
///
/// The usual implementation fetches a secret (a vault command, a prompt) and serves it through a
/// FIFO on a thread; [`AuthKeyProvider::attempt_finished`] then stops that thread whether or not
/// `tailscale up` read the FIFO (it does not when the daemon is down or the flags are wrong).
pub trait AuthKeyProvider {
    /// A key file for attempt `attempt` (1-based count of keys asked for). `previous_failure`
    /// is why the last key was refused, so a provider can fetch a fresh key instead of the same
    /// one, or give up by returning an error.
    fn next_key_file(
        &mut self,
        attempt: u32,
        previous_failure: Option<&KeyFailure>,
    ) -> Result<AuthKeyFile, Box<dyn std::error::Error + Send + Sync>>;

    /// Called after each `tailscale up` run that was given this provider's key file.
    fn attempt_finished(&mut self, _attempt: u32) {}
}

/// Back-off between attempts: `initial`, doubling, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Wait after the first rejected key.
    pub initial: Duration,
    /// Upper bound of the wait.
    pub max: Duration,
}

impl Backoff {
    /// The wait after the `n`th failure (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32
            .checked_shl(n.saturating_sub(1).min(16))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

/// How to bring the node up.
#[derive(Debug, Clone)]
pub struct UpConfig {
    /// The `tailscale` CLI.
    pub tailscale: PathBuf,
    /// The daemon's socket.
    pub socket: PathBuf,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// More `up` arguments (containerboot's `TS_EXTRA_ARGS`), e.g. `--login-server=URL`.
    /// Arguments that carry a key or force a re-login are refused.
    pub extra_args: Vec<String>,
    /// `--timeout` of each `up` run: how long it may wait for Running (including a login URL).
    pub timeout: Duration,
    /// Extra time after `timeout` before the CLI is killed.
    pub grace: Duration,
    /// Bound on `tailscale up` runs.
    pub max_attempts: u32,
    /// Wait between attempts.
    pub backoff: Backoff,
    /// What marks a rejected key.
    pub key_patterns: KeyPatterns,
    /// Bound on each `status --json`, and on waiting for the daemon to leave `NoState`.
    pub status_timeout: Duration,
}

impl UpConfig {
    /// Defaults: 60 s `--timeout`, 10 s grace, 5 attempts, 1 s..30 s back-off.
    pub fn new(tailscale: impl Into<PathBuf>, socket: impl Into<PathBuf>) -> Self {
        Self {
            tailscale: tailscale.into(),
            socket: socket.into(),
            hostname: None,
            extra_args: Vec::new(),
            timeout: Duration::from_secs(60),
            grace: Duration::from_secs(10),
            max_attempts: 5,
            backoff: Backoff::default(),
            key_patterns: KeyPatterns::default(),
            status_timeout: Duration::from_secs(15),
        }
    }
}

/// What a successful [`bring_up`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UpReport {
    /// `tailscale up` runs made (0 when the node was already Running).
    pub attempts: u32,
    /// Keys asked of the provider.
    pub keys_used: u32,
    /// The state before anything was done.
    pub initial_state: BackendState,
    /// The login URL shown, if the interactive path was taken.
    pub login_url: Option<String>,
    /// The rejected keys on the way.
    pub rejected: Vec<KeyFailure>,
    /// `status --json` after the last run.
    pub status: TailnetStatus,
}

/// Refuses `up` arguments that would put a key in argv or throw away a working login.
pub fn check_extra_up_args(args: &[String]) -> Result<(), BootError> {
    for arg in args {
        let name = arg
            .trim_start_matches('-')
            .split('=')
            .next()
            .unwrap_or_default();
        let why = match name {
            "auth-key" | "authkey" => "the key must come from the key source, through a FIFO",
            "force-reauth" => "re-authenticating can leave the node with no working login",
            "timeout" => "the timeout is set by the caller's own option",
            "socket" => "the socket is a global option set by the caller",
            "client-secret" | "id-token" if !arg.contains("=file:") => {
                "a secret in argv is readable by every local user; use the file: form"
            }
            _ => continue,
        };
        if arg.starts_with('-') {
            return Err(BootError::ForbiddenUpArg {
                arg: redact_arg(arg),
                why,
            });
        }
    }
    Ok(())
}

fn redact_arg(arg: &str) -> String {
    match arg.split_once('=') {
        Some((name, _)) => format!("{name}=[REDACTED]"),
        None => arg.to_owned(),
    }
}

/// One `tailscale up` run, exactly as [`bring_up`] makes it, with no state check and no retry:
/// for callers that run their own loop, and for tests of the classification against a real CLI.
pub fn tailscale_up_once(
    config: &UpConfig,
    key: Option<&AuthKeyFile>,
    events: &mut dyn UpEvents,
) -> Result<UpOutcome, BootError> {
    check_extra_up_args(&config.extra_args)?;
    let run = UpRun {
        tailscale: &config.tailscale,
        socket: &config.socket,
        key_file: key.map(AuthKeyFile::path),
        hostname: config.hostname.as_deref(),
        extra_args: &config.extra_args,
        timeout: config.timeout,
        grace: config.grace,
    };
    Ok(run_up(&run, &config.key_patterns, events)?.outcome)
}

/// After a refused key the daemon keeps retrying it in the background (containerboot stops that
/// through the LocalAPI before trying another key). `tailscale down` does the same through the
/// CLI: it only clears `WantRunning`, and only on a node that is still `NeedsLogin` (no login to
/// lose); the next `up` sets it again. Best effort: a failure here changes nothing else.
fn stop_background_retries(config: &UpConfig) {
    let needs_login = query_status(&config.tailscale, &config.socket, config.status_timeout)
        .is_ok_and(|s| s.backend_state == BackendState::NeedsLogin);
    if needs_login {
        let _ = tailscale_down(&config.tailscale, &config.socket, config.status_timeout);
    }
}

/// What can be refused before anything runs.
fn check_config(config: &UpConfig) -> Result<(), BootError> {
    check_extra_up_args(&config.extra_args)?;
    let invalid = |what, value: &str, why| BootError::InvalidValue {
        what,
        value: value.to_owned(),
        why,
    };
    if config.timeout.is_zero() {
        // `tailscale up --timeout=0s` waits forever: never.
        return Err(invalid(
            "up timeout",
            "0s",
            "tailscale up would wait forever",
        ));
    }
    if config.max_attempts == 0 {
        return Err(invalid(
            "max attempts",
            "0",
            "at least one attempt is needed",
        ));
    }
    Ok(())
}

/// Polls `status --json` until the daemon has left `NoState` (it just started) or the bound.
pub fn settled_status(config: &UpConfig) -> Result<TailnetStatus, BootError> {
    let start = Instant::now();
    loop {
        let status = query_status(&config.tailscale, &config.socket, config.status_timeout)?;
        if status.backend_state != BackendState::NoState || start.elapsed() >= config.status_timeout
        {
            return Ok(status);
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Brings the node up, idempotently.
///
/// - `Running` already: nothing is run, no key is used.
/// - `NeedsLogin`: a key file from `provider` is passed as `--auth-key=file:PATH`; with no
///   provider, `up` runs without a key and a login URL (if the control server offers one) goes
///   to [`UpEvents::login_url`] while the run waits, bounded by `timeout`.
/// - `Stopped`/`Starting`: `up` runs without a key (the node is logged in; a key is never used
///   on a node that has a login, and nothing here logs out or forces a re-login).
/// - `NeedsMachineAuth`: fails; an admin must approve the node.
///
/// A rejected key (see [`KeyPatterns`]) asks the provider for another, after a back-off, up to
/// `max_attempts` runs; in between, `tailscale down` stops the daemon's background retries of the
/// refused key (only while the node is still `NeedsLogin`). Every failure reports the state the
/// daemon was left in.
pub fn bring_up(
    config: &UpConfig,
    mut provider: Option<&mut dyn AuthKeyProvider>,
    events: &mut dyn UpEvents,
) -> Result<UpReport, UpError> {
    let mut attempts = 0u32;
    let fail = |cause: BootError, attempts: u32| {
        let daemon_state = query_status(&config.tailscale, &config.socket, config.status_timeout)
            .ok()
            .map(|s| s.backend_state);
        UpError {
            cause: Box::new(cause),
            attempts,
            daemon_state,
        }
    };
    if let Err(cause) = check_config(config) {
        return Err(UpError {
            cause: Box::new(cause),
            attempts,
            daemon_state: None,
        });
    }
    let initial = settled_status(config).map_err(|cause| fail(cause, 0))?;
    let initial_state = initial.backend_state.clone();
    let mut state = initial.backend_state.clone();
    let mut keys_used = 0u32;
    let mut rejected: Vec<KeyFailure> = Vec::new();
    let mut login_url = None;
    let mut last_status = initial;
    loop {
        match state {
            BackendState::Running => {
                return Ok(UpReport {
                    attempts,
                    keys_used,
                    initial_state,
                    login_url,
                    rejected,
                    status: last_status,
                });
            }
            BackendState::NeedsMachineAuth => {
                return Err(fail(BootError::NeedsMachineAuth, attempts));
            }
            _ => {}
        }
        attempts += 1;
        let key = match (&state, provider.as_deref_mut()) {
            (BackendState::NeedsLogin, Some(p)) => {
                keys_used += 1;
                match p.next_key_file(keys_used, rejected.last()) {
                    Ok(file) => Some(file),
                    Err(source) => {
                        return Err(fail(
                            BootError::KeyProvider {
                                attempt: keys_used,
                                source,
                            },
                            attempts,
                        ));
                    }
                }
            }
            _ => None,
        };
        let run = UpRun {
            tailscale: &config.tailscale,
            socket: &config.socket,
            key_file: key.as_ref().map(AuthKeyFile::path),
            hostname: config.hostname.as_deref(),
            extra_args: &config.extra_args,
            timeout: config.timeout,
            grace: config.grace,
        };
        let result = run_up(&run, &config.key_patterns, events);
        if key.is_some()
            && let Some(p) = provider.as_deref_mut()
        {
            p.attempt_finished(keys_used);
        }
        let result = result.map_err(|cause| fail(cause, attempts))?;
        if result.login_url.is_some() {
            login_url = result.login_url;
        }
        match result.outcome {
            UpOutcome::Success => {
                let status = query_status(&config.tailscale, &config.socket, config.status_timeout)
                    .map_err(|cause| fail(cause, attempts))?;
                return Ok(UpReport {
                    attempts,
                    keys_used,
                    initial_state,
                    login_url,
                    rejected,
                    status,
                });
            }
            UpOutcome::KeyRejected { kind, message } => {
                let failure = KeyFailure {
                    attempt: attempts,
                    kind,
                    message,
                };
                stop_background_retries(config);
                if attempts >= config.max_attempts {
                    events.key_rejected(&failure, None);
                    return Err(fail(
                        BootError::KeyAttemptsExhausted {
                            attempts,
                            last: failure,
                        },
                        attempts,
                    ));
                }
                let delay = config.backoff.delay(attempts);
                events.key_rejected(&failure, Some(delay));
                rejected.push(failure);
                thread::sleep(delay);
            }
            UpOutcome::DaemonNotRunning => {
                return Err(fail(
                    BootError::DaemonNotRunning {
                        socket: config.socket.clone(),
                    },
                    attempts,
                ));
            }
            UpOutcome::Timeout { message } => {
                return Err(fail(
                    BootError::UpTimeout {
                        timeout: config.timeout,
                        message,
                    },
                    attempts,
                ));
            }
            UpOutcome::SettingsConflict { message } => {
                return Err(fail(BootError::SettingsConflict { message }, attempts));
            }
            UpOutcome::Failed { code, message } => {
                let cause = BootError::CommandFailed {
                    program: config.tailscale.clone(),
                    what: "up",
                    code,
                    message,
                };
                return Err(fail(cause, attempts));
            }
        }
        last_status = query_status(&config.tailscale, &config.socket, config.status_timeout)
            .map_err(|cause| fail(cause, attempts))?;
        state = last_status.backend_state.clone();
        if state == BackendState::NeedsLogin && provider.is_none() {
            return Err(fail(BootError::NoKeyProvider { state }, attempts));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_max() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(200));
        assert_eq!(b.delay(4), Duration::from_millis(800));
        assert_eq!(b.delay(5), Duration::from_secs(1));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn zero_timeout_and_zero_attempts_are_refused_before_running_anything() {
        struct Never;
        impl AuthKeyProvider for Never {
            fn next_key_file(
                &mut self,
                _: u32,
                _: Option<&KeyFailure>,
            ) -> Result<AuthKeyFile, Box<dyn std::error::Error + Send + Sync>> {
                panic!("no key may be asked for")
            }
        }
        let mut config = UpConfig::new("/nonexistent/tailscale", "/nonexistent.sock");
        config.timeout = Duration::ZERO;
        let err = bring_up(&config, Some(&mut Never), &mut crate::NoEvents).unwrap_err();
        assert!(matches!(
            *err.cause,
            BootError::InvalidValue {
                what: "up timeout",
                ..
            }
        ));
        config.timeout = Duration::from_secs(1);
        config.max_attempts = 0;
        let err = bring_up(&config, Some(&mut Never), &mut crate::NoEvents).unwrap_err();
        assert!(matches!(
            *err.cause,
            BootError::InvalidValue {
                what: "max attempts",
                ..
            }
        ));
        assert_eq!(err.attempts, 0);
    }

    #[test]
    fn extra_args_that_leak_keys_or_relogin_are_refused() {
        let ok = [
            "--login-server=http://127.0.0.1:9",
            "--accept-dns=false",
            "--reset",
            "--client-secret=file:/x",
        ];
        assert!(check_extra_up_args(&ok.map(String::from)).is_ok());
        for bad in [
            "--auth-key=tskey-SECRET",
            "-authkey=tskey-SECRET",
            "--force-reauth",
            "--timeout=0s",
            "--client-secret=abc",
        ] {
            let err = check_extra_up_args(&[bad.to_string()]).unwrap_err();
            assert!(!err.to_string().contains("SECRET"), "{err}");
            assert!(matches!(err, BootError::ForbiddenUpArg { .. }), "{bad}");
        }
    }
}
