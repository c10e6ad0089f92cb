//! The watch folder: `.torrent` files dropped into it are added, then renamed to
//! `<name>.added` (or `<name>.invalid` when they cannot be read). A file is only taken once its
//! size and modification time have stayed the same between two scans, so a file still being
//! copied in is not read half-written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use burrow_swarm::metainfo::MAX_METAINFO_SIZE;

use super::engine::{AddRequest, AddSource, EngineHandle};

/// Most candidate files looked at per scan; the rest wait for the next scan.
pub const MAX_FILES_PER_SCAN: usize = 1000;

/// Scans `dir` every `interval` until the task is aborted.
pub async fn run(dir: PathBuf, interval: Duration, engine: EngineHandle) {
    let mut seen: HashMap<PathBuf, (u64, SystemTime)> = HashMap::new();
    loop {
        let candidates = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || scan(&dir))
                .await
                .unwrap_or_default()
        };
        let mut next = HashMap::new();
        for (path, stamp) in candidates {
            if seen.get(&path) == Some(&stamp) {
                take(&path, stamp.0, &engine).await;
            } else {
                next.insert(path, stamp);
            }
        }
        seen = next;
        tokio::time::sleep(interval).await;
    }
}

/// `.torrent` files in `dir` with their size and modification time.
fn scan(dir: &Path) -> Vec<(PathBuf, (u64, SystemTime))> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter(|e| {
            e.file_name().to_str().is_some_and(|n| {
                n.to_ascii_lowercase().ends_with(".torrent") && !n.starts_with('.')
            })
        })
        .filter_map(|e| {
            let m = e.metadata().ok().filter(|m| m.is_file())?;
            Some((e.path(), (m.len(), m.modified().ok()?)))
        })
        .take(MAX_FILES_PER_SCAN)
        .collect()
}

async fn take(path: &Path, len: u64, engine: &EngineHandle) {
    let outcome = if len > MAX_METAINFO_SIZE as u64 {
        Err(format!("larger than {MAX_METAINFO_SIZE} bytes"))
    } else {
        let p = path.to_path_buf();
        match tokio::task::spawn_blocking(move || {
            burrow_swarm::fsread::read_bounded(&p, MAX_METAINFO_SIZE)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e).into()))
        {
            Ok(bytes) => engine
                .add(AddRequest {
                    source: AddSource::Metainfo(bytes),
                    download_dir: None,
                    paused: false,
                })
                .await
                .map(|_| ()),
            Err(e) => Err(e.to_string()),
        }
    };
    let suffix = match &outcome {
        Ok(()) => "added",
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "watch folder: cannot add");
            "invalid"
        }
    };
    let mut renamed = path.as_os_str().to_owned();
    renamed.push(".");
    renamed.push(suffix);
    if let Err(e) = std::fs::rename(path, &renamed) {
        tracing::warn!(path = %path.display(), error = %e, "watch folder: cannot rename");
    } else if outcome.is_ok() {
        tracing::info!(path = %path.display(), "watch folder: added");
    }
}
