//! Reading a local file whose content we do not control (a .torrent, resume data, the DHT
//! state, the daemon's configuration) without trusting it: only a regular file, never more
//! than a cap, and never waiting on a FIFO. A path naming `/dev/zero` must fail at once, not
//! fill memory.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why a bounded read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening or reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The path names a directory, device, FIFO or socket.
    #[error("{0}, not a regular file")]
    NotRegular(&'static str),
    /// The file holds more than the cap.
    #[error("larger than the {max} byte limit")]
    TooLarge {
        /// The cap.
        max: usize,
    },
}

impl ReadError {
    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

/// What a file that is not regular is, for messages.
fn kind(t: std::fs::FileType) -> Option<&'static str> {
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_char_device() || t.is_block_device() {
        Some("a device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    }
}

/// Reads the whole of the regular file at `path` if it holds at most `max` bytes.
pub fn read_bounded(path: &Path, max: usize) -> Result<Vec<u8>, ReadError> {
    // Non-blocking, so that opening a FIFO with no writer returns at once; the type is then
    // checked on the open file, so a path swapped after a check cannot slip through.
    let f: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = f.metadata()?;
    if let Some(k) = kind(meta.file_type()) {
        return Err(ReadError::NotRegular(k));
    }
    if meta.len() > max as u64 {
        return Err(ReadError::TooLarge { max });
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    // The file may grow between the size check and the read.
    f.take(max as u64 + 1).read_to_end(&mut out)?;
    if out.len() > max {
        return Err(ReadError::TooLarge { max });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn only_regular_files_within_the_cap_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"hello").unwrap();
        assert_eq!(read_bounded(&f, 5).unwrap(), b"hello");
        let e = read_bounded(&f, 4).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { max: 4 }), "{e}");
        assert_eq!(e.to_string(), "larger than the 4 byte limit");
        let e = read_bounded(dir.path(), 1 << 20).unwrap_err();
        assert_eq!(e.to_string(), "a directory, not a regular file");
        let e = read_bounded(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(e.to_string(), "a device, not a regular file");
        assert!(read_bounded(&dir.path().join("missing"), 1)
            .unwrap_err()
            .is_not_found());
        // A FIFO with no writer: refused at once instead of waiting for one.
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let t = Instant::now();
        let e = read_bounded(&fifo, 1 << 20).unwrap_err();
        assert_eq!(e.to_string(), "a FIFO, not a regular file");
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
