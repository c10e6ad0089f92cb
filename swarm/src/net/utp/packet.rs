//! The µTP packet: a 20-byte header, a linked list of extensions, and the payload (BEP 29,
//! "header format"). Decoding never panics and checks every length against the datagram.

use super::seq::Seq;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 20;

/// Extension number of selective ACK (BEP 29).
const EXT_SACK: u8 = 1;

/// Extension number of burrow's datagram limit: a 2-byte big-endian count, the largest UDP
/// payload the sender of the packet can receive. It rides on SYN and on the acceptor's replies
/// to it; peers that do not know it skip it (BEP 29), and without it no packet larger than
/// the starting size is sent to them (libtorrent, for one, reads datagrams into a 1500-byte
/// buffer, so a larger one would arrive cut short).
pub const EXT_MAX_DATAGRAM: u8 = 0x6d;

/// Longest selective-ACK bitmask we send, in bytes (1024 packets past `ack_nr + 1`).
pub const MAX_SACK_BYTES: usize = 128;

/// Extensions a packet may chain before we call it malformed; real packets carry one or two.
const MAX_EXTENSIONS: usize = 8;

/// The five µTP packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// ST_DATA: carries payload; consumes a sequence number.
    Data = 0,
    /// ST_FIN: end of stream; consumes a sequence number.
    Fin = 1,
    /// ST_STATE: an acknowledgement without payload.
    State = 2,
    /// ST_RESET: the sender has no such connection.
    Reset = 3,
    /// ST_SYN: opens a connection.
    Syn = 4,
}

impl PacketType {
    fn from_nibble(n: u8) -> Option<Self> {
        Some(match n {
            0 => Self::Data,
            1 => Self::Fin,
            2 => Self::State,
            3 => Self::Reset,
            4 => Self::Syn,
            _ => return None,
        })
    }
}

/// The fixed header of a µTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Packet type.
    pub kind: PacketType,
    /// Connection id (the receiver's id for this connection, except in SYN).
    pub conn_id: u16,
    /// Sender's clock when sent, microseconds (wrapping).
    pub timestamp: u32,
    /// Sender's latest one-way delay sample of packets from us, microseconds.
    pub timestamp_diff: u32,
    /// Sender's free receive buffer, bytes.
    pub wnd_size: u32,
    /// Sequence number of this packet.
    pub seq_nr: Seq,
    /// Last in-order sequence number the sender received from us.
    pub ack_nr: Seq,
}

/// A decoded packet borrowing from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The header.
    pub header: Header,
    /// The selective-ACK bitmask, if present (bit i acknowledges `ack_nr + 2 + i`).
    pub sack: Option<&'a [u8]>,
    /// The sender's datagram limit ([`EXT_MAX_DATAGRAM`]), if present.
    pub max_datagram: Option<u16>,
    /// Offset of the payload within the datagram.
    pub payload_offset: usize,
}

/// Why a datagram is not a µTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than the header.
    #[error("shorter than a µTP header")]
    TooShort,
    /// Version is not 1.
    #[error("µTP version {0} is not 1")]
    Version(u8),
    /// Type nibble above 4.
    #[error("unknown µTP packet type {0}")]
    Type(u8),
    /// An extension runs past the end of the datagram, or too many are chained.
    #[error("malformed µTP extension")]
    Extension,
}

impl<'a> Packet<'a> {
    /// Decodes `data`.
    pub fn decode(data: &'a [u8]) -> Result<Self, PacketError> {
        if data.len() < HEADER_LEN {
            return Err(PacketError::TooShort);
        }
        let version = data[0] & 0x0f;
        if version != 1 {
            return Err(PacketError::Version(version));
        }
        let kind = PacketType::from_nibble(data[0] >> 4).ok_or(PacketError::Type(data[0] >> 4))?;
        let u16_at = |i: usize| u16::from_be_bytes([data[i], data[i + 1]]);
        let u32_at =
            |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
        let header = Header {
            kind,
            conn_id: u16_at(2),
            timestamp: u32_at(4),
            timestamp_diff: u32_at(8),
            wnd_size: u32_at(12),
            seq_nr: Seq(u16_at(16)),
            ack_nr: Seq(u16_at(18)),
        };
        let mut next_ext = data[1];
        let mut offset = HEADER_LEN;
        let mut sack = None;
        let mut max_datagram = None;
        let mut count = 0;
        while next_ext != 0 {
            count += 1;
            if count > MAX_EXTENSIONS || offset + 2 > data.len() {
                return Err(PacketError::Extension);
            }
            let (this_ext, len) = (next_ext, usize::from(data[offset + 1]));
            next_ext = data[offset];
            let body = data
                .get(offset + 2..offset + 2 + len)
                .ok_or(PacketError::Extension)?;
            // BEP 29 asks for multiples of 4 bytes, but libtorrent sends as many bytes as its
            // reorder buffer spans; any length is read.
            if this_ext == EXT_SACK && len > 0 {
                sack = Some(body);
            }
            if this_ext == EXT_MAX_DATAGRAM && len == 2 {
                max_datagram = Some(u16::from_be_bytes([body[0], body[1]]));
            }
            // Unknown extensions are skipped, as BEP 29 asks.
            offset += 2 + len;
        }
        Ok(Packet {
            header,
            sack,
            max_datagram,
            payload_offset: offset,
        })
    }
}

/// Writes a packet into `out` (cleared first): header, optional selective ACK, payload.
pub fn encode(header: &Header, sack: Option<&[u8]>, payload: &[u8], out: &mut Vec<u8>) {
    encode_with_limit(header, sack, None, payload, out);
}

/// [`encode`] with an optional datagram limit ([`EXT_MAX_DATAGRAM`]) after the selective ACK.
pub fn encode_with_limit(
    header: &Header,
    sack: Option<&[u8]>,
    max_datagram: Option<u16>,
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    out.clear();
    out.reserve(HEADER_LEN + sack.map_or(0, |s| 2 + s.len()) + 4 + payload.len());
    out.push((header.kind as u8) << 4 | 1);
    let limit_ext = if max_datagram.is_some() {
        EXT_MAX_DATAGRAM
    } else {
        0
    };
    out.push(if sack.is_some() { EXT_SACK } else { limit_ext });
    out.extend_from_slice(&header.conn_id.to_be_bytes());
    out.extend_from_slice(&header.timestamp.to_be_bytes());
    out.extend_from_slice(&header.timestamp_diff.to_be_bytes());
    out.extend_from_slice(&header.wnd_size.to_be_bytes());
    out.extend_from_slice(&header.seq_nr.0.to_be_bytes());
    out.extend_from_slice(&header.ack_nr.0.to_be_bytes());
    if let Some(mask) = sack {
        debug_assert!(!mask.is_empty() && mask.len() % 4 == 0 && mask.len() <= MAX_SACK_BYTES);
        out.push(limit_ext);
        out.push(mask.len() as u8);
        out.extend_from_slice(mask);
    }
    if let Some(limit) = max_datagram {
        out.push(0);
        out.push(2);
        out.extend_from_slice(&limit.to_be_bytes());
    }
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: PacketType) -> Header {
        Header {
            kind,
            conn_id: 0xbeef,
            timestamp: 0x0102_0304,
            timestamp_diff: 0x0506_0708,
            wnd_size: 1 << 20,
            seq_nr: Seq(65535),
            ack_nr: Seq(7),
        }
    }

    #[test]
    fn round_trip_with_and_without_sack() {
        let mut buf = Vec::new();
        encode(&header(PacketType::Data), None, b"payload", &mut buf);
        assert_eq!(buf.len(), HEADER_LEN + 7);
        assert_eq!(buf[0], 0x01);
        let p = Packet::decode(&buf).unwrap();
        assert_eq!(p.header, header(PacketType::Data));
        assert_eq!(p.sack, None);
        assert_eq!(&buf[p.payload_offset..], b"payload");

        encode(
            &header(PacketType::State),
            Some(&[0b101, 0, 0, 0x80]),
            &[],
            &mut buf,
        );
        assert_eq!(buf[0], 0x21);
        assert_eq!(buf[1], 1);
        let p = Packet::decode(&buf).unwrap();
        assert_eq!(p.header.kind, PacketType::State);
        assert_eq!(p.sack, Some(&[0b101, 0, 0, 0x80][..]));
        assert_eq!(p.payload_offset, buf.len());
    }

    #[test]
    fn sacks_of_any_length_are_read() {
        // libtorrent sends (span + 7) / 8 bytes, not a multiple of 4.
        let mut buf = Vec::new();
        encode(&header(PacketType::State), None, &[], &mut buf);
        buf[1] = EXT_SACK;
        buf.extend_from_slice(&[0, 5, 1, 2, 3, 4, 5]);
        assert_eq!(
            Packet::decode(&buf).unwrap().sack,
            Some(&[1, 2, 3, 4, 5][..])
        );
        let mut long = buf[..HEADER_LEN].to_vec();
        long.extend_from_slice(&[0, 255]);
        long.extend_from_slice(&[0xff; 255]);
        assert_eq!(
            Packet::decode(&long).unwrap().sack.map(<[u8]>::len),
            Some(255)
        );
        // An empty SACK says nothing.
        let mut empty = buf[..HEADER_LEN].to_vec();
        empty.extend_from_slice(&[0, 0]);
        assert_eq!(Packet::decode(&empty).unwrap().sack, None);
    }

    #[test]
    fn datagram_limit_round_trips_alone_and_after_a_sack() {
        let mut buf = Vec::new();
        encode_with_limit(&header(PacketType::Syn), None, Some(65_535), &[], &mut buf);
        assert_eq!(buf[1], EXT_MAX_DATAGRAM);
        assert_eq!(buf.len(), HEADER_LEN + 4);
        let p = Packet::decode(&buf).unwrap();
        assert_eq!((p.max_datagram, p.sack), (Some(65_535), None));
        encode_with_limit(
            &header(PacketType::State),
            Some(&[1, 0, 0, 0]),
            Some(9_000),
            b"",
            &mut buf,
        );
        let p = Packet::decode(&buf).unwrap();
        assert_eq!(p.max_datagram, Some(9_000));
        assert_eq!(p.sack, Some(&[1, 0, 0, 0][..]));
        assert_eq!(p.payload_offset, buf.len());
        // A limit of the wrong length is ignored, not misread.
        let mut odd = buf[..HEADER_LEN].to_vec();
        odd[1] = EXT_MAX_DATAGRAM;
        odd.extend_from_slice(&[0, 3, 1, 2, 3]);
        assert_eq!(Packet::decode(&odd).unwrap().max_datagram, None);
    }

    #[test]
    fn unknown_extensions_are_skipped() {
        let mut buf = Vec::new();
        encode(&header(PacketType::Data), None, &[], &mut buf);
        buf[1] = 9; // first extension: unknown type 9, then a SACK
        buf.extend_from_slice(&[EXT_SACK, 3, 0xaa, 0xbb, 0xcc]);
        buf.extend_from_slice(&[0, 4, 1, 2, 3, 4]);
        buf.extend_from_slice(b"xyz");
        let p = Packet::decode(&buf).unwrap();
        assert_eq!(p.sack, Some(&[1, 2, 3, 4][..]));
        assert_eq!(&buf[p.payload_offset..], b"xyz");
    }

    #[test]
    fn malformed_packets_are_errors() {
        let mut buf = Vec::new();
        encode(&header(PacketType::Syn), None, &[], &mut buf);
        assert_eq!(Packet::decode(&buf[..19]), Err(PacketError::TooShort));
        let mut bad = buf.clone();
        bad[0] = 0x42;
        assert_eq!(Packet::decode(&bad), Err(PacketError::Version(2)));
        bad[0] = 0x51;
        assert_eq!(Packet::decode(&bad), Err(PacketError::Type(5)));
        // An extension that claims more bytes than exist.
        let mut bad = buf.clone();
        bad[1] = EXT_SACK;
        bad.extend_from_slice(&[0, 8, 1, 2, 3]);
        assert_eq!(Packet::decode(&bad), Err(PacketError::Extension));
        // An extension chain that never ends.
        let mut bad = buf;
        bad[1] = 9;
        for _ in 0..20 {
            bad.extend_from_slice(&[9, 0]);
        }
        assert_eq!(Packet::decode(&bad), Err(PacketError::Extension));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics() {
        let mut state = 0x1234_5678u32;
        for len in 0..200 {
            for _ in 0..50 {
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 17;
                        state ^= state << 5;
                        state as u8
                    })
                    .collect();
                let mut data = data;
                if let Some(b) = data.first_mut() {
                    *b = (*b & 0x70) | 1;
                }
                let _ = Packet::decode(&data);
            }
        }
    }
}
