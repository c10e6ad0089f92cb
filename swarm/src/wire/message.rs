//! Length-prefixed peer messages (BEP 3) and the fast extension's messages (BEP 6).
//! Decoding checks the length prefix against per-kind limits *before* buffering a payload, so
//! a peer can never make us hold more than [`MAX_MESSAGE_LEN`] bytes for one message.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::WireError;
use crate::types::{BlockRef, PieceIndex, BLOCK_SIZE};

/// Largest message other than `piece`: room for the bitfield of a 2-million-piece torrent and
/// for BEP 10 messages such as a ut_metadata block with its dictionary.
pub const MAX_MESSAGE_LEN: usize = 256 * 1024;
/// Largest `piece` message: one 16 KiB block plus its 9-byte header. Peers that send larger
/// blocks (which nobody requested from them) are dropped.
pub const MAX_PIECE_MESSAGE_LEN: usize = 9 + BLOCK_SIZE as usize;

/// Message ids.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageId {
    Choke = 0,
    Unchoke = 1,
    Interested = 2,
    NotInterested = 3,
    Have = 4,
    Bitfield = 5,
    Request = 6,
    Piece = 7,
    Cancel = 8,
    Port = 9,
    Suggest = 13,
    HaveAll = 14,
    HaveNone = 15,
    Reject = 16,
    AllowedFast = 17,
    Extended = 20,
}

/// One peer-wire message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Zero-length message keeping an idle connection open.
    KeepAlive,
    /// We will not answer requests.
    Choke,
    /// We will answer requests.
    Unchoke,
    /// We want something the peer has.
    Interested,
    /// We want nothing the peer has.
    NotInterested,
    /// The sender now has this piece.
    Have(PieceIndex),
    /// The sender's pieces, one bit each, high bit first.
    Bitfield(Bytes),
    /// Asks for a block.
    Request(BlockRef),
    /// A block's data.
    Piece {
        /// The piece.
        piece: PieceIndex,
        /// Offset inside the piece.
        offset: u32,
        /// The bytes.
        data: Bytes,
    },
    /// Withdraws a request.
    Cancel(BlockRef),
    /// The sender's DHT port (BEP 5).
    Port(u16),
    /// BEP 6: a piece the sender suggests we fetch.
    Suggest(PieceIndex),
    /// BEP 6: the sender has every piece.
    HaveAll,
    /// BEP 6: the sender has no piece.
    HaveNone,
    /// BEP 6: a request the sender will not serve.
    Reject(BlockRef),
    /// BEP 6: a piece we may request even while choked.
    AllowedFast(PieceIndex),
    /// BEP 10: an extended message, with the receiver's id for the extension.
    Extended {
        /// Extension id (0 is the extension handshake).
        id: u8,
        /// The message body.
        payload: Bytes,
    },
}

impl Message {
    /// Decodes one message from the front of `buf`, or returns `Ok(None)` when more bytes are
    /// needed. On `Err` the connection must be dropped.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Message>, WireError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
        if len == 0 {
            buf.advance(4);
            return Ok(Some(Message::KeepAlive));
        }
        let limit = match buf.get(4) {
            Some(&7) => MAX_PIECE_MESSAGE_LEN,
            _ => MAX_MESSAGE_LEN,
        };
        if len > limit {
            return Err(WireError::TooLong { len, limit });
        }
        if buf.len() < 4 + len {
            buf.reserve(4 + len - buf.len());
            return Ok(None);
        }
        buf.advance(4);
        let mut body = buf.split_to(len);
        let id = body.get_u8();
        Self::parse(id, body).map(Some)
    }

    /// How many more bytes are needed before [`Message::decode`] can make progress, if known.
    pub fn bytes_needed(buf: &[u8]) -> usize {
        if buf.len() < 4 {
            return 4 - buf.len();
        }
        let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
        (4 + len).saturating_sub(buf.len())
    }

    fn parse(id: u8, mut p: BytesMut) -> Result<Message, WireError> {
        let n = p.len();
        let exact = |want: usize| {
            if n == want {
                Ok(())
            } else {
                Err(WireError::BadLength { id, len: n })
            }
        };
        let block = |p: &mut BytesMut| BlockRef {
            piece: PieceIndex(p.get_u32()),
            offset: p.get_u32(),
            len: p.get_u32(),
        };
        Ok(match id {
            0 => exact(0).map(|_| Message::Choke)?,
            1 => exact(0).map(|_| Message::Unchoke)?,
            2 => exact(0).map(|_| Message::Interested)?,
            3 => exact(0).map(|_| Message::NotInterested)?,
            4 => exact(4).map(|_| Message::Have(PieceIndex(p.get_u32())))?,
            5 => Message::Bitfield(p.freeze()),
            6 => exact(12).map(|_| Message::Request(block(&mut p)))?,
            7 => {
                if n < 8 {
                    return Err(WireError::BadLength { id, len: n });
                }
                let piece = PieceIndex(p.get_u32());
                let offset = p.get_u32();
                Message::Piece {
                    piece,
                    offset,
                    data: p.freeze(),
                }
            }
            8 => exact(12).map(|_| Message::Cancel(block(&mut p)))?,
            9 => exact(2).map(|_| Message::Port(p.get_u16()))?,
            13 => exact(4).map(|_| Message::Suggest(PieceIndex(p.get_u32())))?,
            14 => exact(0).map(|_| Message::HaveAll)?,
            15 => exact(0).map(|_| Message::HaveNone)?,
            16 => exact(12).map(|_| Message::Reject(block(&mut p)))?,
            17 => exact(4).map(|_| Message::AllowedFast(PieceIndex(p.get_u32())))?,
            20 => {
                if n < 1 {
                    return Err(WireError::BadLength { id, len: n });
                }
                let ext = p.get_u8();
                Message::Extended {
                    id: ext,
                    payload: p.freeze(),
                }
            }
            other => return Err(WireError::UnknownId(other)),
        })
    }

    /// Appends the encoded message to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let simple = |out: &mut BytesMut, id: MessageId| {
            out.put_u32(1);
            out.put_u8(id as u8);
        };
        let with_u32 = |out: &mut BytesMut, id: MessageId, v: u32| {
            out.put_u32(5);
            out.put_u8(id as u8);
            out.put_u32(v);
        };
        let with_block = |out: &mut BytesMut, id: MessageId, b: &BlockRef| {
            out.put_u32(13);
            out.put_u8(id as u8);
            out.put_u32(b.piece.0);
            out.put_u32(b.offset);
            out.put_u32(b.len);
        };
        match self {
            Message::KeepAlive => out.put_u32(0),
            Message::Choke => simple(out, MessageId::Choke),
            Message::Unchoke => simple(out, MessageId::Unchoke),
            Message::Interested => simple(out, MessageId::Interested),
            Message::NotInterested => simple(out, MessageId::NotInterested),
            Message::Have(p) => with_u32(out, MessageId::Have, p.0),
            Message::Bitfield(b) => {
                out.put_u32(1 + b.len() as u32);
                out.put_u8(MessageId::Bitfield as u8);
                out.extend_from_slice(b);
            }
            Message::Request(b) => with_block(out, MessageId::Request, b),
            Message::Piece {
                piece,
                offset,
                data,
            } => {
                Self::encode_piece_header(out, *piece, *offset, data.len());
                out.extend_from_slice(data);
            }
            Message::Cancel(b) => with_block(out, MessageId::Cancel, b),
            Message::Port(p) => {
                out.put_u32(3);
                out.put_u8(MessageId::Port as u8);
                out.put_u16(*p);
            }
            Message::Suggest(p) => with_u32(out, MessageId::Suggest, p.0),
            Message::HaveAll => simple(out, MessageId::HaveAll),
            Message::HaveNone => simple(out, MessageId::HaveNone),
            Message::Reject(b) => with_block(out, MessageId::Reject, b),
            Message::AllowedFast(p) => with_u32(out, MessageId::AllowedFast, p.0),
            Message::Extended { id, payload } => {
                out.put_u32(2 + payload.len() as u32);
                out.put_u8(MessageId::Extended as u8);
                out.put_u8(*id);
                out.extend_from_slice(payload);
            }
        }
    }

    /// Writes only the 13-byte header of a `piece` message whose `len` data bytes follow, so
    /// block data can be sent without first copying it behind the header.
    pub fn encode_piece_header(out: &mut BytesMut, piece: PieceIndex, offset: u32, len: usize) {
        out.put_u32(9 + len as u32);
        out.put_u8(MessageId::Piece as u8);
        out.put_u32(piece.0);
        out.put_u32(offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_messages() -> Vec<Message> {
        let b = BlockRef {
            piece: PieceIndex(3),
            offset: 16384,
            len: 16384,
        };
        vec![
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have(PieceIndex(7)),
            Message::Bitfield(Bytes::from_static(&[0b1010_0000, 1])),
            Message::Request(b),
            Message::Piece {
                piece: PieceIndex(3),
                offset: 0,
                data: Bytes::from(vec![9u8; 16384]),
            },
            Message::Cancel(b),
            Message::Port(6881),
            Message::Suggest(PieceIndex(1)),
            Message::HaveAll,
            Message::HaveNone,
            Message::Reject(b),
            Message::AllowedFast(PieceIndex(2)),
            Message::Extended {
                id: 0,
                payload: Bytes::from_static(b"de"),
            },
        ]
    }

    #[test]
    fn every_message_round_trips_even_byte_by_byte() {
        let mut wire = BytesMut::new();
        for m in all_messages() {
            m.encode(&mut wire);
        }
        let all = wire.clone();
        let mut out = Vec::new();
        while let Some(m) = Message::decode(&mut wire).unwrap() {
            out.push(m);
        }
        assert_eq!(out, all_messages());
        assert!(wire.is_empty());

        let mut trickle = BytesMut::new();
        let mut out = Vec::new();
        for byte in all.iter() {
            trickle.put_u8(*byte);
            while let Some(m) = Message::decode(&mut trickle).unwrap() {
                out.push(m);
            }
        }
        assert_eq!(out, all_messages());
    }

    #[test]
    fn oversized_messages_are_refused_before_buffering() {
        let mut b = BytesMut::from(&[0, 0, 0x40, 0x0a, 7][..]); // piece of 16394 bytes
        assert_eq!(
            Message::decode(&mut b),
            Err(WireError::TooLong {
                len: 16394,
                limit: MAX_PIECE_MESSAGE_LEN
            })
        );
        let mut b = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            Message::decode(&mut b),
            Err(WireError::TooLong { .. })
        ));
        // A length that fits the limit but is not yet complete only asks for more bytes.
        let mut b = BytesMut::from(&[0, 0, 0x40, 0x09, 7][..]);
        assert_eq!(Message::decode(&mut b), Ok(None));
    }

    #[test]
    fn malformed_lengths_and_ids() {
        let mut b = BytesMut::from(&[0, 0, 0, 2, 0, 0][..]); // choke with a payload
        assert_eq!(
            Message::decode(&mut b),
            Err(WireError::BadLength { id: 0, len: 1 })
        );
        let mut b = BytesMut::from(&[0, 0, 0, 1, 99][..]);
        assert_eq!(Message::decode(&mut b), Err(WireError::UnknownId(99)));
        let mut b = BytesMut::from(&[0, 0, 0, 4, 6, 0, 0, 0][..]); // short request
        assert_eq!(
            Message::decode(&mut b),
            Err(WireError::BadLength { id: 6, len: 3 })
        );
    }
}
