#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // tailnet-boot's typed `tailscale status --json` parser on hostile bytes: it must return an
    // error or a value, never panic, and what it accepts must be consistent.
    if let Ok(status) = tailnet_boot::parse_status(data) {
        assert!(data.len() <= tailnet_boot::MAX_STATUS_BYTES);
        let name = status.backend_state.name().to_owned();
        assert_eq!(tailnet_boot::BackendState::from_name(&name), status.backend_state);
    }
});
