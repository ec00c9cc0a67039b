//! A one-way, file-based, strictly typed JSON intent channel from an unprivileged writer (a
//! container) to a privileged reactor (the host).
//!
//! The writer drops one file per intent into a shared directory:
//!
//! ```json
//! {"intent_id": "INTENT_RESTART_UNIT", "nonce": "9f86d081884c7d65…", "payload": {"unit": "web.service"}}
//! ```
//!
//! The reactor wakes on inotify, claims the file into a private directory, checks it (regular
//! file, one link, expected owner, bounded size), parses it in two strict phases (the envelope,
//! then the payload into the intent's own Rust type), validates it against the host's policy,
//! commits its nonce, audits, and runs the intent's host function. Nothing in a file can name a
//! command, a path or an argument that the host code did not allow.
//!
//! - [`IntentFile`]: the envelope parser (unknown and duplicate keys refused, size and depth
//!   bounded, no `serde_json::Value`, maps or `flatten` anywhere).
//! - [`Intent`] and [`Registry`]: intents as Rust types, a registry fixed at compile time.
//! - [`IntentWriter`]: the atomic writer (hidden temp file, fsync, rename, fsync dir).
//! - [`Reactor`]: the engine, with [`NonceLedger`] (replay) and [`AuditLog`].
//! - [`BUILTIN`]: the systemd intents ([`RestartUnit`], [`SwitchTarget`], [`DaemonReload`]) and
//!   the LychD-compatible set ([`RestartVessel`], [`SwapCoven`], [`ReloadRunes`]), acting on a
//!   [`SystemdHost`] through [`Systemctl`].
//!
//! # Defining your own registry (the LychD example)
//!
//! An intent is an id, a payload type, a validation and a host function. A registry is a tuple
//! of intents sharing one host type. This one restarts a "vessel" and swaps "covens", recording
//! what it would run instead of running systemctl:
//!
//! ```
//! use std::cell::RefCell;
//! use intent_protocol::{ActionReport, ActionStatus, Intent, IntentWriter, Reactor, ReactorConfig, Rejection};
//!
//! /// What the host functions act on: here a log instead of systemctl.
//! #[derive(Default)]
//! struct Lych { ran: RefCell<Vec<String>>, covens: Vec<&'static str> }
//!
//! struct RestartVessel;
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct NoPayload {}
//!
//! impl Intent for RestartVessel {
//!     type Host = Lych;
//!     type Payload = NoPayload;
//!     const ID: &'static str = "INTENT_RESTART_VESSEL";
//!     const PAYLOAD_SCHEMA: &'static str = r#"{"type":"object","additionalProperties":false}"#;
//!     fn validate(&self, _: &NoPayload, _: &Lych) -> Result<(), Rejection> { Ok(()) }
//!     fn describe(&self, _: &NoPayload, _: &Lych) -> String { "restart vessel".into() }
//!     fn execute(&self, _: &NoPayload, host: &Lych) -> ActionReport {
//!         host.ran.borrow_mut().push("restart vessel.service".into());
//!         ActionReport { commands: vec![(vec!["restart".into()], ActionStatus::Exited(0))] }
//!     }
//! }
//!
//! struct SwapCoven;
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Coven { target_coven: String }
//!
//! impl Intent for SwapCoven {
//!     type Host = Lych;
//!     type Payload = Coven;
//!     const ID: &'static str = "INTENT_SWAP_COVEN";
//!     const PAYLOAD_SCHEMA: &'static str =
//!         r#"{"type":"object","additionalProperties":false,"required":["target_coven"]}"#;
//!     fn validate(&self, p: &Coven, host: &Lych) -> Result<(), Rejection> {
//!         if host.covens.contains(&p.target_coven.as_str()) { return Ok(()) }
//!         Err(Rejection::NotAllowed { intent_id: Self::ID, what: "target", value: p.target_coven.clone() })
//!     }
//!     fn describe(&self, p: &Coven, _: &Lych) -> String { format!("swap to {}", p.target_coven) }
//!     fn execute(&self, p: &Coven, host: &Lych) -> ActionReport {
//!         host.ran.borrow_mut().push(format!("start {}", p.target_coven));
//!         ActionReport { commands: vec![(vec!["start".into()], ActionStatus::Exited(0))] }
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = tempfile::tempdir()?;
//! # let (intents, state) = (tmp.path().join("intents"), tmp.path().join("state"));
//! # std::fs::create_dir(&intents)?; std::fs::create_dir(&state)?;
//! // The container side:
//! let writer = IntentWriter::open(&intents)?;
//! writer.send_json("INTENT_SWAP_COVEN", r#"{"target_coven":"voice.target"}"#)?;
//! writer.send_json("INTENT_SWAP_COVEN", r#"{"target_coven":"evil.target"}"#)?;
//! writer.send_json("INTENT_RESTART_VESSEL", "{}")?;
//!
//! // The host side: a registry is a tuple of intents, fixed at compile time.
//! static LYCHD: (RestartVessel, SwapCoven) = (RestartVessel, SwapCoven);
//! let host = Lych { covens: vec!["vision.target", "voice.target"], ..Lych::default() };
//! let config = ReactorConfig::new(&intents, &state, state.join("audit.jsonl"));
//! let mut reactor = Reactor::open(config, &LYCHD, host)?;
//! let stats = reactor.drain()?; // `run` would keep watching until stopped
//! assert_eq!((stats.executed, stats.rejected), (2, 1));
//! let mut ran = reactor.host().ran.borrow().clone();
//! ran.sort();
//! assert_eq!(ran, ["restart vessel.service", "start voice.target"]);
//! # Ok(()) }
//! ```
//!
//! # Limits
//!
//! Files are at most `max_intent_bytes` (default 64 KiB) and nest at most [`MAX_DEPTH`] levels.
//! The ledger remembers the last [`DEFAULT_LEDGER_CAPACITY`] to twice that many nonces.
//! The reactor handles one batch of up to `batch_max` files at a time; identical pending actions
//! within a batch (same [`Intent::coalesce_key`]) run once. Each intent id has a token-bucket
//! [`RateLimit`]; excess intents are refused and audited, never queued.
#![forbid(unsafe_code)]

mod builtin;
mod ledger;
mod name;
mod parse;
mod reactor;
mod registry;
mod writer;

pub use builtin::{
    BUILTIN, Builtin, CovenPayload, DEFAULT_SYSTEMCTL_TIMEOUT, DaemonReload, EmptyPayload,
    NotAbsolute, ReloadRunes, RestartUnit, RestartVessel, SwapCoven, SwitchTarget, Systemctl,
    SystemdHost, TargetPayload, UnitPayload, check_builtin_payload, check_builtin_payload_json,
};
pub use ledger::{
    AuditCommand, AuditError, AuditLog, AuditRecord, DEFAULT_LEDGER_CAPACITY, LedgerError,
    NonceLedger, rfc3339,
};
pub use name::{
    EntryName, INTENT_FILE_SUFFIX, IntentId, MAX_INTENT_ID_LEN, MAX_NONCE_LEN, MAX_UNIT_NAME_LEN,
    MIN_NONCE_LEN, NameError, Nonce, UNIT_TYPES, UnitName, classify_entry_name,
};
pub use parse::{DEFAULT_MAX_INTENT_BYTES, IntentFile, MAX_DEPTH, ParseError};
pub use reactor::{CLAIM_DIR, RateLimit, Reactor, ReactorConfig, ReactorError, Stats, StopSignal};
pub use registry::{
    ActionReport, ActionStatus, Intent, Prepared, Registry, Rejection, check_registry, json_schema,
    prepare,
};
pub use writer::{IntentWriter, SentIntent, WriteError};

/// The README's examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
