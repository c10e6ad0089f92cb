//! The peer wire protocol as pure encode/decode, no I/O: the handshake and messages of BEP 3,
//! the fast extension (BEP 6), the extension protocol (BEP 10) and the extended messages
//! burrow speaks — ut_metadata (BEP 9), ut_pex (BEP 11) and ut_holepunch (BEP 55).

mod extended;
mod handshake;
mod holepunch;
mod message;
mod metadata;
pub mod mse;
mod pex;

pub use extended::{ExtHandshake, ExtensionIds, LOCAL_EXTENSIONS};
pub use handshake::{Handshake, HANDSHAKE_LEN, PROTOCOL};
pub use holepunch::{HolepunchError, HolepunchMsg, HolepunchType};
pub use message::{Message, MessageId, MAX_MESSAGE_LEN, MAX_PIECE_MESSAGE_LEN};
pub use metadata::{MetadataMsg, METADATA_PIECE_SIZE};
pub(crate) use pex::parse_compact;
pub use pex::{PexFlags, PexMessage, PexPeer, MAX_PEX_PEERS};

/// Why bytes from a peer could not be understood. Any of these ends the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The handshake does not start with the BitTorrent protocol string.
    #[error("not a BitTorrent handshake")]
    BadHandshake,
    /// A length prefix larger than the message kind allows.
    #[error("message of {len} bytes exceeds the {limit} byte limit")]
    TooLong {
        /// Declared length.
        len: usize,
        /// The limit for this kind of message.
        limit: usize,
    },
    /// A message whose length does not match its kind.
    #[error("message id {id} with a payload of {len} bytes")]
    BadLength {
        /// Message id.
        id: u8,
        /// Payload length.
        len: usize,
    },
    /// A message id burrow does not know.
    #[error("unknown message id {0}")]
    UnknownId(u8),
    /// An extended message that is not valid bencode or lacks required fields.
    #[error("bad extended message: {0}")]
    BadExtended(String),
}
