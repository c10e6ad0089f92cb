//! What the engine shows the outside: snapshots of torrents and of the session, and the
//! settings that can be changed at run time. The RPC, the web page and the metrics all render
//! these, so they agree on every number.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use burrow_swarm::metainfo::Info;
use burrow_swarm::torrent::selection::FilePriority;
use burrow_swarm::torrent::status::TorrentStatus;
use burrow_swarm::torrent::task::TorrentHandle;
use burrow_swarm::types::InfoHash;
use serde::{Deserialize, Serialize};

use super::config::Config;

/// Where a torrent stands from the daemon's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// Stopped by the user or by its seeding limit.
    Stopped,
    /// Waiting for a download slot.
    QueuedDownload,
    /// Waiting for a seeding slot.
    QueuedSeed,
    /// Waiting to be hashed again.
    QueuedVerify,
    /// Hashing data on disk.
    Checking,
    /// Fetching the info dictionary from peers.
    Metadata,
    /// Downloading.
    Downloading,
    /// Complete and seeding.
    Seeding,
    /// Stopped by an error (see the view's `error`).
    Error,
}

impl Activity {
    /// Short label for the web page and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Activity::Stopped => "stopped",
            Activity::QueuedDownload => "queued",
            Activity::QueuedSeed => "queued_seed",
            Activity::QueuedVerify => "queued_verify",
            Activity::Checking => "checking",
            Activity::Metadata => "metadata",
            Activity::Downloading => "downloading",
            Activity::Seeding => "seeding",
            Activity::Error => "error",
        }
    }

    /// Every activity, for metrics that list all of them.
    pub const ALL: [Activity; 9] = [
        Activity::Stopped,
        Activity::QueuedDownload,
        Activity::QueuedSeed,
        Activity::QueuedVerify,
        Activity::Checking,
        Activity::Metadata,
        Activity::Downloading,
        Activity::Seeding,
        Activity::Error,
    ];
}

/// Per-torrent settings, stored as JSON in the database.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TorrentSettings {
    /// Own download cap in kB/s, applied when `down_enabled`.
    pub down_kbps: u64,
    /// Whether `down_kbps` applies.
    pub down_enabled: bool,
    /// Own upload cap in kB/s, applied when `up_enabled`.
    pub up_kbps: u64,
    /// Whether `up_kbps` applies.
    pub up_enabled: bool,
    /// Seed ratio mode as Transmission numbers it: 0 the session's, 1 `ratio`, 2 unlimited.
    pub ratio_mode: u8,
    /// Own seed ratio limit.
    pub ratio: f64,
    /// Whether each file is wanted, as users number them; `None`: all.
    pub wanted: Option<Vec<bool>>,
    /// Each file's priority as Transmission numbers it (-1 low, 0 normal, 1 high).
    pub priorities: Option<Vec<i8>>,
    /// Pieces in order (Transmission 4's `sequentialDownload`).
    pub sequential: bool,
    /// The user's labels.
    pub labels: Vec<String>,
}

impl TorrentSettings {
    /// The per-file priorities these settings give for `count` files, `None` when they name
    /// none (or do not fit: the file list changed).
    pub fn file_priorities(&self, count: usize) -> Option<Vec<FilePriority>> {
        if self.wanted.is_none() && self.priorities.is_none() {
            return None;
        }
        let wanted = self.wanted.clone().unwrap_or_else(|| vec![true; count]);
        let prios = self.priorities.clone().unwrap_or_else(|| vec![0; count]);
        if wanted.len() != count || prios.len() != count {
            return None;
        }
        Some(
            wanted
                .iter()
                .zip(&prios)
                .map(|(&w, &p)| match (w, p) {
                    (false, _) => FilePriority::Skip,
                    (true, p) if p < 0 => FilePriority::Low,
                    (true, 0) => FilePriority::Normal,
                    (true, _) => FilePriority::High,
                })
                .collect(),
        )
    }
}

/// A snapshot of one torrent.
#[derive(Clone)]
pub struct TorrentView {
    /// Stable id.
    pub id: i64,
    /// The torrent.
    pub info_hash: InfoHash,
    /// Its name.
    pub name: String,
    /// The info dictionary, once known.
    pub info: Option<Arc<Info>>,
    /// Tracker tiers.
    pub trackers: Vec<Vec<String>>,
    /// Download folder.
    pub download_dir: PathBuf,
    /// When it was added (Unix seconds).
    pub added_at: i64,
    /// When it first completed (Unix seconds).
    pub done_at: Option<i64>,
    /// Where it stands.
    pub activity: Activity,
    /// The running torrent's status (the last one seen if it is not running).
    pub status: Option<TorrentStatus>,
    /// Bytes of wanted pieces verified.
    pub verified_bytes: u64,
    /// Bytes of wanted pieces.
    pub wanted_bytes: u64,
    /// Payload uploaded over its life.
    pub uploaded_ever: u64,
    /// Payload downloaded over its life.
    pub downloaded_ever: u64,
    /// The error that stopped it.
    pub error: Option<String>,
    /// It reached its seeding limit.
    pub finished: bool,
    /// Its settings.
    pub settings: TorrentSettings,
    /// Which files, in which order, as in force.
    pub selection: burrow_swarm::torrent::task::Selection,
    /// Seconds spent seeding.
    pub seeding_secs: u64,
    /// The running torrent, for detailed questions.
    pub handle: Option<TorrentHandle>,
    /// Verified pieces as last stored (when it last stopped, or at start-up).
    pub stored_have: Option<burrow_swarm::torrent::bitfield::Bitfield>,
}

impl TorrentView {
    /// Each file's priority as users number them (empty before the files are known).
    pub fn file_priorities(&self) -> Vec<FilePriority> {
        let Some(info) = &self.info else {
            return Vec::new();
        };
        let all = self.selection.resolve(info);
        burrow_swarm::torrent::selection::user_files(info)
            .iter()
            .map(|&i| all[i])
            .collect()
    }

    /// Fraction of wanted bytes verified.
    pub fn progress(&self) -> f64 {
        if self.wanted_bytes == 0 {
            return 0.0;
        }
        (self.verified_bytes as f64 / self.wanted_bytes as f64).min(1.0)
    }

    /// Total size of the torrent, once known.
    pub fn total_size(&self) -> u64 {
        self.info.as_ref().map_or(0, |i| {
            i.files.iter().filter(|f| !f.pad).map(|f| f.length).sum()
        })
    }

    /// Current payload rates (download, upload) in bytes/s.
    pub fn rates(&self) -> (f64, f64) {
        match (&self.status, self.handle.is_some()) {
            (Some(s), true) => (s.download_rate, s.upload_rate),
            _ => (0.0, 0.0),
        }
    }

    /// Share ratio, see [`ratio`].
    pub fn ratio(&self) -> f64 {
        ratio(
            self.uploaded_ever,
            self.downloaded_ever,
            self.verified_bytes,
        )
    }
}

/// uploaded / downloaded; for a torrent seeded from data it never downloaded, uploaded / the
/// verified size. 0 when there is nothing to divide by.
pub fn ratio(uploaded: u64, downloaded: u64, verified: u64) -> f64 {
    let base = if downloaded > 0 { downloaded } else { verified };
    if base == 0 {
        return 0.0;
    }
    uploaded as f64 / base as f64
}

/// Settings that can change at run time (Transmission's `session-set`); they start from the
/// configuration file, and changes made over RPC are kept in the database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Default download folder.
    pub download_dir: PathBuf,
    /// Peer listen port.
    pub peer_port: u16,
    /// Session download cap, kB/s.
    pub down_kbps: u64,
    /// Whether `down_kbps` applies.
    pub down_enabled: bool,
    /// Session upload cap, kB/s.
    pub up_kbps: u64,
    /// Whether `up_kbps` applies.
    pub up_enabled: bool,
    /// Seed ratio limit.
    pub seed_ratio: f64,
    /// Whether `seed_ratio` applies.
    pub seed_ratio_enabled: bool,
    /// Seeding time limit, minutes.
    pub seed_time_minutes: u64,
    /// Whether `seed_time_minutes` applies.
    pub seed_time_enabled: bool,
    /// Most torrents downloading at once.
    pub download_queue_size: usize,
    /// Whether `download_queue_size` applies.
    pub download_queue_enabled: bool,
    /// Most torrents seeding at once.
    pub seed_queue_size: usize,
    /// Whether `seed_queue_size` applies.
    pub seed_queue_enabled: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from_config(&Config::default())
    }
}

impl Settings {
    /// The settings a configuration file gives.
    pub fn from_config(c: &Config) -> Settings {
        let l = &c.limits;
        Settings {
            download_dir: c.download_dir.clone(),
            peer_port: c.peer.port,
            down_kbps: l.download_kbps,
            down_enabled: l.download_kbps > 0,
            up_kbps: l.upload_kbps,
            up_enabled: l.upload_kbps > 0,
            seed_ratio: l.seed_ratio.unwrap_or(2.0),
            seed_ratio_enabled: l.seed_ratio.is_some(),
            seed_time_minutes: l.seed_time_minutes.unwrap_or(0),
            seed_time_enabled: l.seed_time_minutes.is_some(),
            download_queue_size: l.max_active_downloads,
            download_queue_enabled: l.max_active_downloads > 0,
            seed_queue_size: l.max_active_seeds,
            seed_queue_enabled: l.max_active_seeds > 0,
        }
    }

    /// Session caps in bytes/s (0: none).
    pub fn rate_caps(&self) -> (u64, u64) {
        let cap = |on: bool, kbps: u64| if on { kbps.saturating_mul(1000) } else { 0 };
        (
            cap(self.down_enabled, self.down_kbps),
            cap(self.up_enabled, self.up_kbps),
        )
    }
}

/// Transfer totals (Transmission's `session-stats` blocks).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StatsBlock {
    /// Payload uploaded.
    pub uploaded: u64,
    /// Payload downloaded.
    pub downloaded: u64,
    /// Torrents added.
    pub files_added: u64,
    /// Daemon starts.
    pub session_count: u64,
    /// Seconds the daemon ran.
    pub seconds_active: u64,
}

/// What is known about reachability; the NAT part is filled by [`super::connectivity`].
#[derive(Debug, Clone, Serialize)]
pub struct Connectivity {
    /// Peer listen port.
    pub listen_port: u16,
    /// Some peer reached us over TCP since the daemon started.
    pub inbound_tcp_seen: bool,
    /// Some peer reached us over µTP since the daemon started.
    pub inbound_utp_seen: bool,
    /// Open connections by how they were made.
    pub routes: BTreeMap<String, u64>,
    /// Connections ever made since start, by route.
    pub route_totals: BTreeMap<String, u64>,
    /// Gateway mappings, external address and NAT behaviour; `None` until the session has a
    /// port mapper and address votes to report.
    pub nat: Option<burrow_swarm::nat::Report>,
}

/// A snapshot of the whole daemon.
#[derive(Clone)]
pub struct Snapshot {
    /// Every torrent, in id order.
    pub torrents: Vec<TorrentView>,
    /// Current settings.
    pub settings: Settings,
    /// Peer listen port actually bound.
    pub port: u16,
    /// Peer connection limits (all torrents running now, per torrent).
    pub peer_limit: (usize, usize),
    /// Totals since the daemon started.
    pub current: StatsBlock,
    /// Totals over all runs.
    pub cumulative: StatsBlock,
    /// Reachability.
    pub connectivity: Connectivity,
}

impl Snapshot {
    /// Sum of the torrents' rates (download, upload).
    pub fn rates(&self) -> (f64, f64) {
        self.torrents
            .iter()
            .map(|t| t.rates())
            .fold((0.0, 0.0), |a, r| (a.0 + r.0, a.1 + r.1))
    }
}
