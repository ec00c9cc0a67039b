//! Bring up Tailscale in an unprivileged container: userspace-networking tailscaled with a SOCKS5 proxy, and tailscale up driven live.
//!
//! This crate is being built; see the workspace README for its planned contract.
#![forbid(unsafe_code)]

/// The crate's name, for diagnostics.
pub const CRATE_NAME: &str = "tailnet-boot";
