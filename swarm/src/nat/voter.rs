//! External-address votes and NAT classification (sans-IO).
//!
//! Remotes tell us the address they see us at: DHT nodes in the `ip` field of their replies
//! (BEP 42, address and port), peers in the BEP 10 handshake's `yourip` (address only), and the
//! gateway in its mapping replies. One reporter could lie, so the consensus needs two distinct
//! reporters agreeing, unless the gateway itself reported a public address.
//!
//! The mapping behaviour (RFC 4787 §4.1) comes from the ports that different remotes report for
//! our one UDP socket: the same external port to everyone is endpoint-independent mapping,
//! different ones endpoint-dependent. Double NAT shows as a gateway whose own "external"
//! address is private or shared (100.64.0.0/10), or differs from what remotes see.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::MappingProtocol;

/// Most votes kept; the oldest is dropped first. Enough for dozens of distinct reporters while
/// bounding what a flood of DHT replies can make us store.
pub const MAX_VOTES: usize = 64;

/// How long a vote counts: addresses change (DHCP, reconnects) and old votes must not outvote
/// the new address.
pub const VOTE_TTL: Duration = Duration::from_secs(30 * 60);

/// Distinct reporters that must agree before a remote-reported address is believed.
pub const MIN_AGREEING_REPORTERS: usize = 2;

/// Who told us our address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VoteSource {
    /// A DHT node's `ip` field (seen on our UDP socket).
    Dht,
    /// A peer's BEP 10 `yourip` (seen on a TCP or µTP connection).
    PeerYourIp,
    /// The gateway's reply to a mapping request.
    Gateway(MappingProtocol),
}

/// One report of our external address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vote {
    /// What kind of report.
    pub source: VoteSource,
    /// The remote that reported (its address; the gateway's for gateway votes).
    pub reporter: IpAddr,
    /// The address it sees us at.
    pub address: IpAddr,
    /// The port it sees for our UDP socket, when the report carries one (DHT `ip` does).
    pub udp_port: Option<u16>,
}

/// How the NAT maps our UDP socket (RFC 4787 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MappingBehaviour {
    /// Not enough reports yet.
    Unknown,
    /// Remotes see our own address and port: no NAT on the path.
    NoNat,
    /// One external port for every remote: peers can reach us with hole punching.
    EndpointIndependent,
    /// A different external port per remote: hole punching between two such NATs fails.
    EndpointDependent,
}

impl std::fmt::Display for MappingBehaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MappingBehaviour::Unknown => "unknown",
            MappingBehaviour::NoNat => "no NAT",
            MappingBehaviour::EndpointIndependent => "endpoint-independent mapping",
            MappingBehaviour::EndpointDependent => "endpoint-dependent mapping",
        })
    }
}

/// Collects votes and answers "what is our address" and "what NAT are we behind".
#[derive(Debug, Clone)]
pub struct AddressVoter {
    local_port: u16,
    local_addrs: Vec<IpAddr>,
    votes: VecDeque<(Vote, Instant)>,
}

impl AddressVoter {
    /// A voter for the UDP socket bound to `local_port` on a host with `local_addrs`.
    pub fn new(local_port: u16, local_addrs: Vec<IpAddr>) -> Self {
        AddressVoter {
            local_port,
            local_addrs,
            votes: VecDeque::new(),
        }
    }

    /// Records a vote received at `now`. A newer vote of the same kind from the same reporter
    /// replaces the older one, so one remote cannot vote twice.
    pub fn add(&mut self, vote: Vote, now: Instant) {
        self.votes.retain(|(v, at)| {
            now.saturating_duration_since(*at) < VOTE_TTL
                && !(v.reporter == vote.reporter && same_kind(v.source, vote.source))
        });
        if self.votes.len() >= MAX_VOTES {
            self.votes.pop_front();
        }
        self.votes.push_back((vote, now));
    }

    /// Number of votes held.
    pub fn len(&self) -> usize {
        self.votes.len()
    }

    /// True when no vote is held.
    pub fn is_empty(&self) -> bool {
        self.votes.is_empty()
    }

    fn remote_votes(&self) -> impl Iterator<Item = &Vote> {
        self.votes
            .iter()
            .map(|(v, _)| v)
            .filter(|v| !matches!(v.source, VoteSource::Gateway(_)))
    }

    /// The latest address the gateway reported, if any.
    pub fn gateway_address(&self) -> Option<IpAddr> {
        self.votes
            .iter()
            .rev()
            .map(|(v, _)| v)
            .find(|v| matches!(v.source, VoteSource::Gateway(_)))
            .map(|v| v.address)
    }

    /// The external address of one family: the one most distinct remote reporters agree on
    /// (at least [`MIN_AGREEING_REPORTERS`]), else a public address the gateway reported.
    fn consensus(&self, family_v4: bool) -> Option<IpAddr> {
        let mut tally: Vec<(IpAddr, Vec<IpAddr>)> = Vec::new();
        for v in self
            .remote_votes()
            .filter(|v| v.address.is_ipv4() == family_v4)
        {
            match tally.iter_mut().find(|(a, _)| *a == v.address) {
                Some((_, reporters)) if !reporters.contains(&v.reporter) => {
                    reporters.push(v.reporter)
                }
                Some(_) => {}
                None => tally.push((v.address, vec![v.reporter])),
            }
        }
        let best = tally
            .into_iter()
            .filter(|(_, r)| r.len() >= MIN_AGREEING_REPORTERS)
            .max_by_key(|(_, r)| r.len())
            .map(|(a, _)| a);
        best.or_else(|| {
            self.gateway_address()
                .filter(|a| a.is_ipv4() == family_v4 && is_public(*a))
        })
    }

    /// The consensus external IPv4 address.
    pub fn external_ipv4(&self) -> Option<Ipv4Addr> {
        match self.consensus(true) {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        }
    }

    /// The consensus external IPv6 address.
    pub fn external_ipv6(&self) -> Option<Ipv6Addr> {
        match self.consensus(false) {
            Some(IpAddr::V6(a)) => Some(a),
            _ => None,
        }
    }

    /// Classifies the mapping of our UDP socket from the ports distinct remotes reported for
    /// the consensus IPv4 address.
    pub fn behaviour(&self) -> MappingBehaviour {
        let Some(external) = self.external_ipv4().map(IpAddr::V4) else {
            return MappingBehaviour::Unknown;
        };
        let mut ports: Vec<(IpAddr, u16)> = Vec::new();
        for v in self.remote_votes().filter(|v| v.address == external) {
            if let Some(port) = v.udp_port {
                if !ports.iter().any(|(r, _)| *r == v.reporter) {
                    ports.push((v.reporter, port));
                }
            }
        }
        if ports.len() < MIN_AGREEING_REPORTERS {
            return MappingBehaviour::Unknown;
        }
        let first = ports[0].1;
        if ports.iter().any(|(_, p)| *p != first) {
            MappingBehaviour::EndpointDependent
        } else if first == self.local_port && self.local_addrs.contains(&external) {
            MappingBehaviour::NoNat
        } else {
            MappingBehaviour::EndpointIndependent
        }
    }

    /// True when there is more than one NAT between us and the internet: the gateway's own
    /// external address is not public, or remotes see a different address than it reports.
    pub fn double_nat(&self) -> bool {
        let Some(IpAddr::V4(gw)) = self.gateway_address() else {
            return false;
        };
        if !is_public(IpAddr::V4(gw)) {
            return true;
        }
        matches!(self.external_ipv4(), Some(seen) if seen != gw)
    }
}

fn same_kind(a: VoteSource, b: VoteSource) -> bool {
    std::mem::discriminant(&a) == std::mem::discriminant(&b)
}

/// True for addresses reachable from the internet at large: not private, shared (carrier NAT,
/// 100.64.0.0/10), loopback, link-local, documentation, unspecified or multicast.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_documentation()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || o[0] == 0
                || o[0] >= 240)
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn dht(reporter: &str, address: &str, port: u16) -> Vote {
        Vote {
            source: VoteSource::Dht,
            reporter: ip(reporter),
            address: ip(address),
            udp_port: Some(port),
        }
    }

    fn voter() -> AddressVoter {
        AddressVoter::new(51413, vec![ip("10.1.0.2")])
    }

    #[test]
    fn one_reporter_is_not_enough() {
        let mut v = voter();
        let now = Instant::now();
        v.add(dht("57.66.1.1", "57.66.2.1", 51413), now);
        assert_eq!(v.external_ipv4(), None);
        // The same reporter again (another source kind counts separately but is one reporter).
        v.add(
            Vote {
                source: VoteSource::PeerYourIp,
                ..dht("57.66.1.1", "57.66.2.1", 0)
            },
            now,
        );
        assert_eq!(v.external_ipv4(), None);
        v.add(dht("57.66.1.2", "57.66.2.1", 51413), now);
        assert_eq!(v.external_ipv4(), Some("57.66.2.1".parse().unwrap()));
    }

    #[test]
    fn majority_of_distinct_reporters_wins() {
        let mut v = voter();
        let now = Instant::now();
        v.add(dht("1.0.0.1", "57.66.2.1", 1), now);
        v.add(dht("1.0.0.2", "57.66.2.1", 1), now);
        v.add(dht("1.0.0.3", "57.66.2.1", 1), now);
        v.add(dht("9.9.9.1", "66.6.6.6", 1), now);
        v.add(dht("9.9.9.2", "66.6.6.6", 1), now);
        assert_eq!(v.external_ipv4(), Some("57.66.2.1".parse().unwrap()));
        // A reporter changing its mind replaces its vote rather than adding one.
        v.add(dht("1.0.0.1", "66.6.6.6", 1), now);
        assert_eq!(v.external_ipv4(), Some("66.6.6.6".parse().unwrap()));
    }

    #[test]
    fn public_gateway_reply_is_enough_alone() {
        let mut v = voter();
        let gw = Vote {
            source: VoteSource::Gateway(MappingProtocol::Pcp),
            reporter: ip("10.1.0.1"),
            address: ip("57.66.2.1"),
            udp_port: None,
        };
        v.add(gw, Instant::now());
        assert_eq!(v.external_ipv4(), Some("57.66.2.1".parse().unwrap()));
        assert!(!v.double_nat());
    }

    #[test]
    fn classifies_mapping_behaviour() {
        let now = Instant::now();
        let mut eim = voter();
        eim.add(dht("57.66.1.1", "57.66.2.1", 40000), now);
        assert_eq!(eim.behaviour(), MappingBehaviour::Unknown);
        eim.add(dht("57.66.1.2", "57.66.2.1", 40000), now);
        assert_eq!(eim.behaviour(), MappingBehaviour::EndpointIndependent);

        let mut edm = voter();
        edm.add(dht("57.66.1.1", "57.66.2.1", 40000), now);
        edm.add(dht("57.66.1.2", "57.66.2.1", 40001), now);
        assert_eq!(edm.behaviour(), MappingBehaviour::EndpointDependent);

        let mut open = AddressVoter::new(51413, vec![ip("57.67.1.2")]);
        open.add(dht("57.66.1.1", "57.67.1.2", 51413), now);
        open.add(dht("57.66.1.2", "57.67.1.2", 51413), now);
        assert_eq!(open.behaviour(), MappingBehaviour::NoNat);

        // yourip votes carry no port and do not classify.
        let mut tcp_only = voter();
        for r in ["57.66.1.1", "57.66.1.2"] {
            tcp_only.add(
                Vote {
                    source: VoteSource::PeerYourIp,
                    reporter: ip(r),
                    address: ip("57.66.2.1"),
                    udp_port: None,
                },
                now,
            );
        }
        assert_eq!(tcp_only.external_ipv4(), Some("57.66.2.1".parse().unwrap()));
        assert_eq!(tcp_only.behaviour(), MappingBehaviour::Unknown);
    }

    #[test]
    fn detects_double_nat() {
        let now = Instant::now();
        let gw = |addr: &str| Vote {
            source: VoteSource::Gateway(MappingProtocol::NatPmp),
            reporter: ip("10.1.0.1"),
            address: ip(addr),
            udp_port: None,
        };
        let mut shared = voter();
        shared.add(gw("100.64.1.2"), now);
        assert!(shared.double_nat());
        assert_eq!(
            shared.external_ipv4(),
            None,
            "a shared address is not our external address"
        );

        let mut differs = voter();
        differs.add(gw("57.66.2.1"), now);
        differs.add(dht("57.66.1.1", "57.66.3.1", 1), now);
        differs.add(dht("57.66.1.2", "57.66.3.1", 1), now);
        assert!(differs.double_nat());
        assert_eq!(differs.external_ipv4(), Some("57.66.3.1".parse().unwrap()));

        let mut agrees = voter();
        agrees.add(gw("57.66.2.1"), now);
        agrees.add(dht("57.66.1.1", "57.66.2.1", 1), now);
        agrees.add(dht("57.66.1.2", "57.66.2.1", 1), now);
        assert!(!agrees.double_nat());
    }

    #[test]
    fn votes_are_bounded_and_expire() {
        let mut v = voter();
        let t0 = Instant::now();
        for i in 0..(MAX_VOTES as u32 * 3) {
            let reporter = IpAddr::V4(Ipv4Addr::from(0x3900_0000 + i));
            v.add(
                Vote {
                    source: VoteSource::Dht,
                    reporter,
                    address: ip("57.66.2.1"),
                    udp_port: Some(1),
                },
                t0,
            );
        }
        assert_eq!(v.len(), MAX_VOTES);
        v.add(dht("57.66.1.1", "66.6.6.6", 1), t0 + VOTE_TTL);
        assert_eq!(v.len(), 1, "expired votes are dropped");
        assert_eq!(v.external_ipv4(), None);
    }

    #[test]
    fn ipv6_consensus_is_separate() {
        let mut v = voter();
        let now = Instant::now();
        v.add(dht("2001:db8::1:1", "2001:db8:1::2", 1), now);
        v.add(dht("2001:db8::1:2", "2001:db8:1::2", 1), now);
        assert_eq!(v.external_ipv6(), Some("2001:db8:1::2".parse().unwrap()));
        assert_eq!(v.external_ipv4(), None);
    }

    #[test]
    fn public_ranges() {
        for a in [
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.1",
            "127.0.0.1",
            "169.254.1.1",
            "203.0.113.1",
            "0.1.2.3",
            "fd00::1",
            "fe80::1",
            "::1",
        ] {
            assert!(!is_public(ip(a)), "{a}");
        }
        for a in ["57.66.2.1", "100.128.0.1", "8.8.8.8", "2001:db9::1"] {
            assert!(is_public(ip(a)), "{a}");
        }
    }
}
