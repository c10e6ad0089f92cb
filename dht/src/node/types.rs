//! The values that cross the node's boundary: configuration, transmits, events, counters.

use std::net::SocketAddr;

use crate::compact::NodeInfo;
use crate::id::{InfoHash, NodeId};
use crate::peer_store::PeerStoreLimits;
use crate::rate_limit::RateLimit;

/// Node settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Take part in the IPv4 DHT.
    pub ipv4: bool,
    /// Take part in the IPv6 DHT.
    pub ipv6: bool,
    /// A fixed node ID for both families; `None` picks a random one and lets BEP 42 replace it
    /// once the external address is known.
    pub node_id: Option<NodeId>,
    /// BEP 43 read-only mode: answer no queries and ask others not to add us to their tables.
    pub read_only: bool,
    /// Limit on incoming queries per source IP (IPv6: per /64); `None` disables limiting.
    pub rate_limit: Option<RateLimit>,
    /// Bounds of the announced-peer store.
    pub peer_store: PeerStoreLimits,
    /// Keep at most one routing-table contact per IP address. A guard against one host
    /// flooding our table; turn off only where many nodes share an address (loopback tests).
    pub one_node_per_ip: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ipv4: true,
            ipv6: true,
            node_id: None,
            read_only: false,
            rate_limit: Some(RateLimit::default()),
            peer_store: PeerStoreLimits::default(),
            one_node_per_ip: true,
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination. IPv4 destinations are plain IPv4 addresses; a driver with a dual-stack
    /// IPv6 socket maps them to `::ffff:a.b.c.d` itself.
    pub to: SocketAddr,
    /// The encoded KRPC message.
    pub data: Vec<u8>,
}

/// Names one search started by the application (or one `sample_infohashes` query).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// How a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupStatus {
    /// It ran to convergence.
    Completed,
    /// There was nobody to ask: empty routing tables and no bootstrap contacts.
    NoNodes,
    /// Refused because [`crate::node::MAX_LOOKUPS`] searches were already running.
    TooManyLookups,
}

/// The outcome of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupDone {
    /// Which search.
    pub lookup: LookupId,
    /// The key searched for.
    pub target: [u8; 20],
    /// How it ended.
    pub status: LookupStatus,
    /// The closest nodes that answered, nearest first, IPv4 then IPv6 (at most K each).
    pub closest: Vec<NodeInfo>,
    /// Nodes that answered.
    pub responded: usize,
    /// Nodes that acknowledged our `announce_peer` (announce searches only).
    pub announced: usize,
    /// Distinct peers reported through [`Event::Peers`].
    pub peers_found: usize,
}

/// The answer to a `sample_infohashes` query (BEP 51).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleResult {
    /// The sampled info-hashes.
    pub samples: Vec<InfoHash>,
    /// How many info-hashes the node stores in total.
    pub num: i64,
    /// Seconds before asking this node again is worthwhile.
    pub interval: i64,
    /// Nodes close to the target, of the queried node's family.
    pub nodes: Vec<NodeInfo>,
}

/// Something the application should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Peers newly found by a `get_peers`/`announce` search (each peer reported once).
    Peers {
        /// Which search.
        lookup: LookupId,
        /// The info-hash searched for.
        info_hash: InfoHash,
        /// The peers.
        peers: Vec<SocketAddr>,
    },
    /// A search finished.
    LookupDone(LookupDone),
    /// A node told us the address it sees us at (BEP 42 `ip` in a response to our query).
    ExternalAddrVote {
        /// The address it saw.
        reported: SocketAddr,
        /// The node that reported it.
        by: SocketAddr,
    },
    /// Our ID in one family changed to satisfy BEP 42.
    NodeIdChanged {
        /// Which family.
        ipv6: bool,
        /// The new ID.
        id: NodeId,
    },
    /// The answer to [`crate::Node::sample_infohashes`]; `None` if it timed out or failed.
    Samples {
        /// Which query.
        lookup: LookupId,
        /// The node asked.
        from: SocketAddr,
        /// Its answer.
        result: Option<SampleResult>,
    },
}

/// Counters since start, plus current sizes (filled in by [`crate::Node::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to the node.
    pub datagrams_in: u64,
    /// Datagrams queued for sending.
    pub datagrams_out: u64,
    /// Dropped for exceeding [`crate::node::MAX_DATAGRAM_LEN`].
    pub dropped_oversized: u64,
    /// Dropped as undecodable, or from a disabled family.
    pub dropped_malformed: u64,
    /// Queries dropped by the rate limit.
    pub dropped_rate_limited: u64,
    /// Queries answered (with a response or an error).
    pub queries_answered: u64,
    /// Error messages sent.
    pub errors_sent: u64,
    /// Responses matched to one of our queries.
    pub responses_in: u64,
    /// Responses or errors matching none of our queries.
    pub unmatched_responses: u64,
    /// Our queries that timed out.
    pub timeouts: u64,
    /// Queries we could not send because too many were in flight.
    pub queries_deferred: u64,
    /// Transmits dropped because the queue was full.
    pub transmits_dropped: u64,
    /// Events dropped because the queue was full.
    pub events_dropped: u64,
    /// Peers stored through `announce_peer`.
    pub announces_stored: u64,
    /// Contacts in the IPv4 routing table.
    pub nodes_v4: usize,
    /// Contacts in the IPv6 routing table.
    pub nodes_v6: usize,
    /// Info-hashes in the peer store.
    pub stored_info_hashes: usize,
    /// Peers in the peer store.
    pub stored_peers: usize,
    /// Searches running.
    pub lookups: usize,
    /// Our queries awaiting an answer.
    pub in_flight: usize,
}
