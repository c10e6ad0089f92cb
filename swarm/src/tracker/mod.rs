//! Tracker announces: HTTP (BEP 3, compact peers BEP 23, IPv6 peers BEP 7) and UDP (BEP 15),
//! over tiers of trackers (BEP 12). Requests and responses are encoded and decoded here as
//! pure functions; `announcer` runs the schedule for one torrent.

pub mod announcer;
mod http;
mod udp;

use std::net::SocketAddr;
use std::time::Duration;

pub use announcer::{spawn_announcer, AnnounceStats};
pub use http::{build_http_url, parse_http_response};
pub use udp::{EphemeralUdp, MuxTransport, UdpTracker, UdpTransport, UDP_PROTOCOL_ID};

use crate::types::{InfoHash, PeerId};

/// Most peers taken from one announce response.
pub const MAX_PEERS_PER_RESPONSE: usize = 1_000;
/// Largest HTTP tracker response read.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The `event` of an announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A regular re-announce.
    None,
    /// First announce of this session.
    Started,
    /// The download finished.
    Completed,
    /// We leave the swarm.
    Stopped,
}

/// What we tell a tracker.
#[derive(Debug, Clone)]
pub struct AnnounceRequest {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our id.
    pub peer_id: PeerId,
    /// Our listen port.
    pub port: u16,
    /// Payload bytes uploaded this session.
    pub uploaded: u64,
    /// Payload bytes downloaded this session.
    pub downloaded: u64,
    /// Bytes still missing (0 when seeding; the full size while metadata is unknown is fine).
    pub left: u64,
    /// The event.
    pub event: Event,
    /// How many peers we would like.
    pub num_want: u32,
    /// A random number identifying us across IP changes.
    pub key: u32,
    /// Our global IPv6 address, sent as `ipv6` (BEP 7) so an IPv4 announce also lists us
    /// for IPv6 peers.
    pub ipv6: Option<std::net::Ipv6Addr>,
}

/// What a tracker answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// Seconds until the next regular announce.
    pub interval: Duration,
    /// Peers, both families.
    pub peers: Vec<SocketAddr>,
    /// Seeds in the swarm, if told.
    pub seeders: Option<u32>,
    /// Leechers in the swarm, if told.
    pub leechers: Option<u32>,
    /// A warning to show the user.
    pub warning: Option<String>,
}

/// Why an announce failed.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// The tracker refused, with its reason.
    #[error("tracker says: {0}")]
    Failure(String),
    /// The URL is not one we can announce to.
    #[error("unsupported tracker URL: {0}")]
    BadUrl(String),
    /// The answer is not a valid response.
    #[error("malformed tracker response: {0}")]
    Malformed(String),
    /// No answer in time.
    #[error("tracker timed out")]
    Timeout,
    /// TLS failed: no trusted certificates, or the tracker's did not verify.
    #[error("TLS: {0}")]
    Tls(String),
    /// Network error.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
}
