//! Typed `tailscale status --json`: only the fields this crate relies on, size-bounded.
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;
use serde::de::IgnoredAny;

/// Largest `status --json` document accepted (a tailnet with thousands of peers stays far below).
pub const MAX_STATUS_BYTES: usize = 16 << 20;

/// The daemon's backend state (`BackendState`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum BackendState {
    /// The daemon is starting up and has no state yet.
    NoState,
    /// Not logged in: an auth key or an interactive login is needed.
    NeedsLogin,
    /// Logged in; a tailnet admin must approve the node.
    NeedsMachineAuth,
    /// Logged in, but the user asked it to be down (`tailscale down`).
    Stopped,
    /// Logged in and connecting.
    Starting,
    /// Connected to the tailnet.
    Running,
    /// A state this crate does not know (a newer Tailscale); kept verbatim.
    Other(String),
}

impl BackendState {
    /// Maps the JSON string to a state.
    pub fn from_name(name: &str) -> Self {
        match name {
            "NoState" => Self::NoState,
            "NeedsLogin" => Self::NeedsLogin,
            "NeedsMachineAuth" => Self::NeedsMachineAuth,
            "Stopped" => Self::Stopped,
            "Starting" => Self::Starting,
            "Running" => Self::Running,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The JSON name of the state.
    pub fn name(&self) -> &str {
        match self {
            Self::NoState => "NoState",
            Self::NeedsLogin => "NeedsLogin",
            Self::NeedsMachineAuth => "NeedsMachineAuth",
            Self::Stopped => "Stopped",
            Self::Starting => "Starting",
            Self::Running => "Running",
            Self::Other(name) => name,
        }
    }
}

impl fmt::Display for BackendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// This node as the daemon describes it (`Self`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SelfNode {
    /// `HostName`.
    pub host_name: String,
    /// `DNSName` (MagicDNS name, empty when not logged in).
    pub dns_name: String,
    /// `TailscaleIPs` of this node.
    pub tailscale_ips: Vec<IpAddr>,
    /// `Online`.
    pub online: bool,
}

/// The parts of `tailscale status --json` this crate uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TailnetStatus {
    /// `Version` of the daemon.
    pub version: String,
    /// `BackendState`.
    pub backend_state: BackendState,
    /// `AuthURL`, when an interactive login is pending (empty string mapped to `None`).
    pub auth_url: Option<String>,
    /// `TailscaleIPs` (`null` mapped to empty).
    pub tailscale_ips: Vec<IpAddr>,
    /// `Self`, when present.
    pub self_node: Option<SelfNode>,
    /// `MagicDNSSuffix` (empty when not logged in).
    pub magic_dns_suffix: String,
    /// Number of entries in `Peer`.
    pub peer_count: usize,
    /// `Health` messages.
    pub health: Vec<String>,
}

/// Why a `status --json` document was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// Larger than [`MAX_STATUS_BYTES`].
    #[error("{len} bytes exceed the limit of {limit}")]
    TooLarge {
        /// The size seen (at least `limit + 1`).
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not JSON of the expected shape.
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// No `BackendState` field.
    #[error("no BackendState field")]
    MissingBackendState,
    /// An entry of a `TailscaleIPs` list that is not an IP address.
    #[error("TailscaleIPs entry {value:?} is not an IP address")]
    BadIp {
        /// The entry (truncated to 64 characters).
        value: String,
    },
}

#[derive(Deserialize)]
struct RawStatus {
    #[serde(rename = "Version", default)]
    version: Option<String>,
    #[serde(rename = "BackendState", default)]
    backend_state: Option<String>,
    #[serde(rename = "AuthURL", default)]
    auth_url: Option<String>,
    #[serde(rename = "TailscaleIPs", default)]
    tailscale_ips: Option<Vec<String>>,
    #[serde(rename = "Self", default)]
    self_node: Option<RawSelf>,
    #[serde(rename = "MagicDNSSuffix", default)]
    magic_dns_suffix: Option<String>,
    #[serde(rename = "Peer", default)]
    peer: Option<BTreeMap<String, IgnoredAny>>,
    #[serde(rename = "Health", default)]
    health: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawSelf {
    #[serde(rename = "HostName", default)]
    host_name: Option<String>,
    #[serde(rename = "DNSName", default)]
    dns_name: Option<String>,
    #[serde(rename = "TailscaleIPs", default)]
    tailscale_ips: Option<Vec<String>>,
    #[serde(rename = "Online", default)]
    online: Option<bool>,
}

fn parse_ips(raw: Option<Vec<String>>) -> Result<Vec<IpAddr>, StatusError> {
    raw.unwrap_or_default()
        .into_iter()
        .map(|value| {
            value.parse::<IpAddr>().map_err(|_| StatusError::BadIp {
                value: value.chars().take(64).collect(),
            })
        })
        .collect()
}

/// Parses the output of `tailscale status --json`.
///
/// Unknown fields are ignored (the daemon adds fields across versions); the fields used here are
/// checked: `BackendState` must be present, IP lists must hold IP addresses, `null` lists read as
/// empty. Input larger than [`MAX_STATUS_BYTES`] is refused before parsing; nesting depth is
/// bounded by `serde_json`'s recursion limit.
///
/// ```
/// let status = tailnet_boot::parse_status(br#"{"BackendState":"NeedsLogin","TailscaleIPs":null}"#)?;
/// assert_eq!(status.backend_state, tailnet_boot::BackendState::NeedsLogin);
/// assert!(status.tailscale_ips.is_empty());
/// # Ok::<(), tailnet_boot::StatusError>(())
/// ```
pub fn parse_status(bytes: &[u8]) -> Result<TailnetStatus, StatusError> {
    if bytes.len() > MAX_STATUS_BYTES {
        return Err(StatusError::TooLarge {
            len: bytes.len(),
            limit: MAX_STATUS_BYTES,
        });
    }
    let raw: RawStatus = serde_json::from_slice(bytes)?;
    let backend_state = raw.backend_state.ok_or(StatusError::MissingBackendState)?;
    let self_node = match raw.self_node {
        Some(node) => Some(SelfNode {
            host_name: node.host_name.unwrap_or_default(),
            dns_name: node.dns_name.unwrap_or_default(),
            tailscale_ips: parse_ips(node.tailscale_ips)?,
            online: node.online.unwrap_or(false),
        }),
        None => None,
    };
    Ok(TailnetStatus {
        version: raw.version.unwrap_or_default(),
        backend_state: BackendState::from_name(&backend_state),
        auth_url: raw.auth_url.filter(|url| !url.is_empty()),
        tailscale_ips: parse_ips(raw.tailscale_ips)?,
        self_node,
        magic_dns_suffix: raw.magic_dns_suffix.unwrap_or_default(),
        peer_count: raw.peer.map_or(0, |peers| peers.len()),
        health: raw.health.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Verbatim `tailscale status --json` of a fresh real 1.96.4 daemon (loopback-only netns).
    const REAL_NEEDS_LOGIN: &[u8] = include_bytes!("../tests/data/status-1.96.4-needslogin.json");

    #[test]
    fn real_fresh_daemon_is_needs_login_with_no_ips() {
        let status = parse_status(REAL_NEEDS_LOGIN).unwrap();
        assert_eq!(status.backend_state, BackendState::NeedsLogin);
        assert!(status.version.starts_with("1.96.4"));
        assert!(status.tailscale_ips.is_empty());
        assert_eq!(status.auth_url, None);
        assert_eq!(status.peer_count, 0);
        let me = status.self_node.unwrap();
        assert!(me.tailscale_ips.is_empty());
        assert!(!me.online);
        assert_eq!(status.health, vec!["Tailscale is stopped.".to_string()]);
    }

    #[test]
    fn running_shape_with_ips_and_peers() {
        let json = br#"{"Version":"1.96.4","BackendState":"Running","AuthURL":"",
            "TailscaleIPs":["100.64.0.7","fd7a:115c:a1e0::7"],
            "Self":{"HostName":"box","DNSName":"box.tail1.ts.net.","TailscaleIPs":["100.64.0.7"],"Online":true},
            "MagicDNSSuffix":"tail1.ts.net","Peer":{"nodekey:a":{"HostName":"x"},"nodekey:b":{}}}"#;
        let status = parse_status(json).unwrap();
        assert_eq!(status.backend_state, BackendState::Running);
        assert_eq!(status.tailscale_ips.len(), 2);
        assert_eq!(status.tailscale_ips[0].to_string(), "100.64.0.7");
        assert_eq!(status.peer_count, 2);
        assert_eq!(status.magic_dns_suffix, "tail1.ts.net");
        assert!(status.self_node.unwrap().online);
    }

    #[test]
    fn auth_url_kept_when_pending() {
        let status = parse_status(
            br#"{"BackendState":"NeedsLogin","AuthURL":"https://login.tailscale.com/a/x"}"#,
        )
        .unwrap();
        assert_eq!(
            status.auth_url.as_deref(),
            Some("https://login.tailscale.com/a/x")
        );
    }

    #[test]
    fn unknown_state_is_kept_verbatim() {
        let status = parse_status(br#"{"BackendState":"InUseOtherUser"}"#).unwrap();
        assert_eq!(
            status.backend_state,
            BackendState::Other("InUseOtherUser".into())
        );
        assert_eq!(status.backend_state.to_string(), "InUseOtherUser");
    }

    #[test]
    fn refusals_say_why() {
        assert!(matches!(
            parse_status(b"{}"),
            Err(StatusError::MissingBackendState)
        ));
        assert!(matches!(parse_status(b"[1]"), Err(StatusError::Json(_))));
        assert!(matches!(parse_status(b""), Err(StatusError::Json(_))));
        let bad_ip = parse_status(br#"{"BackendState":"Running","TailscaleIPs":["not-an-ip"]}"#);
        assert!(matches!(bad_ip, Err(StatusError::BadIp { value }) if value == "not-an-ip"));
        let wrong_type = parse_status(br#"{"BackendState":7}"#);
        assert!(matches!(wrong_type, Err(StatusError::Json(_))));
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let big = vec![b' '; MAX_STATUS_BYTES + 1];
        assert!(matches!(
            parse_status(&big),
            Err(StatusError::TooLarge { len, limit }) if len == MAX_STATUS_BYTES + 1 && limit == MAX_STATUS_BYTES
        ));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let mut json = String::from(r#"{"BackendState":"Running","Peer":{"a":"#);
        json.push_str(&"[".repeat(100_000));
        assert!(matches!(
            parse_status(json.as_bytes()),
            Err(StatusError::Json(_))
        ));
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_status(&bytes);
        }

        #[test]
        fn mutated_real_output_never_panics(pos in 0usize..4096, byte in any::<u8>(), cut in 0usize..4096) {
            let mut bytes = REAL_NEEDS_LOGIN.to_vec();
            let pos = pos % bytes.len();
            bytes[pos] = byte;
            bytes.truncate(cut.max(1).min(bytes.len()));
            let _ = parse_status(&bytes);
        }

        #[test]
        fn any_state_name_round_trips(name in "[A-Za-z]{1,20}") {
            let json = format!(r#"{{"BackendState":"{name}"}}"#);
            let status = parse_status(json.as_bytes()).unwrap();
            prop_assert_eq!(status.backend_state.name(), name.as_str());
        }

        #[test]
        fn ip_lists_parse_exactly(ips in proptest::collection::vec(any::<std::net::IpAddr>(), 0..8)) {
            let list: Vec<String> = ips.iter().map(|ip| format!("\"{ip}\"")).collect();
            let json = format!(r#"{{"BackendState":"Running","TailscaleIPs":[{}]}}"#, list.join(","));
            let status = parse_status(json.as_bytes()).unwrap();
            prop_assert_eq!(status.tailscale_ips, ips);
        }
    }
}
