//! 160-bit keys: node IDs and info-hashes share one keyspace under the XOR metric (BEP 5,
//! "distance metric").

use std::fmt;

use rand::{Rng, RngCore};

/// The identifier of a DHT node.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 20]);

/// The SHA-1 info-hash of a torrent (the DHT key its peers are stored under).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

/// The XOR distance between two keys; compares like the 160-bit big-endian integer it is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Distance(pub [u8; 20]);

impl Ord for Distance {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Two integer compares instead of a byte-wise memcmp: this runs for every contact
        // considered when answering find_node/get_peers.
        let (a, b) = (&self.0, &other.0);
        let hi = |x: &[u8; 20]| u128::from_be_bytes(x[..16].try_into().unwrap_or_default());
        let lo = |x: &[u8; 20]| u32::from_be_bytes(x[16..].try_into().unwrap_or_default());
        hi(a).cmp(&hi(b)).then_with(|| lo(a).cmp(&lo(b)))
    }
}

impl PartialOrd for Distance {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Distance {
    /// The distance between two keys.
    #[inline]
    pub fn between(a: &[u8; 20], b: &[u8; 20]) -> Distance {
        let mut d = [0u8; 20];
        for i in 0..20 {
            d[i] = a[i] ^ b[i];
        }
        Distance(d)
    }

    /// Number of leading zero bits: the length of the common prefix of the two keys.
    #[inline]
    pub fn leading_zeros(&self) -> usize {
        leading_zeros(&self.0)
    }
}

#[inline]
pub(crate) fn leading_zeros(key: &[u8; 20]) -> usize {
    for (i, b) in key.iter().enumerate() {
        if *b != 0 {
            return i * 8 + b.leading_zeros() as usize;
        }
    }
    160
}

macro_rules! key_type {
    ($t:ident) => {
        impl $t {
            /// Wraps 20 bytes taken from a slice; `None` unless the slice is exactly 20 bytes.
            pub fn from_slice(b: &[u8]) -> Option<Self> {
                <[u8; 20]>::try_from(b).ok().map($t)
            }

            /// The raw 20 bytes.
            pub fn as_bytes(&self) -> &[u8; 20] {
                &self.0
            }

            /// The XOR distance to another key.
            pub fn distance(&self, other: &[u8; 20]) -> Distance {
                Distance::between(&self.0, other)
            }
        }

        impl From<[u8; 20]> for $t {
            fn from(b: [u8; 20]) -> Self {
                $t(b)
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($t))
            }
        }
    };
}

key_type!(NodeId);
key_type!(InfoHash);

impl NodeId {
    /// A uniformly random ID.
    pub fn random(rng: &mut impl RngCore) -> NodeId {
        let mut b = [0u8; 20];
        rng.fill_bytes(&mut b);
        NodeId(b)
    }
}

/// A random key that shares exactly `prefix_len` leading bits with `base` (the bit after the
/// prefix differs), i.e. a key in the routing-table bucket `prefix_len` of a node with ID `base`.
/// For `prefix_len >= 160` returns `base` itself.
pub(crate) fn random_in_bucket(base: &[u8; 20], prefix_len: usize, rng: &mut impl Rng) -> [u8; 20] {
    if prefix_len >= 160 {
        return *base;
    }
    let mut k = [0u8; 20];
    rng.fill_bytes(&mut k);
    let byte = prefix_len / 8;
    let bit = prefix_len % 8;
    k[..byte].copy_from_slice(&base[..byte]);
    let keep_mask = if bit == 0 { 0u8 } else { 0xffu8 << (8 - bit) };
    let flip = 0x80u8 >> bit;
    // Copy the prefix bits, force the next bit to differ from `base`, keep the rest random.
    k[byte] = (base[byte] & keep_mask) | (!base[byte] & flip) | (k[byte] & !keep_mask & !flip);
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn distance_orders_like_integers() {
        let a = [0u8; 20];
        let mut b = [0u8; 20];
        b[19] = 1;
        let mut c = [0u8; 20];
        c[0] = 0x80;
        assert!(Distance::between(&a, &b) < Distance::between(&a, &c));
        assert_eq!(Distance::between(&a, &c).leading_zeros(), 0);
        assert_eq!(Distance::between(&a, &b).leading_zeros(), 159);
        assert_eq!(Distance::between(&a, &a).leading_zeros(), 160);
        // Agrees with byte-wise comparison everywhere, including the last four bytes.
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..1000 {
            let mut x = NodeId::random(&mut rng).0;
            let mut y = NodeId::random(&mut rng).0;
            let shared = rand::Rng::random_range(&mut rng, 0..20);
            y[..shared].copy_from_slice(&x[..shared]);
            if shared == 19 {
                x[19] = y[19];
            }
            assert_eq!(Distance(x).cmp(&Distance(y)), x.cmp(&y));
        }
    }

    #[test]
    fn random_in_bucket_has_requested_prefix() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..50 {
            let base = NodeId::random(&mut rng).0;
            for p in [0, 1, 7, 8, 9, 63, 159] {
                let k = random_in_bucket(&base, p, &mut rng);
                assert_eq!(Distance::between(&base, &k).leading_zeros(), p);
            }
        }
    }

    #[test]
    fn from_slice_checks_length() {
        assert!(NodeId::from_slice(&[1; 19]).is_none());
        assert_eq!(InfoHash::from_slice(&[1; 20]), Some(InfoHash([1; 20])));
        assert_eq!(format!("{}", InfoHash([0xab; 20])), "ab".repeat(20));
    }
}
