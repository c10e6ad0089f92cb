//! Resume data: which pieces were verified, stamped with each file's size and modification
//! time, so a restart does not download or even re-hash verified pieces. Pieces whose files
//! changed since the stamp (a crash after the last checkpoint, or a user editing files) are
//! re-hashed; pieces in unchanged files are trusted.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use librqbit_bencode::ByteBuf;
use serde::{Deserialize, Serialize};

use super::bitfield::Bitfield;
use super::storage::{FileStamp, Storage};
use crate::metainfo::Info;
use crate::types::{InfoHash, PieceIndex};

/// Resume data of one torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeData {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The download folder the data describes.
    pub root: PathBuf,
    /// Verified pieces.
    pub have: Bitfield,
    /// Each file's stamp when `have` was written.
    pub stamps: Vec<Option<FileStamp>>,
    /// Payload bytes uploaded over the torrent's life.
    pub uploaded: u64,
    /// Payload bytes downloaded over the torrent's life.
    pub downloaded: u64,
}

#[derive(Serialize, Deserialize)]
struct Raw<'a> {
    version: i64,
    #[serde(borrow)]
    info_hash: ByteBuf<'a>,
    #[serde(borrow)]
    root: ByteBuf<'a>,
    #[serde(borrow)]
    pieces: ByteBuf<'a>,
    piece_count: i64,
    files: Vec<Vec<i64>>,
    uploaded: i64,
    downloaded: i64,
}

/// What to do at start-up: pieces trusted as verified, and pieces to re-hash.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StartPlan {
    /// Pieces taken as verified without reading them.
    pub trusted: Vec<u32>,
    /// Pieces whose bytes may be on disk and must be hashed before they count.
    pub to_check: Vec<u32>,
}

impl ResumeData {
    /// Serialises to bencode.
    pub fn encode(&self) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let pieces = self.have.to_wire();
        let raw = Raw {
            version: 1,
            info_hash: ByteBuf(&self.info_hash.0),
            root: ByteBuf(self.root.as_os_str().as_bytes()),
            pieces: ByteBuf(&pieces),
            piece_count: self.have.len() as i64,
            files: self
                .stamps
                .iter()
                .map(|s| match s {
                    Some(s) => vec![s.size as i64, s.mtime_ns as i64],
                    None => vec![],
                })
                .collect(),
            uploaded: self.uploaded as i64,
            downloaded: self.downloaded as i64,
        };
        let mut out = Vec::new();
        librqbit_bencode::bencode_serialize_to_writer(&raw, &mut out)
            .expect("writing to a Vec cannot fail");
        out
    }

    /// Parses resume data; `None` for anything damaged (it is then ignored and data rechecked).
    pub fn decode(b: &[u8]) -> Option<ResumeData> {
        use std::os::unix::ffi::OsStrExt;
        let raw: Raw<'_> = crate::bencode::decode(b).ok()?;
        if raw.version != 1 {
            return None;
        }
        let count = u32::try_from(raw.piece_count).ok()?;
        Some(ResumeData {
            info_hash: InfoHash::from_slice(raw.info_hash.0)?,
            root: PathBuf::from(std::ffi::OsStr::from_bytes(raw.root.0)),
            have: Bitfield::from_wire(raw.pieces.0, count)?,
            stamps: raw
                .files
                .iter()
                .map(|f| match f.as_slice() {
                    [size, mtime] if *size >= 0 => Some(FileStamp {
                        size: *size as u64,
                        mtime_ns: *mtime as i128,
                    }),
                    _ => None,
                })
                .collect(),
            uploaded: raw.uploaded.max(0) as u64,
            downloaded: raw.downloaded.max(0) as u64,
        })
    }

    /// Loads from `path`; a missing or damaged file gives `None`.
    pub fn load(path: &Path) -> Option<ResumeData> {
        Self::decode(&std::fs::read(path).ok()?)
    }

    /// Writes to `path` atomically (temporary file, fsync, rename): a crash leaves either the
    /// old or the new resume data, never a torn one.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&self.encode())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    }
}

/// Decides, from resume data (if any) and the files on disk now, which pieces to trust and
/// which to hash.
pub fn plan_start(info: &Info, storage: &Storage, resume: Option<&ResumeData>) -> StartPlan {
    let now = storage.stamps();
    let usable = resume.filter(|r| {
        r.info_hash == info.info_hash
            && r.root == storage.root()
            && r.have.len() == info.piece_count()
            && r.stamps.len() == now.len()
    });
    let mut plan = StartPlan::default();
    for p in 0..info.piece_count() {
        let files = storage.files_of_piece(PieceIndex(p), info.piece_len(PieceIndex(p)));
        let real: Vec<usize> = files
            .filter(|&i| !info.files[i].pad && info.files[i].length > 0)
            .collect();
        // A piece can only be on disk if each of its files exists and is long enough.
        let present = real
            .iter()
            .all(|&i| now[i].is_some_and(|s| s.size >= info.files[i].length));
        if !present {
            continue;
        }
        let unchanged = usable.is_some_and(|r| real.iter().all(|&i| r.stamps[i] == now[i]));
        match usable {
            Some(r) if unchanged => {
                if r.have.get(p) {
                    plan.trusted.push(p);
                }
            }
            _ => plan.to_check.push(p),
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::{create_torrent, CreateOptions, Metainfo};

    #[test]
    fn round_trip_and_damage() {
        let mut have = Bitfield::new(10);
        have.set(3, true);
        let r = ResumeData {
            info_hash: InfoHash([4; 20]),
            root: "/x/y".into(),
            have,
            stamps: vec![
                Some(FileStamp {
                    size: 5,
                    mtime_ns: 99,
                }),
                None,
            ],
            uploaded: 7,
            downloaded: 8,
        };
        assert_eq!(ResumeData::decode(&r.encode()), Some(r.clone()));
        let enc = r.encode();
        assert_eq!(ResumeData::decode(&enc[..enc.len() - 3]), None);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r/x.resume");
        r.save(&p).unwrap();
        assert_eq!(ResumeData::load(&p), Some(r));
        assert_eq!(ResumeData::load(&dir.path().join("none")), None);
    }

    #[test]
    fn changed_files_are_rechecked_unchanged_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("t");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("a"), vec![1u8; 40_000]).unwrap();
        std::fs::write(src.join("b"), vec![2u8; 40_000]).unwrap();
        let info = Metainfo::from_bytes(
            &create_torrent(
                &src,
                &CreateOptions {
                    piece_length: Some(16384),
                    ..Default::default()
                },
            )
            .unwrap(),
        )
        .unwrap()
        .info;
        let storage = Storage::new(&info, dir.path());
        // No resume data: everything present is checked.
        let fresh = plan_start(&info, &storage, None);
        assert_eq!(fresh.to_check, (0..5).collect::<Vec<_>>());
        assert!(fresh.trusted.is_empty());
        let r = ResumeData {
            info_hash: info.info_hash,
            root: dir.path().to_path_buf(),
            have: Bitfield::full(5),
            stamps: storage.stamps(),
            uploaded: 0,
            downloaded: 0,
        };
        let same = plan_start(&info, &storage, Some(&r));
        assert_eq!(same.trusted, (0..5).collect::<Vec<_>>());
        assert!(same.to_check.is_empty());
        // Touch file b: pieces overlapping b (2, 3, 4) must be hashed again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(src.join("b"), vec![3u8; 40_000]).unwrap();
        let changed = plan_start(&info, &storage, Some(&r));
        assert_eq!(changed.trusted, vec![0, 1]);
        assert_eq!(changed.to_check, vec![2, 3, 4]);
        // A deleted file: its pieces are neither trusted nor checked.
        std::fs::remove_file(src.join("a")).unwrap();
        let gone = plan_start(&info, &storage, Some(&r));
        assert!(gone.trusted.is_empty());
        assert_eq!(gone.to_check, vec![3, 4]);
    }
}
