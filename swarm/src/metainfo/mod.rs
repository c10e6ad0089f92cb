//! Torrent descriptions: `.torrent` files (BEP 3, multi-tracker BEP 12, pad files BEP 47),
//! magnet links (BEP 9, `so` from BEP 53) and building new torrents. Everything here is pure:
//! bytes in, validated values or a typed [`MetainfoError`] out.

mod create;
mod info;
mod magnet;
mod path;
mod torrent;

pub use create::{create_torrent, CreateOptions};
pub use info::{FileEntry, Info};
pub(crate) use magnet::percent_encode_bytes;
pub use magnet::Magnet;
pub use path::sanitize_component;
pub use torrent::Metainfo;

/// Largest `.torrent` file or info dictionary we accept. Real torrents with a million pieces
/// stay below 25 MiB; anything bigger is treated as hostile.
pub const MAX_METAINFO_SIZE: usize = 32 * 1024 * 1024;
/// Largest piece length accepted. A piece is buffered whole in memory while it downloads.
pub const MAX_PIECE_LENGTH: u32 = 32 * 1024 * 1024;
/// Largest number of files in one torrent.
pub const MAX_FILES: usize = 1_000_000;
/// Largest nesting of path components of a single file.
pub const MAX_PATH_DEPTH: usize = 64;

/// Why a torrent description was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetainfoError {
    /// Not valid bencode, or a field of the wrong type.
    #[error("malformed bencode: {0}")]
    Bencode(String),
    /// The description is larger than [`MAX_METAINFO_SIZE`].
    #[error("metainfo is {0} bytes, more than the {MAX_METAINFO_SIZE} byte limit")]
    TooLarge(usize),
    /// A required field is absent.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field is present but its value cannot be right.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A BitTorrent v2-only torrent; only v1 (and hybrid) torrents are supported.
    #[error("BitTorrent v2-only torrents are not supported")]
    V2Only,
    /// The info dictionary does not hash to the info-hash we asked for.
    #[error("info dictionary does not match the info-hash")]
    HashMismatch,
    /// A magnet link we cannot use.
    #[error("bad magnet link: {0}")]
    Magnet(String),
}

impl MetainfoError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        MetainfoError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

impl From<crate::bencode::BencodeError> for MetainfoError {
    fn from(e: crate::bencode::BencodeError) -> Self {
        MetainfoError::Bencode(e.to_string())
    }
}

#[cfg(test)]
mod tests;

/// The info dictionary of a torrent made from `path` (a file or a folder) with pieces of
/// `piece_length` bytes, for tests that need real files behind a torrent.
#[cfg(test)]
pub(crate) fn info_of(path: &std::path::Path, piece_length: u32) -> Info {
    let opts = CreateOptions {
        piece_length: Some(piece_length),
        ..Default::default()
    };
    Metainfo::from_bytes(&create_torrent(path, &opts).expect("torrent from test files"))
        .expect("a torrent we made parses")
        .info
}
