//! The routing table of one address family (BEP 5 "Routing Table"; BEP 32 keeps IPv4 and IPv6
//! tables apart).
//!
//! Buckets are indexed by the length of the prefix a contact shares with our own ID: bucket `i`
//! holds contacts whose first differing bit is bit `i`, and the last bucket holds everything at
//! least as close as its index. Only the last bucket (the one our own ID falls in) splits, which
//! is the bucket-splitting rule of BEP 5 in array form. Contacts enter the table only once they
//! have answered a query of ours, so spoofed senders cannot fill it.

mod bucket;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bucket::Bucket;
pub use bucket::{Entry, NodeStatus, BAD_AFTER_FAILURES, GOOD_FOR, K, REPLACEMENTS_PER_BUCKET};

use crate::compact::NodeInfo;
use crate::id::{leading_zeros, Distance, NodeId};

/// Most buckets a table can have: one per bit of the keyspace.
pub const MAX_BUCKETS: usize = 160;

/// Most contacts [`RoutingTable::closest`] returns in one call.
pub const MAX_CLOSEST: usize = 32;

/// What happened to a contact offered to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insertion {
    /// It took a free or evicted slot.
    Added,
    /// It was already there and has been refreshed.
    Updated,
    /// Its bucket is full; it waits among the replacements. If `ping` is set, that contact is
    /// questionable and should be pinged (a failure will free its slot).
    Pending {
        /// A questionable contact to check on.
        ping: Option<NodeInfo>,
    },
    /// Refused: our own ID, a conflicting address, or an IP already present.
    Rejected,
}

/// A routing table for one address family.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    own: NodeId,
    buckets: Vec<Bucket>,
    by_addr: HashMap<SocketAddr, NodeId>,
    /// IPs present when at most one contact per IP is allowed (a Sybil guard).
    ips: Option<HashSet<IpAddr>>,
}

impl RoutingTable {
    /// An empty table around `own`. With `one_per_ip`, at most one contact per IP address is kept.
    pub fn new(own: NodeId, one_per_ip: bool, now: Instant) -> RoutingTable {
        RoutingTable {
            own,
            buckets: vec![Bucket::new(now)],
            by_addr: HashMap::new(),
            ips: one_per_ip.then(HashSet::new),
        }
    }

    /// Our own ID, which the table is organised around.
    pub fn own_id(&self) -> NodeId {
        self.own
    }

    /// Number of live contacts (replacements not counted).
    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    /// True when the table holds no contacts.
    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// Number of buckets.
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    pub(crate) fn index(&self, id: &[u8; 20]) -> usize {
        let lz = leading_zeros(&Distance::between(&self.own.0, id).0);
        lz.min(self.buckets.len() - 1)
    }

    /// The contact known at `addr`.
    pub fn get(&self, addr: &SocketAddr) -> Option<&Entry> {
        let id = self.by_addr.get(addr)?;
        let b = &self.buckets[self.index(&id.0)];
        b.position(id).map(|i| &b.nodes[i])
    }

    fn get_mut(&mut self, id: &NodeId, addr: &SocketAddr) -> Option<&mut Entry> {
        let idx = self.index(&id.0);
        self.buckets[idx]
            .nodes
            .iter_mut()
            .find(|e| e.id == *id && e.addr == *addr)
    }

    /// Records that `id` at `addr` answered one of our queries.
    pub fn on_response(
        &mut self,
        id: NodeId,
        addr: SocketAddr,
        verified: bool,
        now: Instant,
    ) -> Insertion {
        self.insert(Entry::responded(id, addr, verified, now), now)
    }

    /// Offers a contact to the table.
    pub fn insert(&mut self, entry: Entry, now: Instant) -> Insertion {
        if entry.id == self.own {
            return Insertion::Rejected;
        }
        // Same address, new ID: the node restarted; forget the old identity.
        if let Some(old) = self.by_addr.get(&entry.addr).copied() {
            if old != entry.id {
                self.remove(&old, &entry.addr);
            }
        }
        loop {
            let idx = self.index(&entry.id.0);
            let can_split = idx == self.buckets.len() - 1 && self.buckets.len() < MAX_BUCKETS;
            let bucket = &mut self.buckets[idx];
            if let Some(i) = bucket.position(&entry.id) {
                let e = &mut bucket.nodes[i];
                if e.addr != entry.addr {
                    // Another address claims a live ID: keep the incumbent until it goes bad.
                    if e.status(now) != NodeStatus::Bad {
                        return Insertion::Rejected;
                    }
                    let old_addr = e.addr;
                    self.remove(&entry.id, &old_addr);
                    continue;
                }
                if entry.last_response.is_some() {
                    e.last_response = entry.last_response;
                    e.failures = 0;
                    e.pinging = false;
                    bucket.last_changed = now;
                }
                e.verified = entry.verified;
                return Insertion::Updated;
            }
            if let Some(ips) = &self.ips {
                if ips.contains(&entry.addr.ip()) {
                    return Insertion::Rejected;
                }
            }
            if bucket.nodes.len() < K {
                self.place(idx, None, entry, now);
                return Insertion::Added;
            }
            if can_split {
                self.split_last(now);
                continue;
            }
            if let Some(i) = bucket.evictable(entry.verified, now) {
                self.place(idx, Some(i), entry, now);
                return Insertion::Added;
            }
            if entry.last_response.is_none() {
                return Insertion::Rejected;
            }
            bucket.add_replacement(entry);
            let ping = bucket.ping_candidate(now).map(|i| {
                bucket.nodes[i].pinging = true;
                bucket.nodes[i].info()
            });
            return Insertion::Pending { ping };
        }
    }

    /// Puts `entry` into bucket `idx`, replacing the contact at `slot` if given.
    fn place(&mut self, idx: usize, slot: Option<usize>, entry: Entry, now: Instant) {
        if let Some(i) = slot {
            let old = self.buckets[idx].nodes.swap_remove(i);
            self.forget(&old);
        }
        self.by_addr.insert(entry.addr, entry.id);
        if let Some(ips) = &mut self.ips {
            ips.insert(entry.addr.ip());
        }
        let bucket = &mut self.buckets[idx];
        bucket.replacements.retain(|r| r.id != entry.id);
        bucket.nodes.push(entry);
        bucket.last_changed = now;
    }

    fn forget(&mut self, e: &Entry) {
        self.by_addr.remove(&e.addr);
        if let Some(ips) = &mut self.ips {
            ips.remove(&e.addr.ip());
        }
    }

    fn remove(&mut self, id: &NodeId, addr: &SocketAddr) {
        let idx = self.index(&id.0);
        let bucket = &mut self.buckets[idx];
        if let Some(i) = bucket
            .nodes
            .iter()
            .position(|e| e.id == *id && e.addr == *addr)
        {
            let old = bucket.nodes.swap_remove(i);
            self.forget(&old);
        }
    }

    fn split_last(&mut self, now: Instant) {
        let last = self.buckets.len() - 1;
        let own = self.own.0;
        let mut deeper = Bucket::new(now);
        let old = &mut self.buckets[last];
        deeper.last_changed = old.last_changed;
        let moves = |e: &Entry| leading_zeros(&Distance::between(&own, &e.id.0).0) > last;
        let (stay, go): (Vec<Entry>, Vec<Entry>) = old.nodes.drain(..).partition(|e| !moves(e));
        old.nodes = stay;
        deeper.nodes = go;
        let (stay, go): (Vec<Entry>, Vec<Entry>) =
            old.replacements.drain(..).partition(|e| !moves(e));
        old.replacements = stay;
        deeper.replacements = go;
        self.buckets.push(deeper);
    }

    /// Records that `id` at `addr` sent us a query. Returns false if it is not in the table.
    pub fn on_query(&mut self, id: &NodeId, addr: &SocketAddr, now: Instant) -> bool {
        match self.get_mut(id, addr) {
            Some(e) => {
                e.last_query = Some(now);
                true
            }
            None => false,
        }
    }

    /// True if a new contact with this ID and address would get a slot right away, so that
    /// pinging it (to confirm it before insertion) is worthwhile.
    pub fn has_room_for(&self, id: &NodeId, addr: &SocketAddr, now: Instant) -> bool {
        if *id == self.own || self.by_addr.contains_key(addr) {
            return false;
        }
        if self
            .ips
            .as_ref()
            .is_some_and(|ips| ips.contains(&addr.ip()))
        {
            return false;
        }
        let idx = self.index(&id.0);
        let b = &self.buckets[idx];
        b.position(id).is_none()
            && (b.nodes.len() < K
                || (idx == self.buckets.len() - 1 && self.buckets.len() < MAX_BUCKETS)
                || b.evictable(false, now).is_some())
    }

    /// Records that a query to `id` at `addr` went unanswered. A contact that turns bad is
    /// swapped for the best replacement, if there is one.
    pub fn on_failure(&mut self, id: &NodeId, addr: &SocketAddr, now: Instant) {
        let idx = self.index(&id.0);
        let bucket = &mut self.buckets[idx];
        let Some(i) = bucket
            .nodes
            .iter()
            .position(|e| e.id == *id && e.addr == *addr)
        else {
            return;
        };
        let e = &mut bucket.nodes[i];
        e.failures = e.failures.saturating_add(1);
        e.pinging = false;
        if e.status(now) == NodeStatus::Bad {
            if let Some(r) = bucket.take_replacement() {
                self.place(idx, Some(i), r, now);
            }
        }
    }

    /// Writes into `out` (cleared first) up to `k` (at most [`MAX_CLOSEST`]) non-bad contacts
    /// closest to `target`, nearest first. Visits buckets in order of distance to `target`, so a
    /// full matching bucket ends the search after one bucket.
    pub fn closest(&self, target: &[u8; 20], k: usize, out: &mut Vec<NodeInfo>) {
        out.clear();
        let k = k.min(MAX_CLOSEST);
        if k == 0 {
            return;
        }
        let mut top = TopK {
            k,
            dist: [Distance([0; 20]); MAX_CLOSEST],
            out,
        };
        let last = self.buckets.len() - 1;
        let b = self.index(target);
        let offer = |bucket: &Bucket, top: &mut TopK<'_>| {
            for e in &bucket.nodes {
                // Bad means failed too often (see `Entry::status`); no clock needed for that.
                if e.failures < BAD_AFTER_FAILURES {
                    top.offer(Distance::between(target, &e.id.0), e);
                }
            }
        };
        // Bucket `b` shares more prefix with `target` than any other; buckets after it share
        // exactly `b` bits; buckets before it share fewer, decreasing with the index.
        offer(&self.buckets[b], &mut top);
        if top.out.len() < k {
            for bucket in &self.buckets[b + 1..=last] {
                offer(bucket, &mut top);
            }
        }
        for bucket in self.buckets[..b].iter().rev() {
            if top.out.len() >= k {
                break;
            }
            offer(bucket, &mut top);
        }
    }

    /// Marks up to `max` questionable contacts, least recently seen first, as being pinged and
    /// appends them to `out`.
    pub fn questionable(&mut self, now: Instant, max: usize, out: &mut Vec<NodeInfo>) {
        let mut picked: Vec<(Option<Instant>, usize, usize)> = Vec::new();
        for (bi, b) in self.buckets.iter().enumerate() {
            for (ni, e) in b.nodes.iter().enumerate() {
                if !e.pinging && e.status(now) == NodeStatus::Questionable {
                    picked.push((e.last_seen(), bi, ni));
                }
            }
        }
        picked.sort_unstable();
        for (_, bi, ni) in picked.into_iter().take(max) {
            let e = &mut self.buckets[bi].nodes[ni];
            e.pinging = true;
            out.push(e.info());
        }
    }

    /// Clears the "ping outstanding" mark of a contact whose ping could not be sent.
    pub fn clear_pinging(&mut self, id: &NodeId, addr: &SocketAddr) {
        if let Some(e) = self.get_mut(id, addr) {
            e.pinging = false;
        }
    }

    /// Prefix lengths of buckets unchanged since `before`; each is marked as refreshed at `now`.
    pub fn take_stale_buckets(&mut self, before: Instant, now: Instant) -> Vec<usize> {
        let mut stale = Vec::new();
        for (i, b) in self.buckets.iter_mut().enumerate() {
            if b.last_changed <= before {
                b.last_changed = now;
                stale.push(i);
            }
        }
        stale
    }

    /// Prefix lengths of buckets holding a bad contact and no replacement for it, unchanged
    /// since `before`; each is marked as refreshed at `now`. A refresh search finds contacts
    /// to take the bad ones' places.
    pub fn take_buckets_needing_repair(&mut self, before: Instant, now: Instant) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, b) in self.buckets.iter_mut().enumerate() {
            if b.last_changed <= before
                && b.replacements.is_empty()
                && b.nodes.iter().any(|e| e.status(now) == NodeStatus::Bad)
            {
                b.last_changed = now;
                out.push(i);
            }
        }
        out
    }

    /// Prefix lengths, from 0 up to that of our closest contact, at which the table holds
    /// fewer than `K` contacts. These are the buckets (split off or not yet) that a self-lookup
    /// leaves sparse and a search for a random key in each fills.
    pub fn sparse_prefixes(&self) -> Vec<usize> {
        let mut counts = [0usize; MAX_BUCKETS];
        let mut depth = 0;
        for e in self.entries() {
            let lz = leading_zeros(&Distance::between(&self.own.0, &e.id.0).0).min(MAX_BUCKETS - 1);
            counts[lz] += 1;
            depth = depth.max(lz);
        }
        (0..depth).filter(|&i| counts[i] < K).collect()
    }

    /// All live contacts.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flat_map(|b| b.nodes.iter())
    }

    /// Counts of (good, questionable, bad) contacts.
    pub fn status_counts(&self, now: Instant) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for e in self.entries() {
            match e.status(now) {
                NodeStatus::Good => c.0 += 1,
                NodeStatus::Questionable => c.1 += 1,
                NodeStatus::Bad => c.2 += 1,
            }
        }
        c
    }

    /// The same contacts organised around a new own ID (after a BEP 42 ID change).
    pub fn rebuilt(&self, own: NodeId, now: Instant) -> RoutingTable {
        let mut t = RoutingTable::new(own, self.ips.is_some(), now);
        let mut all: Vec<Entry> = self.entries().cloned().collect();
        all.extend(
            self.buckets
                .iter()
                .flat_map(|b| b.replacements.iter().cloned()),
        );
        for e in all {
            t.insert(e, now);
        }
        t
    }
}

/// The `k` nearest contacts seen so far, sorted, with their distances computed once.
struct TopK<'a> {
    k: usize,
    dist: [Distance; MAX_CLOSEST],
    out: &'a mut Vec<NodeInfo>,
}

impl TopK<'_> {
    #[inline]
    fn offer(&mut self, d: Distance, e: &Entry) {
        let len = self.out.len();
        if len == self.k && d >= self.dist[len - 1] {
            return;
        }
        let mut pos = len.min(self.k - 1);
        // Shift farther entries right; when full, the last one falls off.
        while pos > 0 && self.dist[pos - 1] > d {
            self.dist[pos] = self.dist[pos - 1];
            pos -= 1;
        }
        if len == self.k {
            self.out.pop();
        }
        self.dist[pos] = d;
        self.out.insert(pos, e.info());
    }
}
