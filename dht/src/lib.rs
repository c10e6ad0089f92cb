//! Mainline DHT (BEP 5): a sans-IO node and a tokio driver.
//!
//! [`Node`] is the protocol core. It owns no socket and reads no clock: the application hands
//! it datagrams ([`Node::handle_datagram`]) and the time, and drains what it wants sent
//! ([`Node::poll_transmit`]), what it wants to tell ([`Node::poll_event`]) and when it next
//! needs the time ([`Node::poll_timeout`], then [`Node::handle_timeout`]). That lets a client
//! feed it from a UDP socket it shares with µTP and trackers, lets a bootstrap node run it flat
//! out, and lets tests run hundreds of nodes on a fake clock.
//!
//! Supported: BEP 5 (DHT protocol), BEP 32 (IPv6: separate tables, `want`, `nodes6`),
//! BEP 42 (node IDs bound to IPs, `ip` votes), BEP 43 (read-only nodes), BEP 51
//! (`sample_infohashes`). KRPC is decoded by a small zero-copy bencode reader ([`krpc`]).
//! Every table the network can grow is bounded by a named constant (see [`node`],
//! [`routing`], [`peer_store`], [`rate_limit`]).
//!
//! # Driving a node
//!
//! A client with its own socket routes datagrams whose first byte is `d` to the node, sends
//! what the node queues, and wakes it at [`Node::poll_timeout`]. Here two nodes are wired
//! together in memory:
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::Instant;
//! use burrow_dht::{Config, Event, InfoHash, Node};
//!
//! let config = Config { ipv6: false, ..Config::default() };
//! let now = Instant::now();
//! let addrs: [SocketAddr; 2] = ["10.0.0.1:6881".parse().unwrap(), "10.0.0.2:6881".parse().unwrap()];
//! let mut nodes = [Node::new(config.clone(), now, [1; 32]), Node::new(config, now, [2; 32])];
//!
//! nodes[1].bootstrap(now, &[addrs[0]]);
//! let lookup = nodes[1].announce(now, InfoHash([7; 20]), Some(6881));
//! let mut finished = false;
//! for _round in 0..10 {
//!     for i in 0..2 {
//!         while let Some(t) = nodes[i].poll_transmit() {
//!             let to = addrs.iter().position(|a| *a == t.to).unwrap();
//!             nodes[to].handle_datagram(now, addrs[i], &t.data);
//!         }
//!     }
//!     while let Some(event) = nodes[1].poll_event() {
//!         if let Event::LookupDone(done) = event {
//!             finished |= done.lookup == lookup && done.announced == 1;
//!         }
//!     }
//! }
//! assert!(finished);
//! ```
//!
//! The `tokio` feature adds [`driver`], a task that runs a node on its own socket.

#![warn(missing_docs)]

pub mod bencode;
pub mod bep42;
pub mod compact;
#[cfg(feature = "tokio")]
pub mod driver;
pub mod id;
pub mod krpc;
mod lookup;
pub mod node;
pub mod peer_store;
pub mod rate_limit;
pub mod router;
pub mod routing;
#[cfg(feature = "tokio")]
pub mod serve;
mod token;
mod txn;
pub mod votes;

pub use compact::NodeInfo;
pub use id::{InfoHash, NodeId};
pub use node::{
    Config, Event, LookupDone, LookupId, LookupStatus, Node, SampleResult, StateError, Stats,
    Transmit, MAX_STATE_SIZE,
};
pub use peer_store::PeerStoreLimits;
pub use rate_limit::RateLimit;

/// Public bootstrap routers of the mainline DHT, as `host:port` for the application to resolve.
/// Tests never use them.
pub const DEFAULT_BOOTSTRAP: [&str; 4] = [
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "router.utorrent.com:6881",
    "dht.libtorrent.org:25401",
];

pub use lookup::{ALPHA, MAX_CANDIDATES, MAX_QUERIES};
pub use token::{TOKEN_LEN, TOKEN_ROTATION};
pub use txn::{MAX_IN_FLIGHT, QUERY_TIMEOUT, SLOW_AFTER};
