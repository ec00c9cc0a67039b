//! The built-in intents (systemd actions and the LychD-compatible set) and the systemctl runner.
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::name::UnitName;
use crate::registry::{ActionReport, ActionStatus, Intent, Rejection};

/// How long one systemctl call may take before it is killed.
pub const DEFAULT_SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(120);

/// A program path that is not absolute (it would be looked up in `PATH`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} is not an absolute path", .0.display())]
pub struct NotAbsolute(pub PathBuf);

/// Runs systemctl by absolute path with a fixed argv: no shell, a cleared environment, stdin,
/// stdout and stderr on `/dev/null`, its own process group, and a timeout (then SIGKILL).
#[derive(Debug, Clone)]
pub struct Systemctl {
    path: PathBuf,
    user_mode: bool,
    timeout: Duration,
}

impl Systemctl {
    /// `path` must be absolute (no `PATH` lookup ever happens). `user_mode` adds `--user`.
    pub fn new(path: impl Into<PathBuf>, user_mode: bool) -> Result<Self, NotAbsolute> {
        let path = path.into();
        if !path.is_absolute() {
            return Err(NotAbsolute(path));
        }
        Ok(Self {
            path,
            user_mode,
            timeout: DEFAULT_SYSTEMCTL_TIMEOUT,
        })
    }

    /// Sets the per-call timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The program path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The arguments (after the program) for `verb` on `unit`: `[--user] VERB -- UNIT`, or
    /// `[--user] VERB` without a unit.
    pub fn args(&self, verb: &str, unit: Option<&UnitName>) -> Vec<String> {
        let mut args = Vec::with_capacity(4);
        if self.user_mode {
            args.push("--user".to_owned());
        }
        args.push(verb.to_owned());
        if let Some(unit) = unit {
            args.push("--".to_owned());
            args.push(unit.as_str().to_owned());
        }
        args
    }

    /// Runs one call and reports its argv (program first) and how it ended.
    pub fn run(&self, verb: &str, unit: Option<&UnitName>) -> (Vec<String>, ActionStatus) {
        let args = self.args(verb, unit);
        let mut argv = vec![self.path.display().to_string()];
        argv.extend(args.iter().cloned());
        let mut cmd = Command::new(&self.path);
        cmd.args(&args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if self.user_mode {
            // `systemctl --user` finds the user manager through XDG_RUNTIME_DIR; it is derived
            // from our own uid, never from anything a writer controls.
            let uid = rustix::process::geteuid().as_raw();
            cmd.env("XDG_RUNTIME_DIR", format!("/run/user/{uid}"));
        }
        let status = match cmd.spawn() {
            Ok(child) => wait_with_timeout(child, self.timeout),
            Err(e) => ActionStatus::SpawnFailed(e.to_string()),
        };
        (argv, status)
    }
}

fn wait_with_timeout(mut child: std::process::Child, timeout: Duration) -> ActionStatus {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};
    let status_of = |s: std::process::ExitStatus| match (s.code(), s.signal()) {
        (Some(code), _) => ActionStatus::Exited(code),
        (None, Some(sig)) => ActionStatus::Signaled(sig),
        (None, None) => ActionStatus::Exited(-1),
    };
    // A pidfd cannot be confused with a recycled pid; without one, wait without a timeout.
    let Ok(pidfd) = pidfd_open(Pid::from_child(&child), PidfdFlags::empty()) else {
        return child
            .wait()
            .map_or_else(|e| ActionStatus::SpawnFailed(e.to_string()), status_of);
    };
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ts = Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => {
                let _ = pidfd_send_signal(&pidfd, Signal::KILL);
                let _ = child.wait();
                return ActionStatus::TimedOut;
            }
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
    }
    child
        .wait()
        .map_or_else(|e| ActionStatus::SpawnFailed(e.to_string()), status_of)
}

/// The host of the built-in intents: a systemctl runner and the allow-lists that narrow it.
#[derive(Debug, Clone)]
pub struct SystemdHost {
    /// How systemctl is run.
    pub systemctl: Systemctl,
    /// The units `INTENT_RESTART_UNIT` may name.
    pub allowed_units: Vec<UnitName>,
    /// One switch group: `INTENT_SWITCH_TARGET`/`INTENT_SWAP_COVEN` stop the others, start one.
    pub switch_targets: Vec<UnitName>,
    /// What `INTENT_RESTART_VESSEL` restarts (refused when unset).
    pub vessel_unit: Option<UnitName>,
}

impl SystemdHost {
    fn restart(&self, unit: &UnitName) -> ActionReport {
        ActionReport {
            commands: vec![self.systemctl.run("restart", Some(unit))],
        }
    }

    fn switch(&self, target: &UnitName) -> ActionReport {
        let mut report = ActionReport::default();
        for other in self.switch_targets.iter().filter(|t| *t != target) {
            let step = self.systemctl.run("stop", Some(other));
            let ok = step.1 == ActionStatus::Exited(0);
            report.commands.push(step);
            if !ok {
                return report;
            }
        }
        report
            .commands
            .push(self.systemctl.run("start", Some(target)));
        report
    }

    fn daemon_reload(&self) -> ActionReport {
        ActionReport {
            commands: vec![self.systemctl.run("daemon-reload", None)],
        }
    }

    fn allowed_unit(&self, id: &'static str, unit: &str) -> Result<UnitName, Rejection> {
        let unit = UnitName::new(unit).map_err(|source| Rejection::BadName {
            intent_id: id,
            source,
        })?;
        if self.allowed_units.contains(&unit) {
            Ok(unit)
        } else {
            Err(Rejection::NotAllowed {
                intent_id: id,
                what: "unit",
                value: unit.as_str().to_owned(),
            })
        }
    }

    fn allowed_target(&self, id: &'static str, target: &str) -> Result<UnitName, Rejection> {
        let target = UnitName::new(target).map_err(|source| Rejection::BadName {
            intent_id: id,
            source,
        })?;
        if target.unit_type() == "target" && self.switch_targets.contains(&target) {
            Ok(target)
        } else {
            Err(Rejection::NotAllowed {
                intent_id: id,
                what: "target",
                value: target.as_str().to_owned(),
            })
        }
    }

    fn vessel(&self, id: &'static str) -> Result<&UnitName, Rejection> {
        self.vessel_unit.as_ref().ok_or(Rejection::NotConfigured {
            intent_id: id,
            what: "vessel_unit",
        })
    }
}

/// The payload of `INTENT_RESTART_UNIT`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitPayload {
    /// The unit to restart (must be allow-listed).
    pub unit: String,
}

/// The payload of `INTENT_SWITCH_TARGET`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetPayload {
    /// The target to switch to (must be in the switch group).
    pub target: String,
}

/// The payload of `INTENT_SWAP_COVEN`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CovenPayload {
    /// The target to switch to (must be in the switch group).
    pub target_coven: String,
}

/// An empty payload `{}`: any key is refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyPayload {}

const EMPTY_SCHEMA: &str = r#"{ "type": "object", "additionalProperties": false }"#;

macro_rules! one_key_schema {
    ($key:literal, $pattern:expr) => {
        concat!(
            r#"{ "type": "object", "additionalProperties": false, "required": [""#,
            $key,
            r#""], "properties": { ""#,
            $key,
            r#"": { "type": "string", "maxLength": 255, "pattern": "#,
            $pattern,
            " } } }"
        )
    };
}

macro_rules! unit_pattern {
    () => {
        r#""^[A-Za-z0-9:_.\\\\][A-Za-z0-9:_.\\\\-]*(@[A-Za-z0-9:_.\\\\@-]+)?\\.(service|socket|target|device|mount|automount|swap|timer|path|slice|scope)$""#
    };
}
macro_rules! target_pattern {
    () => {
        r#""^[A-Za-z0-9:_.\\\\][A-Za-z0-9:_.\\\\-]*(@[A-Za-z0-9:_.\\\\@-]+)?\\.target$""#
    };
}

/// `INTENT_RESTART_UNIT {unit}`: `systemctl [--user] restart -- UNIT` for an allow-listed unit.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestartUnit;

impl Intent for RestartUnit {
    type Host = SystemdHost;
    type Payload = UnitPayload;
    const ID: &'static str = "INTENT_RESTART_UNIT";
    const PAYLOAD_SCHEMA: &'static str = one_key_schema!("unit", unit_pattern!());

    fn validate(&self, p: &UnitPayload, host: &SystemdHost) -> Result<(), Rejection> {
        host.allowed_unit(Self::ID, &p.unit).map(drop)
    }
    fn coalesce_key(&self, p: &UnitPayload, _: &SystemdHost) -> Option<String> {
        Some(format!("restart {}", p.unit))
    }
    fn describe(&self, p: &UnitPayload, _: &SystemdHost) -> String {
        format!("restart {}", p.unit)
    }
    fn execute(&self, p: &UnitPayload, host: &SystemdHost) -> ActionReport {
        match host.allowed_unit(Self::ID, &p.unit) {
            Ok(unit) => host.restart(&unit),
            Err(e) => refused(e),
        }
    }
}

/// `INTENT_SWITCH_TARGET {target}`: stop the other targets of the switch group, start this one.
#[derive(Debug, Clone, Copy, Default)]
pub struct SwitchTarget;

impl Intent for SwitchTarget {
    type Host = SystemdHost;
    type Payload = TargetPayload;
    const ID: &'static str = "INTENT_SWITCH_TARGET";
    const PAYLOAD_SCHEMA: &'static str = one_key_schema!("target", target_pattern!());

    fn validate(&self, p: &TargetPayload, host: &SystemdHost) -> Result<(), Rejection> {
        host.allowed_target(Self::ID, &p.target).map(drop)
    }
    fn describe(&self, p: &TargetPayload, _: &SystemdHost) -> String {
        format!("switch to {}", p.target)
    }
    fn execute(&self, p: &TargetPayload, host: &SystemdHost) -> ActionReport {
        match host.allowed_target(Self::ID, &p.target) {
            Ok(target) => host.switch(&target),
            Err(e) => refused(e),
        }
    }
}

/// `INTENT_DAEMON_RELOAD {}`: `systemctl [--user] daemon-reload`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DaemonReload;

impl Intent for DaemonReload {
    type Host = SystemdHost;
    type Payload = EmptyPayload;
    const ID: &'static str = "INTENT_DAEMON_RELOAD";
    const PAYLOAD_SCHEMA: &'static str = EMPTY_SCHEMA;

    fn validate(&self, _: &EmptyPayload, _: &SystemdHost) -> Result<(), Rejection> {
        Ok(())
    }
    fn coalesce_key(&self, _: &EmptyPayload, _: &SystemdHost) -> Option<String> {
        Some("daemon-reload".to_owned())
    }
    fn describe(&self, _: &EmptyPayload, _: &SystemdHost) -> String {
        "daemon-reload".to_owned()
    }
    fn execute(&self, _: &EmptyPayload, host: &SystemdHost) -> ActionReport {
        host.daemon_reload()
    }
}

/// LychD `INTENT_RESTART_VESSEL {}`: restart the configured vessel unit.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestartVessel;

impl Intent for RestartVessel {
    type Host = SystemdHost;
    type Payload = EmptyPayload;
    const ID: &'static str = "INTENT_RESTART_VESSEL";
    const PAYLOAD_SCHEMA: &'static str = EMPTY_SCHEMA;

    fn validate(&self, _: &EmptyPayload, host: &SystemdHost) -> Result<(), Rejection> {
        host.vessel(Self::ID).map(drop)
    }
    fn coalesce_key(&self, _: &EmptyPayload, host: &SystemdHost) -> Option<String> {
        host.vessel_unit.as_ref().map(|u| format!("restart {u}"))
    }
    fn describe(&self, _: &EmptyPayload, host: &SystemdHost) -> String {
        host.vessel_unit.as_ref().map_or_else(
            || "restart (no vessel_unit)".to_owned(),
            |u| format!("restart {u}"),
        )
    }
    fn execute(&self, _: &EmptyPayload, host: &SystemdHost) -> ActionReport {
        match host.vessel(Self::ID) {
            Ok(unit) => host.restart(unit),
            Err(e) => refused(e),
        }
    }
}

/// LychD `INTENT_SWAP_COVEN {target_coven}`: as `INTENT_SWITCH_TARGET`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SwapCoven;

impl Intent for SwapCoven {
    type Host = SystemdHost;
    type Payload = CovenPayload;
    const ID: &'static str = "INTENT_SWAP_COVEN";
    const PAYLOAD_SCHEMA: &'static str = one_key_schema!("target_coven", target_pattern!());

    fn validate(&self, p: &CovenPayload, host: &SystemdHost) -> Result<(), Rejection> {
        host.allowed_target(Self::ID, &p.target_coven).map(drop)
    }
    fn describe(&self, p: &CovenPayload, _: &SystemdHost) -> String {
        format!("switch to {}", p.target_coven)
    }
    fn execute(&self, p: &CovenPayload, host: &SystemdHost) -> ActionReport {
        match host.allowed_target(Self::ID, &p.target_coven) {
            Ok(target) => host.switch(&target),
            Err(e) => refused(e),
        }
    }
}

/// LychD `INTENT_RELOAD_RUNES {}`: `systemctl [--user] daemon-reload`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReloadRunes;

impl Intent for ReloadRunes {
    type Host = SystemdHost;
    type Payload = EmptyPayload;
    const ID: &'static str = "INTENT_RELOAD_RUNES";
    const PAYLOAD_SCHEMA: &'static str = EMPTY_SCHEMA;

    fn validate(&self, _: &EmptyPayload, _: &SystemdHost) -> Result<(), Rejection> {
        Ok(())
    }
    fn coalesce_key(&self, _: &EmptyPayload, _: &SystemdHost) -> Option<String> {
        Some("daemon-reload".to_owned())
    }
    fn describe(&self, _: &EmptyPayload, _: &SystemdHost) -> String {
        "daemon-reload".to_owned()
    }
    fn execute(&self, _: &EmptyPayload, host: &SystemdHost) -> ActionReport {
        host.daemon_reload()
    }
}

/// Validation ran before; if the host changed in between, execute nothing and say so.
fn refused(e: Rejection) -> ActionReport {
    ActionReport {
        commands: vec![(Vec::new(), ActionStatus::SpawnFailed(e.to_string()))],
    }
}

/// The built-in registry's type: the systemd intents and the LychD-compatible set.
pub type Builtin = (
    RestartUnit,
    SwitchTarget,
    DaemonReload,
    RestartVessel,
    SwapCoven,
    ReloadRunes,
);

/// The built-in registry.
pub const BUILTIN: Builtin = (
    RestartUnit,
    SwitchTarget,
    DaemonReload,
    RestartVessel,
    SwapCoven,
    ReloadRunes,
);

/// Writer-side check of a built-in intent's payload: its keys, types and name grammar (the
/// host's allow-lists are not known here). `Ok(false)` for an id that is not built in.
pub fn check_builtin_payload(intent_id: &str, payload: &RawValue) -> Result<bool, Rejection> {
    fn parse<T: serde::de::DeserializeOwned>(
        id: &'static str,
        raw: &RawValue,
    ) -> Result<T, Rejection> {
        serde_json::from_str(raw.get()).map_err(|e| Rejection::Payload {
            intent_id: id,
            message: e.to_string(),
        })
    }
    fn name(id: &'static str, value: &str) -> Result<(), Rejection> {
        UnitName::new(value)
            .map(drop)
            .map_err(|source| Rejection::BadName {
                intent_id: id,
                source,
            })
    }
    match intent_id {
        RestartUnit::ID => name(
            RestartUnit::ID,
            &parse::<UnitPayload>(RestartUnit::ID, payload)?.unit,
        )?,
        SwitchTarget::ID => name(
            SwitchTarget::ID,
            &parse::<TargetPayload>(SwitchTarget::ID, payload)?.target,
        )?,
        SwapCoven::ID => name(
            SwapCoven::ID,
            &parse::<CovenPayload>(SwapCoven::ID, payload)?.target_coven,
        )?,
        DaemonReload::ID => parse::<EmptyPayload>(DaemonReload::ID, payload).map(drop)?,
        RestartVessel::ID => parse::<EmptyPayload>(RestartVessel::ID, payload).map(drop)?,
        ReloadRunes::ID => parse::<EmptyPayload>(ReloadRunes::ID, payload).map(drop)?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// [`check_builtin_payload`] for a payload given as JSON text (which must be an object).
pub fn check_builtin_payload_json(intent_id: &str, payload_json: &str) -> Result<bool, Rejection> {
    let raw: Box<RawValue> =
        serde_json::from_str(payload_json).map_err(|e| crate::parse::ParseError::Json {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
    if !raw.get().starts_with('{') {
        return Err(crate::parse::ParseError::PayloadNotObject.into());
    }
    check_builtin_payload(intent_id, &raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::IntentFile;
    use crate::registry::{Registry, json_schema};

    fn host() -> SystemdHost {
        SystemdHost {
            systemctl: Systemctl::new("/bin/true", true).expect("absolute"),
            allowed_units: vec![UnitName::new("web.service").expect("valid")],
            switch_targets: ["vision.target", "voice.target"]
                .iter()
                .map(|t| UnitName::new(t).expect("valid"))
                .collect(),
            vessel_unit: None,
        }
    }

    fn prepare(json: &str) -> Result<String, Rejection> {
        let file = IntentFile::parse(json.as_bytes())?;
        BUILTIN
            .prepare(&file, &host())
            .map(|p| p.description().to_owned())
    }

    fn env(id: &str, payload: &str) -> String {
        format!(r#"{{"intent_id":"{id}","nonce":"0123456789abcdef","payload":{payload}}}"#)
    }

    #[test]
    fn built_ins_validate_against_the_host() {
        assert_eq!(
            prepare(&env("INTENT_RESTART_UNIT", r#"{"unit":"web.service"}"#))
                .ok()
                .as_deref(),
            Some("restart web.service")
        );
        let code = |id, p| prepare(&env(id, p)).map_err(|e| e.code()).err();
        assert_eq!(
            code("INTENT_RESTART_UNIT", r#"{"unit":"db.service"}"#),
            Some("not_allowed")
        );
        assert_eq!(
            code("INTENT_RESTART_UNIT", r#"{"unit":"web.service;reboot"}"#),
            Some("bad_name")
        );
        assert_eq!(
            code("INTENT_RESTART_UNIT", r#"{"unit":"-H.service"}"#),
            Some("bad_name")
        );
        assert_eq!(
            code(
                "INTENT_RESTART_UNIT",
                r#"{"unit":"web.service","unit":"web.service"}"#
            ),
            Some("duplicate_key")
        );
        assert_eq!(
            code(
                "INTENT_RESTART_UNIT",
                r#"{"unit":"web.service","cmd":"sh"}"#
            ),
            Some("unknown_key")
        );
        assert_eq!(
            code("INTENT_RESTART_UNIT", r#"{"unit":["web.service"]}"#),
            Some("bad_payload")
        );
        assert_eq!(code("INTENT_RESTART_UNIT", r#"{}"#), Some("bad_payload"));
        assert_eq!(
            code("INTENT_DAEMON_RELOAD", r#"{"x":1}"#),
            Some("unknown_key")
        );
        assert_eq!(
            code("INTENT_SWITCH_TARGET", r#"{"target":"web.service"}"#),
            Some("not_allowed")
        );
        assert_eq!(
            code("INTENT_SWAP_COVEN", r#"{"target_coven":"other.target"}"#),
            Some("not_allowed")
        );
        assert_eq!(
            code("INTENT_RESTART_VESSEL", r#"{}"#),
            Some("not_configured")
        );
        assert_eq!(code("INTENT_NOPE", r#"{}"#), Some("unknown_intent"));
        assert_eq!(
            prepare(&env(
                "INTENT_SWAP_COVEN",
                r#"{"target_coven":"voice.target"}"#
            ))
            .ok()
            .as_deref(),
            Some("switch to voice.target")
        );
    }

    #[test]
    fn argv_is_fixed() {
        let s = Systemctl::new("/usr/bin/systemctl", true).expect("absolute");
        let unit = UnitName::new("web.service").expect("valid");
        assert_eq!(
            s.args("restart", Some(&unit)),
            ["--user", "restart", "--", "web.service"]
        );
        let s = Systemctl::new("/usr/bin/systemctl", false).expect("absolute");
        assert_eq!(s.args("daemon-reload", None), ["daemon-reload"]);
        assert!(Systemctl::new("systemctl", false).is_err());
    }

    #[test]
    fn timeout_kills_a_hung_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("hang");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n").expect("write");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let s = Systemctl::new(&script, false)
            .expect("absolute")
            .with_timeout(Duration::from_millis(200));
        let start = std::time::Instant::now();
        let (_, status) = s.run("daemon-reload", None);
        assert_eq!(status, ActionStatus::TimedOut);
        assert!(start.elapsed() < Duration::from_secs(5));
        let s = Systemctl::new("/bin/false", false).expect("absolute");
        assert_eq!(s.run("daemon-reload", None).1, ActionStatus::Exited(1));
        let s = Systemctl::new("/nonexistent/systemctl", false).expect("absolute");
        assert!(matches!(
            s.run("daemon-reload", None).1,
            ActionStatus::SpawnFailed(_)
        ));
    }

    #[test]
    fn schema_is_json_and_names_every_intent() {
        let schema = json_schema(&BUILTIN);
        serde_json::from_str::<serde::de::IgnoredAny>(&schema).expect("valid JSON");
        for id in BUILTIN.ids() {
            assert!(schema.contains(id), "{id}");
        }
        // In the JSON text a regex backslash is doubled: `[...\\\\]` is "a literal backslash".
        assert!(
            schema.contains(r"[A-Za-z0-9:_.\\\\][A-Za-z0-9:_.\\\\-]*"),
            "{schema}"
        );
    }

    #[test]
    fn writer_side_payload_check() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).expect("json");
        assert!(matches!(
            check_builtin_payload("INTENT_RESTART_UNIT", &raw(r#"{"unit":"a.service"}"#)),
            Ok(true)
        ));
        assert!(check_builtin_payload("INTENT_RESTART_UNIT", &raw(r#"{"unit":"a b"}"#)).is_err());
        assert!(matches!(
            check_builtin_payload("INTENT_MINE", &raw("{}")),
            Ok(false)
        ));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn only_allow_listed_grammatical_units_are_ever_prepared(unit in "\\PC{0,40}", key in "[a-z_]{1,8}") {
                let unit_json = serde_json::to_string(&unit).expect("json string");
                for payload in [format!(r#"{{"unit":{unit_json}}}"#), format!(r#"{{"{key}":{unit_json}}}"#)] {
                    if let Ok(action) = prepare(&env("INTENT_RESTART_UNIT", &payload)) {
                        prop_assert_eq!(action, "restart web.service");
                    }
                }
            }

            #[test]
            fn arbitrary_payloads_never_panic(payload in r#"\{[\[\]{}",:a-z_0-9. \\-]{0,60}\}"#, id in prop::sample::select(BUILTIN.ids())) {
                let _ = prepare(&env(id, &payload));
            }
        }
    }
}
