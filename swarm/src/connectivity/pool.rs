//! Known peer addresses of one torrent and whether to dial them: a bounded pool with
//! exponential back-off, so an unreachable peer costs a handful of attempts over an hour and
//! then nothing, while a reachable one is retried soon after it drops.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Most addresses remembered per torrent. New addresses beyond it are ignored until old ones
/// fail out.
pub const MAX_KNOWN_PEERS: usize = 2_000;
/// Failed attempts after which an address is forgotten (addresses the user gave are kept).
pub const MAX_FAILURES: u32 = 5;
/// Wait after the first failure; doubles with each further failure.
pub const BASE_BACKOFF: Duration = Duration::from_secs(30);
/// Wait after a failure to reach an address the user gave: they asked for this peer, so it
/// is retried sooner (still doubling).
pub const MANUAL_BACKOFF: Duration = Duration::from_secs(3);
/// Upper bound of the back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);
/// Most addresses banned per torrent (peers that sent bad data).
pub const MAX_BANNED: usize = 10_000;

/// Where an address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerSource {
    /// Given by the user (`--peer`, magnet `x.pe`).
    Manual,
    /// A tracker announce.
    Tracker,
    /// The DHT.
    Dht,
    /// Peer exchange.
    Pex,
    /// Local service discovery.
    Lsd,
    /// A peer's extension handshake named its address in the other IP family.
    Handshake,
    /// The peer connected to us.
    Incoming,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Connecting,
    Connected,
}

#[derive(Debug)]
struct Known {
    source: PeerSource,
    state: State,
    failures: u32,
    next_attempt: Instant,
    /// PEX flags last heard for it.
    flags: u8,
    /// Connected peers that told us about it through PEX: they are connected to it, so they
    /// can relay a holepunch rendezvous.
    relays: Vec<SocketAddr>,
    /// When a rendezvous was last asked for it.
    punched_at: Option<Instant>,
    /// It is a seed (PEX said so, or it was closed as useless once we completed): not worth
    /// dialling while we seed too.
    seed: bool,
}

/// Most relays remembered per address.
pub const MAX_RELAYS_PER_PEER: usize = 4;
/// Least time between two rendezvous for one address.
pub const PUNCH_RETRY: Duration = Duration::from_secs(60);

/// The dialling pool of one torrent.
#[derive(Debug, Default)]
pub struct PeerPool {
    known: HashMap<SocketAddr, Known>,
    banned: HashSet<IpAddr>,
    connecting: usize,
}

impl PeerPool {
    /// Remembers `addr`. Returns whether it is new.
    pub fn add(&mut self, addr: SocketAddr, source: PeerSource, now: Instant) -> bool {
        if addr.port() == 0
            || addr.ip().is_unspecified()
            || addr.ip().is_multicast()
            || self.banned.contains(&addr.ip())
        {
            return false;
        }
        if let Some(k) = self.known.get_mut(&addr) {
            if source == PeerSource::Manual {
                k.source = source;
            }
            return false;
        }
        if self.known.len() >= MAX_KNOWN_PEERS && source != PeerSource::Manual {
            return false;
        }
        self.known.insert(
            addr,
            Known {
                source,
                state: State::Idle,
                failures: 0,
                next_attempt: now,
                flags: 0,
                relays: Vec::new(),
                punched_at: None,
                seed: false,
            },
        );
        true
    }

    /// Remembers an address heard through PEX from the connected peer at `via`.
    pub fn add_pex(&mut self, addr: SocketAddr, flags: u8, via: SocketAddr, now: Instant) {
        self.add(addr, PeerSource::Pex, now);
        if let Some(k) = self.known.get_mut(&addr) {
            k.flags = flags;
            k.seed = flags & crate::wire::PexFlags::SEED != 0;
            if !k.relays.contains(&via) {
                if k.relays.len() >= MAX_RELAYS_PER_PEER {
                    k.relays.remove(0);
                }
                k.relays.push(via);
            }
        }
    }

    /// If `addr` speaks holepunch and was not punched toward lately, the relays to ask
    /// (most recent first); marks the attempt.
    pub fn punch_candidates(&mut self, addr: SocketAddr, now: Instant) -> Vec<SocketAddr> {
        let Some(k) = self.known.get_mut(&addr) else {
            return vec![];
        };
        let holepunch = k.flags & crate::wire::PexFlags::HOLEPUNCH != 0;
        if !holepunch
            || k.relays.is_empty()
            || k.state == State::Connected
            || k.punched_at
                .is_some_and(|t| now.duration_since(t) < PUNCH_RETRY)
        {
            return vec![];
        }
        k.punched_at = Some(now);
        k.relays.iter().rev().copied().collect()
    }

    /// Whether PEX said the address accepted an outgoing connection from someone.
    pub fn known_reachable(&self, addr: &SocketAddr) -> bool {
        self.known
            .get(addr)
            .is_some_and(|k| k.flags & crate::wire::PexFlags::REACHABLE != 0)
    }

    /// Whether PEX said `addr` speaks holepunch but has not been reached by an outgoing
    /// connection (no `reachable` flag): most likely behind a NAT or firewall, so a direct
    /// dial alone would only time out. Such a peer gets a rendezvous along with the dial
    /// (BEP 55 is for peers "that cannot receive inbound connections").
    pub fn wants_rendezvous(&self, addr: &SocketAddr) -> bool {
        use crate::wire::PexFlags;
        self.known.get(addr).is_some_and(|k| {
            k.source == PeerSource::Pex
                && k.flags & PexFlags::HOLEPUNCH != 0
                && k.flags & PexFlags::REACHABLE == 0
                && !k.relays.is_empty()
        })
    }

    /// Whether `addr` is known to be a seed (from PEX flags or an earlier connection).
    pub fn is_seed(&self, addr: &SocketAddr) -> bool {
        self.known.get(addr).is_some_and(|k| k.seed)
    }

    /// Remembers that `addr` is a seed.
    pub fn mark_seed(&mut self, addr: SocketAddr) {
        if let Some(k) = self.known.get_mut(&addr) {
            k.seed = true;
        }
    }

    /// Whether a connection to `addr` is up.
    pub fn is_connected(&self, addr: &SocketAddr) -> bool {
        self.known
            .get(addr)
            .is_some_and(|k| k.state == State::Connected)
    }

    /// Up to `n` addresses to dial now, fewest failures first; they are marked connecting.
    /// With `skip_seeds` (we seed ourselves), known seeds are left alone.
    pub fn next_to_dial(&mut self, now: Instant, n: usize, skip_seeds: bool) -> Vec<SocketAddr> {
        let mut ready: Vec<(u32, bool, SocketAddr)> = self
            .known
            .iter()
            .filter(|(_, k)| {
                k.state == State::Idle && k.next_attempt <= now && !(skip_seeds && k.seed)
            })
            .map(|(a, k)| (k.failures, k.source != PeerSource::Manual, *a))
            .collect();
        ready.sort_unstable();
        ready.truncate(n);
        for (_, _, a) in &ready {
            self.known.get_mut(a).expect("present").state = State::Connecting;
            self.connecting += 1;
        }
        ready.into_iter().map(|(_, _, a)| a).collect()
    }

    /// Addresses being dialled now.
    pub fn connecting(&self) -> usize {
        self.connecting
    }

    /// Addresses known.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// True when no address is known.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    fn leave_connecting(&mut self, k: &mut Known) {
        if k.state == State::Connecting {
            self.connecting -= 1;
        }
    }

    /// A dial failed.
    pub fn dial_failed(&mut self, addr: SocketAddr, now: Instant) {
        let Some(mut k) = self.known.remove(&addr) else {
            return;
        };
        self.leave_connecting(&mut k);
        k.failures += 1;
        if k.failures >= MAX_FAILURES && k.source != PeerSource::Manual {
            return;
        }
        let shift = (k.failures - 1).min(10);
        let base = if k.source == PeerSource::Manual {
            MANUAL_BACKOFF
        } else {
            BASE_BACKOFF
        };
        k.next_attempt = now + (base * (1 << shift)).min(MAX_BACKOFF);
        k.state = State::Idle;
        self.known.insert(addr, k);
    }

    /// A connection to or from `addr` is up.
    pub fn connected(&mut self, addr: SocketAddr, source: PeerSource, now: Instant) {
        self.add(addr, source, now);
        if let Some(mut k) = self.known.remove(&addr) {
            self.leave_connecting(&mut k);
            k.state = State::Connected;
            k.failures = 0;
            self.known.insert(addr, k);
        }
    }

    /// A connection ended; the address may be dialled again after a short wait.
    pub fn disconnected(&mut self, addr: SocketAddr, now: Instant) {
        if let Some(k) = self.known.get_mut(&addr) {
            if k.state == State::Connected {
                k.state = State::Idle;
                k.next_attempt = now + BASE_BACKOFF;
            }
        }
    }

    /// Bans an address's IP: forgotten now and refused later.
    pub fn ban(&mut self, ip: IpAddr) {
        if self.banned.len() < MAX_BANNED {
            self.banned.insert(ip);
        }
        let gone: Vec<SocketAddr> = self
            .known
            .keys()
            .filter(|a| a.ip() == ip)
            .copied()
            .collect();
        for a in gone {
            if let Some(mut k) = self.known.remove(&a) {
                self.leave_connecting(&mut k);
            }
        }
    }

    /// Whether `ip` is banned.
    pub fn is_banned(&self, ip: &IpAddr) -> bool {
        self.banned.contains(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(p: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], p))
    }

    #[test]
    fn backoff_then_forget() {
        let mut pool = PeerPool::default();
        let t = Instant::now();
        assert!(pool.add(a(1), PeerSource::Tracker, t));
        assert!(!pool.add(a(1), PeerSource::Dht, t));
        assert!(!pool.add(a(0), PeerSource::Dht, t));
        let mut now = t;
        for attempt in 1..=MAX_FAILURES {
            assert_eq!(
                pool.next_to_dial(now, 10, false),
                vec![a(1)],
                "attempt {attempt}"
            );
            assert_eq!(
                pool.next_to_dial(now, 10, false),
                vec![],
                "not dialled twice at once"
            );
            pool.dial_failed(a(1), now);
            assert_eq!(pool.connecting(), 0);
            assert_eq!(
                pool.next_to_dial(now + Duration::from_secs(1), 10, false),
                vec![],
                "backing off"
            );
            now += MAX_BACKOFF;
        }
        assert!(pool.is_empty(), "forgotten after {MAX_FAILURES} failures");
    }

    #[test]
    fn manual_peers_are_kept_and_preferred() {
        let mut pool = PeerPool::default();
        let t = Instant::now();
        pool.add(a(1), PeerSource::Tracker, t);
        pool.add(a(2), PeerSource::Manual, t);
        assert_eq!(pool.next_to_dial(t, 1, false), vec![a(2)]);
        let mut now = t;
        for _ in 0..MAX_FAILURES + 2 {
            pool.dial_failed(a(2), now);
            now += MAX_BACKOFF;
        }
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn bounded_and_bans() {
        let mut pool = PeerPool::default();
        let t = Instant::now();
        for i in 0..(MAX_KNOWN_PEERS as u32 + 50) {
            pool.add(
                SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 1)),
                PeerSource::Pex,
                t,
            );
        }
        assert_eq!(pool.len(), MAX_KNOWN_PEERS);
        pool.ban(std::net::Ipv4Addr::from(0x0a00_0001).into());
        assert_eq!(pool.len(), MAX_KNOWN_PEERS - 1);
        assert!(!pool.add(SocketAddr::from(([10, 0, 0, 1], 2)), PeerSource::Manual, t));
    }

    #[test]
    fn unreachable_holepunch_peers_want_a_rendezvous_with_the_dial() {
        use crate::wire::PexFlags;
        let mut pool = PeerPool::default();
        let t = Instant::now();
        let relay = a(100);
        pool.add_pex(a(1), PexFlags::HOLEPUNCH, relay, t);
        pool.add_pex(a(2), PexFlags::HOLEPUNCH | PexFlags::REACHABLE, relay, t);
        pool.add_pex(a(3), 0, relay, t);
        pool.add(a(4), PeerSource::Tracker, t);
        assert!(
            pool.wants_rendezvous(&a(1)),
            "NATed by the look of it, and speaks holepunch"
        );
        assert!(
            !pool.wants_rendezvous(&a(2)),
            "somebody dialled it: try directly first"
        );
        assert!(!pool.wants_rendezvous(&a(3)), "no holepunch");
        assert!(!pool.wants_rendezvous(&a(4)), "no relay");
        assert_eq!(pool.punch_candidates(a(1), t), vec![relay]);
        assert!(
            pool.punch_candidates(a(1), t).is_empty(),
            "once per retry interval"
        );
    }

    #[test]
    fn reconnect_after_disconnect() {
        let mut pool = PeerPool::default();
        let t = Instant::now();
        pool.connected(a(5), PeerSource::Incoming, t);
        assert!(pool.next_to_dial(t, 5, false).is_empty());
        pool.disconnected(a(5), t);
        assert!(pool.next_to_dial(t, 5, false).is_empty());
        assert_eq!(pool.next_to_dial(t + BASE_BACKOFF, 5, false), vec![a(5)]);
    }
}
