//! One peer connection: the per-peer protocol state the torrent keeps (choke and interest,
//! outstanding requests, what the peer has, its extensions and rates), and the tasks that
//! drive a connection over a byte stream (`conn`), opened in plain or through MSE/PE
//! encryption (`mse`).

pub mod conn;
pub mod limit;
pub mod mse;
mod rate;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Instant;

pub use rate::RateMeter;

use crate::connectivity::Route;
use crate::torrent::bitfield::Bitfield;
use crate::types::{BlockRef, PeerId};
use crate::wire::{ExtHandshake, Handshake};

/// Identifies a connection within the session (never reused).
pub type PeerKey = u64;

/// Most BEP 6 allowed-fast pieces remembered per peer.
pub const MAX_ALLOWED_FAST: usize = 32;
/// Most `have` indices buffered per peer while the torrent's metadata is still unknown.
pub const MAX_PENDING_HAVES: usize = 65_536;

/// What a peer has told us it has.
#[derive(Debug, Clone)]
pub enum PeerHas {
    /// Nothing told yet.
    Unknown,
    /// Every piece (bitfield full, or BEP 6 `have_all`).
    All,
    /// Exactly these pieces.
    Some(Bitfield),
    /// Told before we knew the piece count (magnet links): kept raw until metadata arrives.
    Pending {
        /// The raw bitfield, if one came.
        bitfield: Option<bytes::Bytes>,
        /// `have` indices seen.
        haves: Vec<u32>,
    },
}

/// The protocol state of one connected peer.
#[derive(Debug)]
pub struct PeerState {
    /// Its address.
    pub addr: SocketAddr,
    /// Its handshake.
    pub handshake: Handshake,
    /// How the connection came about.
    pub route: Route,
    /// Its extension handshake, once received.
    pub ext: Option<ExtHandshake>,
    /// What it has.
    pub has: PeerHas,
    /// We refuse its requests.
    pub am_choking: bool,
    /// We want something it has.
    pub am_interested: bool,
    /// It refuses our requests.
    pub peer_choking: bool,
    /// It wants something we have.
    pub peer_interested: bool,
    /// Our requests it has not answered.
    pub outstanding: HashSet<BlockRef>,
    /// How many requests we keep outstanding (grows with its rate).
    pub max_requests: usize,
    /// When it last sent us a block (or when we started waiting).
    pub last_block_at: Instant,
    /// It stopped answering requests: only one request at a time until it sends again.
    pub snubbed: bool,
    /// Payload it sends us.
    pub down: RateMeter,
    /// Payload we send it.
    pub up: RateMeter,
    /// When it connected.
    pub connected_at: Instant,
    /// Pieces it lets us request while choked (BEP 6).
    pub allowed_fast: Vec<u32>,
    /// Blocks it sent that were not wanted (duplicates or never requested).
    pub unwanted_blocks: u32,
    /// Addresses we told it about through PEX (what its view of our peers is).
    pub pex_sent: HashSet<SocketAddr>,
    /// When we last sent it a PEX message.
    pub pex_at: Option<Instant>,
    /// Holepunch rendezvous it asked us to relay recently (for rate limiting).
    pub relay_times: std::collections::VecDeque<Instant>,
}

impl PeerState {
    /// State for a connection that just finished its handshake.
    pub fn new(addr: SocketAddr, handshake: Handshake, route: Route, now: Instant) -> PeerState {
        PeerState {
            addr,
            handshake,
            route,
            ext: None,
            has: PeerHas::Unknown,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            outstanding: HashSet::new(),
            max_requests: 16,
            last_block_at: now,
            snubbed: false,
            down: RateMeter::default(),
            up: RateMeter::default(),
            connected_at: now,
            allowed_fast: Vec::new(),
            unwanted_blocks: 0,
            pex_sent: HashSet::new(),
            pex_at: None,
            relay_times: std::collections::VecDeque::new(),
        }
    }

    /// The peer's id.
    pub fn peer_id(&self) -> PeerId {
        self.handshake.peer_id
    }

    /// Whether the peer has every piece.
    pub fn is_seed(&self) -> bool {
        match &self.has {
            PeerHas::All => true,
            PeerHas::Some(b) => b.is_full(),
            _ => false,
        }
    }

    /// The address others can dial it at: where we reached it, or for incoming connections
    /// its IP with the listen port it announced (`None` while unknown).
    pub fn dialable(&self) -> Option<SocketAddr> {
        if self.route.is_outgoing() || self.route.is_holepunched() {
            return Some(self.addr);
        }
        let port = self.ext.as_ref().and_then(|e| e.listen_port)?;
        Some(SocketAddr::new(self.addr.ip(), port))
    }

    /// The peer's address in the family it is *not* connected over, from its extension
    /// handshake (`ipv6` for a peer on IPv4 and the reverse), with its listen port.
    pub fn other_family(&self, hs: &ExtHandshake) -> Option<SocketAddr> {
        let port = hs.listen_port?;
        let ip: std::net::IpAddr = if self.addr.is_ipv4() {
            hs.ipv6?.into()
        } else {
            hs.ipv4?.into()
        };
        let global = match ip {
            std::net::IpAddr::V6(a) => (a.segments()[0] & 0xe000) == 0x2000,
            std::net::IpAddr::V4(a) => {
                !a.is_private() && !a.is_loopback() && !a.is_link_local() && !a.is_unspecified()
            }
        };
        global.then(|| SocketAddr::new(ip, port))
    }

    /// Whether the peer speaks ut_holepunch.
    pub fn supports_holepunch(&self) -> bool {
        self.ext
            .as_ref()
            .is_some_and(|e| e.ids.ut_holepunch.is_some())
    }

    /// Whether the peer says it only uploads (BEP 21 style `upload_only`) or is a seed.
    pub fn upload_only(&self) -> bool {
        self.is_seed() || self.ext.as_ref().is_some_and(|e| e.upload_only)
    }
}
