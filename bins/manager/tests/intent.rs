//! `manager intent send`: the real binary writes files the reactor's parser accepts.
use std::process::Command;

use intent_protocol::{
    BUILTIN, EntryName, IntentFile, Registry, Systemctl, SystemdHost, UnitName, classify_entry_name,
};

const BIN: &str = env!("CARGO_BIN_EXE_manager");

fn send(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["intent", "send", "--dir"])
        .arg(dir)
        .args(args)
        .output()
        .expect("run manager")
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn send_writes_one_atomic_file_the_reactor_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = send(
        dir.path(),
        &[
            "INTENT_RESTART_UNIT",
            "--payload",
            r#"{"unit":"web.service"}"#,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    assert_eq!(
        entries(dir.path()),
        std::slice::from_ref(&name),
        "exactly the file, no temp left"
    );
    assert_eq!(classify_entry_name(name.as_bytes()), EntryName::Intent);
    let bytes = std::fs::read(dir.path().join(&name)).expect("read");
    let file = IntentFile::parse(&bytes).expect("parses");
    assert_eq!(file.intent_id().as_str(), "INTENT_RESTART_UNIT");
    let host = SystemdHost {
        systemctl: Systemctl::new("/bin/true", false).expect("absolute"),
        allowed_units: vec![UnitName::new("web.service").expect("unit")],
        switch_targets: Vec::new(),
        vessel_unit: None,
    };
    let prepared = BUILTIN
        .prepare(&file, &host)
        .expect("valid for the built-in registry");
    assert_eq!(prepared.description(), "restart web.service");
}

#[test]
fn json_output_and_fresh_nonces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nonce = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        #[derive(serde::Deserialize)]
        struct Out {
            file: String,
            path: String,
            intent_id: String,
            nonce: String,
        }
        let out: Out = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(out.intent_id, "INTENT_DAEMON_RELOAD");
        assert!(out.path.ends_with(&out.file));
        assert_eq!(out.nonce.len(), 32);
        out.nonce
    };
    let run = || {
        Command::new(BIN)
            .args(["--json", "intent", "send", "--dir"])
            .arg(dir.path())
            .arg("INTENT_DAEMON_RELOAD")
            .output()
            .expect("run")
    };
    let a = nonce(run());
    let b = nonce(run());
    assert_ne!(a, b);
    assert_eq!(entries(dir.path()).len(), 2);
}

#[test]
fn invalid_ids_and_payloads_are_usage_errors_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        &["restart"][..],
        &["INTENT_lower"],
        &["INTENT_X", "--payload", "[1]"],
        &["INTENT_X", "--payload", "{"],
        &[
            "INTENT_RESTART_UNIT",
            "--payload",
            r#"{"unit":"web.service; reboot"}"#,
        ],
        &[
            "INTENT_RESTART_UNIT",
            "--payload",
            r#"{"unit":"-x.service"}"#,
        ],
        &[
            "INTENT_RESTART_UNIT",
            "--payload",
            r#"{"unit":"a.service","unit":"b.service"}"#,
        ],
        &["INTENT_DAEMON_RELOAD", "--payload", r#"{"command":"sh"}"#],
        &["INTENT_SWAP_COVEN", "--payload", "{}"],
    ] {
        let out = send(dir.path(), args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("manager: intent send: ") && err.lines().count() == 1,
            "{err}"
        );
    }
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(70_000));
    assert_eq!(
        send(dir.path(), &["INTENT_X", "--payload", &big])
            .status
            .code(),
        Some(2)
    );
    assert!(entries(dir.path()).is_empty());
    // A custom registry's id is fine: the host decides.
    assert!(
        send(dir.path(), &["INTENT_MY_OWN", "--payload", r#"{"k":1}"#])
            .status
            .success()
    );
}

#[test]
fn a_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = send(&dir.path().join("nope"), &["INTENT_DAEMON_RELOAD"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}
