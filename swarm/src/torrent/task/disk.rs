//! The torrent's disk work, all on blocking threads: hashing and writing received pieces
//! (a bounded number at once, the rest queued), checking files found on disk at start, and
//! resume checkpoints that never claim a piece whose bytes might not be on stable storage.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use sha1::{Digest, Sha1};

use super::{Task, TaskMsg};
use crate::metainfo::Info;
use crate::torrent::bitfield::Bitfield;
use crate::torrent::piece_buf::PieceBuf;
use crate::torrent::resume::{boot_id, plan_start, ResumeData};
use crate::torrent::selection::FilePriority;
use crate::torrent::storage::Storage;
use crate::types::PieceIndex;

/// Pieces hashed at once: hashing is CPU work, one piece per core.
fn hash_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Pieces written at once. Direct writes wait for the device, which serves several requests
/// in parallel; with one or two in flight, a device that stalls for a few milliseconds holds
/// up every piece behind it and the request window fills with pieces waiting for the disk.
pub const WRITE_DEPTH: usize = 4;

/// Received pieces on their way to the disk: hashed (a bounded number at once), then written
/// (a bounded number at once), each stage on blocking threads so that neither holds up the
/// other or the network. The buffers are the core's, so their number is bounded by the
/// core's window.
#[derive(Default)]
pub(super) struct DiskQueue {
    to_hash: VecDeque<(u32, PieceBuf)>,
    hashing: usize,
    to_write: VecDeque<(u32, PieceBuf)>,
    writing: usize,
}

impl DiskQueue {
    /// Pieces waiting or in work.
    pub fn len(&self) -> usize {
        self.to_hash.len() + self.hashing + self.to_write.len() + self.writing
    }
}

impl Task {
    /// Queues a complete piece for hashing and, if it is good, writing.
    pub(super) fn verify(&mut self, piece: u32, data: PieceBuf) {
        self.disk.to_hash.push_back((piece, data));
        self.next_disk_jobs();
    }

    /// A piece was hashed: a good one goes on to be written, a bad one back to the core.
    pub(super) fn hashed(&mut self, piece: u32, ok: bool, buf: PieceBuf) {
        self.disk.hashing -= 1;
        if ok {
            self.disk.to_write.push_back((piece, buf));
        } else {
            self.core.piece_checked(piece, false, buf);
        }
        self.next_disk_jobs();
    }

    /// A piece was written (or could not be).
    pub(super) fn written(&mut self, piece: u32, result: std::io::Result<()>, buf: PieceBuf) {
        self.disk.writing -= 1;
        match result {
            Ok(()) => self.core.piece_checked(piece, true, buf),
            Err(e) => {
                tracing::error!(error = %e, "cannot write to disk; torrent stopped");
                self.error = Some(format!("disk write failed: {e}"));
            }
        }
        self.next_disk_jobs();
    }

    fn next_disk_jobs(&mut self) {
        let (Some(storage), Some(info)) = (self.storage.clone(), self.core.info().cloned()) else {
            return;
        };
        while self.disk.hashing < hash_workers() && self.error.is_none() {
            let Some((piece, data)) = self.disk.to_hash.pop_front() else {
                break;
            };
            self.disk.hashing += 1;
            let (tx, info) = (self.tx.clone(), info.clone());
            tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                let ok = Sha1::digest(&data).as_slice() == info.pieces[piece as usize].0;
                tracing::trace!(target: "burrow::pipeline", piece, us = t.elapsed().as_micros() as u64, "hashed");
                let _ = tx.send(TaskMsg::Hashed {
                    piece,
                    ok,
                    buf: data,
                });
            });
        }
        while self.disk.writing < WRITE_DEPTH && self.error.is_none() {
            let Some((piece, data)) = self.disk.to_write.pop_front() else {
                break;
            };
            self.disk.writing += 1;
            let (tx, storage) = (self.tx.clone(), storage.clone());
            tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                let result = storage.write_piece(PieceIndex(piece), &data);
                tracing::trace!(target: "burrow::pipeline", piece, us = t.elapsed().as_micros() as u64, "written");
                let _ = tx.send(TaskMsg::Written {
                    piece,
                    result,
                    buf: data,
                });
            });
        }
    }

    pub(super) fn start_check(&mut self, info: Arc<Info>) {
        let prios = match self.p.selection.check(&info) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "file selection does not fit the torrent");
                self.error = Some(e.to_string());
                self.publish();
                return;
            }
        };
        let storage = Arc::new(
            Storage::new(&info, &self.p.download_dir).with_direct_io(self.env.settings.direct_io),
        );
        // Before any write: skipped files are never created. Nothing moves on a new storage.
        let skipped = prios.iter().map(|p| *p == FilePriority::Skip).collect();
        if let Err(e) = storage.set_skipped(skipped) {
            tracing::warn!(error = %e, "cannot set up skipped files");
        }
        self.storage = Some(storage.clone());
        let store = self.env.resume.clone();
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let resume = store.load(&info.info_hash);
            let plan = plan_start(&info, &storage, resume.as_ref());
            let mut have = Bitfield::new(info.piece_count());
            for &p in &plan.trusted {
                have.set(p, true);
            }
            let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
            let checked: Vec<u32> = std::thread::scope(|s| {
                let chunks: Vec<&[u32]> = plan
                    .to_check
                    .chunks(plan.to_check.len().div_ceil(workers).max(1))
                    .collect();
                let handles: Vec<_> = chunks
                    .into_iter()
                    .map(|chunk| {
                        let (info, storage) = (&info, &storage);
                        s.spawn(move || {
                            let mut buf = Vec::new();
                            chunk
                                .iter()
                                .copied()
                                .filter(|&p| {
                                    storage.check_piece(
                                        PieceIndex(p),
                                        info.piece_len(PieceIndex(p)),
                                        &info.pieces[p as usize],
                                        &mut buf,
                                    )
                                })
                                .collect::<Vec<u32>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            // Hashed bytes may have come from the page cache of an earlier run that never
            // flushed them; so may trusted pieces recorded as unflushed in this boot.
            if !plan.trusted.is_empty() || !plan.to_check.is_empty() {
                tracing::info!(
                    trusted = plan.trusted.len(),
                    hashed = plan.to_check.len(),
                    valid = plan.trusted.len() + checked.len(),
                    "pieces found on disk"
                );
            }
            let mut unflushed = plan.unflushed;
            for p in checked {
                have.set(p, true);
                unflushed.push(p);
            }
            storage.mark_unflushed(&unflushed);
            let _ = tx.send(TaskMsg::Checked {
                have,
                resume,
                unflushed,
            });
        });
    }

    pub(super) fn resume_data(&self) -> Option<(ResumeData, Arc<Storage>)> {
        let (info, have, storage) = (self.core.info()?, self.core.have()?, self.storage.clone()?);
        let s = self.core.stats();
        Some((
            ResumeData {
                info_hash: info.info_hash,
                root: storage.root().to_path_buf(),
                have: have.clone(),
                stamps: Vec::new(),
                uploaded: self.lifetime.0 + s.uploaded,
                downloaded: self.lifetime.1 + s.downloaded,
                unflushed: Vec::new(),
                boot: None,
            },
            storage,
        ))
    }

    /// Flushes written data, then records which pieces are verified: resume data never claims
    /// a piece whose bytes might still be only in memory.
    pub(super) fn checkpoint(&mut self) {
        self.save_in_background(true);
    }

    /// Records which pieces are verified without waiting for the disk, the unflushed ones
    /// marked with the boot id (see `resume`); a full checkpoint where the boot id is unknown.
    pub(super) fn quick_save(&mut self) {
        self.save_in_background(boot_id().is_none());
    }

    pub(super) fn save_in_background(&mut self, flush: bool) {
        if self.extra.saving {
            return;
        }
        let Some(job) = self.save_job(flush) else {
            return;
        };
        self.extra.saving = true;
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let retry = job();
            let _ = tx.send(TaskMsg::Saved { retry });
        });
    }

    /// A blocking job that writes the resume data as it is now, flushing first if `flush`;
    /// it returns the pieces it was to flush if it could not.
    pub(super) fn save_job(
        &mut self,
        flush: bool,
    ) -> Option<impl FnOnce() -> Vec<u32> + Send + 'static> {
        let (mut data, storage) = self.resume_data()?;
        self.dirty = false;
        self.last_checkpoint = Instant::now();
        let flushing = if flush {
            std::mem::take(&mut self.unflushed)
        } else {
            data.unflushed = self.unflushed.clone();
            data.boot = boot_id().map(String::from);
            Vec::new()
        };
        let store = self.env.resume.clone();
        Some(move || {
            if flush {
                if let Err(e) = storage.sync() {
                    tracing::warn!(error = %e, "flushing data failed; resume data not updated");
                    return flushing;
                }
            }
            data.stamps = storage.stamps();
            if let Err(e) = store.save(&data) {
                tracing::warn!(error = %e, "cannot save resume data");
                return flushing;
            }
            Vec::new()
        })
    }
}
