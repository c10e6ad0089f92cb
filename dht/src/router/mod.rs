//! Router mode: a bootstrap node for heavy traffic (`burrow dht-node`), without I/O.
//!
//! A [`Router`] answers `ping`, `find_node` and `get_peers` (BEP 5) from a large cache of
//! nodes it has verified itself ([`cache`]): each answered a query of ours from the address it
//! claims, passes the BEP 42 ID check, and is asked again every so often, dropped when it stops
//! answering. It stores no peers: `get_peers` is answered with nodes only and no token, so
//! nobody announces to it. An embedded [`Node`] keeps the router's own routing table, runs
//! its lookups and owns its node IDs (saved across restarts), so the router stays a member of
//! the DHT it serves.
//!
//! The hot path is [`Router::handle_datagram`]: one zero-copy decode, one rate-limit check, one
//! cache walk and one reply written into a vector the driver reuses, so answering allocates
//! nothing. It returns at most one reply, never more than [`MAX_AMPLIFICATION`] times the size
//! of the query, sent back to where the query came from. Verification queries and the embedded
//! node's traffic come out of [`Router::poll_transmit`] like a node's.

mod answer;
pub mod cache;
mod persist;
pub mod stats;
pub mod verify;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use answer::MAX_AMPLIFICATION;
pub use cache::{NodeCache, RECORD_LEN_V4, RECORD_LEN_V6};
pub use persist::MAX_SAVED_CACHE;
pub use stats::{RouterStats, QUERY_KINDS};

use crate::bep42;
use crate::compact::{canonical, decode_nodes, NodeInfo};
use crate::id::NodeId;
use crate::krpc::{self, Args, Body, Message};
use crate::node::{Config, Event, Node, Transmit, MAX_DATAGRAM_LEN, MAX_QUEUED_TRANSMITS};
use crate::peer_store::PeerStoreLimits;
use crate::rate_limit::{RateLimit, RateLimiter};
use crate::votes::ExternalAddrVotes;
use cache::{CacheInsert, Reverify};
use verify::{Candidate, Verifier};

/// Default IPv4 cache size in nodes.
pub const DEFAULT_CACHE_SIZE: usize = 1_000_000;

/// Default rate-limiter buckets of a router: enough that unrelated sources rarely share one
/// even at hundreds of thousands of queries per second (16 bytes each).
pub const DEFAULT_RATE_LIMIT_SLOTS: usize = 1 << 16;

/// Default verification queries per second (new nodes and re-checks together): a full
/// million-node cache needs about 1 700 a second to re-check every node each
/// [`DEFAULT_REVERIFY_AFTER`], which leaves the rest for newcomers. 250–400 KB/s out.
pub const DEFAULT_VERIFY_PER_SEC: u32 = 4_000;

/// Default time after which a cached node is asked again whether it is alive.
pub const DEFAULT_REVERIFY_AFTER: Duration = Duration::from_secs(10 * 60);

/// How often the router's timer runs (verification pacing, cache sweep).
pub const TICK: Duration = Duration::from_millis(100);

/// How often good contacts of the embedded node's routing table are copied into the cache.
pub const IMPORT_INTERVAL: Duration = Duration::from_secs(5);

/// The cache is "filling" below this share of its capacity: verification queries are then
/// `find_node` for a random target, whose answers bring new candidates, instead of `ping`.
const DISCOVERY_BELOW: f64 = 0.9;

/// Router settings.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Settings of the embedded node (families, fixed ID, one contact per IP). Its own rate
    /// limit and peer store are unused: the router answers all queries itself.
    pub node: Config,
    /// IPv4 cache size in nodes (rounded up to a power of two; see [`NodeCache::new`]).
    pub cache_size: usize,
    /// IPv6 cache size in nodes.
    pub cache_size_v6: usize,
    /// Limit on queries per source IP (IPv6: per /64); `None` disables it.
    pub rate_limit: Option<RateLimit>,
    /// Token buckets of the rate limiter.
    pub rate_limit_slots: usize,
    /// Cache only nodes whose ID passes BEP 42 for their IP (local addresses are exempt).
    pub require_bep42: bool,
    /// Verification queries per second.
    pub verify_per_sec: u32,
    /// A cached node is asked again after this long.
    pub reverify_after: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            node: Config::default(),
            cache_size: DEFAULT_CACHE_SIZE,
            cache_size_v6: DEFAULT_CACHE_SIZE / 4,
            rate_limit: Some(RateLimit::default()),
            rate_limit_slots: DEFAULT_RATE_LIMIT_SLOTS,
            require_bep42: true,
            verify_per_sec: DEFAULT_VERIFY_PER_SEC,
            reverify_after: DEFAULT_REVERIFY_AFTER,
        }
    }
}

/// A bootstrap router: the embedded node plus the verified-node cache and the fast path.
#[derive(Debug)]
pub struct Router {
    config: RouterConfig,
    node: Node,
    caches: [NodeCache; 2],
    verifier: Verifier,
    limiter: Option<RateLimiter>,
    votes: ExternalAddrVotes,
    stats: RouterStats,
    transmits: VecDeque<Transmit>,
    rng: StdRng,
    epoch: Instant,
    next_tick: Instant,
    last_tick: Instant,
    next_import: Instant,
    credit: f64,
    sweep_out: Vec<Reverify>,
    scratch_contacts: Vec<NodeInfo>,
}

fn fam(addr: &SocketAddr) -> usize {
    usize::from(addr.is_ipv6())
}

impl Router {
    /// A router with empty caches and a fresh node. `seed` seeds its random generators.
    pub fn new(config: RouterConfig, now: Instant, seed: [u8; 32]) -> Router {
        let node = Node::new(node_config(&config), now, seed);
        Router::with_node(config, node, now, seed)
    }

    fn with_node(config: RouterConfig, node: Node, now: Instant, seed: [u8; 32]) -> Router {
        let mut rng = StdRng::from_seed(seed);
        let one_per_ip = config.node.one_node_per_ip;
        let limiter = config
            .rate_limit
            .map(|l| RateLimiter::with_slots(l, config.rate_limit_slots, &mut rng, now));
        let caches = [
            NodeCache::new(
                if config.node.ipv4 {
                    config.cache_size
                } else {
                    0
                },
                false,
                one_per_ip,
            ),
            NodeCache::new(
                if config.node.ipv6 {
                    config.cache_size_v6
                } else {
                    0
                },
                true,
                one_per_ip,
            ),
        ];
        Router {
            config,
            node,
            caches,
            verifier: Verifier::new(),
            limiter,
            votes: ExternalAddrVotes::new(),
            stats: RouterStats::default(),
            transmits: VecDeque::new(),
            rng,
            epoch: now,
            next_tick: now,
            last_tick: now,
            next_import: now,
            credit: 0.0,
            sweep_out: Vec::new(),
            scratch_contacts: Vec::new(),
        }
    }

    /// The embedded node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The verified-node cache of one family.
    pub fn cache(&self, ipv6: bool) -> &NodeCache {
        &self.caches[usize::from(ipv6)]
    }

    /// Our node ID in one family.
    pub fn id(&self, ipv6: bool) -> NodeId {
        self.node.id(ipv6)
    }

    /// Counters and current sizes.
    pub fn stats(&self) -> RouterStats {
        let mut s = self.stats.clone();
        s.cache_v4 = self.caches[0].len();
        s.cache_v6 = self.caches[1].len();
        s.cache_failing = self.caches[0].failing() + self.caches[1].failing();
        s.cache_capacity = (0..2)
            .filter(|&f| self.enabled_family(f))
            .map(|f| self.caches[f].capacity())
            .sum();
        s.cache_bytes = self.caches[0].allocated_bytes() + self.caches[1].allocated_bytes();
        s.candidates_queued = self.verifier.queued();
        s.candidates_dropped = self.verifier.dropped;
        s.routing_v4 = self.node.routing_table(false).len();
        s.routing_v6 = self.node.routing_table(true).len();
        s
    }

    /// Seconds since the router started: the clock of the cache records.
    fn secs(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_secs() as u32
    }

    /// Joins the DHT through `addrs` (bootstrap routers or known nodes).
    pub fn bootstrap(&mut self, now: Instant, addrs: &[SocketAddr]) {
        self.node.bootstrap(now, addrs);
        self.drain_node_events(now);
    }

    /// Handles one received datagram. A query is answered by writing the reply into `reply`
    /// (cleared first) and returning true: the caller sends it to `from`, over the socket the
    /// query came in on. Everything else is consumed here or by the embedded node. Reusing one
    /// `reply` vector makes this allocation-free.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
        reply: &mut Vec<u8>,
    ) -> bool {
        reply.clear();
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        if bytes.len() > MAX_DATAGRAM_LEN {
            self.stats.dropped_oversized += 1;
            return false;
        }
        let from = canonical(from);
        if from.port() == 0 || !self.enabled(&from) {
            self.stats.dropped_malformed += 1;
            return false;
        }
        let Ok(msg) = Message::decode(bytes) else {
            self.stats.dropped_malformed += 1;
            return false;
        };
        match msg.body {
            Body::Query { method, args } => {
                self.answer(now, from, &msg, method, &args, bytes.len(), reply)
            }
            Body::Response(args) if self.verifier.check(self.secs(now), &from, msg.tid) => {
                self.verified(now, from, &msg, &args);
                false
            }
            // Errors to verification queries need no handling: the node stays unverified.
            Body::Error { .. } if Verifier::is_router_tid(msg.tid) => false,
            _ => {
                self.stats.node_datagrams += 1;
                self.node.handle_datagram(now, from, bytes);
                self.drain_node_events(now);
                false
            }
        }
    }

    fn enabled_family(&self, f: usize) -> bool {
        if f == 0 {
            self.config.node.ipv4
        } else {
            self.config.node.ipv6
        }
    }

    fn enabled(&self, addr: &SocketAddr) -> bool {
        self.enabled_family(fam(addr))
    }

    /// A node answered one of our verification queries.
    fn verified(&mut self, now: Instant, from: SocketAddr, msg: &Message<'_>, args: &Args<'_>) {
        self.stats.verify_answers += 1;
        let Some(id) = args.id else { return };
        if self.config.require_bep42 && !bep42::is_verified(&id, from.ip()) {
            self.stats.verify_rejected_bep42 += 1;
            return;
        }
        if id == self.node.id(from.is_ipv6()) {
            return;
        }
        let secs = self.secs(now);
        let stale = self.stale_after();
        match self.caches[fam(&from)].insert(id, from, secs, stale) {
            CacheInsert::Added | CacheInsert::Replaced => {
                self.stats.cache_added += 1;
                self.node.add_verified_node(now, id, from);
            }
            CacheInsert::Full => self.stats.cache_full += 1,
            CacheInsert::Refreshed | CacheInsert::Conflict => {}
        }
        if let Some(reported) = msg.ip {
            self.vote(now, reported, from);
        }
        // Nodes named in answers to discovery queries become candidates.
        for (g, list) in [(0, args.nodes), (1, args.nodes6)] {
            let Some(list) = list else { continue };
            if !self.enabled_family(g) {
                continue;
            }
            for n in decode_nodes(list, g == 1).take(crate::routing::K * 2) {
                self.consider(secs, n.id, n.addr);
            }
        }
    }

    /// Queues `id` at `addr` for verification if it may be cached and is not already.
    fn consider(&mut self, secs: u32, id: NodeId, addr: SocketAddr) {
        if self.verifier.queued() >= verify::MAX_CANDIDATES / 2 {
            // Plenty to do already; spare the hot path the lookups.
            return;
        }
        if self.config.require_bep42 && !bep42::is_verified(&id, addr.ip()) {
            self.stats.queriers_bep42_failed += 1;
            return;
        }
        let f = fam(&addr);
        // Other nodes list us too; a node with our ID is us (or an impostor).
        if id == self.node.id(f == 1) {
            return;
        }
        if !self.enabled_family(f) || self.caches[f].contains(&id, &addr) {
            return;
        }
        self.verifier.offer(secs, Candidate { id: Some(id), addr });
    }

    fn vote(&mut self, now: Instant, reported: SocketAddr, by: SocketAddr) {
        if let Some(addr) = self.votes.record(reported, by) {
            tracing::info!(%addr, "external address agreed by DHT votes");
            self.node.set_external_addr(now, addr);
        }
    }

    fn drain_node_events(&mut self, now: Instant) {
        while let Some(e) = self.node.poll_event() {
            if let Event::ExternalAddrVote { reported, by } = e {
                self.vote(now, reported, by);
            }
        }
    }

    /// Age in seconds after which a cached node may be replaced by a newcomer.
    fn stale_after(&self) -> u32 {
        (self.config.reverify_after.as_secs() as u32).saturating_mul(2)
    }

    /// Age in seconds after which a cached node is no longer handed out: it has been due for a
    /// check for a long while (the sweep is behind).
    fn max_age(&self) -> u32 {
        (self.config.reverify_after.as_secs() as u32).saturating_mul(3)
    }

    /// Counts datagrams the driver could not send (full socket buffer, unreachable address).
    pub fn count_send_failures(&mut self, n: u64) {
        self.stats.dropped_send += n;
    }

    /// The next datagram to send: verification queries, then the embedded node's traffic.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits
            .pop_front()
            .or_else(|| self.node.poll_transmit())
    }

    /// When [`Router::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Instant {
        match self.node.poll_timeout() {
            Some(t) => t.min(self.next_tick),
            None => self.next_tick,
        }
    }

    /// Runs whatever timers are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.node.handle_timeout(now);
        self.drain_node_events(now);
        if now >= self.next_tick {
            self.tick(now);
            self.next_tick = now + TICK;
        }
    }

    fn tick(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last_tick).as_secs_f64();
        self.last_tick = now;
        let rate = f64::from(self.config.verify_per_sec);
        // At most a fifth of a second's worth saved up, so queries go out evenly.
        self.credit = (self.credit + rate * dt).min((rate / 5.0).max(1.0));
        let secs = self.secs(now);
        if now >= self.next_import {
            self.next_import = now + IMPORT_INTERVAL;
            self.import_routing_table(now, secs);
        }
        let reverify = self.config.reverify_after.as_secs() as u32;
        for f in 0..2 {
            let cache = &mut self.caches[f];
            if cache.is_empty() {
                continue;
            }
            // Visit every bucket twice per re-verification period, so a node is re-checked
            // between one and one and a half periods after it last answered.
            let buckets = cache.capacity() / cache::SLOTS_PER_BUCKET;
            let per_tick = (buckets as f64 * TICK.as_secs_f64() * 2.0
                / self.config.reverify_after.as_secs_f64().max(1.0))
            .ceil() as usize;
            let mut out = std::mem::take(&mut self.sweep_out);
            out.clear();
            let free = MAX_QUEUED_TRANSMITS.saturating_sub(self.transmits.len());
            let room = (self.credit.max(0.0) as usize).min(free);
            self.stats.cache_evicted +=
                cache.sweep(secs, reverify, per_tick, room, &mut out) as u64;
            for r in &out {
                self.send_verify(secs, r.addr);
            }
            self.credit -= out.len() as f64;
            self.sweep_out = out;
        }
        // Candidates wait in their queue rather than be dropped from a full transmit queue.
        while self.credit >= 1.0 && self.transmits.len() < MAX_QUEUED_TRANSMITS {
            let Some(c) = self.verifier.next_candidate() else {
                break;
            };
            self.send_verify(secs, c.addr);
            self.credit -= 1.0;
        }
    }

    /// Copies contacts that answered the embedded node since the last import into the cache.
    /// Only fresh answers count: a contact the node still deems good may have died since, and
    /// the cache's own checks, not the table's, decide that.
    fn import_routing_table(&mut self, now: Instant, secs: u32) {
        let stale = self.stale_after();
        let fresh = 2 * IMPORT_INTERVAL;
        for f in 0..2 {
            if !self.enabled_family(f) {
                continue;
            }
            let table = self.node.routing_table(f == 1);
            for e in table.entries() {
                let Some(answered) = e.last_response else {
                    continue;
                };
                let age = now.saturating_duration_since(answered);
                if age > fresh
                    || (self.config.require_bep42 && !e.verified)
                    || self.caches[f].contains(&e.id, &e.addr)
                {
                    continue;
                }
                let seen = secs.saturating_sub(age.as_secs() as u32);
                if self.caches[f].insert(e.id, e.addr, seen, stale) == CacheInsert::Added {
                    self.stats.cache_added += 1;
                }
            }
        }
    }

    /// Sends a verification query to `addr`: `find_node` for a random target while the cache
    /// fills (the answer names more nodes), `ping` once it is nearly full.
    fn send_verify(&mut self, secs: u32, addr: SocketAddr) {
        if self.transmits.len() >= MAX_QUEUED_TRANSMITS {
            self.stats.transmits_dropped += 1;
            return;
        }
        let f = fam(&addr);
        let tid = self.verifier.tid(secs, &addr);
        self.verifier.mark_pinged(secs, &addr);
        let own = self.node.id(f == 1);
        let cache = &self.caches[f];
        let filling = (cache.len() as f64) < cache.capacity() as f64 * DISCOVERY_BELOW;
        let mut data = Vec::with_capacity(96);
        if filling {
            let target: [u8; 20] = self.rng.random();
            krpc::write_find_node(&mut data, &tid, &own, &target, None, false);
        } else {
            krpc::write_ping(&mut data, &tid, &own, false);
        }
        self.stats.verify_sent += 1;
        self.transmits.push_back(Transmit { to: addr, data });
    }
}

/// The embedded node's settings: the router's families and ID, no peer store, no rate limit
/// (the router applies its own before anything reaches the node).
fn node_config(config: &RouterConfig) -> Config {
    Config {
        rate_limit: None,
        peer_store: PeerStoreLimits {
            max_info_hashes: 0,
            max_peers_per_info_hash: 0,
            max_peers_total: 0,
        },
        ..config.node.clone()
    }
}

#[cfg(test)]
mod tests;
