//! Which protocol a datagram arriving on the shared UDP socket belongs to, decided from its
//! first bytes alone.
//!
//! The three protocols are told apart without ambiguity by byte 0:
//! - KRPC (BEP 5) messages are bencoded dictionaries: `d` (0x64) … `e`.
//! - µTP (BEP 29) packets start with `type << 4 | version`, version 1 and type 0–4:
//!   0x01, 0x11, 0x21, 0x31 or 0x41, followed by the 20-byte header.
//! - UDP-tracker replies (BEP 15) start with a big-endian 32-bit action 0–3, so byte 0 is 0x00,
//!   followed by the 32-bit transaction id we chose.

/// Length of the fixed µTP header (BEP 29).
pub const UTP_HEADER_LEN: usize = 20;

/// Longest datagram accepted as µTP: any UDP payload. Other implementations keep packets
/// within an Ethernet MTU; burrow's grow up to the route's MTU toward peers that announce this
/// limit (64 KiB on loopback). The memory a flood can pin in the µTP queue is bounded by
/// `UdpConfig::utp_queue_bytes`, not by this.
pub const MAX_UTP_DATAGRAM_LEN: usize = 65_535;

/// Longest datagram accepted as KRPC. KRPC messages fit in one MTU (BEP 5 and BEP 51 size their
/// replies to it); the limit bounds the memory the DHT queue can pin.
pub const MAX_DHT_DATAGRAM_LEN: usize = 8192;

/// Shortest UDP-tracker reply: action and transaction id (an error reply with an empty message).
pub const TRACKER_REPLY_MIN_LEN: usize = 8;

/// Highest BEP 15 action: 0 connect, 1 announce, 2 scrape, 3 error.
const TRACKER_MAX_ACTION: u32 = 3;

/// Highest µTP packet type: ST_DATA 0, ST_FIN 1, ST_STATE 2, ST_RESET 3, ST_SYN 4.
const UTP_MAX_TYPE: u8 = 4;

/// The protocol a datagram was routed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatagramKind {
    /// A KRPC message for the DHT.
    Dht,
    /// A µTP packet.
    Utp,
    /// A reply to a UDP-tracker request; its transaction id is `tracker_transaction_id`.
    Tracker,
    /// Anything else; dropped.
    Unknown,
}

/// Classifies a datagram by its first bytes (see the module documentation).
pub fn classify(data: &[u8]) -> DatagramKind {
    let Some(&first) = data.first() else {
        return DatagramKind::Unknown;
    };
    if first == b'd' {
        // A bencoded dictionary always ends with `e`; anything shorter than `de` is not one.
        return if data.len() >= 2 && data.len() <= MAX_DHT_DATAGRAM_LEN && data.ends_with(b"e") {
            DatagramKind::Dht
        } else {
            DatagramKind::Unknown
        };
    }
    if first & 0x0f == 1 {
        return if first >> 4 <= UTP_MAX_TYPE
            && (UTP_HEADER_LEN..=MAX_UTP_DATAGRAM_LEN).contains(&data.len())
        {
            DatagramKind::Utp
        } else {
            DatagramKind::Unknown
        };
    }
    if data.len() >= TRACKER_REPLY_MIN_LEN {
        let action = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        if action <= TRACKER_MAX_ACTION {
            return DatagramKind::Tracker;
        }
    }
    DatagramKind::Unknown
}

/// The transaction id of a datagram classified as [`DatagramKind::Tracker`].
pub fn tracker_transaction_id(data: &[u8]) -> Option<u32> {
    let id = data.get(4..8)?;
    Some(u32::from_be_bytes([id[0], id[1], id[2], id[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utp_header(kind: u8, len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = kind << 4 | 1;
        p
    }

    #[test]
    fn krpc_is_dht() {
        assert_eq!(
            classify(b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe"),
            DatagramKind::Dht
        );
        assert_eq!(classify(b"de"), DatagramKind::Dht);
    }

    #[test]
    fn truncated_or_oversized_krpc_is_unknown() {
        assert_eq!(classify(b"d"), DatagramKind::Unknown);
        assert_eq!(classify(b"d1:a"), DatagramKind::Unknown);
        let mut big = vec![b'x'; MAX_DHT_DATAGRAM_LEN + 1];
        big[0] = b'd';
        *big.last_mut().unwrap() = b'e';
        assert_eq!(classify(&big), DatagramKind::Unknown);
    }

    #[test]
    fn every_utp_type_is_utp() {
        for kind in 0..=4 {
            assert_eq!(
                classify(&utp_header(kind, UTP_HEADER_LEN)),
                DatagramKind::Utp,
                "type {kind}"
            );
            assert_eq!(
                classify(&utp_header(kind, 1400)),
                DatagramKind::Utp,
                "type {kind}"
            );
        }
    }

    #[test]
    fn implausible_utp_is_unknown() {
        // Type 5..15 does not exist.
        assert_eq!(classify(&utp_header(5, 40)), DatagramKind::Unknown);
        // Shorter than the header.
        assert_eq!(
            classify(&utp_header(0, UTP_HEADER_LEN - 1)),
            DatagramKind::Unknown
        );
        assert_eq!(
            classify(&utp_header(0, MAX_UTP_DATAGRAM_LEN + 1)),
            DatagramKind::Unknown
        );
        // Version 2 is not µTP v1.
        let mut p = utp_header(0, 40);
        p[0] = 0x02;
        assert_eq!(classify(&p), DatagramKind::Unknown);
    }

    #[test]
    fn tracker_actions_are_tracker() {
        for action in 0u32..=3 {
            let mut p = action.to_be_bytes().to_vec();
            p.extend_from_slice(&0xdead_beefu32.to_be_bytes());
            p.extend_from_slice(&[0; 8]);
            assert_eq!(classify(&p), DatagramKind::Tracker);
            assert_eq!(tracker_transaction_id(&p), Some(0xdead_beef));
        }
        let mut p = 4u32.to_be_bytes().to_vec();
        p.extend_from_slice(&[0; 12]);
        assert_eq!(classify(&p), DatagramKind::Unknown);
        assert_eq!(classify(&[0, 0, 0, 1, 0, 0, 0]), DatagramKind::Unknown);
    }

    #[test]
    fn empty_is_unknown() {
        assert_eq!(classify(&[]), DatagramKind::Unknown);
    }
}
