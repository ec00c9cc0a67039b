//! `manager net`: Tailscale in userspace mode, composed from `tailnet-boot` and `fifo-secrets`.
//!
//! `net up` order: check the arguments (exit 2 before any side effect), take the singleton lock
//! (exit 3 before any secret is read), start or reuse tailscaled, then run `tailscale up`; each
//! key is read from its SOURCE only when the node needs a login, and reaches tailscale through a
//! fresh FIFO (`--auth-key=file:FIFO`), streamed by a thread that is stopped after each attempt.
//!
//! containerboot's environment variables are accepted as defaults, so an image that used
//! Tailscale's own entrypoint can switch without new configuration.
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use fifo_secrets::{SecretBytes, SecretDir, SecretError, SecretSource, SendOptions};
use tailnet_boot::{
    AuthKeyFile, AuthKeyProvider, BackendState, Backoff, BootError, DaemonConfig, KeyFailure,
    ProxyAddr, ProxyTool, StopOutcome, UpConfig, UpEvents,
};

use crate::exit::{self, fail};

/// Arguments of `manager net`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Environment (containerboot's names, used when the flag is absent): \
TS_AUTHKEY / TS_AUTH_KEY (the key itself, or file:PATH), TS_STATE_DIR, TS_SOCKET, \
TS_SOCKS5_SERVER, TS_OUTBOUND_HTTP_PROXY_LISTEN, TS_HOSTNAME, TS_EXTRA_ARGS, \
TS_TAILSCALED_EXTRA_ARGS, TS_ACCEPT_DNS, TS_ROUTES, TS_AUTH_ONCE, TS_USERSPACE."
)]
pub struct NetArgs {
    #[command(subcommand)]
    command: NetCommand,
}

#[derive(Debug, clap::Subcommand)]
enum NetCommand {
    /// Start (or reuse) tailscaled and bring the node up; holds the singleton lock.
    Up(Box<UpArgs>),
    /// Show the node's state (BackendState, IPs) from `tailscale status --json`.
    Status(CommonArgs),
    /// Disconnect (`tailscale down`) and stop the tailscaled that manager started.
    Down(DownArgs),
    /// Print ALL_PROXY / HTTP(S)_PROXY lines for other tools.
    ProxyEnv(ProxyEnvArgs),
    /// Print ssh config blocks (SOCKS5 ProxyCommand) and an Ansible ansible_ssh_common_args line.
    SshConfig(SshConfigArgs),
    /// Connect stdin/stdout to HOST PORT through the SOCKS5 proxy (an ssh ProxyCommand).
    Connect(ConnectArgs),
}

/// Where tailscaled lives; shared by every `net` subcommand.
#[derive(Debug, clap::Args)]
struct CommonArgs {
    /// State directory (0700): tailscaled's state, socket, log and pid file [default:
    /// $XDG_STATE_HOME/manager/tailnet; else /var/lib/manager/tailnet as root; else
    /// ~/.local/state/manager/tailnet].
    #[arg(long, value_name = "DIR", env = "TS_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// The LocalAPI socket [default: STATE_DIR/tailscaled.sock].
    #[arg(long, value_name = "PATH", env = "TS_SOCKET")]
    socket: Option<PathBuf>,
    /// The tailscale CLI.
    #[arg(long, value_name = "PATH", default_value = "tailscale")]
    tailscale: PathBuf,
    /// The tailscaled daemon.
    #[arg(long, value_name = "PATH", default_value = "tailscaled")]
    tailscaled: PathBuf,
    /// Bound on each `tailscale status`/`down` call.
    #[arg(long, value_name = "DUR", default_value = "15s", value_parser = parse_duration)]
    status_timeout: Duration,
}

/// The proxies tailscaled offers.
#[derive(Debug, clap::Args)]
struct ProxyArgs {
    /// SOCKS5 proxy address (tailscaled --socks5-server).
    #[arg(
        long,
        value_name = "ADDR",
        env = "TS_SOCKS5_SERVER",
        default_value = "127.0.0.1:1055"
    )]
    socks5: String,
    /// HTTP CONNECT proxy address (tailscaled --outbound-http-proxy-listen); may equal --socks5.
    #[arg(long, value_name = "ADDR", env = "TS_OUTBOUND_HTTP_PROXY_LISTEN")]
    http_proxy: Option<String>,
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Where the auth key comes from: env:VAR | file:PATH | stdin | prompt | cmd:PROGRAM ARG…
    /// (no shell). Asked again for a fresh key after a rejected one. Default: TS_AUTHKEY or
    /// TS_AUTH_KEY when set (the key itself, or file:PATH); else no key (a login URL is shown).
    #[arg(long, value_name = "SOURCE")]
    auth_key: Option<String>,
    /// Node name in the tailnet (tailscale up --hostname).
    #[arg(long, value_name = "NAME", env = "TS_HOSTNAME")]
    hostname: Option<String>,
    /// Bound on `tailscale up` runs (rejected keys are retried up to this many times).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    max_attempts: u32,
    /// How long each `tailscale up` may wait for Running, login URL included (its --timeout).
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// Wait after the first rejected key; doubles per attempt, at most 30s.
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_duration)]
    retry_delay: Duration,
    /// How long to wait for a new tailscaled's socket.
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = parse_duration)]
    socket_timeout: Duration,
    /// Keep tailscaled's state in memory only (--state=mem:): a restart needs a new login.
    #[arg(long)]
    mem_state: bool,
    /// Pass --no-logs-no-support to tailscaled (no log upload to Tailscale).
    #[arg(long)]
    no_logs_no_support: bool,
    /// An extra tailscaled argument (repeatable); TS_TAILSCALED_EXTRA_ARGS is split on spaces.
    #[arg(
        long = "tailscaled-arg",
        value_name = "ARG",
        allow_hyphen_values = true
    )]
    tailscaled_args: Vec<String>,
    /// Output substring that marks a rejected key (repeatable; replaces the built-in list of
    /// Tailscale's and headscale's texts).
    #[arg(long = "bad-key-pattern", value_name = "TEXT")]
    bad_key_patterns: Vec<String>,
    /// Extra `tailscale up` arguments (after `--`); TS_EXTRA_ARGS is split on spaces.
    #[arg(last = true, value_name = "EXTRA_UP_ARG")]
    extra: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct DownArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Only disconnect; leave tailscaled running.
    #[arg(long)]
    keep_daemon: bool,
}

#[derive(Debug, clap::Args)]
struct ProxyEnvArgs {
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Prefix each line with `export ` (for `eval "$(manager net proxy-env --export)"`).
    #[arg(long)]
    export: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Tool {
    /// OpenBSD netcat: nc -X 5 -x ADDR %h %p
    Nc,
    /// Nmap's ncat: ncat --proxy ADDR --proxy-type socks5 %h %p
    Ncat,
    /// This manager binary: manager net connect --socks5 ADDR %h %p (nothing else to install)
    Manager,
}

#[derive(Debug, clap::Args)]
struct SshConfigArgs {
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Program in the ProxyCommand.
    #[arg(long, value_enum, default_value_t = Tool::Nc)]
    proxy_tool: Tool,
    /// Print only the Ansible line (for an inventory or group_vars).
    #[arg(long)]
    ansible: bool,
    /// Host names or ssh Host patterns.
    #[arg(required = true, value_name = "HOST")]
    hosts: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct ConnectArgs {
    /// SOCKS5 proxy address.
    #[arg(
        long,
        value_name = "ADDR",
        env = "TS_SOCKS5_SERVER",
        default_value = "127.0.0.1:1055"
    )]
    socks5: String,
    /// Bound on connecting and the SOCKS5 handshake.
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Target host (a tailnet name or address).
    host: String,
    /// Target port.
    port: u16,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|err| format!("{text:?}: {err}"))
}

/// Runs `manager net`.
pub fn run(globals: &crate::Globals, args: NetArgs) -> ExitCode {
    match args.command {
        NetCommand::Up(up) => run_up(globals, *up),
        NetCommand::Status(common) => run_status(globals.json, &common),
        NetCommand::Down(down) => run_down(globals.json, &down),
        NetCommand::ProxyEnv(args) => run_proxy_env(globals.json, &args),
        NetCommand::SshConfig(args) => run_ssh_config(globals.json, &args),
        NetCommand::Connect(args) => run_connect(&args),
    }
}

fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| Path::new(d).is_absolute()) {
        return PathBuf::from(dir).join("manager/tailnet");
    }
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/manager/tailnet");
    }
    match std::env::var_os("HOME").filter(|d| Path::new(d).is_absolute()) {
        Some(home) => PathBuf::from(home).join(".local/state/manager/tailnet"),
        None => PathBuf::from("/var/lib/manager/tailnet"),
    }
}

impl CommonArgs {
    fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(default_state_dir)
    }

    fn socket(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| self.state_dir().join(tailnet_boot::SOCKET_NAME))
    }
}

/// A boolean environment variable in containerboot's style (`true`/`false`, `1`/`0`).
fn env_bool(name: &str) -> Result<Option<bool>, String> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "1" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "false" | "no" | "off" => Ok(Some(false)),
            _ => Err(format!("{name}={v:?} is not a boolean")),
        },
    }
}

fn env_words(name: &str) -> Vec<String> {
    std::env::var(name)
        .map(|v| v.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The key source: `--auth-key`, else containerboot's TS_AUTHKEY/TS_AUTH_KEY (whose value is
/// the key itself, or `file:PATH`). The value of those variables is never parsed as a SOURCE
/// (nor printed): it is read through `env:` like any secret.
fn key_source(flag: Option<&str>) -> Result<Option<SecretSource>, String> {
    if let Some(spec) = flag {
        return SecretSource::from_str(spec)
            .map(Some)
            .map_err(|e| format!("--auth-key: {e}"));
    }
    for var in ["TS_AUTHKEY", "TS_AUTH_KEY"] {
        if let Some(value) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let bytes = value.as_encoded_bytes();
            if let Some(path) = bytes.strip_prefix(b"file:") {
                let path =
                    PathBuf::from(OsString::from(String::from_utf8_lossy(path).into_owned()));
                return Ok(Some(SecretSource::File(path)));
            }
            return Ok(Some(SecretSource::Env(var.to_owned())));
        }
    }
    Ok(None)
}

/// The thread streaming one key into its FIFO, and its cancel flag.
type Sender = (JoinHandle<Result<(), SecretError>>, Arc<AtomicBool>);

/// Serves each key through a fresh FIFO in a private RAM-backed directory.
struct FifoKeyProvider {
    source: SecretSource,
    dir: SecretDir,
    options: SendOptions,
    previous: Option<SecretBytes>,
    sender: Option<Sender>,
}

impl FifoKeyProvider {
    fn stop_sender(&mut self) {
        if let Some((handle, cancel)) = self.sender.take() {
            cancel.store(true, Ordering::SeqCst);
            match handle.join() {
                Ok(Ok(())) => tracing::debug!("auth key handed to tailscale up"),
                Ok(Err(SecretError::Cancelled { .. } | SecretError::NoReader { .. })) => {
                    tracing::warn!("tailscale up did not read the auth key (the FIFO was removed)");
                }
                Ok(Err(err)) => tracing::warn!("auth key FIFO: {err}"),
                Err(_) => tracing::warn!("auth key sender thread panicked"),
            }
        }
    }
}

impl AuthKeyProvider for FifoKeyProvider {
    fn next_key_file(
        &mut self,
        attempt: u32,
        previous_failure: Option<&KeyFailure>,
    ) -> Result<AuthKeyFile, Box<dyn std::error::Error + Send + Sync>> {
        self.stop_sender();
        let key = self.source.read()?;
        if previous_failure.is_some()
            && let Some(previous) = &self.previous
            && previous.expose() == key.expose()
        {
            return Err(format!(
                "the key source ({}) gave the same key that was just rejected; \
                 a cmd: or prompt source can give a fresh one",
                source_kind(&self.source)
            )
            .into());
        }
        self.previous = Some(SecretBytes::from_slice(key.expose())?);
        let fifo = self.dir.fifo(&format!("authkey-{attempt}"))?;
        let path = fifo.path().to_owned();
        let cancel = Arc::new(AtomicBool::new(false));
        let mut options = self.options.clone();
        options.cancel = Some(cancel.clone());
        let handle = std::thread::spawn(move || fifo.send(&key, &options).map(drop));
        self.sender = Some((handle, cancel));
        Ok(AuthKeyFile::new(path))
    }

    fn attempt_finished(&mut self, _attempt: u32) {
        self.stop_sender();
    }
}

impl Drop for FifoKeyProvider {
    fn drop(&mut self) {
        self.stop_sender();
    }
}

/// The kind of a source, for messages (never its argument, which may name a vault item).
fn source_kind(source: &SecretSource) -> &'static str {
    match source {
        SecretSource::Env(_) => "env:",
        SecretSource::File(_) => "file:",
        SecretSource::Stdin => "stdin",
        SecretSource::Prompt => "prompt",
        SecretSource::Cmd { .. } => "cmd:",
    }
}

/// Progress on stderr: tailscale's output at info level; login URLs and rejections always.
struct StderrEvents;

impl UpEvents for StderrEvents {
    fn output_line(&mut self, line: &str) {
        if !line.trim().is_empty() {
            tracing::info!("tailscale up: {}", line.trim());
        }
    }

    fn login_url(&mut self, url: &str) {
        eprintln!("manager: to log this node in, visit: {url}");
        eprintln!("manager: waiting for the login to complete (bounded by --timeout)");
    }

    fn key_rejected(&mut self, failure: &KeyFailure, retry_in: Option<Duration>) {
        match retry_in {
            Some(delay) => eprintln!(
                "manager: auth key rejected ({failure}); asking the key source again in {}",
                humantime::format_duration(delay)
            ),
            None => eprintln!("manager: auth key rejected ({failure}); no attempts left"),
        }
    }
}

fn usage(message: impl std::fmt::Display) -> ExitCode {
    fail(exit::USAGE, message)
}

impl ProxyArgs {
    /// The SOCKS5 and HTTP proxy addresses, checked (exit 2 when one is unsafe or malformed).
    fn parse(&self) -> Result<(ProxyAddr, Option<ProxyAddr>), ExitCode> {
        let socks5 = ProxyAddr::parse(&self.socks5).map_err(usage)?;
        let http = self
            .http_proxy
            .as_deref()
            .map(ProxyAddr::parse)
            .transpose()
            .map_err(usage)?;
        Ok((socks5, http))
    }
}

fn run_up(globals: &crate::Globals, args: UpArgs) -> ExitCode {
    // 1. Everything that can be checked without side effects: exit 2.
    if args.timeout.is_zero() {
        return usage("--timeout 0s: tailscale up would wait forever; give a bound");
    }
    if let Ok(Some(false)) = env_bool("TS_USERSPACE") {
        return usage("TS_USERSPACE=false: only userspace networking is supported");
    }
    let accept_dns = match env_bool("TS_ACCEPT_DNS") {
        Ok(v) => v,
        Err(e) => return usage(e),
    };
    if let Err(e) = env_bool("TS_AUTH_ONCE") {
        return usage(e);
    }
    let source = match key_source(args.auth_key.as_deref()) {
        Ok(source) => source,
        Err(e) => return usage(e),
    };
    let (socks5, http) = match args.proxy.parse() {
        Ok(addrs) => addrs,
        Err(code) => return code,
    };
    let mut extra = env_words("TS_EXTRA_ARGS");
    if let Some(dns) = accept_dns {
        extra.push(format!("--accept-dns={dns}"));
    }
    if let Ok(routes) = std::env::var("TS_ROUTES")
        && !routes.trim().is_empty()
    {
        extra.push(format!("--advertise-routes={}", routes.trim()));
    }
    extra.extend(args.extra.iter().cloned());
    if let Err(e) = tailnet_boot::check_extra_up_args(&extra) {
        return usage(e);
    }
    let state_dir = args.common.state_dir();
    let mut daemon = DaemonConfig::new(&args.common.tailscaled, &state_dir);
    daemon.socket = args.common.socket();
    daemon.socks5_server = Some(socks5.to_string());
    daemon.http_proxy_listen = http.as_ref().map(ToString::to_string);
    daemon.in_memory_state = args.mem_state;
    daemon.no_logs_no_support = args.no_logs_no_support;
    daemon.extra_args = env_words("TS_TAILSCALED_EXTRA_ARGS");
    daemon
        .extra_args
        .extend(args.tailscaled_args.iter().cloned());
    daemon.socket_timeout = args.socket_timeout;
    let mut up = UpConfig::new(&args.common.tailscale, &daemon.socket);
    up.hostname = args.hostname.clone().filter(|h| !h.is_empty());
    up.extra_args = extra;
    up.timeout = args.timeout;
    up.max_attempts = args.max_attempts;
    up.backoff = Backoff {
        initial: args.retry_delay,
        max: Duration::from_secs(30).max(args.retry_delay),
    };
    up.status_timeout = args.common.status_timeout;
    if !args.bad_key_patterns.is_empty() {
        up.key_patterns = args
            .bad_key_patterns
            .iter()
            .fold(tailnet_boot::KeyPatterns::empty(), |p, text| {
                p.with(text.as_str(), tailnet_boot::KeyFailureKind::Invalid)
            });
    }

    // 2. The singleton lock, before any secret is read: exit 3 when another instance has it.
    let _held = match crate::singleton::hold(globals) {
        Ok(held) => held,
        Err(code) => return code,
    };

    // 3. The daemon: started detached (it outlives us) or reused.
    let handle = match tailnet_boot::ensure_daemon(&daemon) {
        Ok(handle) => handle,
        Err(e) => return fail(exit::ERROR, e),
    };
    if handle.started {
        eprintln!(
            "manager: started tailscaled (pid {}, log {})",
            handle.pid.map_or_else(|| "?".to_owned(), |p| p.to_string()),
            handle.log.display()
        );
    } else {
        eprintln!(
            "manager: reusing the tailscaled on {}",
            handle.socket.display()
        );
    }

    // 4. Keys, each through its own FIFO, only when the node needs a login.
    let mut provider = match source {
        None => None,
        Some(source) => {
            let dir = match SecretDir::create("manager") {
                Ok(dir) => dir,
                Err(e) => return fail(exit::ERROR, format_args!("auth key FIFO directory: {e}")),
            };
            let options = SendOptions {
                open_timeout: args.timeout + Duration::from_secs(15),
                write_timeout: Duration::from_secs(10),
                cancel: None,
            };
            Some(FifoKeyProvider {
                source,
                dir,
                options,
                previous: None,
                sender: None,
            })
        }
    };
    let result = tailnet_boot::bring_up(
        &up,
        provider.as_mut().map(|p| p as &mut dyn AuthKeyProvider),
        &mut StderrEvents,
    );
    drop(provider);
    match result {
        Ok(report) => {
            if globals.json {
                let out = serde_json::json!({ "daemon": handle, "up": report });
                println!("{out}");
            } else {
                let ips: Vec<String> = report
                    .status
                    .tailscale_ips
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                let name = report
                    .status
                    .self_node
                    .as_ref()
                    .map_or("", |n| n.dns_name.as_str());
                println!("state: {}", report.status.backend_state);
                println!(
                    "ips: {}",
                    if ips.is_empty() {
                        "-".to_owned()
                    } else {
                        ips.join(" ")
                    }
                );
                if !name.is_empty() {
                    println!("name: {name}");
                }
                println!("socks5: {socks5}");
                if let Some(http) = &http {
                    println!("http-proxy: {http}");
                }
                println!("attempts: {}", report.attempts);
            }
            if report.status.backend_state == BackendState::Running {
                ExitCode::SUCCESS
            } else {
                fail(
                    exit::ERROR,
                    format_args!(
                        "tailscale up finished but the node is {}, not Running",
                        report.status.backend_state
                    ),
                )
            }
        }
        Err(err) => fail(exit::ERROR, err),
    }
}

fn run_status(json: bool, common: &CommonArgs) -> ExitCode {
    let state_dir = common.state_dir();
    let socket = common.socket();
    let status = match tailnet_boot::query_status(&common.tailscale, &socket, common.status_timeout)
    {
        Ok(status) => status,
        Err(e) => return fail(exit::ERROR, e),
    };
    let ours = tailnet_boot::recorded_daemon(&state_dir).ok().flatten();
    if json {
        let out = serde_json::json!({ "status": status, "socket": socket, "daemon_pid": ours });
        println!("{out}");
    } else {
        let ips: Vec<String> = status
            .tailscale_ips
            .iter()
            .map(ToString::to_string)
            .collect();
        println!("state: {}", status.backend_state);
        println!(
            "ips: {}",
            if ips.is_empty() {
                "-".to_owned()
            } else {
                ips.join(" ")
            }
        );
        if let Some(node) = &status.self_node {
            println!("host: {}", node.host_name);
            if !node.dns_name.is_empty() {
                println!("name: {}", node.dns_name);
            }
        }
        if let Some(url) = &status.auth_url {
            println!("login-url: {url}");
        }
        println!("peers: {}", status.peer_count);
        match ours {
            Some(pid) => println!(
                "daemon: pid {pid} (started by manager), socket {}",
                socket.display()
            ),
            None => println!(
                "daemon: socket {} (not started by manager)",
                socket.display()
            ),
        }
    }
    ExitCode::SUCCESS
}

fn run_down(json: bool, args: &DownArgs) -> ExitCode {
    let common = &args.common;
    let socket = common.socket();
    let disconnected =
        match tailnet_boot::tailscale_down(&common.tailscale, &socket, common.status_timeout) {
            Ok(()) => true,
            Err(BootError::DaemonNotRunning { .. }) => false,
            Err(e) => return fail(exit::ERROR, e),
        };
    let stopped = if args.keep_daemon {
        None
    } else {
        match tailnet_boot::stop_daemon(&common.state_dir(), Duration::from_secs(10)) {
            Ok(StopOutcome::Stopped { pid }) => Some(pid),
            Ok(_) => None,
            Err(e) => return fail(exit::ERROR, e),
        }
    };
    if json {
        println!(
            "{}",
            serde_json::json!({ "disconnected": disconnected, "stopped_pid": stopped })
        );
    } else {
        println!(
            "{}",
            if disconnected {
                "disconnected"
            } else {
                "tailscaled was not running"
            }
        );
        match (stopped, args.keep_daemon) {
            (Some(pid), _) => println!("stopped tailscaled (pid {pid})"),
            (None, true) => println!("tailscaled left running (--keep-daemon)"),
            (None, false) if disconnected => {
                println!("tailscaled left running (not started by manager)");
            }
            (None, false) => {}
        }
    }
    ExitCode::SUCCESS
}

fn run_proxy_env(json: bool, args: &ProxyEnvArgs) -> ExitCode {
    let (socks5, http) = match args.proxy.parse() {
        Ok(addrs) => addrs,
        Err(code) => return code,
    };
    let vars = tailnet_boot::proxy_env(&socks5, http.as_ref());
    if json {
        let map: serde_json::Map<String, serde_json::Value> = vars
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        println!("{}", serde_json::Value::Object(map));
    } else {
        let prefix = if args.export { "export " } else { "" };
        for (name, value) in vars {
            println!("{prefix}{name}={value}");
        }
    }
    ExitCode::SUCCESS
}

fn proxy_tool(tool: Tool) -> Result<ProxyTool, String> {
    Ok(match tool {
        Tool::Nc => ProxyTool::NetcatOpenbsd,
        Tool::Ncat => ProxyTool::Ncat,
        Tool::Manager => {
            let exe = std::env::current_exe()
                .map_err(|e| format!("cannot find this program's path: {e}"))?;
            let exe = exe
                .to_str()
                .ok_or("this program's path is not UTF-8")?
                .to_owned();
            ProxyTool::Program(vec![exe, "net".into(), "connect".into()])
        }
    })
}

fn run_ssh_config(json: bool, args: &SshConfigArgs) -> ExitCode {
    let socks5 = match ProxyAddr::parse(&args.proxy.socks5) {
        Ok(addr) => addr,
        Err(e) => return usage(e),
    };
    let tool = match proxy_tool(args.proxy_tool) {
        Ok(tool) => tool,
        Err(e) => return fail(exit::ERROR, e),
    };
    let built = tailnet_boot::ssh_config(&args.hosts, &tool, &socks5).and_then(|config| {
        let command = tailnet_boot::ssh_proxy_command(&tool, &socks5)?;
        let ansible = tailnet_boot::ansible_ssh_common_args(&tool, &socks5)?;
        Ok((config, command, ansible))
    });
    let (config, command, ansible) = match built {
        Ok(parts) => parts,
        Err(e) => return usage(e),
    };
    if json {
        let out = serde_json::json!({
            "ssh_config": config,
            "proxy_command": command,
            "ansible_ssh_common_args": ansible,
        });
        println!("{out}");
    } else if args.ansible {
        println!("{ansible}");
    } else {
        print!("{config}");
        println!("# Ansible (inventory or group_vars):");
        println!("# {ansible}");
    }
    ExitCode::SUCCESS
}

fn run_connect(args: &ConnectArgs) -> ExitCode {
    use std::io::{Read, Write};

    let socks5 = match ProxyAddr::parse(&args.socks5) {
        Ok(addr) => addr,
        Err(e) => return usage(e),
    };
    let stream =
        match tailnet_boot::socks5_connect(&socks5, &args.host, args.port, args.connect_timeout) {
            Ok(stream) => stream,
            Err(e) => return fail(exit::ERROR, e),
        };
    let mut upstream = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => return fail(exit::ERROR, format_args!("socket: {e}")),
    };
    // stdin → proxy on a thread; like `nc` without -N, stdin's end does not half-close the
    // connection (some proxies then drop the reply): the remote's close ends the run.
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if upstream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut downstream = stream;
    let mut stdout = std::io::stdout().lock();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match downstream.read(&mut buf) {
            Ok(0) => return ExitCode::SUCCESS,
            Ok(n) => {
                if stdout
                    .write_all(&buf[..n])
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return ExitCode::SUCCESS;
                }
            }
            Err(e) => {
                return fail(
                    exit::ERROR,
                    format_args!("connection to {}:{}: {e}", args.host, args.port),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_source_prefers_the_flag_and_never_parses_ts_authkey_as_a_source() {
        let flag = key_source(Some("cmd:bw get password tailscale")).unwrap();
        assert!(matches!(flag, Some(SecretSource::Cmd { ref program, .. }) if program == "bw"));
        assert!(key_source(Some("bogus")).is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn manager_proxy_tool_uses_this_binary() {
        let tool = proxy_tool(Tool::Manager).unwrap();
        assert!(matches!(tool, ProxyTool::Program(ref words) if words[1..] == ["net", "connect"]));
    }
}
