//! Building a new `.torrent` from files on disk (what `burrow create` does). Pieces are hashed
//! on all cores; the info dictionary is written with sorted keys as BEP 3 requires.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use librqbit_bencode::{bencode_serialize_to_writer, raw_value::RawValue, ByteBuf};
use serde::Serialize;
use sha1::{Digest, Sha1};

/// Settings for [`create_torrent`].
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Bytes per piece; `None` picks a power of two giving roughly 1,000–2,000 pieces.
    pub piece_length: Option<u32>,
    /// Tracker tiers to list.
    pub trackers: Vec<Vec<String>>,
    /// Mark the torrent private (BEP 27).
    pub private: bool,
    /// Free-text comment.
    pub comment: Option<String>,
}

#[derive(Serialize)]
struct OutFile<'a> {
    length: u64,
    path: Vec<ByteBuf<'a>>,
}

#[derive(Serialize)]
struct OutInfo<'a> {
    name: ByteBuf<'a>,
    #[serde(rename = "piece length")]
    piece_length: u32,
    pieces: ByteBuf<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<Vec<OutFile<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    private: Option<u8>,
}

#[derive(Serialize)]
struct OutTorrent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    announce: Option<ByteBuf<'a>>,
    #[serde(rename = "announce-list", skip_serializing_if = "Option::is_none")]
    announce_list: Option<Vec<Vec<ByteBuf<'a>>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<ByteBuf<'a>>,
    #[serde(rename = "created by")]
    created_by: ByteBuf<'a>,
    info: RawValue<&'a [u8]>,
}

/// Hashes `root` (a file, or a folder walked in sorted order) and returns the bytes of a
/// `.torrent` describing it.
pub fn create_torrent(root: &Path, opts: &CreateOptions) -> io::Result<Vec<u8>> {
    let name = root
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no usable file name"))?
        .to_string();
    let meta = std::fs::metadata(root)?;
    let files: Vec<(PathBuf, Vec<String>, u64)> = if meta.is_dir() {
        let mut out = Vec::new();
        walk(root, &mut Vec::new(), &mut out)?;
        if out.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "folder has no files",
            ));
        }
        out
    } else {
        vec![(root.to_path_buf(), vec![], meta.len())]
    };
    let total: u64 = files.iter().map(|f| f.2).sum();
    let piece_length = opts
        .piece_length
        .unwrap_or_else(|| auto_piece_length(total));
    if piece_length == 0 || piece_length > super::MAX_PIECE_LENGTH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "piece length out of range",
        ));
    }
    let pieces = hash_pieces(&files, total, piece_length)?;

    let comps: Vec<Vec<&[u8]>> = files
        .iter()
        .map(|f| f.1.iter().map(|c| c.as_bytes()).collect())
        .collect();
    let info = OutInfo {
        name: ByteBuf(name.as_bytes()),
        piece_length,
        pieces: ByteBuf(&pieces),
        length: (!meta.is_dir()).then_some(total),
        files: meta.is_dir().then(|| {
            files
                .iter()
                .zip(&comps)
                .map(|(f, c)| OutFile {
                    length: f.2,
                    path: c.iter().map(|b| ByteBuf(b)).collect(),
                })
                .collect()
        }),
        private: opts.private.then_some(1),
    };
    let mut info_bytes = Vec::new();
    bencode_serialize_to_writer(&info, &mut info_bytes).map_err(io::Error::other)?;

    let tiers: Vec<Vec<ByteBuf<'_>>> = opts
        .trackers
        .iter()
        .map(|t| t.iter().map(|u| ByteBuf(u.as_bytes())).collect())
        .collect();
    let torrent = OutTorrent {
        announce: opts
            .trackers
            .first()
            .and_then(|t| t.first())
            .map(|u| ByteBuf(u.as_bytes())),
        announce_list: (opts.trackers.len() > 1
            || opts.trackers.first().is_some_and(|t| t.len() > 1))
        .then_some(tiers),
        comment: opts.comment.as_ref().map(|c| ByteBuf(c.as_bytes())),
        created_by: ByteBuf(concat!("burrow/", env!("CARGO_PKG_VERSION")).as_bytes()),
        info: RawValue(&info_bytes),
    };
    let mut out = Vec::new();
    bencode_serialize_to_writer(&torrent, &mut out).map_err(io::Error::other)?;
    Ok(out)
}

/// A power of two between 16 KiB and 16 MiB aiming at about 1,500 pieces.
fn auto_piece_length(total: u64) -> u32 {
    let target = total / 1500;
    let mut pl: u32 = 16 * 1024;
    while (pl as u64) < target && pl < 16 * 1024 * 1024 {
        pl *= 2;
    }
    pl
}

fn walk(
    dir: &Path,
    prefix: &mut Vec<String>,
    out: &mut Vec<(PathBuf, Vec<String>, u64)>,
) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().into_string().map_err(|n| {
            io::Error::new(io::ErrorKind::InvalidData, format!("non-UTF-8 name {n:?}"))
        })?;
        let ft = e.file_type()?;
        prefix.push(name);
        if ft.is_dir() {
            walk(&e.path(), prefix, out)?;
        } else if ft.is_file() {
            out.push((e.path(), prefix.clone(), e.metadata()?.len()));
        }
        prefix.pop();
    }
    Ok(())
}

/// Hashes all pieces, splitting them over the machine's cores.
fn hash_pieces(
    files: &[(PathBuf, Vec<String>, u64)],
    total: u64,
    piece_length: u32,
) -> io::Result<Vec<u8>> {
    let count = total.div_ceil(piece_length as u64) as usize;
    let handles: Vec<File> = files
        .iter()
        .map(|f| File::open(&f.0))
        .collect::<Result<_, _>>()?;
    let mut offsets = Vec::with_capacity(files.len());
    let mut acc = 0u64;
    for f in files {
        offsets.push(acc);
        acc += f.2;
    }
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(count.max(1));
    let mut out = vec![0u8; count * 20];
    let chunk = count.div_ceil(workers).max(1);
    std::thread::scope(|s| -> io::Result<()> {
        let mut jobs = Vec::new();
        for (w, slot) in out.chunks_mut(chunk * 20).enumerate() {
            let (handles, offsets) = (&handles, &offsets);
            jobs.push(s.spawn(move || -> io::Result<()> {
                let mut buf = vec![0u8; piece_length as usize];
                for (k, dst) in slot.chunks_mut(20).enumerate() {
                    let piece = (w * chunk + k) as u64;
                    let start = piece * piece_length as u64;
                    let len = (total - start).min(piece_length as u64) as usize;
                    read_span(handles, offsets, files, start, &mut buf[..len])?;
                    dst.copy_from_slice(&Sha1::digest(&buf[..len]));
                }
                Ok(())
            }));
        }
        for j in jobs {
            j.join()
                .map_err(|_| io::Error::other("hashing thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(out)
}

fn read_span(
    handles: &[File],
    offsets: &[u64],
    files: &[(PathBuf, Vec<String>, u64)],
    start: u64,
    buf: &mut [u8],
) -> io::Result<()> {
    let mut pos = start;
    let mut filled = 0;
    let mut i = offsets.partition_point(|&o| o <= start).saturating_sub(1);
    while filled < buf.len() {
        let (off, len) = (offsets[i], files[i].2);
        let within = pos - off;
        let n = ((len - within) as usize).min(buf.len() - filled);
        if n > 0 {
            handles[i].read_exact_at(&mut buf[filled..filled + n], within)?;
        }
        filled += n;
        pos += n as u64;
        i += 1;
    }
    Ok(())
}
