//! Small value types shared by every part of the swarm: hashes, identities and
//! the coordinates of pieces and blocks. They exist so that a piece index is
//! never confused with a byte offset, nor an info-hash with a peer id.

use std::fmt;

/// Size of a block: the unit of a `request`/`piece` exchange (BEP 3 convention).
pub const BLOCK_SIZE: u32 = 16 * 1024;

macro_rules! hash20 {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; 20]);

        impl $name {
            /// The raw 20 bytes.
            pub fn as_bytes(&self) -> &[u8; 20] {
                &self.0
            }
            /// Lower-case hex form (40 characters).
            pub fn to_hex(&self) -> String {
                hex_encode(&self.0)
            }
            /// Parses 40 hex digits.
            pub fn from_hex(s: &str) -> Option<Self> {
                let mut out = [0u8; 20];
                hex_decode(s, &mut out).then_some(Self(out))
            }
            /// Takes the first 20 bytes of a slice of exactly 20 bytes.
            pub fn from_slice(b: &[u8]) -> Option<Self> {
                <[u8; 20]>::try_from(b).ok().map(Self)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

hash20!(
    InfoHash,
    "SHA-1 of a torrent's bencoded info dictionary (BEP 3): the swarm's name."
);
hash20!(
    PeerId,
    "The 20-byte id a client announces in its handshake and to trackers."
);
hash20!(
    PieceHash,
    "SHA-1 of one piece's bytes, as listed in the info dictionary."
);

impl PeerId {
    /// A fresh peer id in Azureus style: `-BW0100-` followed by 12 random bytes
    /// drawn from printable characters (some trackers reject binary ids).
    pub fn generate() -> Self {
        use rand::Rng;
        const PREFIX: &[u8; 8] = b"-BW0100-";
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(PREFIX);
        let mut rng = rand::rng();
        for b in &mut id[8..] {
            *b = ALPHABET[rng.random_range(0..ALPHABET.len())];
        }
        PeerId(id)
    }
}

/// Index of a piece within a torrent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PieceIndex(pub u32);

/// One block: `len` bytes at `offset` inside piece `piece`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct BlockRef {
    /// The piece the block belongs to.
    pub piece: PieceIndex,
    /// Byte offset of the block inside the piece.
    pub offset: u32,
    /// Length in bytes (at most [`BLOCK_SIZE`] for blocks we request).
    pub len: u32,
}

impl BlockRef {
    /// Index of this block within its piece, assuming [`BLOCK_SIZE`] blocks.
    pub fn index_in_piece(&self) -> u32 {
        self.offset / BLOCK_SIZE
    }
}

/// Lower-case hex of arbitrary bytes.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Decodes hex (either case) into `out`; false unless `s` is exactly `2 * out.len()` hex digits.
pub fn hex_decode(s: &str, out: &mut [u8]) -> bool {
    let s = s.as_bytes();
    if s.len() != out.len() * 2 {
        return false;
    }
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    for (i, o) in out.iter_mut().enumerate() {
        match (nibble(s[2 * i]), nibble(s[2 * i + 1])) {
            (Some(h), Some(l)) => *o = (h << 4) | l,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let h = InfoHash([0xab; 20]);
        assert_eq!(h.to_hex(), "ab".repeat(20));
        assert_eq!(InfoHash::from_hex(&h.to_hex().to_uppercase()), Some(h));
        assert_eq!(InfoHash::from_hex("abc"), None);
        assert_eq!(InfoHash::from_hex(&"zz".repeat(20)), None);
    }

    #[test]
    fn generated_peer_ids_are_printable_and_distinct() {
        let a = PeerId::generate();
        let b = PeerId::generate();
        assert_ne!(a, b);
        assert!(a.0.iter().all(|c| c.is_ascii_graphic()));
        assert_eq!(&a.0[..8], b"-BW0100-");
    }
}
