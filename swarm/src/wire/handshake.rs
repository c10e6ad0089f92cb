//! The 68-byte handshake that opens every peer connection (BEP 3), and the reserved bits that
//! announce the extension protocol (BEP 10), the fast extension (BEP 6) and DHT support (BEP 5).

use super::WireError;
use crate::types::{InfoHash, PeerId};

/// The protocol string, preceded on the wire by its length byte (19).
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Length of a whole handshake.
pub const HANDSHAKE_LEN: usize = 68;

/// A peer's handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// Eight bytes of feature bits.
    pub reserved: [u8; 8],
    /// The swarm the peer wants.
    pub info_hash: InfoHash,
    /// The peer's id.
    pub peer_id: PeerId,
}

impl Handshake {
    /// Our handshake: extension protocol, fast extension and DHT bits set.
    pub fn ours(info_hash: InfoHash, peer_id: PeerId) -> Self {
        let mut reserved = [0u8; 8];
        reserved[5] |= 0x10; // BEP 10
        reserved[7] |= 0x04 | 0x01; // BEP 6, BEP 5
        Handshake {
            reserved,
            info_hash,
            peer_id,
        }
    }

    /// Serialises the handshake.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut b = [0u8; HANDSHAKE_LEN];
        b[0] = 19;
        b[1..20].copy_from_slice(PROTOCOL);
        b[20..28].copy_from_slice(&self.reserved);
        b[28..48].copy_from_slice(&self.info_hash.0);
        b[48..68].copy_from_slice(&self.peer_id.0);
        b
    }

    /// Parses the first 48 bytes (protocol, reserved bits, info-hash): enough for a listener
    /// to pick the torrent before answering.
    pub fn decode_prefix(b: &[u8; 48]) -> Result<([u8; 8], InfoHash), WireError> {
        if b[0] != 19 || &b[1..20] != PROTOCOL {
            return Err(WireError::BadHandshake);
        }
        let reserved = b[20..28].try_into().expect("8 bytes");
        let info_hash = InfoHash(b[28..48].try_into().expect("20 bytes"));
        Ok((reserved, info_hash))
    }

    /// Parses a whole handshake.
    pub fn decode(b: &[u8; HANDSHAKE_LEN]) -> Result<Self, WireError> {
        let (reserved, info_hash) = Self::decode_prefix(b[..48].try_into().expect("48 bytes"))?;
        Ok(Handshake {
            reserved,
            info_hash,
            peer_id: PeerId(b[48..68].try_into().expect("20 bytes")),
        })
    }

    /// The peer speaks the extension protocol (BEP 10).
    pub fn supports_extensions(&self) -> bool {
        self.reserved[5] & 0x10 != 0
    }
    /// The peer speaks the fast extension (BEP 6).
    pub fn supports_fast(&self) -> bool {
        self.reserved[7] & 0x04 != 0
    }
    /// The peer runs a DHT node (BEP 5) and may send `port`.
    pub fn supports_dht(&self) -> bool {
        self.reserved[7] & 0x01 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bits() {
        let h = Handshake::ours(InfoHash([1; 20]), PeerId([2; 20]));
        let bytes = h.encode();
        assert_eq!(&bytes[..20], b"\x13BitTorrent protocol");
        let back = Handshake::decode(&bytes).unwrap();
        assert_eq!(back, h);
        assert!(back.supports_extensions() && back.supports_fast() && back.supports_dht());
        let mut bad = bytes;
        bad[3] = b'x';
        assert_eq!(Handshake::decode(&bad), Err(WireError::BadHandshake));
    }
}
