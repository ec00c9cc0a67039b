//! The seccomp deny-list, compiled to BPF with `seccompiler` before `clone`.
use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op,
    SeccompCondition as Cond, SeccompFilter, SeccompRule, TargetArch, sock_filter,
};

use crate::report::SeccompReport;

/// `ioctl` requests that inject input into a terminal (compared on their low 32 bits, the
/// width the kernel uses for the request number).
const TIOCSTI: u64 = 0x5412;
const TIOCLINUX: u64 = 0x541C;

/// Namespace flags refused in `clone`'s first argument.
const CLONE_NS: [(u64, &str); 7] = [
    (libc::CLONE_NEWNS as u64, "CLONE_NEWNS"),
    (libc::CLONE_NEWUTS as u64, "CLONE_NEWUTS"),
    (libc::CLONE_NEWIPC as u64, "CLONE_NEWIPC"),
    (libc::CLONE_NEWUSER as u64, "CLONE_NEWUSER"),
    (libc::CLONE_NEWPID as u64, "CLONE_NEWPID"),
    (libc::CLONE_NEWNET as u64, "CLONE_NEWNET"),
    (libc::CLONE_NEWCGROUP as u64, "CLONE_NEWCGROUP"),
];

/// Syscalls refused unconditionally (EPERM).
const DENIED: &[(i64, &str)] = &[
    (libc::SYS_keyctl, "keyctl"),
    (libc::SYS_add_key, "add_key"),
    (libc::SYS_request_key, "request_key"),
    (libc::SYS_ptrace, "ptrace"),
    (libc::SYS_process_vm_readv, "process_vm_readv"),
    (libc::SYS_process_vm_writev, "process_vm_writev"),
    (libc::SYS_bpf, "bpf"),
    (libc::SYS_perf_event_open, "perf_event_open"),
    (libc::SYS_userfaultfd, "userfaultfd"),
    (libc::SYS_io_uring_setup, "io_uring_setup"),
    (libc::SYS_io_uring_enter, "io_uring_enter"),
    (libc::SYS_io_uring_register, "io_uring_register"),
    (libc::SYS_kexec_load, "kexec_load"),
    (libc::SYS_kexec_file_load, "kexec_file_load"),
    (libc::SYS_init_module, "init_module"),
    (libc::SYS_finit_module, "finit_module"),
    (libc::SYS_delete_module, "delete_module"),
    (libc::SYS_mount, "mount"),
    (libc::SYS_umount2, "umount2"),
    (libc::SYS_pivot_root, "pivot_root"),
    (libc::SYS_move_mount, "move_mount"),
    (libc::SYS_open_tree, "open_tree"),
    (libc::SYS_fsopen, "fsopen"),
    (libc::SYS_fsconfig, "fsconfig"),
    (libc::SYS_fsmount, "fsmount"),
    (libc::SYS_fspick, "fspick"),
    (libc::SYS_mount_setattr, "mount_setattr"),
    (libc::SYS_unshare, "unshare"),
    (libc::SYS_setns, "setns"),
    (libc::SYS_chroot, "chroot"),
    (libc::SYS_open_by_handle_at, "open_by_handle_at"),
    (libc::SYS_name_to_handle_at, "name_to_handle_at"),
    (libc::SYS_acct, "acct"),
    (libc::SYS_swapon, "swapon"),
    (libc::SYS_swapoff, "swapoff"),
    (libc::SYS_reboot, "reboot"),
    (libc::SYS_syslog, "syslog"),
    (libc::SYS_quotactl, "quotactl"),
    (libc::SYS_lookup_dcookie, "lookup_dcookie"),
    (libc::SYS_vhangup, "vhangup"),
    (libc::SYS_settimeofday, "settimeofday"),
    (libc::SYS_clock_settime, "clock_settime"),
    (libc::SYS_clock_adjtime, "clock_adjtime"),
    (libc::SYS_adjtimex, "adjtimex"),
    (libc::SYS_fanotify_init, "fanotify_init"),
];

#[cfg(target_arch = "x86_64")]
const ARCH: (TargetArch, u32, &str) = (TargetArch::x86_64, 0xC000_003E, "x86_64");
#[cfg(target_arch = "aarch64")]
const ARCH: (TargetArch, u32, &str) = (TargetArch::aarch64, 0xC000_00B7, "aarch64");

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
#[cfg(target_arch = "x86_64")]
const BPF_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;

fn ins(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

fn cond(arg: u8, op: Op, value: u64) -> Result<Cond, seccompiler::BackendError> {
    Cond::new(arg, Len::Dword, op, value)
}

/// Builds the filter: our prefix (foreign ABIs killed, `clone3` → ENOSYS so libc falls back to
/// `clone`, whose flags a filter can inspect), then seccompiler's deny-list (EPERM).
pub(crate) fn build() -> Result<(BpfProgram, SeccompReport), String> {
    let e = |e: seccompiler::BackendError| e.to_string();
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &(nr, _) in DENIED {
        rules.insert(nr, vec![]);
    }
    rules.insert(
        libc::SYS_ioctl,
        vec![
            SeccompRule::new(vec![cond(1, Op::Eq, TIOCSTI).map_err(e)?]).map_err(e)?,
            SeccompRule::new(vec![cond(1, Op::Eq, TIOCLINUX).map_err(e)?]).map_err(e)?,
        ],
    );
    let mut clone_rules = Vec::new();
    for (flag, _) in CLONE_NS {
        clone_rules.push(
            SeccompRule::new(vec![cond(0, Op::MaskedEq(flag), flag).map_err(e)?]).map_err(e)?,
        );
    }
    rules.insert(libc::SYS_clone, clone_rules);
    // personality(0xffffffff) queries and personality(PER_LINUX) are harmless; anything else
    // (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC…) weakens the process.
    rules.insert(
        libc::SYS_personality,
        vec![
            SeccompRule::new(vec![
                cond(0, Op::Ne, 0).map_err(e)?,
                cond(0, Op::Ne, 0xffff_ffff).map_err(e)?,
            ])
            .map_err(e)?,
        ],
    );
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        ARCH.0,
    )
    .map_err(|e| e.to_string())?;
    let body: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;

    let mut prog = vec![
        ins(BPF_LD_W_ABS, 0, 0, 4),
        ins(BPF_JEQ_K, 1, 0, ARCH.1),
        ins(BPF_RET_K, 0, 0, RET_KILL_PROCESS),
        ins(BPF_LD_W_ABS, 0, 0, 0),
    ];
    // x32 shares AUDIT_ARCH_X86_64 but sets bit 30 of the syscall number.
    #[cfg(target_arch = "x86_64")]
    {
        prog.push(ins(BPF_JGE_K, 0, 1, 0x4000_0000));
        prog.push(ins(BPF_RET_K, 0, 0, RET_KILL_PROCESS));
    }
    prog.push(ins(BPF_JEQ_K, 0, 1, libc::SYS_clone3 as u32));
    prog.push(ins(BPF_RET_K, 0, 0, RET_ERRNO | libc::ENOSYS as u32));
    prog.extend(body);

    let mut denied: Vec<String> = DENIED.iter().map(|(_, n)| (*n).to_string()).collect();
    denied.sort();
    let report = SeccompReport {
        arch: ARCH.2,
        denied_syscalls: denied,
        denied_ioctls: vec!["TIOCSTI".into(), "TIOCLINUX".into()],
        clone_flags_denied: CLONE_NS.iter().map(|(_, n)| (*n).to_string()).collect(),
        clone3: "ENOSYS (libc falls back to clone)",
        personality: "only PER_LINUX and queries",
        other_abis: "killed (i386, x32)",
        action: "EPERM",
        instructions: prog.len(),
    };
    Ok((prog, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_filter_within_the_kernel_limit() {
        let (prog, report) = build().expect("filter");
        assert!(
            prog.len() > 20 && prog.len() < 4096,
            "{} instructions",
            prog.len()
        );
        assert_eq!(report.instructions, prog.len());
        assert!(report.denied_syscalls.iter().any(|s| s == "ptrace"));
    }
}
