#![no_main]
//! The holder record parser of `singleton-lock`: whatever a hostile lock file holds, parsing must
//! not panic, and a record that parses must survive a write/parse round trip unchanged.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(holder) = singleton_lock::parse_holder_record(data) {
        let record = singleton_lock::format_holder_record(&holder);
        assert!(record.len() <= singleton_lock::MAX_RECORD_LEN);
        let again = singleton_lock::parse_holder_record(record.as_bytes())
            .expect("a record we wrote must parse");
        assert_eq!(again.pid, holder.pid);
        assert_eq!(again.start_time, holder.start_time);
        assert_eq!(again.boot_id, holder.boot_id);
        assert_eq!(again.host, holder.host);
        assert_eq!(again.argv0, holder.argv0);
    }
});
