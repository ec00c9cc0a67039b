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
    if globals.lock_backend == LockBackend::Etcd {
        return fail(
            exit::ERROR,
            "--lock-backend etcd: this build of manager has no etcd support",
        );
    }
    let lock = crate::singleton::local_lock(globals);
    let holder = match lock.holder() {
        Ok(holder) => holder,
        Err(err) => return fail(exit::ERROR, err),
    };
    if globals.json {
        let value = match &holder {
            Some(holder) => serde_json::json!({
                "backend": "local",
                "path": lock.path(),
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
            None => serde_json::json!({ "backend": "local", "path": lock.path(), "held": false }),
        };
        println!("{value}");
    } else {
        match &holder {
            Some(holder) => println!("held by {holder} ({})", lock.path().display()),
            None => println!("free ({})", lock.path().display()),
        }
    }
    ExitCode::SUCCESS
}
