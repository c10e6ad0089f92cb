//! What a torrent's task needs from the session around it: who we are, the port we listen
//! on, the settings that apply to every torrent, and handles on the shared services (the
//! connector, the UDP tracker client, the DHT, reachability, the resume store). The session
//! builds one and every torrent holds it; nothing here knows about torrents, so the session
//! depends on torrents and never the other way round.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::resume_store::ResumeStore;
use crate::connectivity::{Connector, Reachability};
use crate::dht::DhtHandle;
use crate::peer::limit::RateLimits;
use crate::peer::PeerKey;
use crate::tracker::UdpTracker;
use crate::types::PeerId;

/// Settings that apply to every torrent of a session.
#[derive(Debug, Clone)]
pub struct TorrentSettings {
    /// Most connections per torrent.
    pub max_peers_per_torrent: usize,
    /// Most connection attempts in flight per torrent.
    pub max_connecting: usize,
    /// Upload slots per torrent.
    pub upload_slots: usize,
    /// Write verified pieces by direct I/O where the file system allows.
    pub direct_io: bool,
    /// Longest time verified pieces go unrecorded in resume data while a download runs.
    pub checkpoint_interval: Duration,
    /// The session's rate caps, shared by every connection.
    pub rate_limits: RateLimits,
}

/// A torrent's surroundings.
pub struct TorrentEnv {
    /// Our peer id.
    pub peer_id: PeerId,
    /// The port we listen on.
    pub port: u16,
    /// Settings.
    pub settings: TorrentSettings,
    /// Dials peers and remembers holepunches.
    pub connector: Arc<Connector>,
    /// UDP tracker client (on the shared UDP socket).
    pub udp_tracker: UdpTracker,
    /// The DHT, when enabled.
    pub dht: Option<DhtHandle>,
    /// What we know of our own reachability.
    pub reach: Reachability,
    /// Where resume data is loaded from and saved to.
    pub resume: Arc<dyn ResumeStore>,
    next_key: AtomicU64,
}

impl TorrentEnv {
    /// An environment; connection keys start at 1.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        peer_id: PeerId,
        port: u16,
        settings: TorrentSettings,
        connector: Arc<Connector>,
        udp_tracker: UdpTracker,
        dht: Option<DhtHandle>,
        reach: Reachability,
        resume: Arc<dyn ResumeStore>,
    ) -> Self {
        TorrentEnv {
            peer_id,
            port,
            settings,
            connector,
            udp_tracker,
            dht,
            reach,
            resume,
            next_key: AtomicU64::new(1),
        }
    }

    /// A fresh connection key, unique in the session.
    pub fn next_peer_key(&self) -> PeerKey {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }
}
