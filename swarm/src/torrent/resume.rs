//! Resume data: which pieces were verified, stamped with each file's size and modification
//! time, so a restart does not download or even re-hash verified pieces. Pieces whose files
//! changed since the stamp (a crash after the last checkpoint, or a user editing files) are
//! re-hashed; pieces in unchanged files are trusted.
//!
//! Stopping does not wait for the disk: the last record may list pieces written since the last
//! flush (`unflushed`) together with the kernel's boot id. Written bytes live in the page cache
//! until the kernel writes them back, whatever happens to the process, so while the machine
//! stays up those pieces are trusted; after a reboot (a power cut may have lost them) they are
//! hashed again before they count. Periodic checkpoints flush first and record nothing as
//! unflushed.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use librqbit_bencode::ByteBuf;
use serde::{Deserialize, Serialize};

use super::bitfield::Bitfield;
use super::storage::{FileStamp, Storage};
use crate::metainfo::Info;
use crate::types::{InfoHash, PieceIndex};

/// Largest resume file read. Its bulk is a size and a time per file: under 48 bytes each
/// for the [`MAX_FILES`](crate::metainfo::MAX_FILES) a torrent may have, plus two bitfields.
pub const MAX_RESUME_SIZE: usize = 64 << 20;

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
    /// Pieces in `have` whose bytes may not have reached stable storage (see the module's
    /// documentation); empty when everything was flushed.
    pub unflushed: Vec<u32>,
    /// The boot id of the kernel that held `unflushed` in its page cache.
    pub boot: Option<String>,
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
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    unflushed: Option<ByteBuf<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    boot: Option<ByteBuf<'a>>,
}

/// What to do at start-up: pieces trusted as verified, and pieces to re-hash.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StartPlan {
    /// Pieces taken as verified without reading them.
    pub trusted: Vec<u32>,
    /// Pieces whose bytes may be on disk and must be hashed before they count.
    pub to_check: Vec<u32>,
    /// Trusted pieces that were recorded as unflushed in this boot: still to be flushed.
    pub unflushed: Vec<u32>,
}

/// The running kernel's boot id, if the system tells it (Linux does).
pub fn boot_id() -> Option<&'static str> {
    static ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let id = id.trim();
        (!id.is_empty()).then(|| id.to_string())
    })
    .as_deref()
}

impl ResumeData {
    /// Serialises to bencode.
    pub fn encode(&self) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let pieces = self.have.to_wire();
        let unflushed = (!self.unflushed.is_empty()).then(|| {
            let mut b = Bitfield::new(self.have.len());
            for &p in self.unflushed.iter().filter(|&&p| p < self.have.len()) {
                b.set(p, true);
            }
            b.to_wire()
        });
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
            unflushed: unflushed.as_deref().map(ByteBuf),
            boot: self.boot.as_deref().map(|b| ByteBuf(b.as_bytes())),
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
        let unflushed = match raw.unflushed {
            Some(b) => Bitfield::from_wire(b.0, count)?.ones().collect(),
            None => Vec::new(),
        };
        let boot = match raw.boot {
            Some(b) => Some(String::from_utf8(b.0.to_vec()).ok()?),
            None => None,
        };
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
            unflushed,
            boot,
        })
    }

    /// Loads from `path`; a missing or damaged file gives `None`.
    pub fn load(path: &Path) -> Option<ResumeData> {
        Self::decode(&crate::fsread::read_bounded(path, MAX_RESUME_SIZE).ok()?)
    }

    /// Writes to `path` atomically (temporary file, fsync, rename, fsync of the folder): a
    /// crash leaves either the old or the new resume data, never a torn one, and once this
    /// returns the new one survives a power cut.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&self.encode())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(parent.unwrap_or(Path::new(".")))?.sync_all()
    }
}

/// Decides, from resume data (if any) and the files on disk now, which pieces to trust and
/// which to hash.
pub fn plan_start(info: &Info, storage: &Storage, resume: Option<&ResumeData>) -> StartPlan {
    plan_start_in(info, storage, resume, boot_id())
}

/// [`plan_start`] as if the kernel's boot id were `boot`.
pub fn plan_start_in(
    info: &Info,
    storage: &Storage,
    resume: Option<&ResumeData>,
    boot: Option<&str>,
) -> StartPlan {
    let now = storage.stamps();
    let usable = resume.filter(|r| {
        r.info_hash == info.info_hash
            && r.root == storage.root()
            && r.have.len() == info.piece_count()
            && r.stamps.len() == now.len()
    });
    // Unflushed pieces survive only as long as the kernel that cached them.
    let mut unflushed = Bitfield::new(info.piece_count());
    let mut same_boot = false;
    if let Some(r) = usable {
        same_boot = r.boot.is_some() && r.boot.as_deref() == boot;
        for &p in r.unflushed.iter().filter(|&&p| p < info.piece_count()) {
            unflushed.set(p, true);
        }
    }
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
                    if !unflushed.get(p) {
                        plan.trusted.push(p);
                    } else if same_boot {
                        plan.trusted.push(p);
                        plan.unflushed.push(p);
                    } else {
                        plan.to_check.push(p);
                    }
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
    use crate::metainfo::info_of;

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
            unflushed: Vec::new(),
            boot: None,
        };
        assert_eq!(ResumeData::decode(&r.encode()), Some(r.clone()));
        let quick = ResumeData {
            unflushed: vec![3],
            boot: Some("5d1f0c4e-boot".into()),
            ..r.clone()
        };
        assert_eq!(ResumeData::decode(&quick.encode()), Some(quick.clone()));
        assert_ne!(quick.encode(), r.encode());
        let enc = r.encode();
        assert_eq!(ResumeData::decode(&enc[..enc.len() - 3]), None);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r/x.resume");
        r.save(&p).unwrap();
        assert_eq!(ResumeData::load(&p), Some(r.clone()));
        assert_eq!(ResumeData::load(&dir.path().join("none")), None);
        // A record grown past MAX_RESUME_SIZE (sparse: nothing is written) or a path that
        // names a device or a folder is no resume data.
        let f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.set_len(MAX_RESUME_SIZE as u64 + 1).unwrap();
        assert_eq!(ResumeData::load(&p), None);
        f.set_len(enc.len() as u64).unwrap();
        assert_eq!(ResumeData::load(&p), Some(r));
        assert_eq!(ResumeData::load(Path::new("/dev/zero")), None);
        assert_eq!(ResumeData::load(dir.path()), None);
    }

    #[test]
    fn changed_files_are_rechecked_unchanged_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("t");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("a"), vec![1u8; 40_000]).unwrap();
        std::fs::write(src.join("b"), vec![2u8; 40_000]).unwrap();
        let info = info_of(&src, 16384);
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
            unflushed: Vec::new(),
            boot: None,
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

    #[test]
    fn unflushed_pieces_are_trusted_only_in_the_boot_that_wrote_them() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("t");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("a"), vec![1u8; 80_000]).unwrap();
        let info = info_of(&src, 16384);
        let storage = Storage::new(&info, dir.path());
        let r = ResumeData {
            info_hash: info.info_hash,
            root: dir.path().to_path_buf(),
            have: Bitfield::full(5),
            stamps: storage.stamps(),
            uploaded: 0,
            downloaded: 0,
            unflushed: vec![1, 4],
            boot: Some("boot-a".into()),
        };
        let same = plan_start_in(&info, &storage, Some(&r), Some("boot-a"));
        assert_eq!(same.trusted, (0..5).collect::<Vec<_>>());
        assert_eq!(same.unflushed, vec![1, 4]);
        assert!(same.to_check.is_empty());
        let rebooted = plan_start_in(&info, &storage, Some(&r), Some("boot-b"));
        assert_eq!(rebooted.trusted, vec![0, 2, 3]);
        assert_eq!(rebooted.to_check, vec![1, 4]);
        assert!(rebooted.unflushed.is_empty());
        // No boot id to compare with: unflushed pieces are never trusted.
        let unknown = plan_start_in(&info, &storage, Some(&r), None);
        assert_eq!(unknown.to_check, vec![1, 4]);
        assert!(
            boot_id().is_some_and(|id| id.len() >= 32),
            "Linux tells its boot id"
        );
    }
}
