//! The etcd backend: a mutex built from etcd's KV, lease and watch APIs, with fencing tokens.
//!
//! Algorithm (the one etcd's own `concurrency.Mutex` uses, plus try-lock, holder data and loss
//! detection):
//! 1. Grant a lease with the TTL; a background task keeps it alive every TTL/3.
//! 2. In one transaction: if `create_revision(<prefix>/<lease id hex>) == 0`, put that key (value:
//!    our holder record) attached to the lease; and read the first-created key under the prefix.
//! 3. The owner is the key with the smallest create revision. If that is ours, we hold the lock
//!    and its create revision is the fencing token (revisions only grow, so a later holder's
//!    token is always larger).
//! 4. Otherwise try-lock gives up (revoking the lease deletes our key); a waiter watches the key
//!    just before its own (largest create revision below ours) for deletion, and repeats.
//! 5. While held, the lease deadline is tracked on `CLOCK_BOOTTIME` (last keepalive *sent* +
//!    granted TTL: the server cannot expire the lease before that), and our key is watched for
//!    deletion. Either one fires the guard's [`LostSignal`].

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    KeyValue, PutOptions, SortOrder, SortTarget, TlsOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::backend::{HeldLock, LockBackend, LossReason, LossState, LostSignal};
use crate::clock::boottime;
use crate::error::LockError;
use crate::holder::{self, LockHolder};

/// Default lease TTL.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// Default connect / per-request timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default key prefix; a lock named `N` lives under `<prefix>/N/`.
pub const DEFAULT_KEY_PREFIX: &str = "/singleton-lock";
/// Longest accepted lock name, in bytes.
const MAX_NAME_LEN: usize = 200;

/// How to reach the cluster and which lock to take.
#[derive(Clone)]
#[non_exhaustive]
pub struct EtcdLockConfig {
    /// Client URLs (`http://host:2379`, `https://…` with [`EtcdLockConfig::tls`]).
    pub endpoints: Vec<String>,
    /// The lock's name (no `/`, no control characters, at most 200 bytes).
    pub name: String,
    /// Lease TTL, whole seconds (rounded up; at least 1 s; the server may raise it to its
    /// minimum, about 1.5 × the election timeout). Keepalives go out every TTL/3.
    pub ttl: Duration,
    /// Timeout for connecting and for each request. A request that gets no answer in this
    /// time counts as an unreachable cluster.
    pub connect_timeout: Duration,
    /// TLS settings (for `https://` endpoints).
    pub tls: Option<EtcdTls>,
    /// User name and password (the password as bytes from the caller, e.g. a `fifo-secrets`
    /// source; it must be UTF-8 for etcd). Never put it on a command line.
    pub user: Option<(String, Vec<u8>)>,
    /// The node name written into the holder record (default: the host name).
    pub node: Option<String>,
    /// Key prefix; the lock's keys are `<key_prefix>/<name>/<lease id hex>`.
    pub key_prefix: String,
}

impl EtcdLockConfig {
    /// A configuration with the defaults: TTL 10 s, connect timeout 5 s, no TLS, no auth.
    pub fn new<S: Into<String>>(
        endpoints: impl IntoIterator<Item = S>,
        name: impl Into<String>,
    ) -> Self {
        EtcdLockConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            name: name.into(),
            ttl: DEFAULT_TTL,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls: None,
            user: None,
            node: None,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
        }
    }
}

impl fmt::Debug for EtcdLockConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdLockConfig")
            .field("endpoints", &self.endpoints)
            .field("name", &self.name)
            .field("ttl", &self.ttl)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .field("user", &self.user.as_ref().map(|(u, _)| (u, "<redacted>")))
            .field("node", &self.node)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

/// TLS files for `https://` endpoints (PEM).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct EtcdTls {
    /// CA certificate(s) to verify the servers with (else the system's roots are not used:
    /// give one).
    pub ca_cert: Option<PathBuf>,
    /// Client certificate, for clusters that require client auth.
    pub client_cert: Option<PathBuf>,
    /// Client private key, with `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Server name to verify, if it differs from the endpoint's host.
    pub domain: Option<String>,
}

impl EtcdTls {
    /// No files yet; fill in the fields.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A lock held through an etcd cluster, shared by every node that names the same lock.
///
/// The API is synchronous: a small tokio runtime runs inside on one background thread. Do not
/// call it from inside an async runtime (it returns [`LockError::Config`] if you do; use
/// `spawn_blocking`).
///
/// ```no_run
/// use std::time::Duration;
/// use singleton_lock::{EtcdLock, EtcdLockConfig, LockError};
///
/// let mut cfg = EtcdLockConfig::new(["http://10.0.0.1:2379", "http://10.0.0.2:2379"], "backup");
/// cfg.ttl = Duration::from_secs(10);
/// let lock = EtcdLock::new(cfg)?;
/// match lock.try_acquire() {
///     Ok(guard) => {
///         let lost = guard.lost();
///         for chunk in 0..100 {
///             if lost.is_lost() {
///                 eprintln!("lock lost: {:?}; stopping", lost.reason());
///                 break;
///             }
///             // Hand the token to the storage you write to, so it can refuse older holders.
///             let _token = guard.fencing_token();
///             let _ = chunk;
///         }
///     }
///     Err(LockError::Held { holder, .. }) => eprintln!("held by {holder:?}"),
///     Err(e) => return Err(e.into()),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct EtcdLock {
    inner: Arc<Inner>,
    runner: Arc<Runner>,
}

/// The background runtime. Kept apart from [`Inner`] so that tasks running on it never hold
/// the last reference to it (a runtime must not be dropped from its own worker).
struct Runner {
    rt: Option<Runtime>,
}

/// Connection and lock parameters, shared with the background tasks.
struct Inner {
    client: Client,
    name: String,
    /// `<key_prefix>/<name>/`
    prefix: String,
    ttl_secs: i64,
    op_timeout: Duration,
    node: String,
    endpoints_text: String,
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl fmt::Debug for EtcdLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdLock")
            .field("name", &self.inner.name)
            .field("endpoints", &self.inner.endpoints_text)
            .field("ttl_secs", &self.inner.ttl_secs)
            .finish()
    }
}

/// Proof that we hold an [`EtcdLock`]. Dropping it deletes our key and revokes the lease (best
/// effort, bounded by the connect timeout); if this process dies instead, the lease expires
/// after its TTL and the next waiter gets the lock.
pub struct EtcdGuard {
    inner: Arc<Inner>,
    runner: Arc<Runner>,
    lease_id: i64,
    key: String,
    revision: i64,
    holder: LockHolder,
    state: Arc<LossState>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for EtcdGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdGuard")
            .field("key", &self.key)
            .field("lease_id", &format_args!("{:x}", self.lease_id))
            .field("fencing_token", &self.revision)
            .field("lost", &self.state.check())
            .finish()
    }
}

#[derive(Clone, Copy)]
enum Mode {
    Try,
    /// Wait, until this `CLOCK_BOOTTIME` deadline if any.
    Wait(Option<Duration>),
}

impl EtcdLock {
    /// Validates the configuration, starts the background runtime and connects (lazily: an
    /// unreachable cluster is reported by the first acquire, as [`LockError::Unreachable`]).
    pub fn new(cfg: EtcdLockConfig) -> Result<Self, LockError> {
        let config = |reason: String| LockError::Config { reason };
        if cfg.endpoints.is_empty() {
            return Err(config("no endpoints".into()));
        }
        if cfg.name.is_empty()
            || cfg.name.len() > MAX_NAME_LEN
            || cfg.name.contains('/')
            || cfg.name.chars().any(char::is_control)
        {
            return Err(config(format!(
                "lock name {:?} must be 1–{MAX_NAME_LEN} bytes without '/' or control characters",
                cfg.name
            )));
        }
        if cfg.connect_timeout.is_zero() {
            return Err(config("connect timeout must be positive".into()));
        }
        let ttl_secs = i64::try_from(cfg.ttl.as_secs() + u64::from(cfg.ttl.subsec_nanos() > 0))
            .map_err(|_| config("TTL too large".into()))?
            .max(1);
        let mut options = ConnectOptions::new()
            .with_connect_timeout(cfg.connect_timeout)
            .with_require_leader(true);
        if let Some((user, password)) = &cfg.user {
            let password = String::from_utf8(password.clone())
                .map_err(|_| config("etcd passwords must be UTF-8".into()))?;
            options = options.with_user(user.clone(), password);
        }
        if let Some(tls) = &cfg.tls {
            options = options.with_tls(tls_options(tls)?);
        }
        if Self::in_async_context() {
            return Err(async_context_error());
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("singleton-lock-etcd")
            .enable_all()
            .build()
            .map_err(|e| LockError::io("tokio runtime", "start", e))?;
        let endpoints_text = cfg.endpoints.join(",");
        // Timers need the runtime's context: build the timeout inside the async block.
        let connect = rt.block_on(async {
            tokio::time::timeout(
                cfg.connect_timeout,
                Client::connect(&cfg.endpoints, Some(options)),
            )
            .await
        });
        let client = match connect {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(map_client_error(&cfg.name, &endpoints_text, "connect", e)),
            Err(_) => {
                return Err(LockError::Unreachable {
                    endpoints: endpoints_text,
                    reason: format!("no connection within {:?}", cfg.connect_timeout),
                });
            }
        };
        let node = cfg.node.clone().unwrap_or_else(|| {
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned()
        });
        let prefix = format!("{}/{}/", cfg.key_prefix.trim_end_matches('/'), cfg.name);
        Ok(EtcdLock {
            inner: Arc::new(Inner {
                client,
                name: cfg.name,
                prefix,
                ttl_secs,
                op_timeout: cfg.connect_timeout,
                node,
                endpoints_text,
            }),
            runner: Arc::new(Runner { rt: Some(rt) }),
        })
    }

    /// The lock name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The key prefix under which contenders put their keys (`<key_prefix>/<name>/`).
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Takes the lock if nobody holds it, else [`LockError::Held`] with the holder's record.
    pub fn try_acquire(&self) -> Result<EtcdGuard, LockError> {
        self.run(acquire(self.inner.clone(), self.runner.clone(), Mode::Try))
    }

    /// Waits (in line, first come first served) until the lock is ours.
    pub fn acquire(&self) -> Result<EtcdGuard, LockError> {
        self.run(acquire(
            self.inner.clone(),
            self.runner.clone(),
            Mode::Wait(None),
        ))
    }

    /// Waits up to `timeout` (on `CLOCK_BOOTTIME`), else [`LockError::Timeout`] naming the
    /// holder.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<EtcdGuard, LockError> {
        let deadline = boottime().saturating_add(timeout);
        self.run(acquire(
            self.inner.clone(),
            self.runner.clone(),
            Mode::Wait(Some(deadline)),
        ))
    }

    /// The current holder (the owner key's record), or `None` if the lock is free.
    /// Verification is `Unverifiable` unless the holder runs on this host.
    pub fn holder(&self) -> Result<Option<LockHolder>, LockError> {
        let inner = self.inner.clone();
        self.run(async move { Ok(owner(&inner).await?.and_then(|kv| parse_holder(&kv))) })
    }

    fn in_async_context() -> bool {
        tokio::runtime::Handle::try_current().is_ok()
    }

    fn run<T>(&self, fut: impl Future<Output = Result<T, LockError>>) -> Result<T, LockError> {
        if Self::in_async_context() {
            return Err(async_context_error());
        }
        match &self.runner.rt {
            Some(rt) => rt.block_on(fut),
            None => Err(async_context_error()),
        }
    }
}

fn async_context_error() -> LockError {
    LockError::Config {
        reason: "the etcd lock's blocking API was called from inside an async runtime \
                 (use spawn_blocking)"
            .into(),
    }
}

fn tls_options(tls: &EtcdTls) -> Result<TlsOptions, LockError> {
    let read =
        |path: &Path| std::fs::read(path).map_err(|e| LockError::io(path, "read TLS file", e));
    let mut options = TlsOptions::new();
    if let Some(ca) = &tls.ca_cert {
        options = options.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            options = options.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        (None, None) => {}
        _ => {
            return Err(LockError::Config {
                reason: "a TLS client certificate needs its key, and a key its certificate".into(),
            });
        }
    }
    if let Some(domain) = &tls.domain {
        options = options.domain_name(domain.clone());
    }
    Ok(options)
}

/// gRPC codes that mean "no usable server": UNAVAILABLE (14) and DEADLINE_EXCEEDED (4).
fn map_client_error(
    name: &str,
    endpoints: &str,
    op: &'static str,
    e: etcd_client::Error,
) -> LockError {
    let unreachable = match &e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(status) => matches!(i32::from(status.code()), 4 | 14),
        _ => false,
    };
    if unreachable {
        LockError::Unreachable {
            endpoints: endpoints.to_owned(),
            reason: format!("{op}: {e}"),
        }
    } else {
        LockError::Etcd {
            name: name.to_owned(),
            op,
            reason: e.to_string(),
        }
    }
}

impl Inner {
    /// One request, bounded by the op timeout; no answer counts as unreachable.
    ///
    /// The client balances over all endpoints and may route a request to a dead member
    /// (connection refused): such "unreachable" failures are retried on a fresh client clone
    /// until the op timeout. Every request we send is safe to repeat (the key put is guarded
    /// by `create_revision == 0`; a duplicate lease just expires).
    async fn call<T, Fut>(
        &self,
        op: &'static str,
        mut request: impl FnMut(Client) -> Fut,
    ) -> Result<T, LockError>
    where
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = boottime().saturating_add(self.op_timeout);
        let mut pause = Duration::from_millis(20);
        loop {
            let remaining = deadline.saturating_sub(boottime());
            let last = match tokio::time::timeout(remaining, request(self.client.clone())).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => map_client_error(&self.name, &self.endpoints_text, op, e),
                Err(_) => LockError::Unreachable {
                    endpoints: self.endpoints_text.clone(),
                    reason: format!("{op}: no answer within {:?}", self.op_timeout),
                },
            };
            if !matches!(last, LockError::Unreachable { .. }) || boottime() + pause >= deadline {
                return Err(last);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    fn lock_path(&self) -> PathBuf {
        PathBuf::from(format!("etcd:{}", self.name))
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs.unsigned_abs())
    }
}

fn owner_options() -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(1)
}

/// The first-created key under the prefix: the owner.
async fn owner(inner: &Inner) -> Result<Option<KeyValue>, LockError> {
    let mut resp = inner
        .call("get owner", |mut c| {
            let prefix = inner.prefix.clone();
            async move { c.get(prefix, Some(owner_options())).await }
        })
        .await?;
    Ok(resp.take_kvs().into_iter().next())
}

fn parse_holder(kv: &KeyValue) -> Option<LockHolder> {
    let mut holder = holder::parse_record(kv.value()).ok()?;
    holder::verify(&mut holder);
    Some(holder)
}

/// Revokes a lease (deleting our key), best effort.
async fn revoke(inner: &Inner, lease_id: i64) -> Result<(), LockError> {
    let revoked = inner
        .call("revoke lease", |mut c| async move {
            c.lease_revoke(lease_id).await
        })
        .await;
    match revoked {
        Ok(_) => Ok(()),
        // Already gone: nothing left to release.
        Err(LockError::Etcd { reason, .. }) if reason.contains("lease not found") => Ok(()),
        Err(e) => Err(e),
    }
}

async fn acquire(
    inner: Arc<Inner>,
    runner: Arc<Runner>,
    mode: Mode,
) -> Result<EtcdGuard, LockError> {
    let started = boottime();
    if let Mode::Try = mode {
        // Cheap refusal without creating a lease when someone clearly holds it.
        if let Some(kv) = owner(&inner).await? {
            return Err(LockError::Held {
                path: inner.lock_path(),
                holder: parse_holder(&kv).map(Box::new),
            });
        }
    }
    let grant_sent = boottime();
    let ttl_secs = inner.ttl_secs;
    let lease = inner
        .call("grant lease", |mut c| async move {
            c.lease_grant(ttl_secs, None).await
        })
        .await?;
    let lease_id = lease.id();
    let granted = Duration::from_secs(lease.ttl().max(1).unsigned_abs());
    let state = LossState::new(Some(grant_sent + granted));
    let keepalive = tokio::spawn(keep_alive(inner.clone(), lease_id, state.clone()));
    let result = contend(&inner, lease_id, &state, mode, started).await;
    match result {
        Ok((key, revision, holder)) => {
            let watch = tokio::spawn(watch_key(
                inner.clone(),
                key.clone(),
                revision,
                state.clone(),
            ));
            Ok(EtcdGuard {
                inner,
                runner,
                lease_id,
                key,
                revision,
                holder,
                state,
                tasks: vec![keepalive, watch],
            })
        }
        Err(e) => {
            keepalive.abort();
            let _ = revoke(&inner, lease_id).await;
            Err(e)
        }
    }
}

/// Puts our key and waits for our turn (per `mode`). Returns (key, create revision, record).
async fn contend(
    inner: &Arc<Inner>,
    lease_id: i64,
    state: &Arc<LossState>,
    mode: Mode,
    started: Duration,
) -> Result<(String, i64, LockHolder), LockError> {
    let key = format!("{}{lease_id:016x}", inner.prefix);
    let mut holder = LockHolder::for_current_process();
    holder.host = Some(inner.node.clone());
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(
                key.clone(),
                holder.to_record(),
                Some(PutOptions::new().with_lease(lease_id)),
            ),
            TxnOp::get(inner.prefix.clone(), Some(owner_options())),
        ])
        .or_else([
            TxnOp::get(key.clone(), None),
            TxnOp::get(inner.prefix.clone(), Some(owner_options())),
        ]);
    let resp = inner
        .call("put lock key", |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await?;
    let ops = resp.op_responses();
    let first_kv = |i: usize| match ops.get(i) {
        Some(TxnOpResponse::Get(get)) => get.kvs().first().cloned(),
        _ => None,
    };
    let my_rev = if resp.succeeded() {
        resp.header().map(|h| h.revision())
    } else {
        first_kv(0).map(|kv| kv.create_revision())
    };
    let bad = |what: &str| LockError::Etcd {
        name: inner.name.clone(),
        op: "put lock key",
        reason: what.to_owned(),
    };
    let my_rev = my_rev.ok_or_else(|| bad("no revision in the transaction response"))?;
    let owner_kv = first_kv(1).ok_or_else(|| bad("our own key is missing after the put"))?;
    if owner_kv.create_revision() == my_rev {
        return Ok((key, my_rev, holder));
    }
    let deadline = match mode {
        Mode::Try => {
            return Err(LockError::Held {
                path: inner.lock_path(),
                holder: parse_holder(&owner_kv).map(Box::new),
            });
        }
        Mode::Wait(deadline) => deadline,
    };
    let lost = LostSignal::from_state(state.clone());
    tokio::select! {
        waited = wait_for_turn(inner, my_rev) => waited?,
        _reason = wait_lost(lost.clone()) => {
            return Err(LockError::LeaseExpired { name: inner.name.clone(), lease_id });
        }
        () = sleep_until_boottime(deadline) => {
            let now = boottime();
            let holder = owner(inner).await.ok().flatten().and_then(|kv| parse_holder(&kv));
            return Err(LockError::Timeout {
                path: inner.lock_path(),
                waited: now.saturating_sub(started),
                holder: holder.map(Box::new),
            });
        }
    }
    // Our turn: make sure our key (and so our lease) survived the wait.
    let mut resp = inner
        .call("check lock key", |mut c| {
            let key = key.clone();
            async move { c.get(key, None).await }
        })
        .await?;
    let still_ours = resp
        .take_kvs()
        .first()
        .is_some_and(|kv| kv.create_revision() == my_rev);
    if !still_ours || lost.is_lost() {
        return Err(LockError::LeaseExpired {
            name: inner.name.clone(),
            lease_id,
        });
    }
    Ok((key, my_rev, holder))
}

/// Resolves when `lost` fires (polled on the runtime without blocking it).
async fn wait_lost(lost: LostSignal) -> LossReason {
    loop {
        if let Some(reason) = lost.reason() {
            return reason;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sleeps until a `CLOCK_BOOTTIME` deadline (forever for `None`), re-checking at least every
/// 100 ms because tokio's timers run on the monotonic clock, which stops during suspend.
async fn sleep_until_boottime(deadline: Option<Duration>) {
    let Some(deadline) = deadline else {
        return std::future::pending().await;
    };
    loop {
        let now = boottime();
        if now >= deadline {
            return;
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(100))).await;
    }
}

/// Waits until no key under the prefix was created before ours: each round watches the
/// nearest older key for its deletion (no thundering herd).
async fn wait_for_turn(inner: &Inner, my_rev: i64) -> Result<(), LockError> {
    loop {
        let options = GetOptions::new()
            .with_prefix()
            .with_max_create_revision(my_rev - 1)
            .with_sort(SortTarget::Create, SortOrder::Descend)
            .with_limit(1);
        let resp = inner
            .call("get predecessor", |mut c| {
                let (prefix, options) = (inner.prefix.clone(), options.clone());
                async move { c.get(prefix, Some(options)).await }
            })
            .await?;
        let Some(pred) = resp.kvs().first() else {
            return Ok(());
        };
        let from = resp.header().map_or(0, |h| h.revision()) + 1;
        let mut stream = inner
            .call("watch predecessor", |mut c| {
                let key = pred.key().to_vec();
                async move {
                    c.watch(key, Some(WatchOptions::new().with_start_revision(from)))
                        .await
                }
            })
            .await?;
        loop {
            match stream.message().await {
                Ok(Some(msg)) => {
                    if msg.canceled() || msg.compact_revision() > 0 {
                        break;
                    }
                    if msg
                        .events()
                        .iter()
                        .any(|ev| ev.event_type() == EventType::Delete)
                    {
                        break;
                    }
                }
                // Stream broken: look again (a failing cluster then surfaces from the get).
                Ok(None) | Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    break;
                }
            }
        }
    }
}

/// Keeps the lease alive every TTL/3 and moves the deadline on each confirmed renewal. When
/// the deadline passes without one, or the server says the lease is gone, the lock is lost.
async fn keep_alive(inner: Arc<Inner>, lease_id: i64, state: Arc<LossState>) {
    let ttl = inner.ttl();
    let interval = (ttl / 3).max(Duration::from_millis(100));
    let retry = interval.min(Duration::from_millis(300));
    let mut stream = None;
    let mut last_error = String::new();
    loop {
        if state.check().is_some() {
            return;
        }
        let sent_at = boottime();
        let attempt = async {
            if stream.is_none() {
                let mut client = inner.client.clone();
                stream = Some(client.lease_keep_alive(lease_id).await?);
            }
            match stream.as_mut() {
                Some((keeper, responses)) => {
                    keeper.keep_alive().await?;
                    responses.message().await
                }
                None => Ok(None),
            }
        };
        let outcome = tokio::time::timeout(interval, attempt).await;
        let next = match outcome {
            Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                state.extend_until(sent_at + Duration::from_secs(resp.ttl().unsigned_abs()));
                last_error.clear();
                state.set_keepalive_error(None);
                sent_at + interval
            }
            Ok(Ok(Some(_))) => {
                state.mark_lost(LossReason::LeaseExpired);
                return;
            }
            Ok(Ok(None)) => {
                stream = None;
                last_error = "keepalive stream closed".into();
                sent_at + retry
            }
            Ok(Err(e)) => {
                stream = None;
                last_error = e.to_string();
                sent_at + retry
            }
            Err(_) => {
                stream = None;
                last_error = format!("no keepalive answer within {interval:?}");
                sent_at + retry
            }
        };
        if !last_error.is_empty() {
            state.set_keepalive_error(Some(last_error.clone()));
        }
        let valid_until = state.valid_until();
        sleep_until_boottime(Some(next.min(valid_until))).await;
        if boottime() >= state.valid_until() {
            state.mark_lost(if last_error.is_empty() {
                LossReason::LeaseExpired
            } else {
                LossReason::KeepAliveFailed(last_error)
            });
            return;
        }
    }
}

/// Watches our key; its deletion (by anyone, or by the server when the lease expired) means the
/// lock is lost. Reconnects after stream errors from where it left off.
async fn watch_key(inner: Arc<Inner>, key: String, create_rev: i64, state: Arc<LossState>) {
    let mut next_rev = create_rev + 1;
    loop {
        if state.check().is_some() {
            return;
        }
        let watched = inner
            .call("watch lock key", |mut c| {
                let key = key.clone();
                async move {
                    c.watch(key, Some(WatchOptions::new().with_start_revision(next_rev)))
                        .await
                }
            })
            .await;
        let mut stream = match watched {
            Ok(stream) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(msg)) => {
                    if msg.canceled() || msg.compact_revision() > 0 {
                        // History gone: ask for the key itself.
                        let got = inner
                            .call("get lock key", |mut c| {
                                let key = key.clone();
                                async move { c.get(key, None).await }
                            })
                            .await;
                        match got {
                            Ok(resp) => {
                                if resp
                                    .kvs()
                                    .first()
                                    .is_some_and(|kv| kv.create_revision() == create_rev)
                                {
                                    next_rev = resp.header().map_or(next_rev, |h| h.revision() + 1);
                                } else {
                                    state.mark_lost(LossReason::KeyDeleted);
                                    return;
                                }
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                        }
                        break;
                    }
                    for ev in msg.events() {
                        if ev.event_type() == EventType::Delete {
                            state.mark_lost(LossReason::KeyDeleted);
                            return;
                        }
                        if let Some(kv) = ev.kv() {
                            next_rev = next_rev.max(kv.mod_revision() + 1);
                        }
                    }
                }
                Ok(None) | Err(_) => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    break;
                }
            }
        }
    }
}

impl EtcdGuard {
    /// The fencing token: our key's create revision. Every later holder's is larger; pass it to
    /// the systems you write to so they can refuse an older holder.
    pub fn fencing_token(&self) -> i64 {
        self.revision
    }

    /// Fires when the lock is lost (lease expired, keepalive failed, key deleted).
    pub fn lost(&self) -> LostSignal {
        LostSignal::from_state(self.state.clone())
    }

    /// Our holder record (the key's value).
    pub fn holder(&self) -> &LockHolder {
        &self.holder
    }

    /// Our lease id.
    pub fn lease_id(&self) -> i64 {
        self.lease_id
    }

    /// Our lock key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Releases now (revokes the lease, which deletes the key), reporting errors.
    pub fn release(mut self) -> Result<(), LockError> {
        self.stop_tasks();
        let inner = self.inner.clone();
        let lease_id = self.lease_id;
        self.lease_id = 0;
        EtcdLock {
            inner: inner.clone(),
            runner: self.runner.clone(),
        }
        .run(async move { revoke(&inner, lease_id).await })
    }

    fn stop_tasks(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for EtcdGuard {
    fn drop(&mut self) {
        self.stop_tasks();
        if self.lease_id == 0 {
            return;
        }
        let inner = self.inner.clone();
        let lease_id = self.lease_id;
        let Some(rt) = &self.runner.rt else { return };
        if EtcdLock::in_async_context() {
            // Cannot block here: revoke in the background (the TTL is the backstop).
            rt.spawn(async move {
                let _ = revoke(&inner, lease_id).await;
            });
        } else {
            let _ = rt.block_on(revoke(&inner, lease_id));
        }
    }
}

impl LockBackend for EtcdLock {
    fn try_acquire(&self) -> Result<Box<dyn HeldLock>, LockError> {
        EtcdLock::try_acquire(self).map(|g| Box::new(g) as Box<dyn HeldLock>)
    }
    fn acquire(&self) -> Result<Box<dyn HeldLock>, LockError> {
        EtcdLock::acquire(self).map(|g| Box::new(g) as Box<dyn HeldLock>)
    }
    fn acquire_timeout(&self, timeout: Duration) -> Result<Box<dyn HeldLock>, LockError> {
        EtcdLock::acquire_timeout(self, timeout).map(|g| Box::new(g) as Box<dyn HeldLock>)
    }
    fn holder(&self) -> Result<Option<LockHolder>, LockError> {
        EtcdLock::holder(self)
    }
    fn describe(&self) -> String {
        format!(
            "etcd lock {:?} at {}",
            self.inner.name, self.inner.endpoints_text
        )
    }
}

impl HeldLock for EtcdGuard {
    fn holder(&self) -> &LockHolder {
        EtcdGuard::holder(self)
    }
    fn fencing_token(&self) -> Option<i64> {
        Some(self.revision)
    }
    fn lost(&self) -> LostSignal {
        EtcdGuard::lost(self)
    }
    fn release(self: Box<Self>) -> Result<(), LockError> {
        EtcdGuard::release(*self)
    }
}
