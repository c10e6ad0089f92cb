//! Where a torrent's bytes live: the mapping from the torrent's byte stream onto files (BEP 3
//! multi-file layout, BEP 47 pad files that are never written), positional reads and writes
//! that are safe from many threads, and verification of pieces on disk. All calls block: they
//! run on blocking threads, never on the async workers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha1::{Digest, Sha1};

use crate::metainfo::{FileEntry, Info};
use crate::types::{PieceHash, PieceIndex};

/// Most files kept open at once per torrent; further opens close the least recently used.
pub const MAX_OPEN_FILES: usize = 128;

/// Size and modification time of a file, to tell whether resume data still describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Length in bytes.
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
}

#[derive(Default)]
struct Handles {
    open: HashMap<usize, Arc<File>>,
    order: VecDeque<usize>,
    dirty: HashSet<usize>,
}

/// The files of one torrent under a download folder.
pub struct Storage {
    root: PathBuf,
    files: Vec<FileEntry>,
    piece_length: u32,
    total_length: u64,
    handles: Mutex<Handles>,
    /// Writes are serialised: concurrent buffered writes to one file contend for its inode
    /// lock in the kernel, and spinning on it cost more CPU than the writes themselves.
    write_lock: Mutex<()>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("root", &self.root)
            .field("files", &self.files.len())
            .finish()
    }
}

impl Storage {
    /// Maps `info`'s files under `root`. Nothing is created until the first write.
    pub fn new(info: &Info, root: impl Into<PathBuf>) -> Storage {
        Storage {
            root: root.into(),
            files: info.files.clone(),
            piece_length: info.piece_length,
            total_length: info.total_length,
            handles: Mutex::default(),
            write_lock: Mutex::default(),
        }
    }

    /// Byte offset of piece `piece` in the torrent's byte stream.
    pub fn piece_offset(&self, piece: crate::types::PieceIndex) -> u64 {
        piece.0 as u64 * self.piece_length as u64
    }

    /// The download folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Full path of file `i`. Paths in [`Info`] are sanitised relative paths, so this is always
    /// inside the download folder.
    pub fn path_of(&self, i: usize) -> PathBuf {
        self.root.join(&self.files[i].path)
    }

    fn handle(&self, i: usize, create: bool) -> io::Result<Arc<File>> {
        let mut h = self.handles.lock().expect("storage lock poisoned");
        if let Some(f) = h.open.get(&i) {
            return Ok(f.clone());
        }
        let path = self.path_of(i);
        if create {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
        }
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(&path)?;
        if create {
            preallocate(&f, self.files[i].length);
        }
        let f = Arc::new(f);
        if h.open.len() >= MAX_OPEN_FILES {
            if let Some(old) = h.order.pop_front() {
                // Flushing before closing keeps `sync` meaningful for evicted files.
                if h.dirty.remove(&old) {
                    if let Some(f) = h.open.get(&old) {
                        let _ = f.sync_data();
                    }
                }
                h.open.remove(&old);
            }
        }
        h.open.insert(i, f.clone());
        h.order.push_back(i);
        Ok(f)
    }

    /// Calls `f(file index, offset in file, range in buf)` for each file span covering
    /// `len` bytes at torrent offset `start`.
    fn spans(
        &self,
        start: u64,
        len: usize,
        mut f: impl FnMut(usize, u64, std::ops::Range<usize>) -> io::Result<()>,
    ) -> io::Result<()> {
        if start + len as u64 > self.total_length {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "range beyond the torrent's end",
            ));
        }
        let mut i = self.files.partition_point(|e| e.offset + e.length <= start);
        let mut done = 0usize;
        while done < len {
            let e = &self.files[i];
            let pos = start + done as u64;
            let within = pos - e.offset;
            let n = ((e.length - within) as usize).min(len - done);
            if n > 0 {
                f(i, within, done..done + n)?;
            }
            done += n;
            i += 1;
        }
        Ok(())
    }

    /// Writes a verified piece. Pad-file ranges are skipped.
    pub fn write_piece(&self, piece: PieceIndex, data: &[u8]) -> io::Result<()> {
        let _serial = self.write_lock.lock().expect("storage write lock poisoned");
        let start = piece.0 as u64 * self.piece_length as u64;
        self.spans(start, data.len(), |i, at, range| {
            if self.files[i].pad {
                return Ok(());
            }
            self.handle(i, true)?.write_all_at(&data[range], at)?;
            self.handles
                .lock()
                .expect("storage lock poisoned")
                .dirty
                .insert(i);
            Ok(())
        })
    }

    /// Reads `buf.len()` bytes at torrent offset `start`; pad-file ranges read as zeros.
    pub fn read(&self, start: u64, buf: &mut [u8]) -> io::Result<()> {
        self.spans(start, buf.len(), |i, at, range| {
            if self.files[i].pad {
                buf[range].fill(0);
                return Ok(());
            }
            self.handle(i, false)?.read_exact_at(&mut buf[range], at)
        })
    }

    /// Reads piece `piece` from disk and compares it with `expected`. Missing or short files
    /// simply fail the check.
    pub fn check_piece(
        &self,
        piece: PieceIndex,
        len: u32,
        expected: &PieceHash,
        buf: &mut Vec<u8>,
    ) -> bool {
        buf.resize(len as usize, 0);
        let start = piece.0 as u64 * self.piece_length as u64;
        self.read(start, buf).is_ok() && Sha1::digest(&buf[..]).as_slice() == expected.0
    }

    /// Creates files of length zero, which no piece write would ever create.
    pub fn create_empty_files(&self) -> io::Result<()> {
        for (i, f) in self.files.iter().enumerate() {
            if f.length == 0 && !f.pad {
                self.handle(i, true)?;
            }
        }
        Ok(())
    }

    /// Flushes file data written since the last call to stable storage, and the files passed
    /// to [`Storage::mark_unflushed`].
    pub fn sync(&self) -> io::Result<()> {
        let dirty: Vec<usize> = {
            let mut h = self.handles.lock().expect("storage lock poisoned");
            h.dirty.drain().collect()
        };
        for (n, &i) in dirty.iter().enumerate() {
            let f = match self.handle(i, false) {
                Ok(f) => f,
                // Nothing of a missing file can be claimed as verified.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    self.remark(&dirty[n..]);
                    return Err(e);
                }
            };
            if let Err(e) = f.sync_data() {
                self.remark(&dirty[n..]);
                return Err(e);
            }
        }
        Ok(())
    }

    fn remark(&self, files: &[usize]) {
        let mut h = self.handles.lock().expect("storage lock poisoned");
        h.dirty.extend(files.iter().copied());
    }

    /// Marks the files holding `pieces` for the next [`Storage::sync`]: their bytes may have
    /// been written by an earlier run and still be only in the page cache.
    pub fn mark_unflushed(&self, pieces: &[u32]) {
        let mut h = self.handles.lock().expect("storage lock poisoned");
        for &p in pieces {
            let start = p as u64 * self.piece_length as u64;
            let len = (self.total_length.saturating_sub(start)).min(self.piece_length as u64);
            for i in self.files_of_piece(PieceIndex(p), len as u32) {
                if !self.files[i].pad {
                    h.dirty.insert(i);
                }
            }
        }
    }

    /// Size and mtime of every file (`None` for missing files and pad files).
    pub fn stamps(&self) -> Vec<Option<FileStamp>> {
        (0..self.files.len())
            .map(|i| {
                if self.files[i].pad {
                    return None;
                }
                let m = std::fs::metadata(self.path_of(i)).ok()?;
                let mtime = m.modified().ok()?;
                let ns = match mtime.duration_since(std::time::UNIX_EPOCH) {
                    Ok(d) => d.as_nanos() as i128,
                    Err(e) => -(e.duration().as_nanos() as i128),
                };
                Some(FileStamp {
                    size: m.len(),
                    mtime_ns: ns,
                })
            })
            .collect()
    }

    /// The files (pad files included), in torrent order.
    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    /// Indices of the files overlapping piece `piece`.
    pub fn files_of_piece(&self, piece: PieceIndex, len: u32) -> std::ops::Range<usize> {
        let start = piece.0 as u64 * self.piece_length as u64;
        let end = start + len as u64;
        let first = self.files.partition_point(|e| e.offset + e.length <= start);
        let last = self.files.partition_point(|e| e.offset < end);
        first..last.max(first)
    }
}

/// Reserves a file's full length on disk before the first write: the file is laid out in few
/// extents instead of in arrival order, and a full disk shows up at the start rather than
/// halfway through. File systems that cannot preallocate simply get a sparse file.
fn preallocate(f: &File, len: u64) {
    use std::os::fd::AsRawFd;
    let Ok(meta) = f.metadata() else { return };
    if meta.len() >= len || len == 0 {
        return;
    }
    let Ok(len) = libc::off_t::try_from(len) else {
        return;
    };
    // SAFETY: fallocate only reads the descriptor and integers; the fd is open for writing.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len) };
    if rc != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "preallocation not supported; writing a sparse file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::{create_torrent, CreateOptions, Metainfo};

    fn fixture() -> (tempfile::TempDir, Info, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src/t");
        std::fs::create_dir_all(src.join("d")).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(src.join("a"), &data[..70_000]).unwrap();
        std::fs::write(src.join("d/b"), &data[70_000..70_000]).unwrap();
        std::fs::write(src.join("d/c"), &data[70_000..]).unwrap();
        let t = create_torrent(
            &src,
            &CreateOptions {
                piece_length: Some(32768),
                ..Default::default()
            },
        )
        .unwrap();
        (dir, Metainfo::from_bytes(&t).unwrap().info, data)
    }

    #[test]
    fn pieces_written_across_files_read_back_and_verify() {
        let (dir, info, data) = fixture();
        let s = Storage::new(&info, dir.path().join("out"));
        let mut buf = Vec::new();
        assert!(!s.check_piece(
            PieceIndex(0),
            info.piece_len(PieceIndex(0)),
            &info.pieces[0],
            &mut buf
        ));
        for i in 0..info.piece_count() {
            let off = info.piece_offset(PieceIndex(i)) as usize;
            let len = info.piece_len(PieceIndex(i)) as usize;
            s.write_piece(PieceIndex(i), &data[off..off + len]).unwrap();
        }
        s.create_empty_files().unwrap();
        s.sync().unwrap();
        for i in 0..info.piece_count() {
            assert!(s.check_piece(
                PieceIndex(i),
                info.piece_len(PieceIndex(i)),
                &info.pieces[i as usize],
                &mut buf
            ));
        }
        assert_eq!(
            std::fs::read(dir.path().join("out/t/a")).unwrap(),
            &data[..70_000]
        );
        assert_eq!(
            std::fs::read(dir.path().join("out/t/d/c")).unwrap(),
            &data[70_000..]
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("out/t/d/b"))
                .unwrap()
                .len(),
            0
        );
        let mut mid = vec![0u8; 1000];
        s.read(69_500, &mut mid).unwrap();
        assert_eq!(&mid[..], &data[69_500..70_500]);
        assert!(s.read(199_999, &mut [0u8; 2]).is_err());
        assert_eq!(s.files_of_piece(PieceIndex(2), 32768), 0..3);
        assert!(s.stamps().iter().all(|st| st.is_some()));
    }

    #[test]
    fn a_corrupted_byte_fails_the_check() {
        let (dir, info, data) = fixture();
        let s = Storage::new(&info, dir.path().join("out"));
        let mut bad = data[..32768].to_vec();
        bad[100] ^= 1;
        s.write_piece(PieceIndex(0), &bad).unwrap();
        assert!(!s.check_piece(PieceIndex(0), 32768, &info.pieces[0], &mut Vec::new()));
    }
}
