//! `torrent-set-location`: a torrent gets a new download folder (one of the allowed ones),
//! its data moved there when asked. The torrent stops first (saving resume data), its files
//! are renamed, or copied where the new folder is on another file system, and it starts again
//! where it was: the resume record follows the data, and renamed files keep the size and
//! modification time it trusts, so nothing is hashed again.

use std::path::{Path, PathBuf};

use super::{After, Engine, Run};
use crate::daemon::paths;

impl Engine {
    /// Gives torrent `id` the folder `loc`, moving its data when `move_data`.
    pub(super) async fn relocate(
        &mut self,
        id: i64,
        loc: PathBuf,
        move_data: bool,
    ) -> Result<(), String> {
        let dir = paths::confine(&loc, &self.allowed_dirs).map_err(|e| e.to_string())?;
        let Some(e) = self.entries.get(&id) else {
            return Ok(());
        };
        if e.download_dir == dir {
            return Ok(());
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let running = !matches!(e.run, Run::Idle);
        if running {
            self.stop_entry(id, After::Idle);
            if let Some(Run::Stopping(j, _)) = self.entries.get_mut(&id).map(|e| &mut e.run) {
                let _ = j.await;
            }
            self.finish_stop(id);
        }
        let e = self.entries.get_mut(&id).expect("present");
        let old = e.download_dir.clone();
        if move_data {
            if let Some(info) = e.info.clone() {
                let mut paths: Vec<PathBuf> = info
                    .files
                    .iter()
                    .filter(|f| !f.pad)
                    .map(|f| f.path.clone())
                    .collect();
                paths.push(format!(".{}.parts", info.info_hash.to_hex()).into());
                let moved = tokio::task::spawn_blocking({
                    let (old, dir) = (old.clone(), dir.clone());
                    move || move_files(&old, &dir, &paths)
                })
                .await
                .map_err(|e| e.to_string())?;
                if let Err(err) = moved {
                    // Left where it was, whole: the torrent starts again in the old folder.
                    self.schedule();
                    return Err(err);
                }
            }
            if let Some(mut r) = self.db.resume(&e.info_hash) {
                r.root = dir.clone();
                let store = crate::daemon::db::SqliteResumeStore(self.db.clone());
                let _ = burrow_swarm::torrent::resume_store::ResumeStore::save(&store, &r);
            }
        }
        let dir_str = dir.to_str().ok_or("location is not valid UTF-8")?;
        self.db
            .set_download_dir(id, dir_str)
            .map_err(|e| format!("database: {e}"))?;
        e.download_dir = dir.clone();
        tracing::info!(id, from = %old.display(), to = %dir.display(), move_data, "torrent relocated");
        self.schedule();
        Ok(())
    }
}

/// Moves each of `files` (paths relative to both folders) from `from` to `to`; on failure,
/// moves back what was moved and says which file failed.
fn move_files(from: &Path, to: &Path, files: &[PathBuf]) -> Result<(), String> {
    let mut done: Vec<&PathBuf> = Vec::new();
    for rel in files {
        let (src, dst) = (from.join(rel), to.join(rel));
        if !src.exists() {
            continue;
        }
        if dst.exists() {
            undo(from, to, &done);
            return Err(format!("{} already exists", dst.display()));
        }
        if let Err(e) = move_one(&src, &dst) {
            undo(from, to, &done);
            return Err(format!("cannot move {}: {e}", src.display()));
        }
        done.push(rel);
    }
    for rel in files {
        remove_empty_parents(from, &from.join(rel));
    }
    Ok(())
}

fn move_one(src: &Path, dst: &Path) -> std::io::Result<()> {
    if let Some(p) = dst.parent() {
        std::fs::create_dir_all(p)?;
    }
    match std::fs::rename(src, dst) {
        Ok(()) => Ok(()),
        // Another file system: copy, then remove the original.
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            std::fs::copy(src, dst)?;
            std::fs::File::open(dst)?.sync_all()?;
            std::fs::remove_file(src)
        }
        Err(e) => Err(e),
    }
}

fn undo(from: &Path, to: &Path, done: &[&PathBuf]) {
    for rel in done {
        let _ = move_one(&to.join(rel), &from.join(rel));
    }
}

fn remove_empty_parents(root: &Path, path: &Path) {
    let mut parent = path.parent();
    while let Some(p) = parent {
        if p == root || !p.starts_with(root) || std::fs::remove_dir(p).is_err() {
            break;
        }
        parent = p.parent();
    }
}
