//! burrow-swarm: everything a peer in a BitTorrent swarm does — torrent descriptions, the
//! peer wire, trackers, storage and piece picking, the sockets, and the connectivity that
//! keeps a swarm connected when its members sit behind NATs.

pub mod bencode;
pub mod connectivity;
pub mod dht;
pub mod fsread;
pub mod metainfo;
pub mod nat;
pub mod net;
pub mod peer;
pub mod session;
pub mod torrent;
pub mod tracker;
pub mod types;
pub mod wire;
