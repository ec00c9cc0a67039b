//! Bring up Tailscale in an unprivileged container: `tailscaled` in userspace-networking mode
//! with a SOCKS5 proxy, started detached, and `tailscale up` driven live.
//!
//! What it does:
//! - [`ensure_daemon`] starts `tailscaled --tun=userspace-networking --socks5-server=… --state=…
//!   --socket=…` in its own session (`setsid`), output appended to a log file in the state
//!   directory and its pid recorded, then waits (bounded) for its socket. A daemon already
//!   listening on the socket is reused. It is never run under a pty: it must outlive the caller.
//! - [`bring_up`] runs `tailscale --socket=… up --auth-key=file:PATH --timeout=…` under a
//!   pseudo-terminal with `expectrl`, reading its output as it comes, and recognises success, a
//!   rejected key ([`KeyPatterns`], configurable), a login URL, a daemon that is not running and
//!   a timeout. A rejected key makes it ask the [`AuthKeyProvider`] for another (bounded, with
//!   back-off). A key is used only while the node is `NeedsLogin`: it never logs out or forces a
//!   re-login. The key itself never reaches argv or environ, only a file path (a FIFO).
//! - [`query_status`] / [`parse_status`]: typed, size-bounded `tailscale status --json`.
//! - [`proxy_env`], [`ssh_config`], [`ansible_ssh_common_args`]: settings for other tools.
//! - [`socks5_connect`]: a SOCKS5 CONNECT client, for an ssh `ProxyCommand` that needs no netcat.
//! - [`stop_daemon`] / [`tailscale_down`]: stop the daemon this crate started / disconnect.
//!
//! ```
//! use tailnet_boot::{DaemonConfig, ProxyAddr, ProxyTool, UpConfig, ssh_config};
//!
//! // What would be started (nothing runs here):
//! let daemon = DaemonConfig::new("/usr/sbin/tailscaled", "/var/lib/tailnet");
//! let args: Vec<String> = daemon.args().iter().map(|a| a.to_string_lossy().into_owned()).collect();
//! assert!(args.contains(&"--tun=userspace-networking".to_string()));
//! assert!(args.contains(&"--socks5-server=127.0.0.1:1055".to_string()));
//! let up = UpConfig::new("/usr/bin/tailscale", &daemon.socket);
//! assert_eq!(up.max_attempts, 5);
//!
//! // Settings for ssh:
//! let socks = ProxyAddr::parse("127.0.0.1:1055")?;
//! let block = ssh_config(&["db.tail1234.ts.net".into()], &ProxyTool::NetcatOpenbsd, &socks)?;
//! assert!(block.contains("ProxyCommand nc -X 5 -x 127.0.0.1:1055 %h %p"));
//! # Ok::<(), tailnet_boot::BootError>(())
//! ```
//!
//! Requirements: Linux, `tailscale`/`tailscaled` binaries (tested with 1.96.4). No privilege
//! is needed: userspace networking needs no TUN device and no capabilities.
#![deny(unsafe_code)]

mod boot;
mod cli;
mod daemon;
mod detach;
mod error;
mod proxy;
mod status;

pub use boot::{
    AuthKeyFile, AuthKeyProvider, Backoff, UpConfig, UpReport, bring_up, check_extra_up_args,
    settled_status, tailscale_up_once,
};
pub use cli::{
    DAEMON_DOWN_TEXT, KeyPatterns, LOGIN_URL_TEXT, NoEvents, SETTINGS_TEXT, UP_TIMEOUT_TEXT,
    UpEvents, UpOutcome, classify_up, query_status, redact, tailscale_down,
};
pub use daemon::{
    DaemonConfig, DaemonHandle, LOG_NAME, PID_NAME, SOCKET_NAME, STATE_NAME, StopOutcome,
    ensure_daemon, log_tail, recorded_daemon, socket_is_live, stop_daemon,
};
pub use error::{BootError, KeyFailure, KeyFailureKind, UpError};
pub use proxy::{
    ProxyAddr, ProxyTool, ansible_ssh_common_args, check_ssh_host, proxy_env, socks5_connect,
    ssh_config, ssh_proxy_command,
};
pub use status::{
    BackendState, MAX_STATUS_BYTES, SelfNode, StatusError, TailnetStatus, parse_status,
};
