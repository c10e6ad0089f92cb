//! ut_metadata (BEP 9): fetching the info dictionary from peers in 16 KiB pieces, so a magnet
//! link is enough to join a swarm.

use serde::{Deserialize, Serialize};

use super::WireError;

/// Size of each metadata piece (the last may be shorter).
pub const METADATA_PIECE_SIZE: usize = 16 * 1024;

/// A ut_metadata message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataMsg {
    /// Asks for metadata piece `piece`.
    Request {
        /// Piece index.
        piece: u32,
    },
    /// Metadata piece `piece`, of a dictionary `total_size` bytes long.
    Data {
        /// Piece index.
        piece: u32,
        /// Size of the whole info dictionary.
        total_size: u32,
        /// The piece's bytes.
        data: bytes::Bytes,
    },
    /// The sender will not serve piece `piece`.
    Reject {
        /// Piece index.
        piece: u32,
    },
}

#[derive(Serialize, Deserialize)]
struct Raw {
    msg_type: i64,
    piece: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    total_size: Option<i64>,
}

impl MetadataMsg {
    /// Parses a ut_metadata payload (a dictionary, followed by the data for `Data`).
    pub fn decode(payload: &bytes::Bytes) -> Result<MetadataMsg, WireError> {
        let bad = |m: &str| WireError::BadExtended(format!("ut_metadata: {m}"));
        let (raw, rest): (Raw, &[u8]) = crate::bencode::decode_prefix(payload)
            .map_err(|e| WireError::BadExtended(e.to_string()))?;
        let piece = u32::try_from(raw.piece).map_err(|_| bad("piece out of range"))?;
        match raw.msg_type {
            0 => Ok(MetadataMsg::Request { piece }),
            1 => {
                let total_size = raw
                    .total_size
                    .and_then(|t| u32::try_from(t).ok())
                    .ok_or_else(|| bad("no total_size"))?;
                if rest.len() > METADATA_PIECE_SIZE {
                    return Err(bad("data piece larger than 16 KiB"));
                }
                let start = payload.len() - rest.len();
                Ok(MetadataMsg::Data {
                    piece,
                    total_size,
                    data: payload.slice(start..),
                })
            }
            2 => Ok(MetadataMsg::Reject { piece }),
            t => Err(bad(&format!("unknown msg_type {t}"))),
        }
    }

    /// Serialises the message.
    pub fn encode(&self) -> Vec<u8> {
        let (msg_type, piece, total_size) = match self {
            MetadataMsg::Request { piece } => (0, *piece, None),
            MetadataMsg::Data {
                piece, total_size, ..
            } => (1, *piece, Some(*total_size as i64)),
            MetadataMsg::Reject { piece } => (2, *piece, None),
        };
        let mut out = Vec::new();
        let raw = Raw {
            msg_type,
            piece: piece as i64,
            total_size,
        };
        librqbit_bencode::bencode_serialize_to_writer(&raw, &mut out)
            .expect("writing to a Vec cannot fail");
        if let MetadataMsg::Data { data, .. } = self {
            out.extend_from_slice(data);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_kinds() {
        for m in [
            MetadataMsg::Request { piece: 2 },
            MetadataMsg::Reject { piece: 0 },
            MetadataMsg::Data {
                piece: 1,
                total_size: 20000,
                data: bytes::Bytes::from(vec![5u8; 3616]),
            },
        ] {
            assert_eq!(
                MetadataMsg::decode(&bytes::Bytes::from(m.encode())).unwrap(),
                m
            );
        }
    }

    #[test]
    fn refuses_bad_messages() {
        for raw in [
            &b"d8:msg_typei1e5:piecei0ee"[..],
            b"d8:msg_typei9e5:piecei0ee",
            b"d8:msg_typei0e5:piecei-1ee",
            b"x",
        ] {
            assert!(MetadataMsg::decode(&bytes::Bytes::copy_from_slice(raw)).is_err());
        }
        let mut big = b"d8:msg_typei1e5:piecei0e10:total_sizei99999ee".to_vec();
        big.extend(vec![0u8; METADATA_PIECE_SIZE + 1]);
        assert!(MetadataMsg::decode(&bytes::Bytes::from(big)).is_err());
    }
}
