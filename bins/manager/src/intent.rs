//! `manager intent`: write intents for the host reactor (crate `intent-protocol`).
//!
//! `manager intent send --dir DIR INTENT_ID [--payload JSON]` writes one `*.intent.json` file
//! atomically (hidden temp file in DIR, fsync, rename, fsync DIR) with a fresh 128-bit nonce.
//! Exit codes: 0 written; 1 the directory cannot be written; 2 the id or payload is invalid
//! (outside the grammar, not a JSON object, or wrong for a built-in intent), nothing written.
use std::path::PathBuf;
use std::process::ExitCode;

use intent_protocol::{IntentWriter, WriteError};

/// Arguments of `manager intent`.
#[derive(Debug, clap::Args)]
pub struct IntentArgs {
    #[command(subcommand)]
    command: IntentCommand,
}

#[derive(Debug, clap::Subcommand)]
enum IntentCommand {
    /// Write one intent file into the intent directory shared with the host reactor.
    ///
    /// Built-in intents (INTENT_RESTART_UNIT {unit}, INTENT_SWITCH_TARGET {target},
    /// INTENT_DAEMON_RELOAD {}, INTENT_RESTART_VESSEL {}, INTENT_SWAP_COVEN {target_coven},
    /// INTENT_RELOAD_RUNES {}) have their payload checked here (keys, types, unit-name
    /// grammar); the host's allow-lists are checked by the reactor. Prints the file name
    /// (`--json`: {"file", "path", "intent_id", "nonce"}).
    Send {
        /// The intent directory (the reactor's `intent_dir`, as seen from here).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The intent id, INTENT_[A-Z0-9_]+.
        #[arg(value_name = "INTENT_ID")]
        intent_id: String,
        /// The payload, a JSON object.
        #[arg(long, value_name = "JSON", default_value = "{}")]
        payload: String,
        /// Refuse files larger than this (match the reactor's `max_intent_bytes`).
        #[arg(long, value_name = "BYTES", default_value_t = intent_protocol::DEFAULT_MAX_INTENT_BYTES)]
        max_bytes: usize,
    },
}

/// Runs `manager intent`.
pub fn run(globals: &crate::Globals, args: IntentArgs) -> ExitCode {
    match args.command {
        IntentCommand::Send {
            dir,
            intent_id,
            payload,
            max_bytes,
        } => send(globals.json, &dir, &intent_id, &payload, max_bytes),
    }
}

fn send(
    json: bool,
    dir: &std::path::Path,
    intent_id: &str,
    payload: &str,
    max_bytes: usize,
) -> ExitCode {
    use crate::exit::{ERROR, USAGE, fail};
    if let Err(e) = intent_protocol::check_builtin_payload_json(intent_id, payload) {
        return fail(USAGE, format!("intent send: {e}"));
    }
    let writer = match IntentWriter::open(dir) {
        Ok(w) => w.with_max_bytes(max_bytes),
        Err(e) => return fail(ERROR, format!("intent send: {e}")),
    };
    let sent = match writer.send_json(intent_id, payload) {
        Ok(sent) => sent,
        Err(e @ (WriteError::Name(_) | WriteError::Invalid(_) | WriteError::Serialize(_))) => {
            return fail(USAGE, format!("intent send: {e}"));
        }
        Err(e) => return fail(ERROR, format!("intent send: {e}")),
    };
    let path = dir.join(&sent.file_name);
    if json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            file: &'a str,
            path: String,
            intent_id: &'a str,
            nonce: &'a str,
        }
        let out = Out {
            file: &sent.file_name,
            path: path.display().to_string(),
            intent_id: sent.intent_id.as_str(),
            nonce: sent.nonce.as_str(),
        };
        match serde_json::to_string(&out) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(ERROR, format!("intent send: {e}")),
        }
    } else {
        println!("{}", sent.file_name);
    }
    ExitCode::SUCCESS
}
