//! The user's choice of files and order for a running torrent: resolved against the info
//! dictionary when storage is set up, changed at run time through the handle, and carried to
//! storage (which files to create) and to the core (which pieces, in which order).

use tokio::sync::oneshot;

use super::{Task, TaskMsg, TorrentHandle};
use crate::metainfo::Info;
use crate::torrent::selection::{self, FilePriority, SelectionError};

/// What the user chose; the default is every file at normal priority, rarest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// A priority per file as users number them (pad files left out).
    pub files: Option<Vec<FilePriority>>,
    /// Only these files (and those `only_globs` match).
    pub only: Option<Vec<usize>>,
    /// Only files matching these patterns (and those `only` names).
    pub only_globs: Vec<String>,
    /// Files at high priority.
    pub high: Vec<usize>,
    /// Files at low priority.
    pub low: Vec<usize>,
    /// BEP 53 `so` from a magnet link: only these files, where they exist.
    pub so: Option<Vec<usize>>,
    /// Pieces in order, media files' first and last pieces first (streaming).
    pub sequential: bool,
}

impl Selection {
    /// Priorities of every entry of `info.files` (pad files skipped), or why the choice does
    /// not fit the torrent: a file number beyond its files, a pattern matching none.
    pub fn check(&self, info: &Info) -> Result<Vec<FilePriority>, SelectionError> {
        let count = selection::user_files(info).len();
        let in_range = |list: &[usize]| match list.iter().find(|&&i| i >= count) {
            Some(&index) => Err(SelectionError::OutOfRange { index, count }),
            None => Ok(()),
        };
        let mut user = match &self.files {
            Some(f) => {
                if f.len() != count {
                    return Err(SelectionError::WrongLength {
                        given: f.len(),
                        count,
                    });
                }
                f.clone()
            }
            None => vec![FilePriority::Normal; count],
        };
        if self.only.is_some() || !self.only_globs.is_empty() {
            let mut keep = self.only.clone().unwrap_or_default();
            in_range(&keep)?;
            if !self.only_globs.is_empty() {
                keep.extend(selection::files_matching(info, &self.only_globs)?);
            }
            for (n, p) in user.iter_mut().enumerate() {
                if !keep.contains(&n) {
                    *p = FilePriority::Skip;
                }
            }
        } else if let Some(so) = &self.so {
            let fit: Vec<usize> = so.iter().copied().filter(|&i| i < count).collect();
            if fit.len() < so.len() {
                tracing::warn!(
                    count,
                    "`so` names files the torrent does not have; ignored those"
                );
            }
            for (n, p) in user.iter_mut().enumerate() {
                if !fit.contains(&n) {
                    *p = FilePriority::Skip;
                }
            }
        }
        in_range(&self.high)?;
        in_range(&self.low)?;
        for (list, prio) in [
            (&self.low, FilePriority::Low),
            (&self.high, FilePriority::High),
        ] {
            for &n in list {
                if user[n] != FilePriority::Skip {
                    user[n] = prio;
                }
            }
        }
        selection::expand(info, &user)
    }

    /// [`check`](Self::check), or every file wanted when the choice does not fit (a change
    /// that fits replaces it; the task refuses to start on one that does not).
    pub fn resolve(&self, info: &Info) -> Vec<FilePriority> {
        self.check(info).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "file selection does not fit the torrent; all files wanted");
            let count = selection::user_files(info).len();
            selection::expand(info, &vec![FilePriority::Normal; count]).expect("sized")
        })
    }
}

/// A change to the selection of a running torrent.
#[derive(Debug)]
pub(crate) struct SelectionChange {
    files: Option<Vec<FilePriority>>,
    sequential: Option<bool>,
    reply: oneshot::Sender<Result<(), SelectionError>>,
}

impl TorrentHandle {
    /// Changes file priorities (one per file as users number them) and/or sequential order.
    /// Refused when the torrent's files are not known yet or the list does not fit them.
    pub async fn set_selection(
        &self,
        files: Option<Vec<FilePriority>>,
        sequential: Option<bool>,
    ) -> Result<(), SelectionError> {
        let (reply, rx) = oneshot::channel();
        let change = SelectionChange {
            files,
            sequential,
            reply,
        };
        if self.tx.send(TaskMsg::Select(change)).is_err() {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }
}

impl Task {
    /// File priorities now in force, one per file as users number them (empty while the
    /// files are not known).
    pub(super) fn user_priorities(&self) -> Vec<FilePriority> {
        let Some(info) = self.core.info() else {
            return Vec::new();
        };
        let all = self.p.selection.resolve(info);
        selection::user_files(info)
            .iter()
            .map(|&i| all[i])
            .collect()
    }

    /// Hands the selection to storage (which files exist) and the core (which pieces, in
    /// which order). Storage first, on a blocking thread: a file that becomes wanted gets
    /// its bytes from the parts file before any write reaches it.
    pub(super) fn apply_selection(&mut self) {
        let (Some(info), Some(storage)) = (self.core.info().cloned(), self.storage.clone()) else {
            return;
        };
        let prios = self.p.selection.resolve(&info);
        let skipped: Vec<bool> = prios.iter().map(|p| *p == FilePriority::Skip).collect();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = storage.set_skipped(skipped) {
                tracing::warn!(error = %e, "cannot move a file's bytes out of the parts file");
            }
        });
        let sequential = self.p.selection.sequential;
        self.core.set_sequential(sequential);
        self.core
            .set_ranks(selection::piece_ranks(&info, &prios, sequential));
        self.extra.selection_version += 1;
    }

    pub(super) fn on_select(&mut self, c: SelectionChange) {
        let result = (|| {
            if let Some(files) = &c.files {
                let info = self.core.info().ok_or(SelectionError::NotYetKnown)?;
                selection::expand(info, files)?;
            }
            if let Some(f) = c.files {
                // Explicit priorities replace every earlier way of choosing.
                self.p.selection = Selection {
                    files: Some(f),
                    sequential: self.p.selection.sequential,
                    ..Selection::default()
                };
            }
            if let Some(s) = c.sequential {
                self.p.selection.sequential = s;
            }
            self.apply_selection();
            Ok(())
        })();
        let _ = c.reply.send(result);
        self.publish();
    }
}
