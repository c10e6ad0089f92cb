//! Verifying nodes before the router hands them out: a node enters the cache only by answering
//! a query of ours from the address it claims (BEP 5: nodes are good once they have responded).
//!
//! The router sends many such queries (every new querier, every node learned from a response,
//! and every cached node again after a while), far more than a transaction table should hold.
//! So the queries keep no state at all: the transaction ID is a time stamp plus a keyed hash of
//! the destination address and that time stamp. An answer proves itself by echoing an ID that
//! hashes right for the address it comes from and is recent; nothing else can forge one without
//! seeing our query. Router transaction IDs are 4 bytes like everyone's (some implementations
//! accept no other length) with the top bit set, which the embedded node's never have (theirs
//! start with a slot index below 1024).
//!
//! New candidates wait in a bounded queue and are pinged at a bounded rate; a fixed-size
//! filter remembers whom we pinged recently so the same node is not asked over and over.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};

use crate::id::NodeId;

/// Length of a verification transaction ID: a marker bit, 3 bits of time, 28 of keyed hash.
pub const TID_LEN: usize = 4;

/// The marker bit of router transaction IDs.
const MARK: u32 = 1 << 31;

/// Bits of keyed hash in a transaction ID: a blind forger needs about 2^27 tries per success.
const MAC_BITS: u32 = 28;

/// Time-stamp resolution of verification transaction IDs, in seconds.
const TICK_SECS: u32 = 2;

/// Answers are accepted up to this many ticks after the query (4 to 6 seconds).
const MAX_AGE_TICKS: u16 = 3;

/// Most candidates waiting to be pinged; further ones are dropped (and counted).
pub const MAX_CANDIDATES: usize = 65_536;

/// Entries of the recently-pinged filter (2 bytes each, 2 MiB). Addresses that collide share
/// an entry, which only makes the router skip a ping it could have sent.
pub const RECENT_FILTER_SLOTS: usize = 1 << 20;

/// A node pinged less than this long ago (seconds) is not pinged again as a new candidate. Long
/// enough to cover the burst of queries a joining node sends; short enough that the filter
/// does not fill up with stale entries on a busy router.
pub const REPING_AFTER_SECS: u32 = 120;

/// Time resolution of the filter, in seconds.
const FILTER_TICK_SECS: u32 = 10;

/// A node waiting to be pinged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The ID it claims, if known.
    pub id: Option<NodeId>,
    /// Its address.
    pub addr: SocketAddr,
}

/// Stateless verification queries and the queue of nodes to verify.
#[derive(Debug)]
pub struct Verifier {
    key: std::collections::hash_map::RandomState,
    recent: Box<[u16]>,
    queue: VecDeque<Candidate>,
    /// Candidates dropped because the queue was full.
    pub dropped: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// A verifier with a fresh random key.
    pub fn new() -> Verifier {
        Verifier {
            key: std::collections::hash_map::RandomState::new(),
            recent: vec![0u16; RECENT_FILTER_SLOTS].into_boxed_slice(),
            // Reserved up front so that queueing, which happens on the query path, never
            // allocates; pages of the reservation are touched only as the queue grows.
            queue: VecDeque::with_capacity(MAX_CANDIDATES),
            dropped: 0,
        }
    }

    fn mac(&self, tick: u32, addr: &SocketAddr) -> u64 {
        let ip: [u8; 16] = match addr.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        self.key.hash_one((tick, ip, addr.port()))
    }

    fn tid_for_tick(&self, tick: u32, addr: &SocketAddr) -> u32 {
        let mac = (self.mac(tick, addr) as u32) & ((1 << MAC_BITS) - 1);
        MARK | ((tick & 7) << MAC_BITS) | mac
    }

    /// The transaction ID for a query to `addr` sent at `now_secs`.
    pub fn tid(&self, now_secs: u32, addr: &SocketAddr) -> [u8; TID_LEN] {
        self.tid_for_tick(now_secs / TICK_SECS, addr).to_be_bytes()
    }

    /// True if `tid` has the form of a router transaction ID (it may still be forged).
    pub fn is_router_tid(tid: &[u8]) -> bool {
        tid.len() == TID_LEN && tid[0] & 0x80 != 0
    }

    /// True if `tid` is one of ours, sent to `from` recently.
    pub fn check(&self, now_secs: u32, from: &SocketAddr, tid: &[u8]) -> bool {
        let Ok(t) = <[u8; TID_LEN]>::try_from(tid) else {
            return false;
        };
        let t = u32::from_be_bytes(t);
        if t & MARK == 0 {
            return false;
        }
        let now = now_secs / TICK_SECS;
        let age = now.wrapping_sub((t >> MAC_BITS) & 7) & 7;
        age <= u32::from(MAX_AGE_TICKS) && self.tid_for_tick(now.wrapping_sub(age), from) == t
    }

    fn recent_slot(&self, addr: &SocketAddr) -> usize {
        (self.mac(u32::MAX, addr) as usize) % RECENT_FILTER_SLOTS
    }

    /// Notes that `addr` is being pinged at `now_secs`.
    pub fn mark_pinged(&mut self, now_secs: u32, addr: &SocketAddr) {
        let s = self.recent_slot(addr);
        self.recent[s] = filter_time(now_secs);
    }

    /// True if `addr` (or an address sharing its filter entry) was pinged in the last
    /// [`REPING_AFTER_SECS`].
    pub fn pinged_recently(&self, now_secs: u32, addr: &SocketAddr) -> bool {
        let m = self.recent[self.recent_slot(addr)];
        m != 0
            && filter_time(now_secs).wrapping_sub(m) < (REPING_AFTER_SECS / FILTER_TICK_SECS) as u16
    }

    /// Queues a node for a ping unless it was pinged recently. Returns whether it was queued.
    pub fn offer(&mut self, now_secs: u32, c: Candidate) -> bool {
        if self.pinged_recently(now_secs, &c.addr) {
            return false;
        }
        if self.queue.len() >= MAX_CANDIDATES {
            self.dropped += 1;
            return false;
        }
        // Marked now rather than when pinged, so a node that queries many times while it waits
        // is queued once.
        self.mark_pinged(now_secs, &c.addr);
        self.queue.push_back(c);
        true
    }

    /// The next candidate to ping.
    pub fn next_candidate(&mut self) -> Option<Candidate> {
        self.queue.pop_front()
    }

    /// Candidates waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

/// `secs` as stored in the recently-pinged filter: never 0, which means "never".
fn filter_time(secs: u32) -> u16 {
    ((secs / FILTER_TICK_SECS) as u16).wrapping_add(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ids_check_address_and_age() {
        let v = Verifier::new();
        let a: SocketAddr = "192.0.2.1:6881".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:6882".parse().unwrap();
        let t = v.tid(1000, &a);
        assert!(v.check(1000, &a, &t));
        assert!(v.check(1000 + 2 * u32::from(MAX_AGE_TICKS), &a, &t));
        assert!(
            !v.check(1000 + 2 * u32::from(MAX_AGE_TICKS) + 2, &a, &t),
            "too old"
        );
        assert!(!v.check(1000, &b, &t), "other address");
        assert!(!v.check(1000, &a, &t[..3]));
        assert!(Verifier::is_router_tid(&t));
        assert!(
            !Verifier::is_router_tid(&[3, 255, 1, 2]),
            "the node's IDs start below 4"
        );
        let mut forged = t;
        forged[3] ^= 1;
        assert!(!v.check(1000, &a, &forged));
        // Another verifier (another key, e.g. after a restart) rejects it.
        assert!(!Verifier::new().check(1000, &a, &t));
    }

    #[test]
    fn candidates_are_queued_once_and_bounded() {
        let mut v = Verifier::new();
        let c = |p| Candidate {
            id: None,
            addr: SocketAddr::from(([10, 1, 2, 3], p)),
        };
        assert!(v.offer(0, c(1)));
        assert!(!v.offer(30, c(1)), "pinged recently");
        assert!(v.offer(REPING_AFTER_SECS + FILTER_TICK_SECS, c(1)));
        assert_eq!(v.queued(), 2);
        let mut queued = 2;
        for p in 2..(2 * MAX_CANDIDATES as u32) {
            let port = (p % 65_000) as u16 + 1;
            let addr = SocketAddr::from(([10, (p >> 16) as u8, 0, 0], port));
            if v.offer(0, Candidate { id: None, addr }) {
                queued += 1;
            }
        }
        assert_eq!(v.queued(), MAX_CANDIDATES.min(queued));
        assert!(v.dropped > 0);
        assert_eq!(v.next_candidate(), Some(c(1)));
    }
}
