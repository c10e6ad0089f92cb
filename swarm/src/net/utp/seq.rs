//! µTP sequence and acknowledgement numbers: 16 bits that wrap (BEP 29 "seq_nr"/"ack_nr").
//!
//! Ordering is by wrapping distance: `a` is before `b` when `b - a`, taken modulo 2¹⁶, is in
//! 1..2¹⁵. It is sound as long as fewer than 2¹⁵ packets are outstanding at once, which
//! the connection core guarantees by keeping at most 4096 packets in flight or buffered ahead
//! of a gap.

use std::fmt;

/// A 16-bit wrapping packet sequence number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Seq(pub u16);

impl Seq {
    /// The number `n` packets after this one.
    pub fn plus(self, n: u16) -> Seq {
        Seq(self.0.wrapping_add(n))
    }

    /// The number `n` packets before this one.
    pub fn minus(self, n: u16) -> Seq {
        Seq(self.0.wrapping_sub(n))
    }

    /// The next number.
    pub fn next(self) -> Seq {
        self.plus(1)
    }

    /// Signed distance from `self` to `later` (positive when `later` is after `self`).
    pub fn distance_to(self, later: Seq) -> i32 {
        i32::from(later.0.wrapping_sub(self.0) as i16)
    }

    /// Whether `self` comes strictly before `other`.
    pub fn is_before(self, other: Seq) -> bool {
        self.distance_to(other) > 0
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_wraps() {
        assert!(Seq(1).is_before(Seq(2)));
        assert!(Seq(65535).is_before(Seq(0)));
        assert!(Seq(65500).is_before(Seq(30)));
        assert!(!Seq(30).is_before(Seq(65500)));
        assert!(!Seq(7).is_before(Seq(7)));
        assert_eq!(Seq(65535).distance_to(Seq(2)), 3);
        assert_eq!(Seq(2).distance_to(Seq(65535)), -3);
        assert_eq!(Seq(65535).next(), Seq(0));
        assert_eq!(Seq(0).minus(1), Seq(65535));
    }
}
