//! The torrent's protocol core, sans-IO: it holds every connected peer's state, the picker,
//! the pieces being assembled and the choker, takes events (peer connected, messages, piece
//! checked, tick) with the time, and returns actions (send, serve a block, verify a piece,
//! close) for the driver in `task` to carry out. Nothing here touches a socket or a clock.

mod exchange;
mod messages;
mod metadata;
mod requests;
mod select;
mod smartban;
mod tick;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use super::bitfield::Bitfield;
use super::choker::Choker;
use super::picker::{Has, Picker};
use super::piece_buf::PieceBuf;
use crate::metainfo::Info;
use crate::peer::{PeerHas, PeerKey, PeerState};
use crate::types::{BlockRef, InfoHash, PeerId};
use crate::wire::{ExtHandshake, Message, LOCAL_EXTENSIONS};

pub use metadata::MetadataFetch;
pub use smartban::{
    BanReason, BLOCK_RECORD_BYTES, MAX_FAILED_COPIES, MAX_SUSPECT_PIECES, PAROLE_AFTER_FAILURES,
    PAROLE_STALL,
};

/// Settings of one torrent's core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Upload slots (one of them optimistic).
    pub upload_slots: usize,
    /// Memory for pieces being assembled; caps how many pieces are downloaded at once.
    pub max_partial_bytes: u64,
    /// Client name sent in the extension handshake.
    pub client: String,
    /// Our TCP listen port, sent as `p` (the mapped external port when known).
    pub listen_port: Option<u16>,
    /// How many outstanding requests we accept from one peer (our `reqq`).
    pub our_reqq: u32,
    /// Keep connections to peers after completion to seed.
    pub seed: bool,
    /// Our external IPv4 address, sent as `ipv4` (BEP 10) once known.
    pub our_ipv4: Option<std::net::Ipv4Addr>,
    /// Our global IPv6 address, sent as `ipv6` (BEP 10) once known.
    pub our_ipv6: Option<std::net::Ipv6Addr>,
    /// How many links to reachable seeds we keep once complete, although neither side has
    /// anything to download from the other (see [`TorrentCore::keeps_as_anchor`]).
    pub anchors: usize,
}

/// Links to reachable peers a seed keeps while nobody is known to reach it from outside: a
/// peer behind a NAT that dropped every seed it knows would be out of everybody's reach.
pub const ANCHORS: usize = 2;

/// How long a complete seed keeps a link to another seed open waiting for the extension
/// handshake that would say whether it can be an anchor.
pub const EXT_HANDSHAKE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            upload_slots: 8,
            max_partial_bytes: 32 * 1024 * 1024,
            client: concat!("burrow ", env!("CARGO_PKG_VERSION")).to_string(),
            listen_port: None,
            our_reqq: 500,
            seed: true,
            our_ipv4: None,
            our_ipv6: None,
            anchors: ANCHORS,
        }
    }
}

/// Why the core closes a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// It broke the protocol.
    Protocol(String),
    /// Its data failed verification too often.
    Banned,
    /// Both sides are seeds, or it is otherwise of no use.
    Useless,
    /// A connection with the same peer id exists, or it is ourselves.
    Duplicate,
}

/// What the driver must do.
#[derive(Debug)]
pub enum Action {
    /// Send a message.
    Send(PeerKey, Message),
    /// Read a block from storage and send it as a `piece` message.
    Serve(PeerKey, BlockRef),
    /// The peer cancelled a request: do not send it if not yet sent.
    CancelServe(PeerKey, BlockRef),
    /// We choked the peer: drop its queued requests.
    ClearServes(PeerKey),
    /// Close the connection.
    Close(PeerKey, CloseReason),
    /// Hash a completed piece and, if it matches, write it; answer with `piece_checked`.
    Verify {
        /// Piece index.
        piece: u32,
        /// Its bytes.
        data: PieceBuf,
    },
    /// The info dictionary arrived (magnet links): set up storage, check it, then `attach`.
    MetadataReady(Arc<Info>),
    /// A piece was verified and written.
    PieceVerified(u32),
    /// Every wanted piece is verified.
    Completed,
    /// A peer's IP is banned for bad data, and why.
    Ban(IpAddr, BanReason),
    /// A peer told us its DHT port (BEP 5 `port`).
    DhtNode(SocketAddr),
    /// Peers learned through PEX from the peer at `via`.
    PexPeers {
        /// The peer that told us (connected to all of them: a relay candidate).
        via: SocketAddr,
        /// Its connection.
        via_key: PeerKey,
        /// The peers.
        peers: Vec<crate::wire::PexPeer>,
    },
    /// A holepunch relay (`via`) says: dial `addr` now; it dials us at the same moment.
    HolepunchConnect {
        /// The peer to dial.
        addr: SocketAddr,
        /// The relay.
        via: SocketAddr,
    },
    /// A relay could not introduce us to `addr`.
    HolepunchFailed {
        /// The target.
        addr: SocketAddr,
    },
    /// A peer connected over one family told us its address in the other (BEP 10 `ipv4` /
    /// `ipv6` with its listen port).
    OtherFamily {
        /// The connection it came over.
        key: PeerKey,
        /// The address in the other family.
        addr: SocketAddr,
    },
    /// A peer told us (BEP 10 `yourip`) the address it sees us at.
    YourIp {
        /// The address reported.
        reported: IpAddr,
        /// The peer's address.
        by: IpAddr,
    },
}

/// Where the torrent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Fetching the info dictionary from peers.
    FetchingMetadata,
    /// Info known; checking files on disk.
    Checking,
    /// Downloading.
    Downloading,
    /// All wanted pieces verified.
    Complete,
}

/// Counters for the progress line and RPC.
#[derive(Debug, Clone, Default)]
pub struct CoreStats {
    /// Connected peers.
    pub peers: usize,
    /// Connected peers that are seeds.
    pub seeds: usize,
    /// Peers that have us unchoked.
    pub unchoked_by: usize,
    /// Payload download rate, bytes/s.
    pub download_rate: f64,
    /// Payload upload rate, bytes/s.
    pub upload_rate: f64,
    /// Payload bytes received this session.
    pub downloaded: u64,
    /// Payload bytes sent this session.
    pub uploaded: u64,
    /// Bytes received that we could not use (duplicates, failed pieces).
    pub wasted: u64,
    /// Pieces that failed verification.
    pub hash_failures: u32,
    /// Holepunch rendezvous we relayed.
    pub relayed: u64,
    /// Addresses on parole (see [`PAROLE_AFTER_FAILURES`]).
    pub on_parole: usize,
}

struct Assembly {
    buf: PieceBuf,
    /// Who sent each block (smart ban); `None` for blocks not received.
    senders: Vec<Option<IpAddr>>,
    /// Complete and handed to the driver to verify.
    verifying: bool,
}

/// The sans-IO core of one torrent.
pub struct TorrentCore {
    info_hash: InfoHash,
    our_id: PeerId,
    config: CoreConfig,
    info: Option<Arc<Info>>,
    phase: Phase,
    picker: Option<Picker>,
    peers: HashMap<PeerKey, PeerState>,
    assembling: HashMap<u32, Assembly>,
    spare_buffers: Vec<PieceBuf>,
    metadata: MetadataFetch,
    choker: Choker,
    last_choke: Option<Instant>,
    /// The time of the latest tick.
    last_tick: Option<Instant>,
    ban: smartban::SmartBan,
    actions: VecDeque<Action>,
    stats: CoreStats,
    /// Piece ranks chosen before the picker started.
    pending_ranks: Option<Vec<u8>>,
    /// Pieces are picked in order (streaming).
    sequential: bool,
    rng: u64,
}

impl TorrentCore {
    /// A core for a torrent known by `info_hash`; `info` is `None` for magnet links.
    pub fn new(
        info_hash: InfoHash,
        our_id: PeerId,
        info: Option<Arc<Info>>,
        config: CoreConfig,
        seed: u64,
    ) -> TorrentCore {
        let phase = if info.is_some() {
            Phase::Checking
        } else {
            Phase::FetchingMetadata
        };
        TorrentCore {
            info_hash,
            our_id,
            choker: Choker::new(config.upload_slots, seed),
            config,
            info,
            phase,
            picker: None,
            peers: HashMap::new(),
            assembling: HashMap::new(),
            spare_buffers: Vec::new(),
            metadata: MetadataFetch::default(),
            last_choke: None,
            last_tick: None,
            ban: smartban::SmartBan::new(seed.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15),
            actions: VecDeque::new(),
            stats: CoreStats::default(),
            pending_ranks: None,
            sequential: false,
            rng: seed | 1,
        }
    }

    /// The torrent's info-hash.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }
    /// The info dictionary, once known.
    pub fn info(&self) -> Option<&Arc<Info>> {
        self.info.as_ref()
    }
    /// Where the torrent stands.
    pub fn phase(&self) -> Phase {
        self.phase
    }
    /// Verified pieces (empty before `attach`).
    pub fn have(&self) -> Option<&Bitfield> {
        self.picker.as_ref().map(|p| p.have())
    }
    /// Pieces the user wants (empty before `attach`).
    pub fn wanted(&self) -> Option<&Bitfield> {
        self.picker.as_ref().map(|p| p.wanted())
    }
    /// Counters.
    pub fn stats(&self) -> CoreStats {
        let mut s = self.stats.clone();
        s.peers = self.peers.len();
        s.seeds = self.peers.values().filter(|p| p.is_seed()).count();
        s.unchoked_by = self.peers.values().filter(|p| !p.peer_choking).count();
        s.download_rate = self.peers.values().fold(0.0, |acc, p| acc + p.down.rate());
        s.upload_rate = self.peers.values().fold(0.0, |acc, p| acc + p.up.rate());
        s.on_parole = self.ban.counts().0;
        s
    }
    /// Pieces being downloaded or verified, and the most there may be at once.
    pub fn window(&self) -> (usize, usize) {
        self.picker
            .as_ref()
            .map_or((0, 0), |p| (p.partial_count(), p.max_partial()))
    }
    /// Connected peers.
    pub fn peers(&self) -> impl Iterator<Item = (&PeerKey, &PeerState)> {
        self.peers.iter()
    }
    /// Changes the listen port announced to peers that connect from now on (the gateway's
    /// external port when a mapping moved it).
    pub fn set_listen_port(&mut self, port: Option<u16>) {
        self.config.listen_port = port;
    }

    /// How many links to reachable seeds to keep once complete: [`ANCHORS`] while nobody
    /// is known to reach us from outside, none once somebody has. Surplus links close on
    /// the next tick.
    pub fn set_anchors(&mut self, n: usize) {
        self.config.anchors = n;
    }

    /// Whether a link to a peer with nothing to download from us stays open once we are
    /// complete: it is the path by which others reach us through a holepunch rendezvous
    /// (BEP 55). A peer that dialled us decides for itself whether it needs us; a reachable
    /// peer we dialled is kept while we want anchors; a holepunched one never is.
    fn keeps_as_anchor(&self, key: PeerKey) -> bool {
        let Some(p) = self.peers.get(&key) else {
            return false;
        };
        if p.ext.is_none() {
            // Decided when its extension handshake says whether it relays; a peer that
            // promised one and has not sent it within EXT_HANDSHAKE_WAIT never will.
            let waited = self.last_tick.map_or(std::time::Duration::ZERO, |t| {
                t.saturating_duration_since(p.connected_at)
            });
            return p.handshake.supports_extensions() && waited < EXT_HANDSHAKE_WAIT;
        }
        if !p.supports_holepunch() || p.route.is_holepunched() {
            return false;
        }
        if !p.route.is_outgoing() {
            return true;
        }
        let older = self
            .peers
            .iter()
            .filter(|(k, q)| {
                **k < key && q.route.is_outgoing() && q.supports_holepunch() && q.upload_only()
            })
            .count();
        // The oldest links are the anchors, whatever order they are looked at in.
        older < self.config.anchors
    }

    /// Whether a link is no use to either side: we are a complete seed and so is it (or it
    /// says it only uploads), and it is not an anchor.
    fn is_useless(&self, key: PeerKey) -> bool {
        self.phase == Phase::Complete
            && self.config.seed
            && self.peers.get(&key).is_some_and(|p| p.upload_only())
            && !self.keeps_as_anchor(key)
    }

    /// Closes links that [`is_useless`](Self::is_useless) (called from `tick`: the number
    /// of anchors wanted changes, and extension handshakes arrive late).
    pub(super) fn close_useless(&mut self) {
        if self.phase != Phase::Complete || !self.config.seed {
            return;
        }
        let useless: Vec<PeerKey> = self
            .peers
            .keys()
            .copied()
            .filter(|k| self.is_useless(*k))
            .collect();
        for k in useless {
            self.drop_peer(k, CloseReason::Useless);
        }
    }

    /// Our own addresses, announced in extension handshakes from now on (BEP 10 `ipv4` and
    /// `ipv6`): a peer that knows us over one family can then try the other.
    pub fn set_own_addresses(
        &mut self,
        v4: Option<std::net::Ipv4Addr>,
        v6: Option<std::net::Ipv6Addr>,
    ) {
        self.config.our_ipv4 = v4;
        self.config.our_ipv6 = v6;
    }
    /// The next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    fn send(&mut self, key: PeerKey, msg: Message) {
        self.actions.push_back(Action::Send(key, msg));
    }

    /// Storage was checked: `have` is what is on disk. Starts downloading.
    pub fn attach(&mut self, have: Bitfield) {
        let info = self.info.clone().expect("attach needs the info dictionary");
        let max_partial =
            (self.config.max_partial_bytes / info.piece_length as u64).max(2) as usize;
        let seed = self.next_rand();
        let mut picker = Picker::new(
            info.piece_length,
            info.total_length,
            have,
            max_partial,
            seed,
        );
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in &keys {
            let p = self.peers.get_mut(k).expect("present");
            resolve_pending(p, info.piece_count());
            add_to_picker(&mut picker, &p.has);
        }
        let have_now: Vec<u32> = picker.have().ones().collect();
        self.picker = Some(picker);
        self.apply_selection();
        self.phase = Phase::Downloading;
        for k in keys {
            for &i in &have_now {
                self.send(k, Message::Have(crate::types::PieceIndex(i)));
            }
        }
        self.after_have_changed();
        self.check_complete();
    }

    fn next_rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// A connection finished its handshake and joins the torrent.
    pub fn peer_connected(&mut self, key: PeerKey, state: PeerState, now: Instant) {
        if state.peer_id() == self.our_id {
            self.actions
                .push_back(Action::Close(key, CloseReason::Duplicate));
            return;
        }
        if self.peers.values().any(|p| p.peer_id() == state.peer_id()) {
            self.actions
                .push_back(Action::Close(key, CloseReason::Duplicate));
            return;
        }
        let extensions = state.handshake.supports_extensions();
        let fast = state.handshake.supports_fast();
        let yourip = Some(state.addr.ip());
        self.peers.insert(key, state);
        if extensions {
            let complete = self.phase == Phase::Complete;
            let hs = ExtHandshake {
                ids: if self.is_private() {
                    crate::wire::ExtensionIds {
                        ut_pex: None,
                        ..LOCAL_EXTENSIONS
                    }
                } else {
                    LOCAL_EXTENSIONS
                },
                client: Some(self.config.client.clone()),
                listen_port: self.config.listen_port,
                yourip,
                reqq: Some(self.config.our_reqq),
                metadata_size: self.info.as_ref().map(|i| i.raw.len() as u32),
                upload_only: complete && self.config.seed,
                ipv4: self.config.our_ipv4,
                ipv6: self.config.our_ipv6,
            };
            self.send(
                key,
                Message::Extended {
                    id: 0,
                    payload: hs.encode().into(),
                },
            );
        }
        match self.picker.as_ref().map(|p| p.have()) {
            Some(h) if h.is_full() && fast => self.send(key, Message::HaveAll),
            Some(h) if h.count() > 0 => {
                let wire = h.to_wire();
                self.send(key, Message::Bitfield(wire.into()));
            }
            _ if fast => self.send(key, Message::HaveNone),
            _ => {}
        }
        self.maybe_fast_unchoke(key, now);
    }

    /// A connection ended.
    pub fn peer_closed(&mut self, key: PeerKey) {
        let Some(p) = self.peers.remove(&key) else {
            return;
        };
        if let Some(picker) = &mut self.picker {
            for r in &p.outstanding {
                picker.request_failed(r);
            }
            add_or_remove(picker, &p.has, false);
        }
        self.metadata.peer_gone(key);
        self.smartban_peer_gone(key, p.addr.ip());
    }

    /// Keeps a piece buffer for reuse: spare buffers plus pieces being assembled never
    /// exceed the picker's memory cap, and reuse spares a page fault per 4 KiB of a piece.
    fn recycle(&mut self, buf: PieceBuf) {
        let cap = self
            .picker
            .as_ref()
            .map_or(0, |p| p.max_partial())
            .saturating_sub(self.assembling.len());
        if self.spare_buffers.len() < cap && buf.capacity() > 0 {
            self.spare_buffers.push(buf);
        }
    }

    /// Bytes the driver sent as block payload to `key` since the last call. They count in
    /// the totals even when the connection has closed meanwhile.
    pub fn record_upload(&mut self, key: PeerKey, bytes: u64) {
        self.stats.uploaded += bytes;
        if let Some(p) = self.peers.get_mut(&key) {
            p.up.add(bytes);
        }
    }

    fn is_private(&self) -> bool {
        self.info.as_ref().is_some_and(|i| i.private)
    }

    fn check_complete(&mut self) {
        let Some(picker) = &self.picker else { return };
        if self.phase != Phase::Complete && picker.is_complete() {
            self.phase = Phase::Complete;
            self.actions.push_back(Action::Completed);
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for k in keys {
                if !self.config.seed || self.is_useless(k) {
                    self.drop_peer(k, CloseReason::Useless);
                }
            }
        } else if self.phase == Phase::Complete && !picker.is_complete() {
            // More files were selected after completion.
            self.phase = Phase::Downloading;
        }
    }
}

/// Turns a peer's pre-metadata announcements into a bitfield once the piece count is known.
fn resolve_pending(p: &mut PeerState, count: u32) {
    if let PeerHas::Pending { bitfield, haves } = &p.has {
        let mut b = bitfield
            .as_ref()
            .and_then(|raw| Bitfield::from_wire(raw, count))
            .unwrap_or_else(|| Bitfield::new(count));
        for &i in haves {
            b.set(i, true);
        }
        p.has = if b.is_full() {
            PeerHas::All
        } else {
            PeerHas::Some(b)
        };
    }
}

fn add_to_picker(picker: &mut Picker, has: &PeerHas) {
    add_or_remove(picker, has, true);
}

fn add_or_remove(picker: &mut Picker, has: &PeerHas, add: bool) {
    let h = match has {
        PeerHas::All => Has::All,
        PeerHas::Some(b) => Has::Some(b),
        _ => return,
    };
    if add {
        picker.add_peer(h)
    } else {
        picker.remove_peer(h)
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
