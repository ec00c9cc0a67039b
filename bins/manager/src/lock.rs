//! `manager lock status`: who holds the singleton lock.
use std::process::ExitCode;

use clap::Subcommand;

use crate::exit::{self, fail};
use crate::{Globals, LockBackend};

/// Arguments of `manager lock`.
#[derive(Debug, clap::Args)]
pub struct LockArgs {
    #[command(subcommand)]
    command: LockCommand,
}

#[derive(Debug, Subcommand)]
enum LockCommand {
    /// Who holds the lock (exit 0 either way; `--json` for data).
    Status,
}

/// Runs `manager lock …`.
pub fn run(globals: &Globals, args: LockArgs) -> ExitCode {
    match args.command {
        LockCommand::Status => status(globals),
    }
}

fn status(globals: &Globals) -> ExitCode {
    let (backend, place, holder) = match globals.lock_backend {
        LockBackend::Local => {
            let lock = crate::singleton::local_lock(globals);
            let holder = lock.holder();
            ("local", lock.path().display().to_string(), holder)
        }
        LockBackend::Etcd => {
            let lock = match crate::singleton::etcd_lock(globals) {
                Ok(lock) => lock,
                Err(code) => return code,
            };
            let holder = lock.holder();
            ("etcd", format!("etcd:{}", lock.prefix()), holder)
        }
    };
    let holder = match holder {
        Ok(holder) => holder,
        Err(err) => return fail(exit::ERROR, err),
    };
    if globals.json {
        let value = match &holder {
            Some(holder) => serde_json::json!({
                "backend": backend,
                "path": place,
                "held": true,
                "holder": {
                    "pid": holder.pid,
                    "start_time": holder.start_time,
                    "boot_id": holder.boot_id,
                    "host": holder.host,
                    "uid": holder.uid,
                    "argv0": holder.argv0,
                    "since_unix": holder.since_unix,
                    "verification": format!("{:?}", holder.verification),
                },
            }),
            None => serde_json::json!({ "backend": backend, "path": place, "held": false }),
        };
        println!("{value}");
    } else {
        match &holder {
            Some(holder) => println!("held by {holder} ({place})"),
            None => println!("free ({place})"),
        }
    }
    ExitCode::SUCCESS
}
