//! Secret bytes in protected memory.

use std::fmt;

use crate::SecretError;
use crate::sys::{self, Region};

/// Which protections the kernel actually applied to a secret's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protections {
    /// The bytes live in `memfd_secret(2)` memory: removed from the kernel's direct map,
    /// unreachable through `/proc/<pid>/mem` and `ptrace` peeks, never swapped.
    pub memfd_secret: bool,
    /// The pages are locked in RAM (never written to swap).
    pub mlocked: bool,
    /// The pages are excluded from core dumps (`MADV_DONTDUMP` or secretmem's `VM_DONTDUMP`).
    pub dontdump: bool,
}

/// Secret bytes held in protected memory (see [`Protections`]), zeroed on drop.
///
/// `Debug` prints only the length (`SecretBytes(<N bytes>)`); there is no `Display`, no
/// `Clone` (a copy is an explicit [`SecretBytes::from_slice`]) and no serialisation.
pub struct SecretBytes {
    region: Region,
    len: usize,
}

impl SecretBytes {
    /// Copies `bytes` into freshly mapped protected memory.
    ///
    /// # Errors
    /// [`SecretError::Memory`] when no memory can be mapped at all.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SecretError> {
        let mut buf = SecretBuf::with_capacity(bytes.len())?;
        buf.extend_from_slice(bytes, usize::MAX)?;
        Ok(buf.finish())
    }

    /// Moves `bytes` into protected memory and zeroes the vector's buffer (its whole capacity)
    /// before freeing it. The caller should not have made other copies.
    ///
    /// # Errors
    /// As [`SecretBytes::from_slice`]; the vector is zeroed on the error path too.
    pub fn from_vec(bytes: Vec<u8>) -> Result<Self, SecretError> {
        let out = Self::from_slice(&bytes);
        wipe_vec(bytes);
        out
    }

    /// The secret bytes. Keep the borrow short and never copy them into ordinary memory.
    #[must_use]
    pub fn expose(&self) -> &[u8] {
        &self.region.as_slice()[..self.len]
    }

    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the secret has no bytes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Which protections apply to the memory holding these bytes.
    #[must_use]
    pub fn protections(&self) -> Protections {
        self.region.protections()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<{} bytes>)", self.len)
    }
}

/// Zeroes a vector's whole buffer (length and spare capacity) before freeing it.
pub(crate) fn wipe_vec(mut bytes: Vec<u8>) {
    bytes.resize(bytes.capacity(), 0);
    sys::zero(&mut bytes);
}

/// A growable buffer in protected memory, for reading a secret of unknown length without it
/// ever passing through the ordinary heap. Growing maps a larger region, copies, and zeroes
/// and unmaps the old one.
pub(crate) struct SecretBuf {
    region: Region,
    len: usize,
}

impl SecretBuf {
    pub(crate) fn with_capacity(min: usize) -> Result<Self, SecretError> {
        Ok(Self {
            region: Region::new(min).map_err(|source| SecretError::Memory {
                op: "mmap",
                bytes: min,
                source,
            })?,
            len: 0,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.region.as_slice()[..self.len]
    }

    /// Ensures at least `additional` free bytes, refusing to grow past `limit` bytes in total
    /// (the spare space handed out never exceeds `limit + 1 - len`, so a caller can detect an
    /// over-long input by reading one byte past the limit).
    pub(crate) fn spare(
        &mut self,
        additional: usize,
        limit: usize,
    ) -> Result<&mut [u8], SecretError> {
        let want = self.len.saturating_add(additional);
        if want > self.region.capacity() {
            let grown = want
                .max(self.region.capacity().saturating_mul(2))
                .min(limit.saturating_add(1))
                .max(want);
            let mut next = Region::new(grown).map_err(|source| SecretError::Memory {
                op: "mmap",
                bytes: grown,
                source,
            })?;
            next.as_mut_slice()[..self.len].copy_from_slice(&self.region.as_slice()[..self.len]);
            // The old region is zeroed and unmapped by its Drop.
            self.region = next;
        }
        let end = self
            .region
            .capacity()
            .min(limit.saturating_add(1))
            .max(self.len);
        Ok(&mut self.region.as_mut_slice()[self.len..end])
    }

    /// Marks `n` more bytes (written into [`SecretBuf::spare`]) as filled.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len = self.len.saturating_add(n).min(self.region.capacity());
    }

    pub(crate) fn extend_from_slice(
        &mut self,
        bytes: &[u8],
        limit: usize,
    ) -> Result<(), SecretError> {
        if bytes.len() > limit.saturating_sub(self.len) {
            return Err(SecretError::TooLarge { limit });
        }
        let spare = self.spare(bytes.len(), limit)?;
        spare[..bytes.len()].copy_from_slice(bytes);
        self.advance(bytes.len());
        Ok(())
    }

    /// Drops bytes past `len` (zeroing them).
    pub(crate) fn truncate(&mut self, len: usize) {
        if len < self.len {
            sys::zero(&mut self.region.as_mut_slice()[len..self.len]);
            self.len = len;
        }
    }

    pub(crate) fn finish(self) -> SecretBytes {
        SecretBytes {
            region: self.region,
            len: self.len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_keeps_bytes_and_truncate_zeroes_the_tail() {
        let mut buf = SecretBuf::with_capacity(10).unwrap();
        let data: Vec<u8> = (0..=255u8).cycle().take(3 * 4096 + 7).collect();
        for chunk in data.chunks(1000) {
            buf.extend_from_slice(chunk, usize::MAX).unwrap();
        }
        assert_eq!(buf.as_slice(), &data[..]);
        buf.truncate(5);
        assert_eq!(buf.as_slice(), &data[..5]);
        let spare = buf.spare(100, usize::MAX).unwrap();
        assert!(spare.iter().all(|&b| b == 0), "truncated bytes were zeroed");
    }

    #[test]
    fn limit_is_enforced_and_spare_never_exceeds_it() {
        let mut buf = SecretBuf::with_capacity(1).unwrap();
        assert!(matches!(
            buf.extend_from_slice(&[1; 11], 10),
            Err(SecretError::TooLarge { limit: 10 })
        ));
        buf.extend_from_slice(&[1; 10], 10).unwrap();
        // One byte past the limit is offered, so a reader can detect over-long input.
        assert_eq!(buf.spare(4096, 10).unwrap().len(), 1);
    }

    #[test]
    fn from_vec_copies_exactly() {
        let s = SecretBytes::from_vec(vec![9, 8, 7]).unwrap();
        assert_eq!(s.expose(), &[9, 8, 7]);
        assert_eq!(format!("{s:?}"), "SecretBytes(<3 bytes>)");
    }
}
