//! The verified-node cache of a bootstrap router: up to millions of nodes that answered us,
//! kept in one flat, fixed-size array so that memory per node is a known constant.
//!
//! Layout: `2^bits` buckets of [`SLOTS_PER_BUCKET`] fixed-size records, a bucket chosen by the
//! top `bits` bits of the node ID. A record starts with the node's compact form (BEP 5
//! "Contact Encoding": ID, IP, port) so an answer copies it straight into its `nodes` string,
//! followed by the time it last answered and a state byte. Live records sit at the front of
//! their bucket, and a byte per bucket counts them.
//!
//! Finding the nodes closest to a target walks buckets in XOR order of their index (`b ^ 0`,
//! `b ^ 1`, …): every node of bucket `b ^ x` is closer to the target than every node of
//! `b ^ y` for `x < y`, so the walk stops at the first bucket that completes K and the answer is
//! exact. With BEP 42 IDs the top 21 bits follow from the IP, so one IPv4 address can occupy at
//! most eight buckets (its `r` values) while `bits <= 21`: a single host cannot flood the cache.
//!
//! Memory: [`RECORD_LEN_V4`] (32) bytes per IPv4 slot and [`RECORD_LEN_V6`] (48) per IPv6 slot,
//! plus one byte per bucket of eight. The array is allocated zeroed, so pages the kernel has
//! not handed out yet cost nothing until a node lands in them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::compact::{NODE_V4_LEN, NODE_V6_LEN};
use crate::id::{Distance, NodeId};
use crate::routing::K;

/// Records per bucket: one K-bucket's worth, so a full bucket answers a query by itself.
pub const SLOTS_PER_BUCKET: usize = K;

/// Bytes per IPv4 record: 26 compact-node bytes, 4 of answer time, 1 state byte, 1 spare.
pub const RECORD_LEN_V4: usize = 32;

/// Bytes per IPv6 record: 38 compact-node bytes, 4 of answer time, 1 state byte, 5 spare.
pub const RECORD_LEN_V6: usize = 48;

/// Most buckets looked at to answer one query. In a well-filled cache the first one or two
/// buckets suffice; the bound keeps a sparse cache (just after start) from turning each query
/// into a scan. Callers top a short answer up from elsewhere (the routing table).
pub const MAX_SCAN_BUCKETS: usize = 512;

/// Most unanswered re-verification pings before a node is dropped.
pub const MAX_MISSED_PINGS: u8 = 2;

/// Largest bucket-index width: 2^24 buckets, 134 M slots.
const MAX_BITS: u32 = 24;

/// State byte: a re-verification ping is outstanding.
const PENDING: u8 = 0x01;
/// State byte: missed pings in bits 1–2.
const MISSED_SHIFT: u8 = 1;
const MISSED_MASK: u8 = 0x06;

/// What [`NodeCache::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheInsert {
    /// A new node took a free slot.
    Added,
    /// A new node took the slot of a stale or failing one.
    Replaced,
    /// The node was present; its answer time was renewed.
    Refreshed,
    /// Its bucket is full of nodes in good standing; the newcomer is not kept.
    Full,
    /// The ID is held by a live node at another address (kept), or the IP is already present in
    /// the bucket while one node per IP is enforced.
    Conflict,
}

/// A node picked for re-verification by [`NodeCache::sweep`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reverify {
    /// Its ID.
    pub id: NodeId,
    /// Its address.
    pub addr: SocketAddr,
}

/// A compact, bounded cache of verified nodes of one address family.
#[derive(Debug, Clone)]
pub struct NodeCache {
    v6: bool,
    rec: usize,
    bits: u32,
    records: Vec<u8>,
    counts: Vec<u8>,
    len: usize,
    failing: usize,
    one_per_ip: bool,
    cursor: usize,
}

impl NodeCache {
    /// A cache of at least `capacity` slots (rounded up to a power of two times
    /// [`SLOTS_PER_BUCKET`], at most 2^24 buckets) for IPv4 or IPv6 nodes. With `one_per_ip`,
    /// a bucket holds at most one node per IP address.
    pub fn new(capacity: usize, v6: bool, one_per_ip: bool) -> NodeCache {
        let buckets = capacity
            .div_ceil(SLOTS_PER_BUCKET)
            .max(1)
            .next_power_of_two();
        let bits = buckets.trailing_zeros().min(MAX_BITS);
        let buckets = 1usize << bits;
        let rec = if v6 { RECORD_LEN_V6 } else { RECORD_LEN_V4 };
        NodeCache {
            v6,
            rec,
            bits,
            // `vec![0; n]` asks the allocator for zeroed memory: untouched pages stay unmapped.
            records: vec![0u8; buckets * SLOTS_PER_BUCKET * rec],
            counts: vec![0u8; buckets],
            len: 0,
            failing: 0,
            one_per_ip,
            cursor: 0,
        }
    }

    /// Total slots.
    pub fn capacity(&self) -> usize {
        self.counts.len() * SLOTS_PER_BUCKET
    }

    /// Nodes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no node is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Nodes that missed their last re-verification ping (not handed out until they answer).
    pub fn failing(&self) -> usize {
        self.failing
    }

    /// Bytes allocated for records and bucket counts.
    pub fn allocated_bytes(&self) -> usize {
        self.records.len() + self.counts.len()
    }

    /// Length of a node's compact form in this family (26 or 38).
    pub fn node_len(&self) -> usize {
        if self.v6 {
            NODE_V6_LEN
        } else {
            NODE_V4_LEN
        }
    }

    fn bucket_of(&self, id: &[u8; 20]) -> usize {
        if self.bits == 0 {
            return 0;
        }
        let top = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
        (top >> (32 - self.bits)) as usize
    }

    fn slot(&self, bucket: usize, i: usize) -> usize {
        bucket * SLOTS_PER_BUCKET + i
    }

    fn record(&self, slot: usize) -> &[u8] {
        &self.records[slot * self.rec..(slot + 1) * self.rec]
    }

    fn record_mut(&mut self, slot: usize) -> &mut [u8] {
        &mut self.records[slot * self.rec..(slot + 1) * self.rec]
    }

    /// The compact node bytes (ID, IP, port) of a slot.
    pub fn node_bytes(&self, slot: usize) -> &[u8] {
        &self.record(slot)[..self.node_len()]
    }

    fn id_at(&self, slot: usize) -> &[u8; 20] {
        self.record(slot)[..20].try_into().unwrap_or(&[0; 20])
    }

    fn addr_bytes<'a>(&self, r: &'a [u8]) -> &'a [u8] {
        &r[20..self.node_len()]
    }

    fn seen_at(&self, slot: usize) -> u32 {
        let o = self.node_len();
        let r = self.record(slot);
        u32::from_le_bytes([r[o], r[o + 1], r[o + 2], r[o + 3]])
    }

    fn state(&self, slot: usize) -> u8 {
        self.record(slot)[self.node_len() + 4]
    }

    fn set_seen(&mut self, slot: usize, secs: u32, state: u8) {
        let o = self.node_len();
        let r = self.record_mut(slot);
        r[o..o + 4].copy_from_slice(&secs.to_le_bytes());
        r[o + 4] = state;
    }

    fn missed(state: u8) -> u8 {
        (state & MISSED_MASK) >> MISSED_SHIFT
    }

    /// True if the node in `slot` may be handed out: it has missed no ping and answered within
    /// `max_age` seconds of `now`.
    fn usable(&self, slot: usize, now: u32, max_age: u32) -> bool {
        Self::missed(self.state(slot)) == 0 && now.saturating_sub(self.seen_at(slot)) <= max_age
    }

    fn encode(&self, id: &NodeId, addr: &SocketAddr, out: &mut [u8]) {
        out[..20].copy_from_slice(&id.0);
        match addr.ip() {
            IpAddr::V4(ip) => out[20..24].copy_from_slice(&ip.octets()),
            IpAddr::V6(ip) => out[20..36].copy_from_slice(&ip.octets()),
        }
        let p = self.node_len() - 2;
        out[p..p + 2].copy_from_slice(&addr.port().to_be_bytes());
    }

    /// The address stored in a record.
    fn addr_of(&self, slot: usize) -> SocketAddr {
        let a = self.addr_bytes(self.record(slot));
        if self.v6 {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&a[..16]);
            let port = u16::from_be_bytes([a[16], a[17]]);
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0))
        } else {
            let port = u16::from_be_bytes([a[4], a[5]]);
            SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::new(a[0], a[1], a[2], a[3]),
                port,
            ))
        }
    }

    /// Records that `id` at `addr` answered us at `now` (seconds on the caller's clock). A new
    /// node takes a free slot, else the slot of a node that missed a ping, else that of the node
    /// heard from longest ago if that was more than `stale_after` seconds back.
    pub fn insert(
        &mut self,
        id: NodeId,
        addr: SocketAddr,
        now: u32,
        stale_after: u32,
    ) -> CacheInsert {
        debug_assert_eq!(addr.is_ipv6(), self.v6);
        let mut compact = [0u8; NODE_V6_LEN];
        let n = self.node_len();
        self.encode(&id, &addr, &mut compact);
        let ip_len = n - 22;
        let b = self.bucket_of(&id.0);
        let count = usize::from(self.counts[b]);
        let mut victim: Option<(usize, u8, u32)> = None;
        for i in 0..count {
            let s = self.slot(b, i);
            let r = self.record(s);
            let same_id = r[..20] == compact[..20];
            let same_addr = r[20..n] == compact[20..n];
            if same_id || same_addr {
                if same_id && !same_addr && self.usable(s, now, stale_after) {
                    return CacheInsert::Conflict;
                }
                // Same node, or a node that restarted with a new ID or moved to a new address.
                if Self::missed(self.state(s)) > 0 {
                    self.failing -= 1;
                }
                self.record_mut(s)[..n].copy_from_slice(&compact[..n]);
                self.set_seen(s, now, 0);
                return CacheInsert::Refreshed;
            }
            if self.one_per_ip && r[20..20 + ip_len] == compact[20..20 + ip_len] {
                return CacheInsert::Conflict;
            }
            let (state, seen) = (self.state(s), self.seen_at(s));
            let rank = (Self::missed(state), now.saturating_sub(seen));
            if victim.is_none_or(|(_, m, age)| rank > (m, age)) {
                victim = Some((s, rank.0, rank.1));
            }
        }
        if count < SLOTS_PER_BUCKET {
            let s = self.slot(b, count);
            self.record_mut(s)[..n].copy_from_slice(&compact[..n]);
            self.set_seen(s, now, 0);
            self.counts[b] += 1;
            self.len += 1;
            return CacheInsert::Added;
        }
        match victim {
            Some((s, missed, age)) if missed > 0 || age > stale_after => {
                if missed > 0 {
                    self.failing -= 1;
                }
                self.record_mut(s)[..n].copy_from_slice(&compact[..n]);
                self.set_seen(s, now, 0);
                CacheInsert::Replaced
            }
            _ => CacheInsert::Full,
        }
    }

    /// True if `id` at `addr` is held.
    pub fn contains(&self, id: &NodeId, addr: &SocketAddr) -> bool {
        let mut compact = [0u8; NODE_V6_LEN];
        self.encode(id, addr, &mut compact);
        let n = self.node_len();
        let b = self.bucket_of(&id.0);
        (0..usize::from(self.counts[b])).any(|i| self.node_bytes(self.slot(b, i)) == &compact[..n])
    }

    /// Removes `id` at `addr` if held. Returns whether it was.
    pub fn remove(&mut self, id: &NodeId, addr: &SocketAddr) -> bool {
        let mut compact = [0u8; NODE_V6_LEN];
        self.encode(id, addr, &mut compact);
        let n = self.node_len();
        let b = self.bucket_of(&id.0);
        let found = (0..usize::from(self.counts[b]))
            .find(|&i| self.node_bytes(self.slot(b, i)) == &compact[..n]);
        match found {
            Some(i) => {
                self.remove_at(b, i);
                true
            }
            None => false,
        }
    }

    /// Removes the record at index `i` of bucket `b`, moving the bucket's last record into it.
    fn remove_at(&mut self, b: usize, i: usize) {
        let s = self.slot(b, i);
        if Self::missed(self.state(s)) > 0 {
            self.failing -= 1;
        }
        let last = self.slot(b, usize::from(self.counts[b]) - 1);
        if last != s {
            let rec = self.rec;
            self.records
                .copy_within(last * rec..(last + 1) * rec, s * rec);
        }
        let rec = self.rec;
        self.records[last * rec..(last + 1) * rec].fill(0);
        self.counts[b] -= 1;
        self.len -= 1;
    }

    /// Writes into `out` the slots of up to `out.len()` (at most K) usable nodes closest to
    /// `target`, nearest first, and returns how many. Nodes are usable when they have missed no
    /// ping and answered within `max_age` seconds of `now`. Looks at no more than
    /// [`MAX_SCAN_BUCKETS`] buckets.
    pub fn closest(&self, target: &[u8; 20], now: u32, max_age: u32, out: &mut [u32]) -> usize {
        let k = out.len().min(K);
        if k == 0 || self.len == 0 {
            return 0;
        }
        let mut dist = [Distance([0xff; 20]); K];
        let mut n = 0;
        let home = self.bucket_of(target);
        let buckets = self.counts.len();
        let limit = buckets.min(MAX_SCAN_BUCKETS);
        let mut x = 0;
        while x < limit {
            let b = home ^ x;
            // `home ^ y` for y in an aligned group of eight is an aligned group of eight
            // buckets: a sparse cache skips an empty group with one load.
            if x % 8 == 0 && limit - x >= 8 {
                let base = b & !7;
                let group: [u8; 8] = self.counts[base..base + 8].try_into().unwrap_or([1; 8]);
                if u64::from_ne_bytes(group) == 0 {
                    x += 8;
                    continue;
                }
            }
            x += 1;
            let count = usize::from(self.counts[b]);
            for i in 0..count {
                let s = self.slot(b, i);
                if !self.usable(s, now, max_age) {
                    continue;
                }
                let d = Distance::between(target, self.id_at(s));
                if n == k && d >= dist[k - 1] {
                    continue;
                }
                let mut pos = n.min(k - 1);
                while pos > 0 && dist[pos - 1] > d {
                    dist[pos] = dist[pos - 1];
                    out[pos] = out[pos - 1];
                    pos -= 1;
                }
                dist[pos] = d;
                out[pos] = s as u32;
                n = (n + 1).min(k);
            }
            // Every node of a later bucket is farther than every node seen so far.
            if n == k {
                break;
            }
        }
        n
    }

    /// Visits up to `max_buckets` buckets from where the last sweep stopped and returns, in
    /// `out`, nodes due for re-verification: those that answered more than `reverify_after`
    /// seconds ago. A node whose previous re-verification ping went unanswered counts a miss;
    /// after [`MAX_MISSED_PINGS`] misses it is removed. Returns how many nodes were removed.
    pub fn sweep(
        &mut self,
        now: u32,
        reverify_after: u32,
        max_buckets: usize,
        max_out: usize,
        out: &mut Vec<Reverify>,
    ) -> usize {
        let mut removed = 0;
        let buckets = self.counts.len();
        for _ in 0..max_buckets.min(buckets) {
            if out.len() >= max_out {
                break;
            }
            let b = self.cursor;
            self.cursor = (self.cursor + 1) % buckets;
            let mut i = 0;
            while i < usize::from(self.counts[b]) {
                let s = self.slot(b, i);
                if now.saturating_sub(self.seen_at(s)) <= reverify_after {
                    i += 1;
                    continue;
                }
                let state = self.state(s);
                let mut missed = Self::missed(state);
                if state & PENDING != 0 {
                    if missed == 0 {
                        self.failing += 1;
                    }
                    missed += 1;
                }
                if missed >= MAX_MISSED_PINGS {
                    self.remove_at(b, i);
                    removed += 1;
                    continue;
                }
                let seen = self.seen_at(s);
                self.set_seen(s, seen, PENDING | (missed << MISSED_SHIFT));
                out.push(Reverify {
                    id: NodeId(*self.id_at(s)),
                    addr: self.addr_of(s),
                });
                i += 1;
            }
        }
        removed
    }

    /// All held nodes, bucket by bucket.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, SocketAddr)> + '_ {
        (0..self.counts.len()).flat_map(move |b| {
            (0..usize::from(self.counts[b])).map(move |i| {
                let s = self.slot(b, i);
                (NodeId(*self.id_at(s)), self.addr_of(s))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + i), 6881))
    }

    #[test]
    fn capacity_rounds_up_to_whole_buckets() {
        assert_eq!(NodeCache::new(1, false, false).capacity(), 8);
        assert_eq!(NodeCache::new(1000, false, false).capacity(), 1024);
        let c = NodeCache::new(1_000_000, false, false);
        assert_eq!(c.capacity(), 1 << 20);
        assert_eq!(c.allocated_bytes(), (1 << 20) * 32 + (1 << 17));
        assert_eq!(
            NodeCache::new(100, true, false).allocated_bytes(),
            128 * 48 + 16
        );
    }

    #[test]
    fn closest_is_exact_and_skips_failing_nodes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut c = NodeCache::new(4096, false, false);
        let mut all = Vec::new();
        for i in 0..2000 {
            let id = NodeId(rng.random());
            if c.insert(id, addr(i), 100, 600) == CacheInsert::Added {
                all.push((id, addr(i)));
            }
        }
        assert_eq!(c.len(), all.len());
        for _ in 0..200 {
            let target: [u8; 20] = rng.random();
            let mut out = [0u32; K];
            let n = c.closest(&target, 100, 600, &mut out);
            assert_eq!(n, K);
            let got: Vec<[u8; 20]> = out.iter().map(|&s| *c.id_at(s as usize)).collect();
            let mut want: Vec<[u8; 20]> = all.iter().map(|(id, _)| id.0).collect();
            want.sort_by_key(|id| Distance::between(&target, id));
            assert_eq!(got, want[..K]);
        }
        // Nodes too old to vouch for are not handed out.
        let mut out = [0u32; K];
        assert_eq!(c.closest(&[0; 20], 100 + 601, 600, &mut out), 0);
    }

    #[test]
    fn records_are_compact_nodes() {
        let mut c = NodeCache::new(64, true, false);
        let a: SocketAddr = "[2001:db8::7]:4242".parse().unwrap();
        c.insert(NodeId([0x42; 20]), a, 5, 600);
        let mut out = [0u32; 1];
        assert_eq!(c.closest(&[0x42; 20], 5, 600, &mut out), 1);
        let bytes = c.node_bytes(out[0] as usize);
        let decoded: Vec<_> = crate::compact::decode_nodes(bytes, true).collect();
        assert_eq!(decoded[0].id, NodeId([0x42; 20]));
        assert_eq!(decoded[0].addr, a);
        assert_eq!(c.iter().collect::<Vec<_>>(), vec![(NodeId([0x42; 20]), a)]);
    }

    #[test]
    fn full_buckets_keep_good_nodes_and_replace_stale_ones() {
        let mut c = NodeCache::new(8, false, false);
        for i in 0..8 {
            assert_eq!(
                c.insert(NodeId([i as u8; 20]), addr(i), 10, 600),
                CacheInsert::Added
            );
        }
        assert_eq!(
            c.insert(NodeId([99; 20]), addr(99), 20, 600),
            CacheInsert::Full
        );
        assert_eq!(
            c.insert(NodeId([3; 20]), addr(3), 650, 600),
            CacheInsert::Refreshed
        );
        // Long after: every node but the refreshed one is stale; the oldest makes room.
        assert_eq!(
            c.insert(NodeId([99; 20]), addr(99), 700, 600),
            CacheInsert::Replaced
        );
        assert_eq!(c.len(), 8);
        assert!(c.contains(&NodeId([3; 20]), &addr(3)));
        assert!(c.contains(&NodeId([99; 20]), &addr(99)));
        // A live ID claimed from another address is refused; a new ID at a known address
        // replaces the old one (the node restarted).
        assert_eq!(
            c.insert(NodeId([3; 20]), addr(50), 700, 600),
            CacheInsert::Conflict
        );
        assert_eq!(
            c.insert(NodeId([77; 20]), addr(99), 700, 600),
            CacheInsert::Refreshed
        );
        assert!(!c.contains(&NodeId([99; 20]), &addr(99)));
        assert!(c.contains(&NodeId([77; 20]), &addr(99)));
    }

    #[test]
    fn one_node_per_ip_per_bucket() {
        let mut c = NodeCache::new(8, false, true);
        let ip = |p| SocketAddr::from(([10, 0, 0, 1], p));
        assert_eq!(c.insert(NodeId([1; 20]), ip(1), 0, 600), CacheInsert::Added);
        assert_eq!(
            c.insert(NodeId([2; 20]), ip(2), 0, 600),
            CacheInsert::Conflict
        );
    }

    #[test]
    fn sweep_pings_stale_nodes_and_drops_silent_ones() {
        let mut c = NodeCache::new(64, false, false);
        // Spread over the eight buckets, at most three per bucket.
        let id = |i: u32| NodeId([(i as u8).wrapping_mul(37); 20]);
        for i in 0..20 {
            assert_eq!(c.insert(id(i), addr(i), 0, 600), CacheInsert::Added);
        }
        c.insert(NodeId([0xee; 20]), addr(0xee), 500, 600);
        let mut out = Vec::new();
        assert_eq!(c.sweep(300, 600, 1000, 1000, &mut out), 0);
        assert!(out.is_empty(), "nothing due yet");
        // At 700 s the first twenty are due; the late one is not.
        c.sweep(700, 600, 1000, 1000, &mut out);
        assert_eq!(out.len(), 20);
        assert!(!out.iter().any(|r| r.id == NodeId([0xee; 20])));
        // Even ones answer; odd ones miss the ping and are not handed out any more.
        let answers =
            |r: &Reverify| r.id.0[0] == 0xee || (0..20).any(|i| i % 2 == 0 && id(i) == r.id);
        for r in out.iter().filter(|r| answers(r)) {
            assert_eq!(c.insert(r.id, r.addr, 701, 600), CacheInsert::Refreshed);
        }
        out.clear();
        c.sweep(1400, 600, 1000, 1000, &mut out);
        assert_eq!(c.failing(), 10);
        let mut slots = [0u32; K];
        let silent = id(1);
        let n = c.closest(&silent.0, 1400, 2000, &mut slots);
        assert!(n > 0);
        assert!(slots[..n].iter().all(|&s| *c.id_at(s as usize) != silent.0));
        // The even ones answer again; a second miss drops the odd ones.
        for r in out.iter().filter(|r| answers(r)) {
            c.insert(r.id, r.addr, 1401, 600);
        }
        out.clear();
        let removed = c.sweep(2100, 600, 1000, 1000, &mut out);
        assert_eq!(removed, 10);
        assert_eq!(c.failing(), 0);
        assert_eq!(c.len(), 11);
    }

    #[test]
    fn removal_keeps_buckets_packed() {
        let mut c = NodeCache::new(8, false, false);
        for i in 0..5 {
            c.insert(NodeId([i as u8; 20]), addr(i), 0, 600);
        }
        assert!(c.remove(&NodeId([1; 20]), &addr(1)));
        assert!(!c.remove(&NodeId([1; 20]), &addr(1)));
        assert_eq!(c.len(), 4);
        let ids: Vec<_> = c.iter().map(|(id, _)| id.0[0]).collect();
        assert_eq!(ids, vec![0, 4, 2, 3]);
    }
}
