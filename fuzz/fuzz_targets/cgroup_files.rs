#![no_main]
//! Every parser of a file cgroup-limits reads (flat-keyed `memory.stat`, `memory.events`,
//! `cpu.stat`, `memory.oom_control`, `cgroup.events`; single values; `cpu.max`;
//! `/proc/self/cgroup`; `/proc/self/mountinfo`; `cgroup.procs`; `freezer.state`;
//! `cgroup.controllers`) and the user-facing size and CPU fraction parsers, on hostile bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cgroup_limits::fuzzing::parse_all(data);
});
