//! The sans-IO DHT node: feed it datagrams and time, drain transmits and events.
//!
//! One [`Node`] serves both address families. BEP 32 asks for two separate DHTs with separate
//! routing tables, and that is what a node holds: per family a routing table, a node ID and
//! bootstrap contacts, chosen by the family of each datagram's address. Everything that is not
//! per-family (transactions, tokens, peer store, rate limits, lookups) is shared, so a client
//! with one socket per family, or one dual-stack socket, drives a single node and a lookup
//! searches both DHTs at once. The two IDs start equal (as BEP 32 suggests) and part ways only
//! when BEP 42 derives each from its family's external address.
//!
//! The node never reads a clock: every entry point takes `now`, and [`Node::poll_timeout`] says
//! when [`Node::handle_timeout`] is next due.

mod client;
mod maintenance;
pub(crate) mod persist;
mod server;
mod types;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;

pub use client::{MAX_LOOKUPS, MAX_PEERS_PER_LOOKUP, MAX_PENDING_PINGS};
pub use maintenance::{BUCKET_REFRESH, MAINTENANCE_INTERVAL, PEER_EXPIRY_INTERVAL, PINGS_PER_TICK};
pub use persist::{StateError, MAX_SAVED_NODES, MAX_STATE_SIZE};
pub use server::{MAX_SAMPLES, MAX_VALUES_V4, MAX_VALUES_V6, SAMPLE_INTERVAL};
pub use types::{Config, Event, LookupDone, LookupId, LookupStatus, SampleResult, Stats, Transmit};

use crate::bep42;
use crate::compact::{canonical, NodeInfo};
use crate::id::{InfoHash, NodeId};
use crate::krpc::{Body, Message};
use crate::peer_store::PeerStore;
use crate::rate_limit::RateLimiter;
use crate::routing::RoutingTable;
use crate::token::Tokens;
use crate::txn::Transactions;
use client::{Lookup, LookupKind, TxnKind};

/// Largest datagram looked at; anything longer is dropped unread. BEP 32 limits what nodes
/// send to 1024 bytes but asks receivers to be lenient, and real `get_peers` answers with many
/// IPv6 values exceed 2 KiB.
pub const MAX_DATAGRAM_LEN: usize = 4096;

/// Most transmits queued for the driver; further ones are dropped (and counted).
pub const MAX_QUEUED_TRANSMITS: usize = 4096;

/// Most events queued for the application; further ones are dropped (and counted).
pub const MAX_QUEUED_EVENTS: usize = 4096;

/// Most bootstrap contacts remembered per family.
pub const MAX_SEEDS: usize = 64;

/// Per-family state (BEP 32: the IPv4 and IPv6 DHTs are separate).
#[derive(Debug)]
struct FamilyState {
    enabled: bool,
    id: NodeId,
    table: RoutingTable,
    external: Option<SocketAddr>,
    seeds: Vec<SocketAddr>,
}

/// Index of the family of `addr`: 0 for IPv4, 1 for IPv6.
fn fam(addr: &SocketAddr) -> usize {
    usize::from(addr.is_ipv6())
}

/// A mainline DHT node (BEP 5, 32, 42, 43, 51), without I/O.
#[derive(Debug)]
pub struct Node {
    config: Config,
    rng: StdRng,
    families: [FamilyState; 2],
    txns: Transactions<TxnKind>,
    lookups: HashMap<LookupId, Lookup>,
    next_lookup: u64,
    pinging: HashSet<SocketAddr>,
    tokens: Tokens,
    peers: PeerStore,
    limiter: Option<RateLimiter>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    next_maintenance: Instant,
    next_peer_expiry: Instant,
    next_rebootstrap: Instant,
    pending_refresh: VecDeque<(usize, usize)>,
    samples: Vec<[u8; 20]>,
    samples_until: Instant,
    scratch_nodes: [Vec<NodeInfo>; 2],
    scratch_peers: Vec<SocketAddr>,
}

impl Node {
    /// A node with an empty routing table. `seed` seeds the random generator behind node IDs,
    /// transaction IDs and token secrets; give it 32 bytes from the OS outside of tests.
    pub fn new(config: Config, now: Instant, seed: [u8; 32]) -> Node {
        let mut rng = StdRng::from_seed(seed);
        let id = config.node_id.unwrap_or_else(|| NodeId::random(&mut rng));
        let family = |enabled: bool| FamilyState {
            enabled,
            id,
            table: RoutingTable::new(id, config.one_node_per_ip, now),
            external: None,
            seeds: Vec::new(),
        };
        let families = [family(config.ipv4), family(config.ipv6)];
        let tokens = Tokens::new(&mut rng, now);
        let limiter = config
            .rate_limit
            .map(|l| RateLimiter::new(l, &mut rng, now));
        Node {
            peers: PeerStore::new(config.peer_store),
            config,
            rng,
            families,
            txns: Transactions::new(),
            lookups: HashMap::new(),
            next_lookup: 1,
            pinging: HashSet::new(),
            tokens,
            limiter,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            next_maintenance: now,
            next_peer_expiry: now + maintenance::PEER_EXPIRY_INTERVAL,
            next_rebootstrap: now,
            pending_refresh: VecDeque::new(),
            samples: Vec::new(),
            samples_until: now,
            scratch_nodes: [Vec::new(), Vec::new()],
            scratch_peers: Vec::new(),
        }
    }

    /// Our node ID in the IPv4 (`ipv6 == false`) or IPv6 DHT.
    pub fn id(&self, ipv6: bool) -> NodeId {
        self.families[usize::from(ipv6)].id
    }

    /// The routing table of one family.
    pub fn routing_table(&self, ipv6: bool) -> &RoutingTable {
        &self.families[usize::from(ipv6)].table
    }

    /// Counters, and the current sizes of the tables.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.nodes_v4 = self.families[0].table.len();
        s.nodes_v6 = self.families[1].table.len();
        s.stored_info_hashes = self.peers.info_hashes();
        s.stored_peers = self.peers.peers();
        s.lookups = self.lookups.len();
        s.in_flight = self.txns.len();
        s
    }

    /// Handles one received datagram. Oversized or malformed input is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.stats.datagrams_in += 1;
        if bytes.len() > MAX_DATAGRAM_LEN {
            self.stats.dropped_oversized += 1;
            return;
        }
        let from = canonical(from);
        if !self.families[fam(&from)].enabled || from.port() == 0 {
            self.stats.dropped_malformed += 1;
            return;
        }
        let msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(_) => {
                self.stats.dropped_malformed += 1;
                return;
            }
        };
        match msg.body {
            Body::Query { method, args } => self.handle_query(now, from, &msg, method, &args),
            Body::Response(args) => self.handle_response(now, from, &msg, &args),
            Body::Error { .. } => self.handle_error(now, from, msg.tid),
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(match self.txns.next_deadline() {
            Some(d) => d.min(self.next_maintenance),
            None => self.next_maintenance,
        })
    }

    /// Starts joining the DHT through `addrs` (bootstrap routers or known nodes): a search for
    /// our own ID in each enabled family. Completion is reported as [`Event::LookupDone`].
    pub fn bootstrap(&mut self, now: Instant, addrs: &[SocketAddr]) -> LookupId {
        for a in addrs {
            let a = canonical(*a);
            let seeds = &mut self.families[fam(&a)].seeds;
            if !seeds.contains(&a) && seeds.len() < MAX_SEEDS {
                seeds.push(a);
            }
        }
        self.start_lookup(now, None, LookupKind::Bootstrap, true)
    }

    /// Pings `addr`; if it answers it enters the routing table (e.g. a node learned from a BEP 5
    /// `port` message).
    pub fn add_node(&mut self, now: Instant, addr: SocketAddr) {
        let addr = canonical(addr);
        if self.families[fam(&addr)].enabled {
            self.send_ping(now, addr, None);
        }
    }

    /// Offers a contact known to be alive because it just answered a query the application
    /// sent itself (a bootstrap router's verification ping): it enters the routing table if its
    /// bucket has room. Returns whether it was added.
    pub fn add_verified_node(&mut self, now: Instant, id: NodeId, addr: SocketAddr) -> bool {
        let addr = canonical(addr);
        let family = &mut self.families[fam(&addr)];
        if !family.enabled || !family.table.has_room_for(&id, &addr, now) {
            return false;
        }
        let verified = bep42::is_verified(&id, addr.ip());
        matches!(
            family.table.on_response(id, addr, verified, now),
            crate::routing::Insertion::Added
        )
    }

    /// Searches for the nodes closest to `target`.
    pub fn find_node(&mut self, now: Instant, target: NodeId) -> LookupId {
        self.start_lookup(now, Some(target.0), LookupKind::FindNode, true)
    }

    /// Searches for peers of `info_hash`, reported as [`Event::Peers`] while the search runs.
    pub fn get_peers(&mut self, now: Instant, info_hash: InfoHash) -> LookupId {
        self.start_lookup(now, Some(info_hash.0), LookupKind::GetPeers, true)
    }

    /// Searches for peers of `info_hash` like [`Node::get_peers`], then announces us to the
    /// closest nodes that gave a token. `port: None` asks them to use our UDP source port
    /// (`implied_port`), right for a client whose TCP/µTP port equals its DHT port.
    pub fn announce(&mut self, now: Instant, info_hash: InfoHash, port: Option<u16>) -> LookupId {
        self.start_lookup(now, Some(info_hash.0), LookupKind::Announce { port }, true)
    }

    /// Asks the node at `addr` for a sample of its stored info-hashes (BEP 51); the answer is
    /// reported as [`Event::Samples`].
    pub fn sample_infohashes(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        target: NodeId,
    ) -> LookupId {
        let id = self.new_lookup_id();
        let addr = canonical(addr);
        if !self.send_sample(now, addr, target, id) {
            self.push_event(Event::Samples {
                lookup: id,
                from: addr,
                result: None,
            });
        }
        id
    }

    /// Tells the node our external address in one family (from votes the application trusts).
    /// If our ID there does not satisfy BEP 42 for that IP, a compliant ID is generated, the
    /// routing table is rebuilt around it and the node re-joins through a self-lookup.
    pub fn set_external_addr(&mut self, now: Instant, addr: SocketAddr) {
        let addr = canonical(addr);
        let f = fam(&addr);
        self.families[f].external = Some(addr);
        if self.config.node_id.is_some() || bep42::is_verified(&self.families[f].id, addr.ip()) {
            return;
        }
        let id = bep42::node_id_for(addr.ip(), &mut self.rng);
        let family = &mut self.families[f];
        family.id = id;
        family.table = family.table.rebuilt(id, now);
        let enabled = family.enabled;
        self.push_event(Event::NodeIdChanged { ipv6: f == 1, id });
        if enabled {
            self.start_lookup(now, None, LookupKind::Bootstrap, false);
        }
    }

    /// Switches BEP 43 read-only mode: queries are ignored and ours carry `ro: 1`.
    pub fn set_read_only(&mut self, read_only: bool) {
        self.config.read_only = read_only;
    }

    fn new_lookup_id(&mut self) -> LookupId {
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        id
    }

    fn push_transmit(&mut self, to: SocketAddr, data: Vec<u8>) {
        if self.transmits.len() >= MAX_QUEUED_TRANSMITS {
            self.stats.transmits_dropped += 1;
            return;
        }
        self.stats.datagrams_out += 1;
        self.transmits.push_back(Transmit { to, data });
    }

    fn push_event(&mut self, e: Event) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(e);
    }
}

#[cfg(test)]
mod tests;
