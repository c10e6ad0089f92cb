//! Where a torrent's bytes live: the mapping from the torrent's byte stream onto files (BEP 3
//! multi-file layout, BEP 47 pad files that are never written), positional reads and writes
//! that are safe from many threads, and verification of pieces on disk. All calls block: they
//! run on blocking threads, never on the async workers.
//!
//! Verified pieces go to disk by direct I/O (`O_DIRECT`) where the file system allows it and
//! the piece's bytes line up with 4 KiB blocks of the file: the kernel then moves them from the
//! piece buffer to the device without copying them into the page cache, which was the largest
//! single cost of a fast download. Partial blocks at the edges, files that do not start on a
//! 4 KiB boundary of the torrent and file systems that refuse direct I/O are written through
//! the page cache as usual. Reads always go through the page cache.
//!
//! Files the user skipped are not created. The bytes a wanted piece holds of a skipped file
//! (a piece shared with a wanted neighbour) go to a sparse side file in the download folder,
//! `.<info-hash>.parts`, at their offset in the torrent, so the piece can be hashed again and
//! served; when the file is wanted later, its bytes move from there into the file. A file that
//! exists keeps its data, whether or not it is wanted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use sha1::{Digest, Sha1};

use super::piece_buf::ALIGN;
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
    /// Descriptors for direct writes, for files in `open`; `None` where it was refused.
    direct: HashMap<usize, Option<Arc<File>>>,
    /// The parts file was written since the last sync.
    parts_dirty: bool,
}

/// The files of one torrent under a download folder.
pub struct Storage {
    root: PathBuf,
    files: Vec<FileEntry>,
    piece_length: u32,
    total_length: u64,
    handles: Mutex<Handles>,
    /// Whether verified pieces may be written by direct I/O.
    direct_io: bool,
    /// Files the user skipped (one entry per file; pad files are never written anyway).
    skipped: RwLock<Vec<bool>>,
    /// The side file for skipped files' bytes in wanted pieces.
    parts: PathBuf,
    /// Buffered writes are serialised: concurrent buffered writes to one file contend for its
    /// inode lock in the kernel, and spinning on it cost more CPU than the writes themselves.
    /// Direct writes of whole blocks into the preallocated file run in parallel (file systems
    /// such as ext4 take the inode lock shared for them), so a slow device request holds up
    /// only its own piece.
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
        let root: PathBuf = root.into();
        Storage {
            parts: root.join(format!(".{}.parts", info.info_hash.to_hex())),
            skipped: RwLock::new(vec![false; info.files.len()]),
            root,
            files: info.files.clone(),
            piece_length: info.piece_length,
            total_length: info.total_length,
            handles: Mutex::default(),
            direct_io: false,
            write_lock: Mutex::default(),
        }
    }

    /// Writes verified pieces by direct I/O where possible (see the module's documentation).
    pub fn with_direct_io(mut self, on: bool) -> Storage {
        self.direct_io = on;
        self
    }

    /// Marks which files the user skipped (one flag per file, pad files included). A file
    /// that becomes wanted gets what the parts file holds of it first; writes and reads wait
    /// meanwhile, so none sees it half moved.
    pub fn set_skipped(&self, skipped: Vec<bool>) -> io::Result<()> {
        assert_eq!(skipped.len(), self.files.len(), "one flag per file");
        let mut layout = self.skipped.write().expect("storage lock poisoned");
        for i in 0..skipped.len() {
            if layout[i] && !skipped[i] && self.in_parts_with(&layout, i) {
                self.adopt_parts(i)?;
            }
        }
        *layout = skipped;
        Ok(())
    }

    /// Where the bytes of skipped files in wanted pieces are kept.
    pub fn parts_path(&self) -> &Path {
        &self.parts
    }

    /// Whether file `i`'s bytes go to the parts file: skipped and not on disk.
    fn in_parts_with(&self, skipped: &[bool], i: usize) -> bool {
        skipped[i]
            && !self
                .handles
                .lock()
                .expect("storage lock poisoned")
                .open
                .contains_key(&i)
            && !self.path_of(i).exists()
    }

    fn parts_file(&self, create: bool) -> io::Result<File> {
        let f = OpenOptions::new()
            .read(true)
            .write(create)
            .create(create)
            .truncate(false)
            .open(&self.parts)?;
        if create && f.metadata()?.len() < self.total_length {
            // Sparse: only the bytes written take room.
            f.set_len(self.total_length)?;
        }
        Ok(f)
    }

    /// Creates file `i` with what the parts file holds of it: the ranges written there (the
    /// file system's data extents), everything else left for downloads to fill.
    fn adopt_parts(&self, i: usize) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let e = &self.files[i];
        let f = self.handle(i, true)?;
        let parts = match self.parts_file(false) {
            Ok(p) => p,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err),
        };
        let (start, end) = (e.offset, e.offset + e.length);
        let mut at = start;
        let mut buf = Vec::new();
        while at < end {
            // SAFETY: lseek only reads the descriptor and integers.
            let data =
                unsafe { libc::lseek(parts.as_raw_fd(), at as libc::off_t, libc::SEEK_DATA) };
            if data < 0 || data as u64 >= end {
                break; // ENXIO: no data after `at`.
            }
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(parts.as_raw_fd(), data, libc::SEEK_HOLE) };
            let stop = if hole < 0 {
                end
            } else {
                (hole as u64).min(end)
            };
            let from = data as u64;
            buf.resize((stop - from) as usize, 0);
            parts.read_exact_at(&mut buf, from)?;
            f.write_all_at(&buf, from - start)?;
            at = stop;
        }
        self.handles
            .lock()
            .expect("storage lock poisoned")
            .dirty
            .insert(i);
        Ok(())
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
                h.direct.remove(&old);
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
        let layout = self.skipped.read().expect("storage lock poisoned");
        let start = piece.0 as u64 * self.piece_length as u64;
        self.spans(start, data.len(), |i, at, range| {
            if self.files[i].pad {
                return Ok(());
            }
            let bytes = &data[range];
            if self.in_parts_with(&layout, i) {
                let _serial = self.write_lock.lock().expect("storage write lock poisoned");
                let at = self.files[i].offset + at;
                self.parts_file(true)?.write_all_at(bytes, at)?;
                self.handles
                    .lock()
                    .expect("storage lock poisoned")
                    .parts_dirty = true;
                return Ok(());
            }
            let f = self.handle(i, true)?;
            if !(self.direct_io && self.write_direct(i, &f, bytes, at)?) {
                let _serial = self.write_lock.lock().expect("storage write lock poisoned");
                f.write_all_at(bytes, at)?;
            }
            self.handles
                .lock()
                .expect("storage lock poisoned")
                .dirty
                .insert(i);
            Ok(())
        })
    }

    /// Writes `bytes` at `at` in file `i`, the whole 4 KiB blocks by direct I/O and the edges
    /// through `f`. `Ok(false)`: nothing was written, because the bytes do not line up with the
    /// file's blocks or the file system refuses direct I/O.
    fn write_direct(&self, i: usize, f: &File, bytes: &[u8], at: u64) -> io::Result<bool> {
        let mis = (ALIGN - (at % ALIGN as u64) as usize) % ALIGN;
        if (bytes.as_ptr() as usize + mis) % ALIGN != 0 || bytes.len() < mis + ALIGN {
            return Ok(false);
        }
        let body = (bytes.len() - mis) / ALIGN * ALIGN;
        let Some(d) = self.direct_handle(i) else {
            return Ok(false);
        };
        if let Err(e) = d.write_all_at(&bytes[mis..mis + body], at + mis as u64) {
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
            // Refused after all (some file systems accept the flag, not the write).
            tracing::debug!(
                file = i,
                "direct I/O refused; writing through the page cache"
            );
            let mut h = self.handles.lock().expect("storage lock poisoned");
            h.direct.insert(i, None);
            return Ok(false);
        }
        let _serial = self.write_lock.lock().expect("storage write lock poisoned");
        f.write_all_at(&bytes[..mis], at)?;
        f.write_all_at(&bytes[mis + body..], at + (mis + body) as u64)?;
        Ok(true)
    }

    fn direct_handle(&self, i: usize) -> Option<Arc<File>> {
        if let Some(d) = self
            .handles
            .lock()
            .expect("storage lock poisoned")
            .direct
            .get(&i)
        {
            return d.clone();
        }
        use std::os::unix::fs::OpenOptionsExt;
        let d = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(self.path_of(i))
            .ok()
            .map(Arc::new);
        let mut h = self.handles.lock().expect("storage lock poisoned");
        // Only for files still open, so that closing a file closes both descriptors.
        if h.open.contains_key(&i) {
            h.direct.insert(i, d.clone());
        }
        d
    }

    /// Reads `buf.len()` bytes at torrent offset `start`; pad-file ranges read as zeros.
    pub fn read(&self, start: u64, buf: &mut [u8]) -> io::Result<()> {
        let layout = self.skipped.read().expect("storage lock poisoned");
        self.spans(start, buf.len(), |i, at, range| {
            if self.files[i].pad {
                buf[range].fill(0);
                return Ok(());
            }
            if self.in_parts_with(&layout, i) {
                let at = self.files[i].offset + at;
                return self.parts_file(false)?.read_exact_at(&mut buf[range], at);
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
        let skipped = self.skipped.read().expect("storage lock poisoned").clone();
        for (i, f) in self.files.iter().enumerate() {
            if f.length == 0 && !f.pad && !skipped[i] {
                self.handle(i, true)?;
            }
        }
        Ok(())
    }

    /// Flushes file data written since the last call to stable storage, and the files passed
    /// to [`Storage::mark_unflushed`].
    pub fn sync(&self) -> io::Result<()> {
        let (dirty, parts): (Vec<usize>, bool) = {
            let mut h = self.handles.lock().expect("storage lock poisoned");
            (
                h.dirty.drain().collect(),
                std::mem::take(&mut h.parts_dirty),
            )
        };
        if parts {
            if let Err(e) = self.parts_file(false).and_then(|f| f.sync_data()) {
                self.handles
                    .lock()
                    .expect("storage lock poisoned")
                    .parts_dirty = true;
                self.remark(&dirty);
                return Err(e);
            }
        }
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
        let parts = !pieces.is_empty() && self.parts.exists();
        let mut h = self.handles.lock().expect("storage lock poisoned");
        h.parts_dirty |= parts;
        for &p in pieces {
            // A full piece length past the torrent's end covers no further file.
            for i in self.files_of_piece(PieceIndex(p), self.piece_length) {
                if !self.files[i].pad {
                    h.dirty.insert(i);
                }
            }
        }
    }

    /// Size and mtime of every file (`None` for missing files and pad files).
    pub fn stamps(&self) -> Vec<Option<FileStamp>> {
        let layout = self.skipped.read().expect("storage lock poisoned");
        (0..self.files.len())
            .map(|i| {
                if self.files[i].pad {
                    return None;
                }
                // A skipped file's bytes in wanted pieces are in the parts file, which is as
                // long as the torrent: its stamp stands for theirs.
                let m = std::fs::metadata(self.path_of(i))
                    .or_else(|e| match self.in_parts_with(&layout, i) {
                        true => std::fs::metadata(&self.parts),
                        false => Err(e),
                    })
                    .ok()?;
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
    use crate::metainfo::info_of;
    use crate::torrent::piece_buf::PieceBuf;
    use std::os::unix::fs::MetadataExt;

    fn fixture() -> (tempfile::TempDir, Info, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src/t");
        std::fs::create_dir_all(src.join("d")).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(src.join("a"), &data[..70_000]).unwrap();
        std::fs::write(src.join("d/b"), &data[70_000..70_000]).unwrap();
        std::fs::write(src.join("d/c"), &data[70_000..]).unwrap();
        (dir, info_of(&src, 32768), data)
    }

    #[test]
    fn pieces_written_across_files_read_back_and_verify() {
        pieces_across_files(false);
    }

    /// The files start off 4 KiB boundaries and end mid-block: direct writes, partial blocks
    /// and files that must go through the page cache all meet.
    #[test]
    fn pieces_written_across_files_by_direct_io_read_back_and_verify() {
        pieces_across_files(true);
    }

    fn pieces_across_files(direct: bool) {
        let (dir, info, data) = fixture();
        let s = Storage::new(&info, dir.path().join("out")).with_direct_io(direct);
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
            let piece = PieceBuf::from_slice(&data[off..off + len]);
            s.write_piece(PieceIndex(i), &piece).unwrap();
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

    /// A skipped file is never created: its bytes in pieces shared with wanted files go to the
    /// parts file, the pieces still verify from disk, and when the file is wanted later its
    /// bytes move into it.
    #[test]
    fn skipped_files_are_not_created_and_their_edges_live_in_the_parts_file() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src/t");
        std::fs::create_dir_all(&src).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        // 32 KiB pieces: b (20 000 bytes) sits inside pieces 1 and 2, shared with a and c;
        // c is long enough to have pieces of its own.
        std::fs::write(src.join("a"), &data[..50_000]).unwrap();
        std::fs::write(src.join("b"), &data[50_000..70_000]).unwrap();
        std::fs::write(src.join("c"), &data[70_000..]).unwrap();
        let info = info_of(&src, 32768);
        for direct in [false, true] {
            let out = dir.path().join(format!("out{direct}"));
            let s = Storage::new(&info, &out).with_direct_io(direct);
            s.set_skipped(vec![false, true, false]).unwrap();
            for p in 0..info.piece_count() {
                let at = info.piece_offset(PieceIndex(p)) as usize;
                let len = info.piece_len(PieceIndex(p)) as usize;
                s.write_piece(PieceIndex(p), &data[at..at + len]).unwrap();
            }
            let root = out.join("t");
            assert!(!root.join("b").exists(), "a skipped file is not created");
            assert_eq!(std::fs::read(root.join("a")).unwrap(), &data[..50_000]);
            assert_eq!(std::fs::read(root.join("c")).unwrap(), &data[70_000..]);
            let parts = std::fs::metadata(s.parts_path()).unwrap();
            assert!(
                parts.blocks() * 512 < 200_000,
                "sparse: {} blocks",
                parts.blocks()
            );
            let mut buf = Vec::new();
            for p in 0..info.piece_count() {
                let (len, hash) = (info.piece_len(PieceIndex(p)), &info.pieces[p as usize]);
                assert!(
                    s.check_piece(PieceIndex(p), len, hash, &mut buf),
                    "piece {p}"
                );
            }
            assert!(
                s.stamps().iter().all(|st| st.is_some()),
                "every file has a stamp, so resume data trusts the pieces"
            );
            s.sync().unwrap();
            // Wanted after all: its bytes come out of the parts file.
            s.set_skipped(vec![false; 3]).unwrap();
            assert_eq!(
                std::fs::read(root.join("b")).unwrap(),
                &data[50_000..70_000]
            );
        }
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

    /// Pages of `path` held in the page cache.
    fn resident_pages(path: &Path) -> usize {
        use std::os::fd::AsRawFd;
        let f = File::open(path).unwrap();
        let len = f.metadata().unwrap().len() as usize;
        let pages = len.div_ceil(4096);
        let mut vec = vec![0u8; pages];
        // SAFETY: a read-only shared mapping of a whole open file, only passed to mincore and
        // unmapped before returning; `vec` has one byte per page of the mapping.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            assert_eq!(libc::mincore(p, len, vec.as_mut_ptr()), 0);
            libc::munmap(p, len);
        }
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }

    #[test]
    fn direct_writes_bypass_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src/f.bin");
        std::fs::create_dir_all(src.parent().unwrap()).unwrap();
        // 16 pieces of 64 KiB, the last one short and ending mid-block.
        let data: Vec<u8> = (0..(15 * 65536 + 10_000u32))
            .map(|i| (i % 253) as u8)
            .collect();
        std::fs::write(&src, &data).unwrap();
        let info = info_of(&src, 65536);
        let probe = dir.path().join("probe");
        std::fs::write(&probe, [0u8; 4096]).unwrap();
        use std::os::unix::fs::OpenOptionsExt;
        let supported = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&probe)
            .and_then(|f| f.write_all_at(PieceBuf::from_slice(&[1; 4096]).as_ref(), 0))
            .is_ok();
        for direct in [false, true] {
            let out = dir.path().join(format!("out-{direct}"));
            let s = Storage::new(&info, &out).with_direct_io(direct);
            for i in 0..info.piece_count() {
                let off = info.piece_offset(PieceIndex(i)) as usize;
                let len = info.piece_len(PieceIndex(i)) as usize;
                s.write_piece(PieceIndex(i), &PieceBuf::from_slice(&data[off..off + len]))
                    .unwrap();
            }
            let path = out.join("f.bin");
            let cached = resident_pages(&path);
            let pages = data.len().div_ceil(4096);
            if direct && supported {
                // Only the partial block at the end went through the page cache.
                assert_eq!(cached, 1, "{cached} of {pages} pages cached");
            } else {
                if direct {
                    eprintln!("direct I/O unsupported here: checking the fallback only");
                }
                assert_eq!(cached, pages);
            }
            assert_eq!(std::fs::read(&path).unwrap(), data);
            let mut buf = Vec::new();
            assert!((0..info.piece_count()).all(|i| s.check_piece(
                PieceIndex(i),
                info.piece_len(PieceIndex(i)),
                &info.pieces[i as usize],
                &mut buf
            )));
        }
    }
}
