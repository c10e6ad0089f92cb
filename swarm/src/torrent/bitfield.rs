//! A fixed-size set of piece indices, stored as words so that "does this peer have anything
//! we still want" is a few word operations rather than a loop over pieces.

/// A set of pieces `0..len`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bitfield {
    words: Vec<u64>,
    len: u32,
    ones: u32,
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.ones, self.len)
    }
}

impl Bitfield {
    /// An empty set over `len` pieces.
    pub fn new(len: u32) -> Self {
        Bitfield {
            words: vec![0; (len as usize).div_ceil(64)],
            len,
            ones: 0,
        }
    }

    /// The full set over `len` pieces.
    pub fn full(len: u32) -> Self {
        let mut b = Bitfield {
            words: vec![u64::MAX; (len as usize).div_ceil(64)],
            len,
            ones: len,
        };
        b.clear_tail();
        b
    }

    /// Reads a wire bitfield (BEP 3: high bit of the first byte is piece 0). Returns `None`
    /// when the byte length is wrong; spare bits at the end are ignored.
    pub fn from_wire(bytes: &[u8], len: u32) -> Option<Self> {
        if bytes.len() != (len as usize).div_ceil(8) {
            return None;
        }
        let mut b = Bitfield::new(len);
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            // Bit 7 of byte 0 is piece 0; reversing each byte's bits in a big-endian word
            // maps piece i to bit i of our little-endian-indexed words.
            b.words[i] = u64::from_be_bytes(w).reverse_bits();
        }
        b.clear_tail();
        b.ones = b.words.iter().map(|w| w.count_ones()).sum();
        Some(b)
    }

    /// The wire form.
    pub fn to_wire(&self) -> Vec<u8> {
        let n = (self.len as usize).div_ceil(8);
        let mut out = Vec::with_capacity(n + 8);
        for w in &self.words {
            out.extend_from_slice(&w.reverse_bits().to_be_bytes());
        }
        out.truncate(n);
        out
    }

    fn clear_tail(&mut self) {
        let rem = self.len % 64;
        if rem != 0 {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << rem) - 1;
            }
        }
    }

    /// Number of pieces the set ranges over.
    pub fn len(&self) -> u32 {
        self.len
    }
    /// True when the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Number of members.
    pub fn count(&self) -> u32 {
        self.ones
    }
    /// True when every piece is a member.
    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// Membership; out-of-range indices are never members.
    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Adds or removes `i`; returns whether the set changed. Out-of-range indices are ignored.
    pub fn set(&mut self, i: u32, on: bool) -> bool {
        if i >= self.len {
            return false;
        }
        let w = &mut self.words[(i / 64) as usize];
        let bit = 1u64 << (i % 64);
        let was = *w & bit != 0;
        if was == on {
            return false;
        }
        if on {
            *w |= bit;
            self.ones += 1;
        } else {
            *w &= !bit;
            self.ones -= 1;
        }
        true
    }

    /// Whether any piece is in `self` and in `want` but not in `have`.
    pub fn any_wanted(&self, want: &Bitfield, have: &Bitfield) -> bool {
        self.words
            .iter()
            .zip(&want.words)
            .zip(&have.words)
            .any(|((p, w), h)| p & w & !h != 0)
    }

    /// Iterates over members in increasing order.
    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros();
                w &= w - 1;
                Some(wi as u32 * 64 + b)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_order_is_high_bit_first() {
        let b = Bitfield::from_wire(&[0b1000_0001, 0b0100_0000], 10).unwrap();
        assert_eq!(b.ones().collect::<Vec<_>>(), vec![0, 7, 9]);
        assert_eq!(b.to_wire(), vec![0b1000_0001, 0b0100_0000]);
        // Spare bits are dropped, wrong lengths refused.
        let b = Bitfield::from_wire(&[0xff, 0xff], 10).unwrap();
        assert_eq!(b.count(), 10);
        assert!(b.is_full());
        assert_eq!(b.to_wire(), vec![0xff, 0b1100_0000]);
        assert!(Bitfield::from_wire(&[0xff], 10).is_none());
    }

    #[test]
    fn set_get_count_and_wanted() {
        let mut have = Bitfield::new(130);
        let mut peer = Bitfield::new(130);
        let want = Bitfield::full(130);
        assert!(peer.set(129, true));
        assert!(!peer.set(129, true));
        assert!(!peer.set(500, true));
        assert!(peer.any_wanted(&want, &have));
        have.set(129, true);
        assert!(!peer.any_wanted(&want, &have));
        assert_eq!(Bitfield::full(130).count(), 130);
        assert_eq!(Bitfield::full(130).ones().last(), Some(129));
        let big = Bitfield::full(1000);
        assert_eq!(Bitfield::from_wire(&big.to_wire(), 1000).unwrap(), big);
    }
}
