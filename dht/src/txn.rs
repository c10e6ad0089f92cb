//! Outstanding queries of ours, keyed by transaction ID (BEP 5: "t", echoed by the responder).
//!
//! A slab of at most [`MAX_IN_FLIGHT`] slots; the 4-byte transaction ID is the slot index plus a
//! per-slot generation, so matching a response is an array access, and a late response to a
//! reused slot is recognised as stale. Responses are accepted only from the address the query
//! went to. Deadlines sit in two FIFO queues (all queries share the same timeouts, so each queue
//! is ordered by construction).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::id::NodeId;

/// Most queries of ours awaiting a response.
pub const MAX_IN_FLIGHT: usize = 1024;

/// A query unanswered this long has failed.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(4);

/// A lookup query unanswered this long stops counting against the lookup's parallelism, so a
/// slow node does not stall the search (a late answer is still used).
pub const SLOW_AFTER: Duration = Duration::from_millis(1200);

/// Length of our transaction IDs.
pub const TID_LEN: usize = 4;

/// One outstanding query.
#[derive(Debug, Clone)]
pub struct Txn<K> {
    /// Where the query went.
    pub addr: SocketAddr,
    /// The node's ID, if known before the query.
    pub id: Option<NodeId>,
    /// What the query was for.
    pub kind: K,
}

#[derive(Debug)]
struct Slot<K> {
    gen: u16,
    txn: Option<Txn<K>>,
}

/// A deadline that passed.
#[derive(Debug)]
pub enum Expired<K> {
    /// The query has been outstanding for [`SLOW_AFTER`]; it stays outstanding.
    Slow(Txn<K>),
    /// The query timed out and is removed.
    Timeout(Txn<K>),
}

/// The outstanding queries.
#[derive(Debug)]
pub struct Transactions<K> {
    slots: Vec<Slot<K>>,
    free: Vec<u16>,
    live: usize,
    slow: VecDeque<(Instant, u16, u16)>,
    timeouts: VecDeque<(Instant, u16, u16)>,
}

impl<K: Clone> Transactions<K> {
    /// No outstanding queries.
    pub fn new() -> Self {
        Transactions {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            slow: VecDeque::new(),
            timeouts: VecDeque::new(),
        }
    }

    /// Number of outstanding queries.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True if another query can be registered.
    pub fn has_room(&self) -> bool {
        // The deadline queues may hold entries of finished queries until their time passes;
        // bounding them too keeps a fast churn of short queries from growing them.
        self.live < MAX_IN_FLIGHT && self.timeouts.len() < 4 * MAX_IN_FLIGHT
    }

    /// Registers a query; returns its transaction ID, or `None` when full. `track_slow` asks
    /// for an [`Expired::Slow`] notice.
    pub fn insert(
        &mut self,
        txn: Txn<K>,
        track_slow: bool,
        now: Instant,
        rng: &mut impl RngCore,
    ) -> Option<[u8; TID_LEN]> {
        if !self.has_room() {
            return None;
        }
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = self.slots.len() as u16;
                self.slots.push(Slot {
                    gen: rng.next_u32() as u16,
                    txn: None,
                });
                i
            }
        };
        let slot = &mut self.slots[usize::from(idx)];
        slot.gen = slot.gen.wrapping_add(1);
        slot.txn = Some(txn);
        self.live += 1;
        let gen = slot.gen;
        self.timeouts.push_back((now + QUERY_TIMEOUT, idx, gen));
        if track_slow {
            self.slow.push_back((now + SLOW_AFTER, idx, gen));
        }
        let mut tid = [0u8; TID_LEN];
        tid[..2].copy_from_slice(&idx.to_be_bytes());
        tid[2..].copy_from_slice(&gen.to_be_bytes());
        Some(tid)
    }

    /// Takes the query a response with `tid` from `from` answers, if it is ours.
    pub fn take(&mut self, tid: &[u8], from: &SocketAddr) -> Option<Txn<K>> {
        let tid: [u8; TID_LEN] = tid.try_into().ok()?;
        let idx = u16::from_be_bytes([tid[0], tid[1]]);
        let gen = u16::from_be_bytes([tid[2], tid[3]]);
        let slot = self.slots.get_mut(usize::from(idx))?;
        if slot.gen != gen || slot.txn.as_ref().is_none_or(|t| t.addr != *from) {
            return None;
        }
        self.live -= 1;
        self.free.push(idx);
        slot.txn.take()
    }

    /// The earliest pending deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        let a = self.slow.front().map(|d| d.0);
        let b = self.timeouts.front().map(|d| d.0);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next deadline that has passed at `now`, skipping those of answered queries.
    pub fn poll_expired(&mut self, now: Instant) -> Option<Expired<K>> {
        while let Some(&(at, idx, gen)) = self.slow.front() {
            if at > now {
                break;
            }
            self.slow.pop_front();
            let slot = &self.slots[usize::from(idx)];
            if slot.gen == gen {
                if let Some(t) = &slot.txn {
                    return Some(Expired::Slow(t.clone()));
                }
            }
        }
        while let Some(&(at, idx, gen)) = self.timeouts.front() {
            if at > now {
                break;
            }
            self.timeouts.pop_front();
            let slot = &mut self.slots[usize::from(idx)];
            if slot.gen == gen {
                if let Some(t) = slot.txn.take() {
                    self.live -= 1;
                    self.free.push(idx);
                    return Some(Expired::Timeout(t));
                }
            }
        }
        None
    }
}

impl<K: Clone> Default for Transactions<K> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn txn(port: u16) -> Txn<u32> {
        Txn {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            id: None,
            kind: u32::from(port),
        }
    }

    #[test]
    fn responses_match_only_their_query_and_sender() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let now = Instant::now();
        let mut t = Transactions::new();
        let tid = t.insert(txn(1), false, now, &mut rng).unwrap();
        assert!(t.take(&tid, &txn(2).addr).is_none(), "wrong sender");
        assert!(t.take(&tid[..3], &txn(1).addr).is_none());
        assert_eq!(t.take(&tid, &txn(1).addr).unwrap().kind, 1);
        assert!(t.take(&tid, &txn(1).addr).is_none(), "answered twice");
        // The slot is reused with a new generation; the old ID no longer matches.
        let tid2 = t.insert(txn(1), false, now, &mut rng).unwrap();
        assert_eq!(tid[..2], tid2[..2]);
        assert_ne!(tid, tid2);
        assert!(t.take(&tid, &txn(1).addr).is_none());
        assert!(t.take(&tid2, &txn(1).addr).is_some());
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn slow_then_timeout_and_capacity() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let now = Instant::now();
        let mut t = Transactions::new();
        let answered = t.insert(txn(1), true, now, &mut rng).unwrap();
        t.insert(txn(2), true, now, &mut rng).unwrap();
        t.take(&answered, &txn(1).addr).unwrap();
        assert_eq!(t.next_deadline(), Some(now + SLOW_AFTER));
        assert!(t
            .poll_expired(now + SLOW_AFTER - Duration::from_millis(1))
            .is_none());
        match t.poll_expired(now + SLOW_AFTER) {
            Some(Expired::Slow(x)) => assert_eq!(x.kind, 2),
            other => panic!("{other:?}"),
        }
        assert!(t.poll_expired(now + SLOW_AFTER).is_none());
        match t.poll_expired(now + QUERY_TIMEOUT) {
            Some(Expired::Timeout(x)) => assert_eq!(x.kind, 2),
            other => panic!("{other:?}"),
        }
        assert!(
            t.poll_expired(now + QUERY_TIMEOUT).is_none(),
            "answered query never times out"
        );
        assert_eq!(t.len(), 0);

        for i in 0..MAX_IN_FLIGHT {
            assert!(t.insert(txn(i as u16), false, now, &mut rng).is_some());
        }
        assert!(t.insert(txn(0), false, now, &mut rng).is_none());
        assert_eq!(t.len(), MAX_IN_FLIGHT);
    }
}
