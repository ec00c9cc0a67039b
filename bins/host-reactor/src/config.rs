//! The TOML config: every key of DESIGN.md, none other; each error names the key at fault.
use std::path::{Path, PathBuf};

use intent_protocol::{ReactorConfig, Systemctl, SystemdHost, UnitName};
use serde::{Deserialize, Serialize};

/// The largest config file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// The bounds of `max_intent_bytes`.
const INTENT_BYTES_RANGE: std::ops::RangeInclusive<usize> = 64..=16 << 20;

/// The config file as written.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The watched directory, shared with (writable by) the container.
    pub intent_dir: PathBuf,
    /// The audit log (one JSON object per line).
    pub audit_log: PathBuf,
    /// Nonce ledger and lock.
    pub state_dir: PathBuf,
    /// Only files owned by this uid are read.
    pub writer_uid: Option<u32>,
    /// Files larger than this are refused.
    #[serde(default = "default_max_intent_bytes")]
    pub max_intent_bytes: usize,
    /// The absolute path of systemctl.
    pub systemctl: PathBuf,
    /// Add `--user` to every systemctl call.
    #[serde(default)]
    pub user_mode: bool,
    /// What `INTENT_RESTART_VESSEL` restarts.
    pub vessel_unit: Option<String>,
    /// The allow-lists.
    #[serde(default)]
    pub allow: Allow,
}

/// `[allow]`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// Units `INTENT_RESTART_UNIT` may name.
    #[serde(default)]
    pub units: Vec<String>,
    /// The switch group of `INTENT_SWITCH_TARGET` / `INTENT_SWAP_COVEN`.
    #[serde(default)]
    pub targets: Vec<String>,
}

fn default_max_intent_bytes() -> usize {
    intent_protocol::DEFAULT_MAX_INTENT_BYTES
}

/// A config error: the file and, when known, the key.
#[derive(Debug)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// The key at fault (`allow.units[1]`), when one is.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(key) => write!(
                f,
                "config {}: key `{key}`: {}",
                self.file.display(),
                self.message
            ),
            None => write!(f, "config {}: {}", self.file.display(), self.message),
        }
    }
}

/// The config, checked, as the crate's types.
#[derive(Debug)]
pub struct Loaded {
    /// The file as written.
    pub raw: Config,
    /// The absolute path of the config file.
    pub path: PathBuf,
    /// The systemd host of the built-in intents.
    pub host: SystemdHost,
}

impl Loaded {
    /// The reactor's configuration.
    pub fn reactor_config(&self) -> ReactorConfig {
        let mut cfg = ReactorConfig::new(
            &self.raw.intent_dir,
            &self.raw.state_dir,
            &self.raw.audit_log,
        );
        cfg.writer_uid = self.raw.writer_uid;
        cfg.max_intent_bytes = self.raw.max_intent_bytes;
        cfg
    }
}

/// Reads, parses and checks the config file.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let err = |key: Option<&str>, message: String| ConfigError {
        file: path.to_path_buf(),
        key: key.map(str::to_owned),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(None, e.to_string()))?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(err(None, format!("larger than {MAX_CONFIG_BYTES} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(None, e.to_string()))?;
    let raw: Config = toml::from_str(&text).map_err(|e| {
        // toml names unknown/missing keys in its message; add the dotted path when it has one.
        let message = e.message().to_owned();
        let key = key_in_message(&message);
        err(
            key.as_deref(),
            format!("{message}{}", location(&text, e.span())),
        )
    })?;
    for (key, value) in [
        ("intent_dir", &raw.intent_dir),
        ("audit_log", &raw.audit_log),
        ("state_dir", &raw.state_dir),
        ("systemctl", &raw.systemctl),
    ] {
        if !value.is_absolute() {
            return Err(err(
                Some(key),
                format!("{} is not an absolute path", value.display()),
            ));
        }
        if value
            .as_os_str()
            .as_encoded_bytes()
            .iter()
            .any(|b| b.is_ascii_control())
        {
            return Err(err(Some(key), "contains a control character".to_owned()));
        }
    }
    if raw.audit_log.parent().is_none_or(|p| p == Path::new("/")) {
        return Err(err(
            Some("audit_log"),
            "must be a file inside a directory".to_owned(),
        ));
    }
    if !INTENT_BYTES_RANGE.contains(&raw.max_intent_bytes) {
        return Err(err(
            Some("max_intent_bytes"),
            format!(
                "{} is outside {}..={}",
                raw.max_intent_bytes,
                INTENT_BYTES_RANGE.start(),
                INTENT_BYTES_RANGE.end()
            ),
        ));
    }
    let unit =
        |key: String, value: &str| UnitName::new(value).map_err(|e| err(Some(&key), e.to_string()));
    let allowed_units = raw
        .allow
        .units
        .iter()
        .enumerate()
        .map(|(n, u)| unit(format!("allow.units[{n}]"), u))
        .collect::<Result<Vec<_>, _>>()?;
    let switch_targets = raw
        .allow
        .targets
        .iter()
        .enumerate()
        .map(|(n, t)| {
            let key = format!("allow.targets[{n}]");
            let target = unit(key.clone(), t)?;
            if target.unit_type() == "target" {
                Ok(target)
            } else {
                Err(err(Some(&key), format!("{t:?} is not a .target")))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let vessel_unit = raw
        .vessel_unit
        .as_deref()
        .map(|v| unit("vessel_unit".to_owned(), v))
        .transpose()?;
    let systemctl = Systemctl::new(&raw.systemctl, raw.user_mode)
        .map_err(|e| err(Some("systemctl"), e.to_string()))?;
    let path = std::path::absolute(path).map_err(|e| err(None, e.to_string()))?;
    Ok(Loaded {
        host: SystemdHost {
            systemctl,
            allowed_units,
            switch_targets,
            vessel_unit,
        },
        raw,
        path,
    })
}

/// Checks what `check` adds to `load`: that systemctl is an executable file.
pub fn check_environment(loaded: &Loaded) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |key: &str, message: String| ConfigError {
        file: loaded.path.clone(),
        key: Some(key.to_owned()),
        message,
    };
    let meta = std::fs::metadata(&loaded.raw.systemctl).map_err(|e| {
        err(
            "systemctl",
            format!("{}: {e}", loaded.raw.systemctl.display()),
        )
    })?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(err(
            "systemctl",
            format!(
                "{} is not an executable file",
                loaded.raw.systemctl.display()
            ),
        ));
    }
    let dir = std::fs::metadata(&loaded.raw.intent_dir).map_err(|e| {
        err(
            "intent_dir",
            format!("{}: {e}", loaded.raw.intent_dir.display()),
        )
    })?;
    if !dir.is_dir() {
        return Err(err(
            "intent_dir",
            format!("{} is not a directory", loaded.raw.intent_dir.display()),
        ));
    }
    Ok(())
}

fn key_in_message(message: &str) -> Option<String> {
    // "unknown field `x`, expected …" / "missing field `x`"
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let start = span.start.min(text.len());
    if !text.is_char_boundary(start) {
        return String::new();
    }
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let number = text[..start].matches('\n').count() + 1;
    let shown: String = text[line_start..line_end]
        .trim()
        .chars()
        .take(120)
        .collect();
    format!(" (line {number}: {shown})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Loaded, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).expect("write");
        load(&path)
    }

    const GOOD: &str = r#"
intent_dir = "/run/host-reactor/intents"
audit_log  = "/var/log/host-reactor/audit.jsonl"
state_dir  = "/var/lib/host-reactor"
writer_uid = 100000
max_intent_bytes = 65536
systemctl = "/usr/bin/systemctl"
user_mode = true
vessel_unit = "vessel.service"
[allow]
units   = ["vessel.service", "web.service"]
targets = ["vision.target", "voice.target"]
"#;

    #[test]
    fn the_design_example_loads() {
        let loaded = load_text(GOOD).expect("valid");
        assert_eq!(loaded.host.allowed_units.len(), 2);
        assert_eq!(loaded.reactor_config().writer_uid, Some(100_000));
    }

    #[test]
    fn each_error_names_its_key() {
        let cases = [
            (
                GOOD.replace("user_mode = true", "user_mode = true\nshell = \"sh\""),
                "shell",
            ),
            (
                GOOD.replace(
                    "systemctl = \"/usr/bin/systemctl\"",
                    "systemctl = \"systemctl\"",
                ),
                "systemctl",
            ),
            (
                GOOD.replace("systemctl = \"/usr/bin/systemctl\"\n", ""),
                "systemctl",
            ),
            (
                GOOD.replace("\"web.service\"", "\"web;reboot.service\""),
                "allow.units[1]",
            ),
            (
                GOOD.replace("\"voice.target\"", "\"voice.service\""),
                "allow.targets[1]",
            ),
            (
                GOOD.replace("\"vessel.service\"\n[allow]", "\"-x.service\"\n[allow]"),
                "vessel_unit",
            ),
            (GOOD.replace("65536", "1"), "max_intent_bytes"),
            (GOOD.replace("units   =", "units = []\nunits ="), "units"),
            (
                GOOD.replace("targets =", "commands = [\"sh\"]\ntargets ="),
                "commands",
            ),
            (GOOD.replace("100000", "\"root\""), "writer_uid"),
        ];
        for (text, key) in cases {
            let e = load_text(&text).expect_err(key);
            let shown = e.to_string();
            assert!(shown.contains(key), "{key}: {shown}");
        }
    }
}
