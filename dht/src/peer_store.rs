//! Peers announced to us (BEP 5 `announce_peer`), served back in `get_peers` responses and
//! sampled for `sample_infohashes` (BEP 51).
//!
//! Bounded three ways, each a named limit: info-hashes, peers per info-hash, and peers in
//! total. When a bound is hit, a random info-hash (other than the one being announced) is
//! evicted, so a flood of junk announces cannot lock out real swarms for the whole expiry time;
//! within a full swarm, the oldest announce makes room.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::id::InfoHash;

/// How long an announced peer is kept (BEP 5 leaves it to the node; 30 minutes is customary).
pub const PEER_TTL: Duration = Duration::from_secs(30 * 60);

/// Default most info-hashes stored.
pub const DEFAULT_MAX_INFO_HASHES: usize = 5_000;
/// Default most peers stored per info-hash.
pub const DEFAULT_MAX_PEERS_PER_INFO_HASH: usize = 200;
/// Default most peers stored in total.
pub const DEFAULT_MAX_PEERS_TOTAL: usize = 100_000;

/// Limits of a [`PeerStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerStoreLimits {
    /// Most info-hashes stored.
    pub max_info_hashes: usize,
    /// Most peers per info-hash.
    pub max_peers_per_info_hash: usize,
    /// Most peers overall.
    pub max_peers_total: usize,
}

impl Default for PeerStoreLimits {
    fn default() -> Self {
        PeerStoreLimits {
            max_info_hashes: DEFAULT_MAX_INFO_HASHES,
            max_peers_per_info_hash: DEFAULT_MAX_PEERS_PER_INFO_HASH,
            max_peers_total: DEFAULT_MAX_PEERS_TOTAL,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Stored {
    addr: SocketAddr,
    expires: Instant,
}

/// Announced peers by info-hash.
#[derive(Debug, Clone)]
pub struct PeerStore {
    limits: PeerStoreLimits,
    index: HashMap<InfoHash, usize>,
    swarms: Vec<(InfoHash, Vec<Stored>)>,
    total: usize,
}

impl PeerStore {
    /// An empty store.
    pub fn new(limits: PeerStoreLimits) -> PeerStore {
        PeerStore {
            limits,
            index: HashMap::new(),
            swarms: Vec::new(),
            total: 0,
        }
    }

    /// Number of info-hashes stored.
    pub fn info_hashes(&self) -> usize {
        self.swarms.len()
    }

    /// Number of peers stored.
    pub fn peers(&self) -> usize {
        self.total
    }

    fn evict_swarm(&mut self, i: usize) {
        let (ih, peers) = self.swarms.swap_remove(i);
        self.index.remove(&ih);
        self.total -= peers.len();
        if let Some((moved, _)) = self.swarms.get(i) {
            self.index.insert(*moved, i);
        }
    }

    fn evict_random_except(&mut self, keep: Option<usize>, rng: &mut impl Rng) -> bool {
        let n = self.swarms.len();
        if n == 0 || (n == 1 && keep.is_some()) {
            return false;
        }
        let mut i = rng.random_range(0..n);
        if Some(i) == keep {
            i = (i + 1) % n;
        }
        self.evict_swarm(i);
        true
    }

    /// Stores (or refreshes) `peer` for `info_hash`. Returns false if a limit set to zero
    /// leaves no room at all.
    pub fn announce(
        &mut self,
        info_hash: InfoHash,
        peer: SocketAddr,
        now: Instant,
        rng: &mut impl Rng,
    ) -> bool {
        let expires = now + PEER_TTL;
        let limits = self.limits;
        if limits.max_info_hashes == 0
            || limits.max_peers_per_info_hash == 0
            || limits.max_peers_total == 0
        {
            return false;
        }
        if let Some(&i) = self.index.get(&info_hash) {
            let peers = &mut self.swarms[i].1;
            if let Some(p) = peers.iter_mut().find(|p| p.addr == peer) {
                p.expires = expires;
                return true;
            }
        } else {
            while self.swarms.len() >= self.limits.max_info_hashes {
                self.evict_random_except(None, rng);
            }
            self.index.insert(info_hash, self.swarms.len());
            self.swarms.push((info_hash, Vec::new()));
        }
        let mut i = self.index[&info_hash];
        if self.swarms[i].1.len() >= self.limits.max_peers_per_info_hash {
            let peers = &mut self.swarms[i].1;
            let oldest = (0..peers.len())
                .min_by_key(|&j| peers[j].expires)
                .unwrap_or(0);
            peers[oldest] = Stored {
                addr: peer,
                expires,
            };
            return true;
        }
        while self.total >= self.limits.max_peers_total {
            if !self.evict_random_except(Some(i), rng) {
                // Only this swarm is left and it holds every slot: recycle its oldest entry.
                let peers = &mut self.swarms[i].1;
                let oldest = (0..peers.len())
                    .min_by_key(|&j| peers[j].expires)
                    .unwrap_or(0);
                peers[oldest] = Stored {
                    addr: peer,
                    expires,
                };
                return true;
            }
            i = self.index[&info_hash];
        }
        self.swarms[i].1.push(Stored {
            addr: peer,
            expires,
        });
        self.total += 1;
        true
    }

    /// Appends to `out` up to `max` live peers of `info_hash` from one address family,
    /// starting at a random position so that large swarms are served in rotation.
    pub fn get(
        &self,
        info_hash: &InfoHash,
        v6: bool,
        max: usize,
        now: Instant,
        rng: &mut impl Rng,
        out: &mut Vec<SocketAddr>,
    ) {
        let Some(&i) = self.index.get(info_hash) else {
            return;
        };
        let peers = &self.swarms[i].1;
        if peers.is_empty() {
            return;
        }
        let start = rng.random_range(0..peers.len());
        let mut taken = 0;
        for j in 0..peers.len() {
            if taken >= max {
                break;
            }
            let p = &peers[(start + j) % peers.len()];
            if p.addr.is_ipv6() == v6 && p.expires > now {
                out.push(p.addr);
                taken += 1;
            }
        }
    }

    /// True if any live peer is stored for `info_hash`, in the given family.
    pub fn has_peers(&self, info_hash: &InfoHash, v6: bool, now: Instant) -> bool {
        self.index.get(info_hash).is_some_and(|&i| {
            self.swarms[i]
                .1
                .iter()
                .any(|p| p.addr.is_ipv6() == v6 && p.expires > now)
        })
    }

    /// Drops expired peers and empty info-hashes.
    pub fn expire(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.swarms.len() {
            let peers = &mut self.swarms[i].1;
            let before = peers.len();
            peers.retain(|p| p.expires > now);
            self.total -= before - peers.len();
            if peers.is_empty() {
                self.evict_swarm(i);
            } else {
                i += 1;
            }
        }
    }

    /// Up to `max` distinct stored info-hashes chosen at random (BEP 51 samples).
    pub fn sample(&self, max: usize, rng: &mut impl Rng) -> Vec<InfoHash> {
        let n = self.swarms.len();
        rand::seq::index::sample(rng, n, max.min(n))
            .into_iter()
            .map(|i| self.swarms[i].0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ih(i: u32) -> InfoHash {
        let mut b = [0u8; 20];
        b[..4].copy_from_slice(&i.to_be_bytes());
        InfoHash(b)
    }

    fn peer(i: u32) -> SocketAddr {
        SocketAddr::from((i.to_be_bytes(), 6881))
    }

    fn check_invariants(s: &PeerStore) {
        assert_eq!(
            s.total,
            s.swarms.iter().map(|(_, p)| p.len()).sum::<usize>()
        );
        assert_eq!(s.index.len(), s.swarms.len());
        for (i, (h, _)) in s.swarms.iter().enumerate() {
            assert_eq!(s.index[h], i);
        }
        assert!(s.swarms.len() <= s.limits.max_info_hashes);
        assert!(s.total <= s.limits.max_peers_total);
        assert!(s
            .swarms
            .iter()
            .all(|(_, p)| p.len() <= s.limits.max_peers_per_info_hash));
    }

    #[test]
    fn limits_hold_under_flood() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let limits = PeerStoreLimits {
            max_info_hashes: 50,
            max_peers_per_info_hash: 10,
            max_peers_total: 200,
        };
        let mut s = PeerStore::new(limits);
        let now = Instant::now();
        for i in 0..5000 {
            assert!(s.announce(ih(i % 97), peer(i), now, &mut rng));
            check_invariants(&s);
        }
        assert!(s.info_hashes() >= 20, "evictions keep the store populated");
        // The swarm just announced to always survives the eviction it triggered.
        s.announce(ih(100_000), peer(1), now, &mut rng);
        let mut out = Vec::new();
        s.get(&ih(100_000), false, 10, now, &mut rng, &mut out);
        assert_eq!(out, vec![peer(1)]);
    }

    #[test]
    fn full_swarm_recycles_oldest() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(10);
        let limits = PeerStoreLimits {
            max_info_hashes: 5,
            max_peers_per_info_hash: 3,
            max_peers_total: 100,
        };
        let mut s = PeerStore::new(limits);
        let t0 = Instant::now();
        for i in 0..3 {
            s.announce(
                ih(1),
                peer(i),
                t0 + Duration::from_secs(u64::from(i)),
                &mut rng,
            );
        }
        s.announce(ih(1), peer(9), t0 + Duration::from_secs(10), &mut rng);
        let mut out = Vec::new();
        s.get(
            &ih(1),
            false,
            10,
            t0 + Duration::from_secs(10),
            &mut rng,
            &mut out,
        );
        out.sort();
        assert_eq!(out, vec![peer(1), peer(2), peer(9)]);
    }

    #[test]
    fn peers_expire_and_families_are_separate() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut s = PeerStore::new(PeerStoreLimits::default());
        let t0 = Instant::now();
        let v6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        s.announce(ih(1), peer(1), t0, &mut rng);
        s.announce(ih(1), v6, t0 + Duration::from_secs(60), &mut rng);
        let mut out = Vec::new();
        s.get(&ih(1), true, 10, t0, &mut rng, &mut out);
        assert_eq!(out, vec![v6]);
        assert!(s.has_peers(&ih(1), false, t0));
        // Re-announcing refreshes rather than duplicates.
        s.announce(ih(1), peer(1), t0, &mut rng);
        assert_eq!(s.peers(), 2);
        let t1 = t0 + PEER_TTL;
        assert!(
            !s.has_peers(&ih(1), false, t1),
            "expired peers are not served"
        );
        s.expire(t1);
        assert_eq!((s.info_hashes(), s.peers()), (1, 1));
        s.expire(t1 + Duration::from_secs(60));
        assert_eq!((s.info_hashes(), s.peers()), (0, 0));
        check_invariants(&s);
    }

    #[test]
    fn samples_are_distinct_and_bounded() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let mut s = PeerStore::new(PeerStoreLimits::default());
        let now = Instant::now();
        for i in 0..100 {
            s.announce(ih(i), peer(i), now, &mut rng);
        }
        let mut sample = s.sample(20, &mut rng);
        assert_eq!(sample.len(), 20);
        sample.sort();
        sample.dedup();
        assert_eq!(sample.len(), 20);
        assert_eq!(s.sample(1000, &mut rng).len(), 100);
    }
}
