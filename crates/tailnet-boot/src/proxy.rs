//! Proxy settings for other tools: environment lines, ssh `ProxyCommand`, Ansible arguments.
//!
//! Everything produced here ends up in a shell (`eval`, ssh's `ProxyCommand` runs through
//! `$SHELL -c`, Ansible splits its arguments with shlex), so every value is validated against a
//! strict character set instead of being quoted.
use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::error::BootError;

/// A proxy listen address, `HOST:PORT` or `[IPV6]:PORT`, restricted to safe characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ProxyAddr {
    host: String,
    port: u16,
}

impl ProxyAddr {
    /// Parses `127.0.0.1:1055`, `localhost:1055` or `[::1]:1055`.
    ///
    /// The host may hold only ASCII letters, digits, `.`, `-` (or an IPv6 literal in brackets);
    /// the port must be 1–65535.
    pub fn parse(text: &str) -> Result<Self, BootError> {
        let invalid = |why| BootError::InvalidValue {
            what: "proxy address",
            value: text.to_owned(),
            why,
        };
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest
                .split_once(']')
                .ok_or_else(|| invalid("unclosed '['"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| invalid("missing ':PORT'"))?;
            if inside.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(invalid("not an IPv6 address inside [ ]"));
            }
            (format!("[{inside}]"), port)
        } else {
            let (host, port) = text
                .rsplit_once(':')
                .ok_or_else(|| invalid("missing ':PORT'"))?;
            let host_ok = !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                && !host.starts_with('-');
            if !host_ok {
                return Err(invalid(
                    "host must be letters, digits, '.', '-' (or [IPv6])",
                ));
            }
            (host.to_owned(), port)
        };
        let port: u16 = port
            .parse()
            .map_err(|_| invalid("port is not a number 1-65535"))?;
        if port == 0 {
            return Err(invalid("port 0"));
        }
        Ok(Self { host, port })
    }

    /// The host part (IPv6 in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for ProxyAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Environment variables that route other tools through the proxies, in order.
///
/// `ALL_PROXY`/`all_proxy` point at SOCKS5; `HTTP_PROXY`/`HTTPS_PROXY` (and lower-case forms,
/// which curl and many libraries read instead) at the HTTP proxy when there is one.
///
/// ```
/// use tailnet_boot::{ProxyAddr, proxy_env};
/// let socks = ProxyAddr::parse("127.0.0.1:1055")?;
/// let vars = proxy_env(&socks, None);
/// assert_eq!(vars[0], ("ALL_PROXY".to_string(), "socks5://127.0.0.1:1055".to_string()));
/// # Ok::<(), tailnet_boot::BootError>(())
/// ```
pub fn proxy_env(socks5: &ProxyAddr, http: Option<&ProxyAddr>) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    let socks = format!("socks5://{socks5}");
    vars.push(("ALL_PROXY".to_owned(), socks.clone()));
    vars.push(("all_proxy".to_owned(), socks));
    if let Some(http) = http {
        let url = format!("http://{http}");
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            vars.push((name.to_owned(), url.clone()));
        }
    }
    vars
}

/// Which SOCKS5-capable program ssh's `ProxyCommand` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyTool {
    /// OpenBSD netcat (Debian `netcat-openbsd`): `nc -X 5 -x ADDR %h %p`.
    NetcatOpenbsd,
    /// Nmap's ncat: `ncat --proxy ADDR --proxy-type socks5 %h %p`.
    Ncat,
    /// A program of ours that takes `--socks5 ADDR HOST PORT` (e.g. `manager net connect`),
    /// given as its argument words before `--socks5`; each word must be shell-safe.
    Program(Vec<String>),
}

fn shell_safe_word(word: &str) -> bool {
    !word.is_empty()
        && word.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'/' | b'.' | b'_' | b'-' | b'+' | b',' | b'=' | b':' | b'@'
                )
        })
}

/// The `ProxyCommand` value for ssh (`%h %p` are expanded by ssh).
pub fn ssh_proxy_command(tool: &ProxyTool, socks5: &ProxyAddr) -> Result<String, BootError> {
    Ok(match tool {
        ProxyTool::NetcatOpenbsd => format!("nc -X 5 -x {socks5} %h %p"),
        ProxyTool::Ncat => format!("ncat --proxy {socks5} --proxy-type socks5 %h %p"),
        ProxyTool::Program(words) => {
            if words.is_empty() {
                return Err(BootError::InvalidValue {
                    what: "proxy program",
                    value: String::new(),
                    why: "empty",
                });
            }
            if let Some(bad) = words.iter().find(|w| !shell_safe_word(w)) {
                return Err(BootError::InvalidValue {
                    what: "proxy program word",
                    value: bad.clone(),
                    why: "only letters, digits and / . _ - + , = : @ are allowed",
                });
            }
            format!("{} --socks5 {socks5} %h %p", words.join(" "))
        }
    })
}

/// Checks an ssh `Host` pattern: letters, digits, `. - _ : * ? !`, `[`, `]`, at most 253 bytes.
pub fn check_ssh_host(host: &str) -> Result<(), BootError> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && !host.starts_with('-')
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'.' | b'-' | b'_' | b':' | b'*' | b'?' | b'!' | b'[' | b']'
                )
        });
    if ok {
        Ok(())
    } else {
        Err(BootError::InvalidValue {
            what: "ssh host",
            value: host.to_owned(),
            why: "only letters, digits and . - _ : * ? ! [ ] are allowed",
        })
    }
}

/// An ssh config block for `hosts` that reaches them through the proxy.
///
/// ```
/// use tailnet_boot::{ProxyAddr, ProxyTool, ssh_config};
/// let block = ssh_config(&["web1".to_string()], &ProxyTool::NetcatOpenbsd, &ProxyAddr::parse("127.0.0.1:1055")?)?;
/// assert_eq!(block, "Host web1\n    ProxyCommand nc -X 5 -x 127.0.0.1:1055 %h %p\n");
/// # Ok::<(), tailnet_boot::BootError>(())
/// ```
pub fn ssh_config(
    hosts: &[String],
    tool: &ProxyTool,
    socks5: &ProxyAddr,
) -> Result<String, BootError> {
    let command = ssh_proxy_command(tool, socks5)?;
    let mut out = String::new();
    for host in hosts {
        check_ssh_host(host)?;
        out.push_str(&format!("Host {host}\n    ProxyCommand {command}\n"));
    }
    Ok(out)
}

/// The Ansible inventory variable line: `ansible_ssh_common_args='-o ProxyCommand="…"'`.
pub fn ansible_ssh_common_args(tool: &ProxyTool, socks5: &ProxyAddr) -> Result<String, BootError> {
    let command = ssh_proxy_command(tool, socks5)?;
    Ok(format!(
        "ansible_ssh_common_args='-o ProxyCommand=\"{command}\"'"
    ))
}

fn socks5_reply_text(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply code",
    }
}

/// Opens a TCP connection to `host:port` through the SOCKS5 proxy (no authentication, CONNECT),
/// the way `nc -X 5 -x PROXY HOST PORT` does. A host name is sent to the proxy unresolved (so
/// MagicDNS names resolve inside the tailnet). `timeout` bounds the connect and the handshake.
pub fn socks5_connect(
    proxy: &ProxyAddr,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, BootError> {
    let target = format!("{host}:{port}");
    let fail = |reason: String| BootError::Socks5 {
        proxy: proxy.to_string(),
        target: target.clone(),
        reason,
    };
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let mut request = vec![5u8, 1, 0];
    match bare_host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            request.push(1);
            request.extend_from_slice(&v4.octets());
        }
        Ok(IpAddr::V6(v6)) => {
            request.push(4);
            request.extend_from_slice(&v6.octets());
        }
        Err(_) => {
            let len = u8::try_from(host.len())
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| fail("host name must be 1-255 bytes".into()))?;
            request.push(3);
            request.push(len);
            request.extend_from_slice(host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    let addrs = proxy
        .to_string()
        .to_socket_addrs()
        .map_err(|e| fail(format!("resolve proxy: {e}")))?;
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let mut stream = stream.ok_or_else(|| {
        fail(format!(
            "connect: {}",
            last.map_or("no address".into(), |e| e.to_string())
        ))
    })?;
    let io = |what: &str, e: std::io::Error| fail(format!("{what}: {e}"));
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| io("set timeout", e))?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| io("set timeout", e))?;
    stream
        .write_all(&[5, 1, 0])
        .map_err(|e| io("greeting", e))?;
    let mut method = [0u8; 2];
    stream
        .read_exact(&mut method)
        .map_err(|e| io("greeting reply", e))?;
    if method != [5, 0] {
        return Err(fail(format!("proxy refused no-auth (reply {method:?})")));
    }
    stream.write_all(&request).map_err(|e| io("request", e))?;
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).map_err(|e| io("reply", e))?;
    if head[0] != 5 {
        return Err(fail(format!("not a SOCKS5 reply (version {})", head[0])));
    }
    if head[1] != 0 {
        return Err(fail(socks5_reply_text(head[1]).to_owned()));
    }
    let bound_len = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len).map_err(|e| io("reply", e))?;
            usize::from(len[0]) + 2
        }
        other => return Err(fail(format!("bad address type {other} in reply"))),
    };
    let mut bound = vec![0u8; bound_len];
    stream.read_exact(&mut bound).map_err(|e| io("reply", e))?;
    stream
        .set_read_timeout(None)
        .map_err(|e| io("set timeout", e))?;
    stream
        .set_write_timeout(None)
        .map_err(|e| io("set timeout", e))?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn addresses() {
        assert_eq!(
            ProxyAddr::parse("127.0.0.1:1055").unwrap().to_string(),
            "127.0.0.1:1055"
        );
        assert_eq!(
            ProxyAddr::parse("localhost:1055").unwrap().host(),
            "localhost"
        );
        assert_eq!(
            ProxyAddr::parse("[::1]:1055").unwrap().to_string(),
            "[::1]:1055"
        );
        for bad in [
            "",
            "1055",
            "127.0.0.1",
            "a b:1",
            "x:0",
            "x:65536",
            "$(id):1",
            "[::1:1",
            "[zz]:1",
            ":1",
            "-x:1",
        ] {
            assert!(ProxyAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_lines_with_and_without_http() {
        let socks = ProxyAddr::parse("127.0.0.1:1055").unwrap();
        assert_eq!(proxy_env(&socks, None).len(), 2);
        let http = ProxyAddr::parse("127.0.0.1:1056").unwrap();
        let vars = proxy_env(&socks, Some(&http));
        assert!(vars.contains(&("HTTPS_PROXY".into(), "http://127.0.0.1:1056".into())));
        assert!(vars.contains(&("http_proxy".into(), "http://127.0.0.1:1056".into())));
    }

    #[test]
    fn ssh_and_ansible_lines() {
        let socks = ProxyAddr::parse("127.0.0.1:1055").unwrap();
        assert_eq!(
            ssh_proxy_command(&ProxyTool::Ncat, &socks).unwrap(),
            "ncat --proxy 127.0.0.1:1055 --proxy-type socks5 %h %p"
        );
        assert_eq!(
            ansible_ssh_common_args(&ProxyTool::NetcatOpenbsd, &socks).unwrap(),
            r#"ansible_ssh_common_args='-o ProxyCommand="nc -X 5 -x 127.0.0.1:1055 %h %p"'"#
        );
        let own = ProxyTool::Program(vec![
            "/usr/local/bin/manager".into(),
            "net".into(),
            "connect".into(),
        ]);
        assert_eq!(
            ssh_proxy_command(&own, &socks).unwrap(),
            "/usr/local/bin/manager net connect --socks5 127.0.0.1:1055 %h %p"
        );
        assert!(ssh_proxy_command(&ProxyTool::Program(vec!["a;b".into()]), &socks).is_err());
        let two = ssh_config(
            &["a".into(), "*.ts.net".into()],
            &ProxyTool::NetcatOpenbsd,
            &socks,
        )
        .unwrap();
        assert_eq!(two.matches("ProxyCommand").count(), 2);
        for bad in [
            "",
            "a b",
            "a\nProxyCommand x",
            "-oProxyCommand=x",
            "a\"b",
            "a;b",
        ] {
            assert!(check_ssh_host(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn accepted_values_are_shell_inert(addr in "\\PC{0,40}", host in "\\PC{0,40}") {
            let meta = |s: &str| s.chars().any(|c| " \t\n;&|$`'\"\\<>(){}#~".contains(c) || c.is_control());
            if let Ok(parsed) = ProxyAddr::parse(&addr) {
                prop_assert!(!meta(&parsed.to_string()));
            }
            if check_ssh_host(&host).is_ok() {
                prop_assert!(!meta(&host));
            }
        }
    }
}
