//! Deciding our external address from the `ip` votes in DHT responses (BEP 42: "there should be
//! some mechanism to determine whether or not the node has a correct understanding of its
//! external IP ... This could be done by voting").
//!
//! One vote per voter IP (so one host cannot stuff the ballot), per address family. An address
//! wins once [`QUORUM`] distinct voters agree and they are at least two thirds of all voters
//! heard. Sans-IO like the node; the driver uses it, and a client may use it or its own tally.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// Distinct voters that must agree on an address.
pub const QUORUM: usize = 5;

/// Most voters remembered per family; when full, all votes are cleared and counting restarts.
pub const MAX_VOTERS: usize = 64;

/// A running tally of external-address votes.
#[derive(Debug, Default, Clone)]
pub struct ExternalAddrVotes {
    /// Per family: voter IP → the address it reported.
    votes: [HashMap<IpAddr, SocketAddr>; 2],
    decided: [Option<SocketAddr>; 2],
}

impl ExternalAddrVotes {
    /// An empty tally.
    pub fn new() -> Self {
        Self::default()
    }

    /// The address currently agreed on for a family.
    pub fn decided(&self, ipv6: bool) -> Option<SocketAddr> {
        self.decided[usize::from(ipv6)]
    }

    /// Counts `by`'s report of `reported`. Returns the address when it newly wins its family.
    pub fn record(&mut self, reported: SocketAddr, by: SocketAddr) -> Option<SocketAddr> {
        if reported.is_ipv6() != by.is_ipv6()
            || reported.port() == 0
            || reported.ip().is_unspecified()
        {
            return None;
        }
        let f = usize::from(reported.is_ipv6());
        let votes = &mut self.votes[f];
        if votes.len() >= MAX_VOTERS && !votes.contains_key(&by.ip()) {
            votes.clear();
        }
        votes.insert(by.ip(), reported);
        // Votes count per IP; the port is taken from the most common report for that IP.
        let agree = votes.values().filter(|a| a.ip() == reported.ip()).count();
        if agree < QUORUM || agree * 3 < votes.len() * 2 {
            return None;
        }
        let mut ports: HashMap<u16, usize> = HashMap::new();
        for a in votes.values().filter(|a| a.ip() == reported.ip()) {
            *ports.entry(a.port()).or_default() += 1;
        }
        let port = ports
            .into_iter()
            .max_by_key(|&(p, n)| (n, p))
            .map_or(reported.port(), |(p, _)| p);
        let winner = SocketAddr::new(reported.ip(), port);
        if self.decided[f] == Some(winner) {
            return None;
        }
        self.decided[f] = Some(winner);
        Some(winner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voter(i: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, i], 6881))
    }

    #[test]
    fn quorum_of_distinct_voters() {
        let mut v = ExternalAddrVotes::new();
        let me: SocketAddr = "203.0.113.9:40000".parse().unwrap();
        // One voter repeating itself is one vote.
        for _ in 0..10 {
            assert_eq!(v.record(me, voter(1)), None);
        }
        for i in 2..QUORUM as u8 {
            assert_eq!(v.record(me, voter(i)), None);
        }
        assert_eq!(v.record(me, voter(QUORUM as u8)), Some(me));
        assert_eq!(v.decided(false), Some(me));
        // Already decided: not reported again.
        assert_eq!(v.record(me, voter(50)), None);
    }

    #[test]
    fn a_minority_does_not_win_and_families_are_separate() {
        let mut v = ExternalAddrVotes::new();
        let a: SocketAddr = "203.0.113.9:1".parse().unwrap();
        let b: SocketAddr = "198.51.100.3:1".parse().unwrap();
        for i in 0..5 {
            v.record(b, voter(100 + i));
        }
        assert_eq!(v.decided(false), Some(b));
        // Five votes for `a` against five for `b` is no two-thirds majority.
        for i in 0..5 {
            assert_eq!(v.record(a, voter(i)), None);
        }
        let a6: SocketAddr = "[2001:db8::9]:1".parse().unwrap();
        assert_eq!(
            v.record(a6, voter(1)),
            None,
            "family mismatch between vote and voter"
        );
        for i in 0..5u16 {
            v.record(
                a6,
                SocketAddr::new(format!("2001:db8:1::{i}").parse().unwrap(), 1),
            );
        }
        assert_eq!(v.decided(true), Some(a6));
        assert_eq!(v.decided(false), Some(b));
    }
}
