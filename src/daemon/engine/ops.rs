//! What the engine does on request: load stored torrents, add, start, stop, verify and remove
//! them, change settings, and restart the peer listener on a new port.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use burrow_swarm::metainfo::{Info, Magnet, Metainfo};
use burrow_swarm::session::{AddTorrent, Session, TorrentSource};

use super::{session_config, Act, AddRequest, AddSource, Added, After, Engine, Entry, Run, Source};
use crate::daemon::db::{unix_now, NewTorrent};
use crate::daemon::model::{Settings, TorrentSettings};
use crate::daemon::paths;

/// Attempts to bind the old port again when moving to a new one failed; the old listener may
/// take a moment to close.
const REBIND_ATTEMPTS: usize = 20;

impl Engine {
    /// Loads every stored torrent; those not stopped are queued.
    pub(super) fn load(&mut self) -> anyhow::Result<()> {
        for row in self.db.torrents()? {
            let parsed = match (&row.metainfo, &row.magnet) {
                (Some(bytes), _) => Metainfo::from_bytes(bytes).map(|m| {
                    (
                        Source::Torrent {
                            trackers: m.trackers,
                        },
                        Some(Arc::new(m.info)),
                    )
                }),
                (None, Some(link)) => Magnet::parse(link).map(|m| {
                    let info = row
                        .info
                        .as_deref()
                        .and_then(|raw| Info::from_bytes_checked(raw, m.info_hash).ok())
                        .map(Arc::new);
                    (Source::Magnet(m), info)
                }),
                (None, None) => {
                    tracing::warn!(
                        id = row.id,
                        "stored torrent has neither metainfo nor magnet link; skipped"
                    );
                    continue;
                }
            };
            let (source, info) = match parsed {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(id = row.id, error = %e, "stored torrent cannot be read; skipped");
                    continue;
                }
            };
            let stored_have = info.as_ref().and_then(|i| {
                self.db
                    .resume(&row.info_hash)
                    .map(|r| r.have)
                    .filter(|h| h.len() == i.piece_count())
            });
            let mut entry = Entry {
                id: row.id,
                info_hash: row.info_hash,
                name: info.as_ref().map_or(row.name, |i| i.name.clone()),
                source,
                info,
                download_dir: PathBuf::from(row.download_dir),
                added_at: row.added_at,
                done_at: row.done_at,
                paused: row.paused,
                finished: row.finished,
                settings: serde_json::from_str(&row.settings).unwrap_or_default(),
                base: (row.uploaded, row.downloaded),
                seeding_secs: row.seeding_secs,
                seeding_saved: row.seeding_secs,
                run: Run::Idle,
                force: false,
                verify_pending: false,
                last: None,
                progress: (0, 0),
                stored_have,
                counted: (0, 0),
                info_requested: false,
                error: None,
            };
            entry.progress = entry.stored_progress();
            self.by_hash.insert(entry.info_hash, entry.id);
            self.entries.insert(entry.id, entry);
        }
        Ok(())
    }

    /// Adds a torrent; an existing one with the same info-hash is reported, not added twice.
    pub(super) fn add(&mut self, req: AddRequest) -> Result<Added, String> {
        let (source, info, name, info_hash, bytes, link) = match req.source {
            AddSource::Metainfo(bytes) => {
                let m = Metainfo::from_bytes(&bytes)
                    .map_err(|e| format!("invalid or corrupt torrent file: {e}"))?;
                let ih = m.info.info_hash;
                (
                    Source::Torrent {
                        trackers: m.trackers,
                    },
                    Some(Arc::new(m.info.clone())),
                    m.info.name,
                    ih,
                    Some(bytes),
                    None,
                )
            }
            AddSource::Magnet(link) => {
                let m = Magnet::parse(&link).map_err(|e| e.to_string())?;
                let name = m.name.clone().unwrap_or_else(|| m.info_hash.to_hex());
                let ih = m.info_hash;
                (Source::Magnet(m), None, name, ih, None, Some(link))
            }
        };
        if let Some(&id) = self.by_hash.get(&info_hash) {
            let name = self.entries[&id].name.clone();
            return Ok(Added {
                id,
                name,
                info_hash,
                duplicate: true,
            });
        }
        if self
            .removing
            .get(&info_hash)
            .is_some_and(|j| !j.is_finished())
        {
            return Err("this torrent is still being removed; try again in a moment".into());
        }
        let dir = req
            .download_dir
            .unwrap_or_else(|| self.settings.download_dir.clone());
        let dir = paths::confine(&dir, &self.allowed_dirs).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let dir_str = dir
            .to_str()
            .ok_or("download-dir is not valid UTF-8")?
            .to_string();
        let added_at = unix_now();
        let id = self
            .db
            .insert_torrent(&NewTorrent {
                info_hash,
                name: &name,
                metainfo: bytes.as_deref(),
                magnet: link.as_deref(),
                download_dir: &dir_str,
                paused: req.paused,
                added_at,
            })
            .map_err(|e| format!("database: {e}"))?;
        let progress = (0, info.as_ref().map_or(0, |i| i.total_length));
        let entry = Entry {
            id,
            info_hash,
            name: name.clone(),
            source,
            info,
            download_dir: dir,
            added_at,
            done_at: None,
            paused: req.paused,
            finished: false,
            settings: TorrentSettings::default(),
            base: (0, 0),
            seeding_secs: 0,
            seeding_saved: 0,
            run: Run::Idle,
            force: false,
            verify_pending: false,
            last: None,
            progress,
            stored_have: None,
            counted: (0, 0),
            info_requested: false,
            error: None,
        };
        self.by_hash.insert(info_hash, id);
        self.entries.insert(id, entry);
        self.current.files_added += 1;
        self.cumulative.files_added += 1;
        tracing::info!(id, %info_hash, name = %name, "torrent added");
        Ok(Added {
            id,
            name,
            info_hash,
            duplicate: false,
        })
    }

    /// Applies `act` to each torrent in `ids` (unknown ids are ignored, as Transmission does).
    pub(super) fn act(&mut self, act: Act, ids: &[i64]) -> Result<(), String> {
        for &id in ids {
            if !self.entries.contains_key(&id) {
                continue;
            }
            match act {
                Act::Start | Act::StartNow => {
                    let e = self.entries.get_mut(&id).expect("present");
                    e.paused = false;
                    e.finished = false;
                    e.force = act == Act::StartNow;
                    self.db
                        .set_paused(id, false, false)
                        .map_err(|e| format!("database: {e}"))?;
                }
                Act::Stop => {
                    let e = self.entries.get_mut(&id).expect("present");
                    e.paused = true;
                    e.force = false;
                    self.db
                        .set_paused(id, true, e.finished)
                        .map_err(|e| format!("database: {e}"))?;
                    self.stop_entry(id, After::Idle);
                }
                Act::Verify => {
                    self.entries.get_mut(&id).expect("present").verify_pending = true;
                    self.stop_entry(id, After::Verify);
                }
                Act::Remove { delete } => self.remove(id, delete)?,
            }
        }
        Ok(())
    }

    /// Adds a queued torrent to the session.
    pub(super) fn start_entry(&mut self, id: i64) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        if !matches!(e.run, Run::Idle) {
            return;
        }
        let trackers = e.trackers();
        let (source, peers) = match (&e.source, &e.info) {
            (Source::Magnet(m), None) => (TorrentSource::Magnet(m.clone()), vec![]),
            (source, Some(info)) => {
                let peers = match source {
                    Source::Magnet(m) => m.peers.iter().filter_map(|p| p.parse().ok()).collect(),
                    Source::Torrent { .. } => vec![],
                };
                (
                    TorrentSource::Metainfo(Box::new(Metainfo {
                        info: (**info).clone(),
                        trackers,
                        comment: None,
                    })),
                    peers,
                )
            }
            (Source::Torrent { .. }, None) => return,
        };
        let handle = session.add(AddTorrent {
            source,
            download_dir: e.download_dir.clone(),
            peers,
            seed: true,
            selection: e.selection(),
        });
        let s = &e.settings;
        handle.set_rate_limits(
            if s.down_enabled {
                s.down_kbps * 1000
            } else {
                0
            },
            if s.up_enabled { s.up_kbps * 1000 } else { 0 },
        );
        if let Ok(base) = self.db.totals(id) {
            e.base = base;
        }
        e.counted = (0, 0);
        e.error = None;
        e.info_requested = false;
        e.last = None;
        e.run = Run::Running(handle);
        tracing::debug!(id, name = %e.name, "torrent started");
    }

    /// Takes a torrent out of the session; its task shuts down in the background.
    pub(super) fn stop_entry(&mut self, id: i64, after: After) {
        self.observe(id);
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        match std::mem::replace(&mut e.run, Run::Idle) {
            Run::Running(h) => {
                if let Some(s) = &mut self.session {
                    s.remove(&e.info_hash);
                }
                if let Some(last) = &e.last {
                    for (route, n) in &last.route_totals {
                        *self.past_routes.entry(route).or_default() += n;
                    }
                }
                let tx = self.self_tx.clone();
                e.run = Run::Stopping(
                    tokio::spawn(async move {
                        // What it has, for display while it stops. Never waits on the engine:
                        // the engine may itself be waiting for this task.
                        if let Some(have) = h.details().await.and_then(|d| d.have) {
                            let _ = tx.try_send(super::Cmd::StoppedHave(id, have));
                        }
                        h.shutdown().await
                    }),
                    after,
                );
                tracing::debug!(id, name = %e.name, "torrent stopping");
            }
            Run::Stopping(j, prev) => {
                e.run = Run::Stopping(j, if after == After::Verify { after } else { prev })
            }
            Run::Idle => {
                if after == After::Verify {
                    let _ = self.db.forget_pieces(&e.info_hash);
                    e.progress.0 = 0;
                }
            }
        }
    }

    fn remove(&mut self, id: i64, delete: bool) -> Result<(), String> {
        self.stop_entry(id, After::Idle);
        let Some(e) = self.entries.remove(&id) else {
            return Ok(());
        };
        self.by_hash.remove(&e.info_hash);
        let _ = self.db.set_seeding_secs(id, e.seeding_secs);
        self.db
            .delete_torrent(id)
            .map_err(|e| format!("database: {e}"))?;
        let stopping = match e.run {
            Run::Stopping(j, _) => Some(j),
            _ => None,
        };
        let files = if delete {
            e.info.clone().map(|i| (e.download_dir.clone(), i))
        } else {
            None
        };
        let job = tokio::spawn(async move {
            if let Some(j) = stopping {
                let _ = j.await;
            }
            if let Some((dir, info)) = files {
                let _ = tokio::task::spawn_blocking(move || delete_files(&dir, &info)).await;
            }
        });
        self.removing.insert(e.info_hash, job);
        tracing::info!(id, name = %e.name, delete, "torrent removed");
        Ok(())
    }

    /// Replaces a torrent's settings.
    pub(super) fn set_torrent(&mut self, id: i64, s: TorrentSettings) -> Result<(), String> {
        let Some(e) = self.entries.get_mut(&id) else {
            return Ok(());
        };
        let json = serde_json::to_string(&s).map_err(|e| e.to_string())?;
        self.db
            .set_settings(id, &json)
            .map_err(|e| format!("database: {e}"))?;
        let reselect = (&s.wanted, &s.priorities, s.sequential)
            != (
                &e.settings.wanted,
                &e.settings.priorities,
                e.settings.sequential,
            );
        if let Run::Running(h) = &e.run {
            if reselect {
                let count = e
                    .info
                    .as_ref()
                    .map(|i| burrow_swarm::torrent::selection::user_files(i).len());
                let files = count.and_then(|n| s.file_priorities(n));
                let (h, seq) = (h.clone(), s.sequential);
                tokio::spawn(async move {
                    if let Err(err) = h.set_selection(files, Some(seq)).await {
                        tracing::warn!(error = %err, "file selection refused");
                    }
                });
            }
            h.set_rate_limits(
                if s.down_enabled {
                    s.down_kbps * 1000
                } else {
                    0
                },
                if s.up_enabled { s.up_kbps * 1000 } else { 0 },
            );
        }
        e.settings = s;
        if matches!(e.run, Run::Idle) {
            e.progress = e.stored_progress();
        }
        Ok(())
    }

    /// Replaces the session settings.
    pub(super) async fn set_session(&mut self, mut s: Settings) -> Result<(), String> {
        if s.download_dir != self.settings.download_dir {
            s.download_dir =
                paths::confine(&s.download_dir, &self.allowed_dirs).map_err(|e| e.to_string())?;
            std::fs::create_dir_all(&s.download_dir)
                .map_err(|e| format!("cannot create {}: {e}", s.download_dir.display()))?;
        }
        if s.peer_port != self.settings.peer_port {
            self.restart_listener(s.peer_port).await?;
        }
        let (down, up) = s.rate_caps();
        self.limits.set(down, up);
        self.settings = s;
        let json = serde_json::to_string(&self.settings).map_err(|e| e.to_string())?;
        self.db
            .set_meta("settings", &json)
            .map_err(|e| format!("database: {e}"))
    }

    /// Moves the peer listener to `port`. The session's sockets are shared by every torrent,
    /// so all running torrents are stopped (saving resume data) and queued again on the new
    /// session; with resume data in place they restart without hashing.
    async fn restart_listener(&mut self, port: u16) -> Result<(), String> {
        let old_port = self.port();
        let ids: Vec<i64> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.run, Run::Running(_)))
            .map(|(id, _)| *id)
            .collect();
        for &id in &ids {
            self.stop_entry(id, After::Idle);
        }
        for id in ids {
            if let Some(Run::Stopping(j, _)) = self.entries.get_mut(&id).map(|e| &mut e.run) {
                let _ = j.await;
            }
            self.finish_stop(id);
        }
        if let Some(s) = self.session.take() {
            s.shutdown().await;
        }
        let config = |p| session_config(&self.config, &self.db, &self.limits, p);
        match Session::start(config(port)).await {
            Ok(s) => {
                tracing::info!(port = s.port(), "peer listener moved");
                self.session = Some(s);
                Ok(())
            }
            Err(e) => {
                for _ in 0..REBIND_ATTEMPTS {
                    if let Ok(s) = Session::start(config(old_port)).await {
                        self.session = Some(s);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(format!("cannot listen on port {port}: {e}"))
            }
        }
    }

    /// Keeps the info dictionary a magnet link's peers sent, so a restart needs no peers to
    /// know the torrent.
    pub(super) fn info_fetched(&mut self, id: i64, info: Arc<Info>) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        if e.info.is_some() || info.info_hash != e.info_hash {
            return;
        }
        if let Err(err) = self.db.set_info(id, &info.raw, &info.name) {
            tracing::warn!(id, error = %err, "cannot store metadata");
        }
        e.name = info.name.clone();
        e.info = Some(info);
    }
}

/// Deletes a torrent's files and the folders that become empty, never leaving `dir`.
fn delete_files(dir: &Path, info: &Info) {
    for f in info.files.iter().filter(|f| !f.pad) {
        let path = dir.join(&f.path);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete");
            }
        }
        let mut parent = path.parent();
        while let Some(p) = parent {
            if p == dir || !p.starts_with(dir) || std::fs::remove_dir(p).is_err() {
                break;
            }
            parent = p.parent();
        }
    }
}
