//! The info dictionary (BEP 3): what the swarm shares, as validated, ready-to-use values.
//! File paths are sanitised here once, so storage never sees a raw path from the network.

use std::collections::HashSet;
use std::path::PathBuf;

use bytes::Bytes;
use librqbit_bencode::ByteBuf;
use serde::Deserialize;
use sha1::{Digest, Sha1};

use super::path::sanitize_component;
use super::{MetainfoError, MAX_FILES, MAX_METAINFO_SIZE, MAX_PATH_DEPTH, MAX_PIECE_LENGTH};
use crate::types::{InfoHash, PieceHash, PieceIndex};

/// One file of a torrent, at its place in the torrent's byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the download folder, already sanitised (includes the torrent's
    /// folder name for multi-file torrents).
    pub path: PathBuf,
    /// Length in bytes.
    pub length: u64,
    /// Offset of the file's first byte in the concatenation of all files.
    pub offset: u64,
    /// A BEP 47 pad file: its bytes are zeros, are never written and are not shown to users.
    pub pad: bool,
}

/// A validated info dictionary.
#[derive(Debug, Clone)]
pub struct Info {
    /// The torrent's name, sanitised (the single file's name, or the folder's).
    pub name: String,
    /// Bytes per piece (all pieces but the last).
    pub piece_length: u32,
    /// SHA-1 of each piece.
    pub pieces: Vec<PieceHash>,
    /// Files in torrent order; single-file torrents have exactly one.
    pub files: Vec<FileEntry>,
    /// Sum of all file lengths, pad files included.
    pub total_length: u64,
    /// BEP 27 private flag: no DHT, PEX or LSD for this torrent.
    pub private: bool,
    /// The info dictionary exactly as received, served to peers through BEP 9.
    pub raw: Bytes,
    /// SHA-1 of `raw`.
    pub info_hash: InfoHash,
}

#[derive(Deserialize)]
struct RawFile<'a> {
    length: i64,
    #[serde(borrow, default)]
    path: Vec<ByteBuf<'a>>,
    #[serde(borrow, rename = "path.utf-8", default)]
    path_utf8: Option<Vec<ByteBuf<'a>>>,
    #[serde(borrow, default)]
    attr: Option<ByteBuf<'a>>,
}

#[derive(Deserialize)]
struct RawInfo<'a> {
    #[serde(borrow, default)]
    name: Option<ByteBuf<'a>>,
    #[serde(borrow, rename = "name.utf-8", default)]
    name_utf8: Option<ByteBuf<'a>>,
    #[serde(rename = "piece length", default)]
    piece_length: Option<i64>,
    #[serde(borrow, default)]
    pieces: Option<ByteBuf<'a>>,
    #[serde(default)]
    length: Option<i64>,
    #[serde(borrow, default)]
    files: Option<Vec<RawFile<'a>>>,
    #[serde(default)]
    private: Option<i64>,
    #[serde(rename = "meta version", default)]
    meta_version: Option<i64>,
}

impl Info {
    /// Parses and validates a bencoded info dictionary.
    pub fn from_bytes(raw: &[u8]) -> Result<Info, MetainfoError> {
        if raw.len() > MAX_METAINFO_SIZE {
            return Err(MetainfoError::TooLarge(raw.len()));
        }
        let parsed: RawInfo<'_> = crate::bencode::decode(raw)?;
        let info_hash = InfoHash(Sha1::digest(raw).into());
        Self::validate(parsed, Bytes::copy_from_slice(raw), info_hash)
    }

    /// Parses an info dictionary fetched for `expected`, refusing it unless it hashes to it.
    pub fn from_bytes_checked(raw: &[u8], expected: InfoHash) -> Result<Info, MetainfoError> {
        if InfoHash(Sha1::digest(raw).into()) != expected {
            return Err(MetainfoError::HashMismatch);
        }
        Self::from_bytes(raw)
    }

    fn validate(r: RawInfo<'_>, raw: Bytes, info_hash: InfoHash) -> Result<Info, MetainfoError> {
        let pieces_raw = match r.pieces {
            Some(p) => p.0,
            None if r.meta_version == Some(2) => return Err(MetainfoError::V2Only),
            None => return Err(MetainfoError::Missing("pieces")),
        };
        let piece_length = r
            .piece_length
            .ok_or(MetainfoError::Missing("piece length"))?;
        if piece_length <= 0 || piece_length > MAX_PIECE_LENGTH as i64 {
            return Err(MetainfoError::invalid(
                "piece length",
                format!("{piece_length} is outside 1..={MAX_PIECE_LENGTH}"),
            ));
        }
        let piece_length = piece_length as u32;
        if pieces_raw.len() % 20 != 0 {
            return Err(MetainfoError::invalid(
                "pieces",
                "length is not a multiple of 20",
            ));
        }
        let name_bytes = r.name_utf8.or(r.name).map(|b| b.0).unwrap_or(b"");
        let name = if name_bytes.is_empty() {
            info_hash.to_hex()
        } else {
            sanitize_component(name_bytes)
        };

        let mut files = Vec::new();
        let mut offset: u64 = 0;
        match (r.length, r.files) {
            (Some(len), None) => {
                let length = check_length(len)?;
                files.push(FileEntry {
                    path: PathBuf::from(&name),
                    length,
                    offset: 0,
                    pad: false,
                });
                offset = length;
            }
            (None, Some(list)) => {
                if list.is_empty() {
                    return Err(MetainfoError::invalid("files", "empty file list"));
                }
                if list.len() > MAX_FILES {
                    return Err(MetainfoError::invalid(
                        "files",
                        format!("more than {MAX_FILES}"),
                    ));
                }
                let mut taken = TakenPaths::default();
                for f in list {
                    let length = check_length(f.length)?;
                    let comps = f.path_utf8.unwrap_or(f.path);
                    if comps.is_empty() || comps.len() > MAX_PATH_DEPTH {
                        return Err(MetainfoError::invalid(
                            "path",
                            format!("{} components (allowed 1..={MAX_PATH_DEPTH})", comps.len()),
                        ));
                    }
                    let pad = f.attr.is_some_and(|a| a.0.contains(&b'p'));
                    let mut path = PathBuf::from(&name);
                    for c in &comps {
                        path.push(sanitize_component(c.0));
                    }
                    if !pad {
                        path = taken.claim(path)?;
                    }
                    files.push(FileEntry {
                        path,
                        length,
                        offset,
                        pad,
                    });
                    offset = offset
                        .checked_add(length)
                        .ok_or_else(|| MetainfoError::invalid("length", "total overflows"))?;
                }
            }
            (Some(_), Some(_)) => {
                return Err(MetainfoError::invalid(
                    "files",
                    "both `length` and `files` present",
                ))
            }
            (None, None) => return Err(MetainfoError::Missing("length or files")),
        }
        let total_length = offset;
        let expected_pieces = total_length.div_ceil(piece_length as u64);
        let piece_count = pieces_raw.len() / 20;
        if piece_count as u64 != expected_pieces || piece_count == 0 {
            return Err(MetainfoError::invalid(
                "pieces",
                format!(
                    "{piece_count} hashes for {total_length} bytes in {piece_length}-byte pieces"
                ),
            ));
        }
        let pieces = pieces_raw
            .chunks_exact(20)
            .map(|c| PieceHash(c.try_into().expect("chunks of 20")))
            .collect();
        Ok(Info {
            name,
            piece_length,
            pieces,
            files,
            total_length,
            private: r.private == Some(1),
            raw,
            info_hash,
        })
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.pieces.len() as u32
    }

    /// Length of piece `i` (the last one may be shorter).
    pub fn piece_len(&self, i: PieceIndex) -> u32 {
        let start = i.0 as u64 * self.piece_length as u64;
        (self.total_length - start).min(self.piece_length as u64) as u32
    }

    /// Byte offset of piece `i` in the torrent's byte stream.
    pub fn piece_offset(&self, i: PieceIndex) -> u64 {
        i.0 as u64 * self.piece_length as u64
    }

    /// Total length of files that are not pad files: what a user downloads.
    pub fn content_length(&self) -> u64 {
        self.files.iter().filter(|f| !f.pad).map(|f| f.length).sum()
    }

    /// Index range of the pieces that overlap file `file` (empty for empty files).
    pub fn pieces_of_file(&self, file: usize) -> std::ops::Range<u32> {
        let f = &self.files[file];
        if f.length == 0 {
            return 0..0;
        }
        let pl = self.piece_length as u64;
        (f.offset / pl) as u32..((f.offset + f.length - 1) / pl + 1) as u32
    }
}

fn check_length(len: i64) -> Result<u64, MetainfoError> {
    // 2^50 bytes (1 PiB) per file is far beyond any real torrent and keeps sums far from overflow.
    if !(0..=1 << 50).contains(&len) {
        return Err(MetainfoError::invalid(
            "length",
            format!("{len} is out of range"),
        ));
    }
    Ok(len as u64)
}

/// Paths already taken by files and by the folders that hold them.
#[derive(Default)]
struct TakenPaths {
    files: HashSet<PathBuf>,
    dirs: HashSet<PathBuf>,
}

impl TakenPaths {
    /// Two files sanitised to the same path would overwrite each other: later ones get a
    /// numeric suffix. A file whose folder is another file's name (or the reverse) cannot be
    /// laid out at all and is refused.
    fn claim(&mut self, path: PathBuf) -> Result<PathBuf, MetainfoError> {
        if path.ancestors().skip(1).any(|a| self.files.contains(a)) {
            return Err(MetainfoError::invalid(
                "path",
                "a file and a folder share a name",
            ));
        }
        let mut candidate = path.clone();
        let mut n = 1;
        while self.files.contains(&candidate) || self.dirs.contains(&candidate) {
            let mut name = path.file_name().unwrap_or_default().to_os_string();
            name.push(format!(".{n}"));
            candidate = path.with_file_name(name);
            n += 1;
        }
        for a in candidate.ancestors().skip(1) {
            if !self.dirs.insert(a.to_path_buf()) {
                break;
            }
        }
        self.files.insert(candidate.clone());
        Ok(candidate)
    }
}
