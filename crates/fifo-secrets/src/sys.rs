//! The only module allowed to use `unsafe`: raw memory for secrets, `memfd_secret(2)`, volatile
//! zeroing and per-thread `SIGPIPE` masking. Everything else in the crate is safe code.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::ptr::NonNull;

use rustix::mm::{Advice, MapFlags, ProtFlags};

use crate::Protections;

/// A private mapping that holds secret bytes: `memfd_secret` memory when the kernel offers it,
/// else anonymous memory that is mlocked (best effort) and excluded from core dumps.
///
/// The mapping is zeroed with volatile writes and unmapped on drop.
pub(crate) struct Region {
    ptr: NonNull<u8>,
    len: usize,
    protections: Protections,
}

// SAFETY: `Region` owns its mapping exclusively (like a `Box<[u8]>`); nothing else aliases the
// pointer, so moving it to another thread is sound.
unsafe impl Send for Region {}
// SAFETY: shared access only hands out `&[u8]`; mutation needs `&mut Region`.
unsafe impl Sync for Region {}

impl Region {
    /// Maps at least `min` bytes (rounded up to whole pages; at least one page).
    pub(crate) fn new(min: usize) -> io::Result<Self> {
        let page = rustix::param::page_size();
        let len = min
            .max(1)
            .checked_next_multiple_of(page)
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        match Self::secret(len) {
            Ok(region) => Ok(region),
            // ENOSYS (no CONFIG_SECRETMEM), ENOMEM/EAGAIN (memlock limit), EPERM/EINVAL
            // (disabled at boot): fall back to ordinary locked memory.
            Err(_) => Self::anonymous(len),
        }
    }

    fn secret(len: usize) -> io::Result<Self> {
        let fd = memfd_secret()?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        // SAFETY: a fresh shared mapping of a file we own, at an address the kernel chooses;
        // it aliases no Rust object. The fd may close afterwards: the mapping keeps the file.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )?
        };
        drop(fd);
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
        // The child between fork and exec has no business with the secret.
        // SAFETY: advice on our own mapping, exactly its bounds.
        let _ = unsafe { rustix::mm::madvise(ptr.as_ptr().cast(), len, Advice::LinuxDontFork) };
        // secretmem mappings are VM_LOCKED and VM_DONTDUMP by construction (mm/secretmem.c)
        // and are removed from the kernel's direct map.
        Ok(Self {
            ptr,
            len,
            protections: Protections {
                memfd_secret: true,
                mlocked: true,
                dontdump: true,
            },
        })
    }

    fn anonymous(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh private anonymous mapping at an address the kernel chooses; it
        // aliases no Rust object.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )?
        };
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
        let base: *mut c_void = ptr.as_ptr().cast();
        // SAFETY: locking our own mapping, exactly its bounds. Failure (RLIMIT_MEMLOCK) is
        // reported through `protections`, not fatal.
        let mlocked = unsafe { rustix::mm::mlock(base, len) }.is_ok();
        // SAFETY: advice on our own mapping, exactly its bounds.
        let dontdump = unsafe { rustix::mm::madvise(base, len, Advice::LinuxDontDump) }.is_ok();
        // SAFETY: as above; a forked child sees zeroes instead of the secret.
        let _ = unsafe { rustix::mm::madvise(base, len, Advice::LinuxWipeOnFork) };
        Ok(Self {
            ptr,
            len,
            protections: Protections {
                memfd_secret: false,
                mlocked,
                dontdump,
            },
        })
    }

    /// Mapped size in bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.len
    }

    pub(crate) fn protections(&self) -> Protections {
        self.protections
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is a live mapping of `len` readable bytes owned by `self`
        // (fresh mappings are zero-filled, so every byte is initialised).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        zero(self.as_mut_slice());
        // SAFETY: unmapping exactly the mapping we created; no slice into it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Overwrites `buf` with zeroes in a way the optimiser may not remove.
pub(crate) fn zero(buf: &mut [u8]) {
    for byte in buf.iter_mut() {
        // SAFETY: `byte` is a valid, exclusive, aligned reference to one `u8`.
        unsafe { std::ptr::write_volatile(byte, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// `memfd_secret(O_CLOEXEC)`: an fd whose pages are removed from the kernel's direct map.
pub(crate) fn memfd_secret() -> io::Result<OwnedFd> {
    // SAFETY: memfd_secret takes one integer flags argument and returns a new fd or -1 with
    // errno set; no pointers are involved. rustix has no wrapper for it (yet).
    let ret = unsafe { libc::syscall(libc::SYS_memfd_secret, libc::O_CLOEXEC) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let raw = i32::try_from(ret).map_err(|_| io::Error::other("memfd_secret returned a bad fd"))?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Runs `f` with `SIGPIPE` blocked in this thread, so a write to a pipe whose reader left
/// returns `EPIPE` instead of killing the process (programs that keep the default `SIGPIPE`
/// disposition). A `SIGPIPE` raised by `f` is consumed; one that was pending before is kept.
pub(crate) fn with_sigpipe_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it fully.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut pending: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to local sigset_t values; these calls only touch this thread's
    // signal mask and pending set.
    let blocked = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::sigpending(&mut pending);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) == 0
    };
    // SAFETY: `pending` was initialised by sigpending above.
    let was_pending = unsafe { libc::sigismember(&pending, libc::SIGPIPE) } == 1;
    let out = f();
    if blocked {
        // SAFETY: as above; sigtimedwait with a zero timeout only dequeues a pending SIGPIPE
        // of this thread (or returns EAGAIN), then the saved mask is restored.
        unsafe {
            if !was_pending {
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                libc::sigpending(&mut pending);
                if libc::sigismember(&pending, libc::SIGPIPE) == 1 {
                    libc::sigtimedwait(&set, std::ptr::null_mut(), &zero);
                }
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `VmFlags` of the mapping that starts at `addr`, from `/proc/self/smaps`.
    fn vm_flags(addr: usize) -> Vec<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let start = format!("{addr:x}-");
        let mut in_it = false;
        for line in smaps.lines() {
            if line.starts_with(|c: char| c.is_ascii_hexdigit()) && line.contains('-') {
                in_it = line.starts_with(&start) || line.starts_with(&format!("{addr:08x}-"));
            } else if in_it && let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.split_whitespace().map(str::to_owned).collect();
            }
        }
        panic!("no mapping at {addr:x} in smaps");
    }

    #[test]
    fn anonymous_fallback_is_dontdump_and_locked_when_allowed() {
        let mut region = Region::anonymous(rustix::param::page_size()).unwrap();
        region.as_mut_slice()[0] = 42;
        let flags = vm_flags(region.ptr.as_ptr() as usize);
        let p = region.protections();
        assert!(!p.memfd_secret);
        assert!(p.dontdump && flags.contains(&"dd".to_owned()), "{flags:?}");
        assert_eq!(
            p.mlocked,
            flags.contains(&"lo".to_owned()),
            "{p:?} vs {flags:?}"
        );
        if !p.mlocked {
            println!("note: mlock refused here (RLIMIT_MEMLOCK); reported as mlocked=false");
        }
    }

    #[test]
    fn secretmem_region_is_locked_and_dontdump_per_the_kernel() {
        let region = match Region::secret(rustix::param::page_size()) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                println!("SKIP: memfd_secret not in this kernel ({e})");
                return;
            }
            Err(e) => panic!("memfd_secret present but unusable: {e}"),
        };
        let flags = vm_flags(region.ptr.as_ptr() as usize);
        assert!(flags.contains(&"dd".to_owned()), "{flags:?}");
        assert!(flags.contains(&"lo".to_owned()), "{flags:?}");
        assert!(region.protections().memfd_secret);
    }

    #[test]
    fn regions_round_up_to_pages_and_start_zeroed() {
        let page = rustix::param::page_size();
        let r = Region::new(1).unwrap();
        assert_eq!(r.capacity(), page);
        assert!(r.as_slice().iter().all(|&b| b == 0));
        assert_eq!(Region::new(0).unwrap().capacity(), page);
        assert_eq!(Region::new(page + 1).unwrap().capacity(), 2 * page);
    }

    #[test]
    fn zero_clears_every_byte() {
        let mut v = vec![0xa5u8; 1000];
        zero(&mut v);
        assert!(v.iter().all(|&b| b == 0));
    }

    #[test]
    fn sigpipe_is_returned_as_epipe_and_consumed() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        drop(r);
        let got = with_sigpipe_blocked(|| rustix::io::write(&w, b"x"));
        assert_eq!(got, Err(rustix::io::Errno::PIPE));
        // Nothing left pending for this thread.
        // SAFETY: a zeroed sigset_t filled by sigpending.
        let mut pending: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a local sigset_t.
        unsafe { libc::sigpending(&mut pending) };
        // SAFETY: `pending` was initialised above.
        assert_eq!(unsafe { libc::sigismember(&pending, libc::SIGPIPE) }, 0);
    }
}
