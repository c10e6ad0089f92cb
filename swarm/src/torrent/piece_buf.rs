//! Buffers for whole pieces whose first byte sits on a 4 KiB boundary, so that a verified piece
//! can go to disk by direct I/O straight from the buffer it was assembled in.

use std::ops::{Deref, DerefMut};

/// Alignment of a [`PieceBuf`]'s start, and the unit of direct I/O.
pub const ALIGN: usize = 4096;

#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; ALIGN]);

/// A byte buffer that starts on a 4 KiB boundary. Growing it keeps the bytes it has; bytes
/// beyond an earlier, longer length may hold that earlier content.
#[derive(Default, Clone)]
pub struct PieceBuf {
    pages: Vec<Page>,
    len: usize,
}

impl PieceBuf {
    /// An empty buffer that allocates nothing.
    pub fn new() -> PieceBuf {
        PieceBuf::default()
    }

    /// A buffer holding a copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> PieceBuf {
        let mut b = PieceBuf::new();
        b.resize(bytes.len());
        b.copy_from_slice(bytes);
        b
    }

    /// Sets the length to `len` bytes, allocating only when it exceeds the capacity.
    pub fn resize(&mut self, len: usize) {
        let pages = len.div_ceil(ALIGN);
        if pages > self.pages.len() {
            self.pages.resize(pages, Page([0; ALIGN]));
        }
        self.len = len;
    }

    /// Bytes it can hold without allocating.
    pub fn capacity(&self) -> usize {
        self.pages.len() * ALIGN
    }
}

impl Deref for PieceBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `Page` is a plain byte array with no padding, so the pages are
        // `capacity()` initialised bytes in one allocation, and `len <= capacity()`.
        unsafe { std::slice::from_raw_parts(self.pages.as_ptr().cast::<u8>(), self.len) }
    }
}

impl DerefMut for PieceBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and the borrow of `self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.pages.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

impl AsRef<[u8]> for PieceBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for PieceBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PieceBuf({} bytes)", self.len)
    }
}

impl PartialEq for PieceBuf {
    fn eq(&self, other: &PieceBuf) -> bool {
        self[..] == other[..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_growable_and_keeps_content() {
        let mut b = PieceBuf::new();
        assert!(b.is_empty());
        assert_eq!(b.capacity(), 0);
        b.resize(10_000);
        assert_eq!(b.len(), 10_000);
        assert_eq!(b.capacity(), 3 * ALIGN);
        assert_eq!(b.as_ptr() as usize % ALIGN, 0);
        assert!(b.iter().all(|&x| x == 0));
        b[9_999] = 7;
        b[0] = 1;
        b.resize(5);
        assert_eq!(&b[..], &[1, 0, 0, 0, 0]);
        b.resize(10_000);
        assert_eq!((b[0], b[9_999]), (1, 7));
        b.resize(20_000);
        assert_eq!(b.as_ptr() as usize % ALIGN, 0);
        assert_eq!((b[0], b[9_999], b[19_999]), (1, 7, 0));
        let c = PieceBuf::from_slice(&[3, 4, 5]);
        assert_eq!(&c[..], &[3, 4, 5]);
        assert_eq!(c.clone(), c);
        assert_eq!(format!("{c:?}"), "PieceBuf(3 bytes)");
    }
}
