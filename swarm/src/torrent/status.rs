//! The snapshot of a torrent that the CLI progress line, the daemon's RPC and metrics read.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::connectivity::Route;
use crate::types::InfoHash;

/// Where a torrent stands, as shown to users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorrentState {
    /// Fetching the info dictionary from peers (magnet links).
    FetchingMetadata,
    /// Hashing data already on disk.
    Checking,
    /// Downloading.
    Downloading,
    /// Complete and uploading to others.
    Seeding,
    /// Complete, not seeding.
    Complete,
    /// Stopped by the user.
    Paused,
    /// Stopped by an error (disk full, permission denied, ...).
    Error(String),
}

impl TorrentState {
    /// Short lower-case label.
    pub fn label(&self) -> &'static str {
        match self {
            TorrentState::FetchingMetadata => "metadata",
            TorrentState::Checking => "checking",
            TorrentState::Downloading => "downloading",
            TorrentState::Seeding => "seeding",
            TorrentState::Complete => "complete",
            TorrentState::Paused => "paused",
            TorrentState::Error(_) => "error",
        }
    }
}

/// A point-in-time view of one torrent.
#[derive(Debug, Clone)]
pub struct TorrentStatus {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Its name, once known.
    pub name: Option<String>,
    /// Where it stands.
    pub state: TorrentState,
    /// Bytes of the pieces the user wants.
    pub wanted_bytes: u64,
    /// Of those, bytes verified.
    pub verified_bytes: u64,
    /// Pieces in the torrent.
    pub pieces: u32,
    /// Pieces verified.
    pub pieces_have: u32,
    /// Payload download rate, bytes/s.
    pub download_rate: f64,
    /// Payload upload rate, bytes/s.
    pub upload_rate: f64,
    /// Payload received this session.
    pub downloaded: u64,
    /// Payload sent this session.
    pub uploaded: u64,
    /// Received bytes that were of no use.
    pub wasted: u64,
    /// Pieces that failed verification.
    pub hash_failures: u32,
    /// Connected peers.
    pub peers: usize,
    /// Connected seeds.
    pub seeds: usize,
    /// Peer addresses known.
    pub known_peers: usize,
    /// Connections being set up.
    pub connecting: usize,
    /// Connected peers by how the connection was made.
    pub routes: BTreeMap<&'static str, usize>,
    /// Metadata fetched so far (1.0 once known).
    pub metadata_progress: f64,
    /// Routes ever used, counted once per connection.
    pub route_totals: BTreeMap<&'static str, u64>,
    /// Addresses banned for sending bad data, the latest [`MAX_SHOWN_BANS`].
    pub banned: Vec<BannedPeer>,
    /// Addresses banned this session (all of them, also those no longer shown).
    pub banned_total: u64,
    /// Addresses on parole: involved in failed pieces, trusted only with pieces they send
    /// alone.
    pub on_parole: usize,
}

/// Banned addresses a status lists (the count goes on).
pub const MAX_SHOWN_BANS: usize = 64;

/// An address banned for bad data, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BannedPeer {
    /// The address.
    pub ip: IpAddr,
    /// Why, in words.
    pub reason: String,
}

impl TorrentStatus {
    /// An empty status for a torrent that just started.
    pub fn new(info_hash: InfoHash, name: Option<String>) -> Self {
        TorrentStatus {
            info_hash,
            name,
            state: TorrentState::Checking,
            wanted_bytes: 0,
            verified_bytes: 0,
            pieces: 0,
            pieces_have: 0,
            download_rate: 0.0,
            upload_rate: 0.0,
            downloaded: 0,
            uploaded: 0,
            wasted: 0,
            hash_failures: 0,
            peers: 0,
            seeds: 0,
            known_peers: 0,
            connecting: 0,
            routes: BTreeMap::new(),
            metadata_progress: 0.0,
            route_totals: BTreeMap::new(),
            banned: Vec::new(),
            banned_total: 0,
            on_parole: 0,
        }
    }

    /// Records a ban, keeping the latest [`MAX_SHOWN_BANS`].
    pub fn record_ban(&mut self, ip: IpAddr, reason: String) {
        if self.banned.len() >= MAX_SHOWN_BANS {
            self.banned.remove(0);
        }
        self.banned.push(BannedPeer { ip, reason });
        self.banned_total += 1;
    }

    /// Fraction of wanted bytes verified, 0.0–1.0.
    pub fn progress(&self) -> f64 {
        if self.wanted_bytes == 0 {
            return if matches!(self.state, TorrentState::Seeding | TorrentState::Complete) {
                1.0
            } else {
                0.0
            };
        }
        self.verified_bytes as f64 / self.wanted_bytes as f64
    }

    /// Seconds until done at the current rate, if it can be estimated.
    pub fn eta_secs(&self) -> Option<u64> {
        let left = self.wanted_bytes.saturating_sub(self.verified_bytes);
        (self.download_rate > 1.0 && left > 0).then(|| (left as f64 / self.download_rate) as u64)
    }

    /// Counts a new connection by its route.
    pub fn count_route(&mut self, r: Route) {
        *self.route_totals.entry(r.label()).or_default() += 1;
    }
}
