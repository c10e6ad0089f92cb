//! One k-bucket: up to [`K`] live contacts plus a small cache of confirmed replacements, and the
//! node states of BEP 5 ("Routing Table": good, questionable, bad).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::compact::NodeInfo;
use crate::id::NodeId;

/// Contacts per bucket (BEP 5's K).
pub const K: usize = 8;

/// Confirmed contacts kept per bucket to take the place of nodes that go bad.
pub const REPLACEMENTS_PER_BUCKET: usize = 8;

/// A node is good for this long after it last answered us (BEP 5: 15 minutes).
pub const GOOD_FOR: Duration = Duration::from_secs(15 * 60);

/// Consecutive unanswered queries after which a node is bad. BEP 5 suggests trying a silent node
/// once more before discarding it, hence two.
pub const BAD_AFTER_FAILURES: u8 = 2;

/// BEP 5 node states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeStatus {
    /// Failed [`BAD_AFTER_FAILURES`] queries in a row.
    Bad,
    /// Neither good nor bad: silent for a while, never confirmed, or missed a query.
    Questionable,
    /// Answered us recently (or answered once and has queried us recently).
    Good,
}

/// One routing-table contact.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The node's ID.
    pub id: NodeId,
    /// Its address.
    pub addr: SocketAddr,
    /// When it last answered one of our queries.
    pub last_response: Option<Instant>,
    /// When it last sent us a query.
    pub last_query: Option<Instant>,
    /// Queries in a row it did not answer.
    pub failures: u8,
    /// Its ID passes BEP 42 for its address (or the address is exempt).
    pub verified: bool,
    /// A liveness ping to it is outstanding.
    pub pinging: bool,
}

impl Entry {
    /// A contact that just answered a query.
    pub fn responded(id: NodeId, addr: SocketAddr, verified: bool, now: Instant) -> Entry {
        Entry {
            id,
            addr,
            last_response: Some(now),
            last_query: None,
            failures: 0,
            verified,
            pinging: false,
        }
    }

    /// The BEP 5 state of this contact at `now`.
    pub fn status(&self, now: Instant) -> NodeStatus {
        if self.failures >= BAD_AFTER_FAILURES {
            return NodeStatus::Bad;
        }
        if self.failures > 0 {
            return NodeStatus::Questionable;
        }
        let recent =
            |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) < GOOD_FOR);
        match self.last_response {
            Some(_) if recent(self.last_response) || recent(self.last_query) => NodeStatus::Good,
            _ => NodeStatus::Questionable,
        }
    }

    /// The most recent sign of life, if any.
    pub fn last_seen(&self) -> Option<Instant> {
        self.last_response.max(self.last_query)
    }

    /// ID and address.
    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            id: self.id,
            addr: self.addr,
        }
    }
}

/// A k-bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Live contacts, at most [`K`].
    pub nodes: Vec<Entry>,
    /// Confirmed contacts waiting for a slot, at most [`REPLACEMENTS_PER_BUCKET`].
    pub replacements: Vec<Entry>,
    /// When a contact was last added to or answered from this bucket, or the bucket was last
    /// refreshed (BEP 5 "Buckets that have not been changed in 15 minutes should be refreshed").
    pub last_changed: Instant,
}

impl Bucket {
    /// An empty bucket.
    pub fn new(now: Instant) -> Bucket {
        Bucket {
            nodes: Vec::with_capacity(K),
            replacements: Vec::new(),
            last_changed: now,
        }
    }

    /// Index of a contact by ID.
    pub fn position(&self, id: &NodeId) -> Option<usize> {
        self.nodes.iter().position(|e| e.id == *id)
    }

    /// The worst contact that may be evicted for a newcomer: a bad one, or (when the newcomer is
    /// BEP 42-verified) an unverified one that is not good. BEP 42 asks to prefer verified nodes.
    pub fn evictable(&self, newcomer_verified: bool, now: Instant) -> Option<usize> {
        let bad = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, e)| e.status(now) == NodeStatus::Bad);
        if let Some((i, _)) = bad.max_by_key(|(_, e)| e.failures) {
            return Some(i);
        }
        if newcomer_verified {
            return self.nodes.iter().position(|e| {
                !e.verified && e.status(now) == NodeStatus::Questionable && !e.pinging
            });
        }
        None
    }

    /// The least recently seen questionable contact not already being pinged.
    pub fn ping_candidate(&self, now: Instant) -> Option<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.pinging && e.status(now) == NodeStatus::Questionable)
            .min_by_key(|(_, e)| e.last_seen())
            .map(|(i, _)| i)
    }

    /// Remembers a confirmed contact for when a slot frees up; the stalest entry makes room.
    pub fn add_replacement(&mut self, entry: Entry) {
        if let Some(r) = self.replacements.iter_mut().find(|r| r.id == entry.id) {
            *r = entry;
            return;
        }
        if self.replacements.len() >= REPLACEMENTS_PER_BUCKET {
            let stalest = self
                .replacements
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| (e.verified, e.last_seen()))
                .map(|(i, _)| i)
                .unwrap_or(0);
            self.replacements.swap_remove(stalest);
        }
        self.replacements.push(entry);
    }

    /// Takes the best replacement: verified first, then most recently seen.
    pub fn take_replacement(&mut self) -> Option<Entry> {
        let best = self
            .replacements
            .iter()
            .enumerate()
            .max_by_key(|(_, e)| (e.verified, e.last_seen()))
            .map(|(i, _)| i)?;
        Some(self.replacements.swap_remove(best))
    }
}
