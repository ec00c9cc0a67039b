#![no_main]
//! The intent parser end to end: envelope (phase one) then the built-in registry's payload
//! parse and validation (phase two). Nothing is executed.
use intent_protocol::{BUILTIN, IntentFile, Registry, Systemctl, SystemdHost, UnitName};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn host() -> &'static SystemdHost {
    static HOST: OnceLock<SystemdHost> = OnceLock::new();
    HOST.get_or_init(|| {
        let unit = |u: &str| UnitName::new(u).expect("valid unit");
        SystemdHost {
            systemctl: Systemctl::new("/nonexistent/systemctl", true).expect("absolute"),
            allowed_units: vec![unit("web.service"), unit("vessel.service")],
            switch_targets: vec![unit("vision.target"), unit("voice.target")],
            vessel_unit: Some(unit("vessel.service")),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(file) = IntentFile::parse(data) else {
        return;
    };
    // A parsed envelope always has a valid id and nonce, and an object payload.
    assert!(file.intent_id().as_str().starts_with("INTENT_"));
    assert!(file.payload().get().starts_with('{'));
    let _ = intent_protocol::check_builtin_payload(file.intent_id().as_str(), file.payload());
    if let Ok(prepared) = BUILTIN.prepare(&file, host()) {
        assert!(!prepared.description().is_empty());
    }
});
