//! Once a second: read each running torrent's status, count transfer totals, apply seeding
//! limits, finish stops, start queued torrents as slots free up, and now and then write
//! totals to the database. Also builds the snapshots everything else reads.

use std::collections::BTreeMap;
use std::time::Instant;

use burrow_swarm::torrent::status::TorrentState;

use super::{After, Engine, Entry, Run, PERSIST_INTERVAL};
use crate::daemon::db::unix_now;
use crate::daemon::model::{
    Activity, Connectivity, Settings, Snapshot, TorrentSettings, TorrentView,
};

/// Whether a seeding torrent has seeded enough: its ratio limit (its own, the session's, or
/// none, by `ratio_mode`) or the session's seeding-time limit.
pub(super) fn seed_limit_reached(
    s: &Settings,
    t: &TorrentSettings,
    ratio: f64,
    seeding_secs: u64,
) -> bool {
    let ratio_limit = match t.ratio_mode {
        1 => Some(t.ratio),
        2 => None,
        _ => s.seed_ratio_enabled.then_some(s.seed_ratio),
    };
    let by_ratio = ratio_limit.is_some_and(|l| ratio >= l);
    let by_time = s.seed_time_enabled && seeding_secs >= s.seed_time_minutes.saturating_mul(60);
    by_ratio || by_time
}

impl Engine {
    pub(super) fn tick(&mut self) {
        let now = Instant::now();
        let secs = (now.duration_since(self.last_tick).as_millis() as u64 + 500) / 1000;
        self.last_tick = now;
        self.current.seconds_active = self.started.elapsed().as_secs();
        self.cumulative.seconds_active += secs;
        let ids: Vec<i64> = self.entries.keys().copied().collect();
        for id in ids {
            self.observe(id);
            self.check_running(id, secs);
            self.finish_stop(id);
        }
        self.removing.retain(|_, j| !j.is_finished());
        self.schedule();
        if now.duration_since(self.last_persist) >= PERSIST_INTERVAL {
            self.persist();
        }
    }

    /// Reads a running torrent's status and counts what it transferred since the last look.
    pub(super) fn observe(&mut self, id: i64) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        let Run::Running(h) = &e.run else { return };
        let st = h.status();
        let up = st.uploaded.saturating_sub(e.counted.0);
        let down = st.downloaded.saturating_sub(e.counted.1);
        e.counted = (st.uploaded, st.downloaded);
        for block in [&mut self.current, &mut self.cumulative] {
            block.uploaded += up;
            block.downloaded += down;
        }
        // The piece count is only set once storage was checked and pieces are known.
        if st.pieces > 0 {
            e.progress = (st.verified_bytes, st.wanted_bytes);
        }
        if matches!(st.state, TorrentState::Seeding | TorrentState::Complete) && e.done_at.is_none()
        {
            let at = unix_now();
            e.done_at = Some(at);
            let _ = self.db.set_done(id, Some(at));
        }
        if let TorrentState::Error(m) = &st.state {
            e.error = Some(m.clone());
        }
        e.last = Some(st);
    }

    fn check_running(&mut self, id: i64, secs: u64) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        let Run::Running(h) = &e.run else { return };
        let Some(st) = &e.last else { return };
        let attached = st.pieces > 0;
        let seeding = st.state == TorrentState::Seeding;
        if e.info.is_none() && !e.info_requested && attached {
            // A magnet link's metadata arrived: keep it.
            e.info_requested = true;
            let (h, tx) = (h.clone(), self.self_tx.clone());
            tokio::spawn(async move {
                if let Some(info) = h.details().await.and_then(|d| d.info) {
                    let _ = tx.send(super::Cmd::InfoFetched(id, info)).await;
                }
            });
        }
        if e.verify_pending && attached {
            e.verify_pending = false;
            if e.paused {
                self.stop_entry(id, After::Idle);
                return;
            }
        }
        if !seeding {
            return;
        }
        e.seeding_secs += secs;
        let e = &self.entries[&id];
        if self.seed_limit_reached(e) {
            tracing::info!(id, name = %e.name, "seeding limit reached; stopping");
            let paused = e.paused;
            let _ = self.db.set_paused(id, paused, true);
            self.entries.get_mut(&id).expect("present").finished = true;
            self.stop_entry(id, After::Idle);
        }
    }

    fn seed_limit_reached(&self, e: &Entry) -> bool {
        let (up, down) = e
            .last
            .as_ref()
            .map_or((0, 0), |s| (s.uploaded, s.downloaded));
        let ratio = crate::daemon::model::ratio(e.base.0 + up, e.base.1 + down, e.progress.0);
        seed_limit_reached(&self.settings, &e.settings, ratio, e.seeding_secs)
    }

    /// A stopping torrent whose task has finished becomes idle.
    pub(super) fn finish_stop(&mut self, id: i64) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        let Run::Stopping(j, after) = &e.run else {
            return;
        };
        if !j.is_finished() {
            return;
        }
        if *after == After::Verify {
            if let Err(err) = self.db.forget_pieces(&e.info_hash) {
                tracing::warn!(id, error = %err, "cannot clear pieces for verification");
            }
            e.progress.0 = 0;
        }
        e.run = Run::Idle;
        if let Ok(base) = self.db.totals(id) {
            e.base = base;
        }
        e.stored_have = self.db.resume(&e.info_hash).map(|r| r.have);
        e.counted = (0, 0);
        if let Some(last) = &mut e.last {
            last.uploaded = 0;
            last.downloaded = 0;
        }
    }

    /// Starts queued torrents while download and seed slots are free, and queues the newest
    /// running ones when there are more than the slots allow.
    pub(super) fn schedule(&mut self) {
        let s = &self.settings;
        let max_dl = if s.download_queue_enabled && s.download_queue_size > 0 {
            s.download_queue_size
        } else {
            usize::MAX
        };
        let max_seed = if s.seed_queue_enabled && s.seed_queue_size > 0 {
            s.seed_queue_size
        } else {
            usize::MAX
        };
        let (mut dl, mut seed) = (0usize, 0usize);
        for e in self
            .entries
            .values()
            .filter(|e| matches!(e.run, Run::Running(_)) && !e.force)
        {
            if e.complete() {
                seed += 1;
            } else {
                dl += 1;
            }
        }
        let idle: Vec<(i64, bool, bool)> = self
            .entries
            .values()
            .filter(|e| matches!(e.run, Run::Idle) && (e.wants_run() || e.verify_pending))
            .map(|e| (e.id, e.complete(), e.force || e.verify_pending))
            .collect();
        for (id, complete, forced) in idle {
            let slot = if complete { &mut seed } else { &mut dl };
            let max = if complete { max_seed } else { max_dl };
            if forced || *slot < max {
                if !forced {
                    *slot += 1;
                }
                self.start_entry(id);
            }
        }
        for (count, max, want_complete) in [(seed, max_seed, true), (dl, max_dl, false)] {
            if count <= max {
                continue;
            }
            let extra: Vec<i64> = self
                .entries
                .values()
                .rev()
                .filter(|e| {
                    matches!(e.run, Run::Running(_)) && !e.force && e.complete() == want_complete
                })
                .take(count - max)
                .map(|e| e.id)
                .collect();
            for id in extra {
                self.stop_entry(id, After::Idle);
            }
        }
    }

    /// Writes totals and seeding times.
    pub(super) fn persist(&mut self) {
        self.last_persist = Instant::now();
        if let Ok(json) = serde_json::to_string(&self.cumulative) {
            let _ = self.db.set_meta("stats", &json);
        }
        let changed: Vec<(i64, u64)> = self
            .entries
            .values()
            .filter(|e| e.seeding_secs != e.seeding_saved)
            .map(|e| (e.id, e.seeding_secs))
            .collect();
        if let Err(e) = self.db.set_seeding_many(&changed) {
            tracing::warn!(error = %e, "cannot save seeding times");
            return;
        }
        for (id, secs) in changed {
            if let Some(e) = self.entries.get_mut(&id) {
                e.seeding_saved = secs;
            }
        }
    }

    /// The view of one torrent.
    pub(super) fn view(&self, e: &Entry) -> TorrentView {
        let handle = match &e.run {
            Run::Running(h) => Some(h.clone()),
            _ => None,
        };
        let status = handle
            .as_ref()
            .map(|h| h.status())
            .or_else(|| e.last.clone());
        let activity = match (&e.run, &status) {
            (Run::Running(_), Some(st)) => match st.state {
                TorrentState::FetchingMetadata => Activity::Metadata,
                TorrentState::Checking => Activity::Checking,
                TorrentState::Downloading => Activity::Downloading,
                TorrentState::Seeding | TorrentState::Complete => Activity::Seeding,
                TorrentState::Paused => Activity::Stopped,
                TorrentState::Error(_) => Activity::Error,
            },
            _ if e.verify_pending => Activity::QueuedVerify,
            _ if e.wants_run() && e.complete() => Activity::QueuedSeed,
            _ if e.wants_run() => Activity::QueuedDownload,
            _ => Activity::Stopped,
        };
        let (verified_bytes, wanted_bytes) = match &status {
            Some(st) if handle.is_some() && st.pieces > 0 => (st.verified_bytes, st.wanted_bytes),
            _ => e.progress,
        };
        let live = match (&e.run, &status) {
            (Run::Idle, _) | (_, None) => (0, 0),
            (_, Some(st)) => (st.uploaded, st.downloaded),
        };
        TorrentView {
            id: e.id,
            info_hash: e.info_hash,
            name: e
                .info
                .as_ref()
                .map_or_else(|| e.name.clone(), |i| i.name.clone()),
            info: e.info.clone(),
            trackers: e.trackers(),
            download_dir: e.download_dir.clone(),
            added_at: e.added_at,
            done_at: e.done_at,
            activity,
            status,
            verified_bytes,
            wanted_bytes,
            uploaded_ever: e.base.0 + live.0,
            downloaded_ever: e.base.1 + live.1,
            error: e.error.clone(),
            finished: e.finished,
            settings: e.settings.clone(),
            selection: e.selection(),
            seeding_secs: e.seeding_secs,
            stored_have: e.stored_have.clone(),
            handle,
        }
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        let torrents: Vec<TorrentView> = self.entries.values().map(|e| self.view(e)).collect();
        Snapshot {
            connectivity: self.connectivity(&torrents),
            torrents,
            settings: self.settings.clone(),
            port: self.port(),
            peer_limit: {
                let per = self.config.peer.max_peers_per_torrent;
                (
                    per * self
                        .entries
                        .values()
                        .filter(|e| matches!(e.run, Run::Running(_)))
                        .count()
                        .max(1),
                    per,
                )
            },
            current: self.current.clone(),
            cumulative: self.cumulative.clone(),
        }
    }

    fn connectivity(&self, torrents: &[TorrentView]) -> Connectivity {
        let mut routes: BTreeMap<String, u64> = BTreeMap::new();
        let mut totals: BTreeMap<String, u64> = self
            .past_routes
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        for st in torrents
            .iter()
            .filter(|t| t.handle.is_some())
            .filter_map(|t| t.status.as_ref())
        {
            for (r, n) in &st.routes {
                *routes.entry(r.to_string()).or_default() += *n as u64;
            }
            for (r, n) in &st.route_totals {
                *totals.entry(r.to_string()).or_default() += n;
            }
        }
        let seen = |r: &str| totals.get(r).is_some_and(|n| *n > 0);
        Connectivity {
            listen_port: self.port(),
            inbound_tcp_seen: seen("incoming_tcp"),
            inbound_utp_seen: seen("incoming_utp"),
            routes,
            route_totals: totals,
            nat: crate::daemon::connectivity::nat_report(self.session.as_ref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_and_time_limits() {
        let mut s = Settings {
            seed_ratio: 2.0,
            seed_ratio_enabled: true,
            seed_time_minutes: 10,
            seed_time_enabled: false,
            ..Settings::default()
        };
        let global = TorrentSettings::default();
        assert!(!seed_limit_reached(&s, &global, 1.99, 0));
        assert!(seed_limit_reached(&s, &global, 2.0, 0));
        // Its own limit replaces the session's; mode 2 seeds regardless.
        let own = TorrentSettings {
            ratio_mode: 1,
            ratio: 0.5,
            ..Default::default()
        };
        assert!(seed_limit_reached(&s, &own, 0.5, 0));
        let unlimited = TorrentSettings {
            ratio_mode: 2,
            ..Default::default()
        };
        assert!(!seed_limit_reached(&s, &unlimited, 100.0, 0));
        s.seed_ratio_enabled = false;
        assert!(!seed_limit_reached(&s, &global, 100.0, 0));
        // Seeding time counts whatever the ratio mode.
        s.seed_time_enabled = true;
        assert!(!seed_limit_reached(&s, &unlimited, 0.0, 599));
        assert!(seed_limit_reached(&s, &unlimited, 0.0, 600));
    }
}
