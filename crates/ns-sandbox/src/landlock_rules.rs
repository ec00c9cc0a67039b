//! Landlock: the ruleset is created by the parent with the `landlock` crate; the child adds the
//! rules for mounts that only exist inside (see `sys`).
use std::os::fd::{AsFd, OwnedFd};

use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, Ruleset, RulesetAttr,
    RulesetCreatedAttr, Scope,
};

/// Access classes used by the plan; turned into kernel bits for the ABI in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// List directories only.
    ListDir,
    /// Read and execute (system binds).
    ReadExec,
    /// Read files and list directories, no execute (`/etc`, `/proc`).
    Read,
    /// Everything (the work dir).
    Full,
    /// Everything but execute (`/tmp`, `/dev/shm` on the ramdisk).
    FullNoExec,
    /// Device nodes: read, write, truncate, device ioctls.
    Device,
}

/// Rights that Landlock accepts on a rule for a non-directory.
fn file_rights() -> BitFlags<AccessFs> {
    AccessFs::Execute
        | AccessFs::WriteFile
        | AccessFs::ReadFile
        | AccessFs::Truncate
        | AccessFs::IoctlDev
}

pub(crate) struct Landlock {
    pub abi: ABI,
    pub kernel_abi: i32,
    pub handled: BitFlags<AccessFs>,
    pub scopes: BitFlags<Scope>,
}

impl Landlock {
    /// The best ABI the kernel offers (as far as the crate knows it).
    pub(crate) fn detect() -> Result<Self, (i32, &'static str)> {
        match crate::sys::landlock_abi() {
            Ok(v) if v >= 1 => {
                // Deliberately the kernel's best ABI, not a pinned one: every right the kernel
                // can handle is denied unless a rule below grants it.
                let abi = ABI::from(v);
                Ok(Landlock {
                    abi,
                    kernel_abi: v,
                    handled: AccessFs::from_all(abi),
                    scopes: Scope::from_all(abi),
                })
            }
            Ok(_) => Err((libc::EOPNOTSUPP, "Landlock reports no usable ABI")),
            Err(e) if e == libc::EOPNOTSUPP => Err((
                e,
                "Landlock is built in but disabled at boot (lsm= does not list it)",
            )),
            Err(e) => Err((
                e,
                "the kernel has no Landlock (needs Linux 5.13+ with CONFIG_SECURITY_LANDLOCK)",
            )),
        }
    }

    pub(crate) fn bits(&self, class: Class, is_dir: bool) -> u64 {
        let rights: BitFlags<AccessFs> = match class {
            Class::ListDir => AccessFs::ReadDir.into(),
            Class::ReadExec => AccessFs::Execute | AccessFs::ReadFile | AccessFs::ReadDir,
            Class::Read => AccessFs::ReadFile | AccessFs::ReadDir,
            Class::Full => self.handled,
            Class::FullNoExec => self.handled & !BitFlags::from(AccessFs::Execute),
            Class::Device => {
                AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev
            }
        };
        let mut rights = rights & self.handled;
        if !is_dir {
            rights &= file_rights();
        }
        rights.bits()
    }

    /// Creates the ruleset with the rules for host inodes bound into the sandbox.
    pub(crate) fn create<F: AsFd>(&self, host_rules: &[(F, u64)]) -> Result<OwnedFd, String> {
        let mut attr = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(self.handled)
            .map_err(|e| e.to_string())?;
        if !self.scopes.is_empty() {
            attr = attr.scope(self.scopes).map_err(|e| e.to_string())?;
        }
        let mut created = attr.create().map_err(|e| e.to_string())?;
        for (fd, bits) in host_rules {
            if *bits == 0 {
                continue;
            }
            let access = BitFlags::<AccessFs>::from_bits_truncate(*bits);
            created = created
                .add_rule(PathBeneath::new(fd.as_fd(), access))
                .map_err(|e| e.to_string())?;
        }
        let fd: Option<OwnedFd> = created.into();
        fd.ok_or_else(|| "the landlock crate returned no ruleset descriptor".to_string())
    }

    pub(crate) fn names(bits: u64) -> String {
        let flags = BitFlags::<AccessFs>::from_bits_truncate(bits);
        let v: Vec<String> = flags.iter().map(|f| format!("{f:?}")).collect();
        v.join("|")
    }

    pub(crate) fn handled_names(&self) -> Vec<String> {
        self.handled.iter().map(|f| format!("{f:?}")).collect()
    }

    pub(crate) fn scope_names(&self) -> Vec<String> {
        self.scopes.iter().map(|f| format!("{f:?}")).collect()
    }
}
