//! Where resume data is kept. The CLI keeps one file per torrent ([`FileResumeStore`]); the
//! daemon keeps it in its database. Torrent tasks only see the [`ResumeStore`] trait, and call
//! it on blocking threads, after the data the resume data describes has been flushed.

use std::io;
use std::path::PathBuf;

use super::resume::ResumeData;
use crate::types::InfoHash;

/// A place to load and save resume data. Calls block (file or database I/O); they are made
/// from blocking threads only.
pub trait ResumeStore: Send + Sync + std::fmt::Debug {
    /// The saved resume data of a torrent; `None` when there is none or it is damaged.
    fn load(&self, info_hash: &InfoHash) -> Option<ResumeData>;
    /// Saves resume data durably enough that a crash leaves the old or the new version, never
    /// a mix.
    fn save(&self, data: &ResumeData) -> io::Result<()>;
}

/// One bencoded file per torrent: `<dir>/<info-hash>.resume`.
#[derive(Debug, Clone)]
pub struct FileResumeStore {
    dir: PathBuf,
}

impl FileResumeStore {
    /// A store keeping its files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> FileResumeStore {
        FileResumeStore { dir: dir.into() }
    }

    /// The file holding a torrent's resume data.
    pub fn path(&self, info_hash: &InfoHash) -> PathBuf {
        self.dir.join(format!("{}.resume", info_hash.to_hex()))
    }
}

impl ResumeStore for FileResumeStore {
    fn load(&self, info_hash: &InfoHash) -> Option<ResumeData> {
        ResumeData::load(&self.path(info_hash))
    }

    fn save(&self, data: &ResumeData) -> io::Result<()> {
        data.save(&self.path(&data.info_hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::torrent::bitfield::Bitfield;

    #[test]
    fn file_store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileResumeStore::new(dir.path().join("resume"));
        let ih = InfoHash([9; 20]);
        assert_eq!(store.load(&ih), None);
        let r = ResumeData {
            info_hash: ih,
            root: "/d".into(),
            have: Bitfield::full(3),
            stamps: vec![],
            uploaded: 1,
            downloaded: 2,
            unflushed: Vec::new(),
            boot: None,
        };
        store.save(&r).unwrap();
        assert_eq!(store.load(&ih), Some(r));
        assert!(store
            .path(&ih)
            .ends_with(format!("resume/{}.resume", ih.to_hex())));
    }
}
