//! burrow-swarm: everything a peer in a BitTorrent swarm does.

pub mod net;
