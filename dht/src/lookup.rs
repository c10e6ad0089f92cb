//! One iterative search through one address family (BEP 5: "the node iteratively queries nodes
//! that are closer to the target ... until it cannot find any closer nodes").
//!
//! Candidates are kept sorted by distance to the target. At most [`ALPHA`] queries are in flight
//! (slow ones stop counting, see [`crate::txn::SLOW_AFTER`]), always to the closest candidates not
//! yet asked. The search is over when the [`K`] closest candidates that have not failed have all
//! answered. Bootstrap addresses have no known ID yet; they sort first so they are asked first,
//! and take their real place once they answer.

use std::net::SocketAddr;

use crate::id::{Distance, NodeId};
use crate::routing::K;

/// Queries in flight per search (Kademlia's α).
pub const ALPHA: usize = 3;

/// Most candidates a search remembers; the farthest unasked ones are dropped first.
pub const MAX_CANDIDATES: usize = 64;

/// Most queries one search sends, a bound against responders that keep inventing closer nodes.
pub const MAX_QUERIES: usize = 128;

/// Longest write token stored from a `get_peers` response; longer tokens are not kept, and the
/// node is then not announced to.
pub const MAX_TOKEN_LEN: usize = 32;

/// Progress of one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateState {
    /// Not asked yet.
    Fresh,
    /// Asked; `slow` once it has been waiting for a while.
    InFlight {
        /// No longer counted against [`ALPHA`].
        slow: bool,
    },
    /// Answered.
    Responded,
    /// Timed out or answered with an error.
    Failed,
}

/// A write token received from a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    len: u8,
    bytes: [u8; MAX_TOKEN_LEN],
}

impl Token {
    /// Copies a token; `None` if it is longer than [`MAX_TOKEN_LEN`].
    pub fn new(b: &[u8]) -> Option<Token> {
        if b.len() > MAX_TOKEN_LEN {
            return None;
        }
        let mut bytes = [0u8; MAX_TOKEN_LEN];
        bytes[..b.len()].copy_from_slice(b);
        Some(Token {
            len: b.len() as u8,
            bytes,
        })
    }

    /// The token bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// A node considered by a search.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its ID, once known.
    pub id: Option<NodeId>,
    /// Its address.
    pub addr: SocketAddr,
    /// Progress.
    pub state: CandidateState,
    /// Write token from its `get_peers` answer.
    pub token: Option<Token>,
    /// Its ID passes BEP 42 for its address.
    pub verified: bool,
    dist: Distance,
}

/// The state of one search in one address family.
#[derive(Debug, Clone)]
pub struct Traversal {
    target: [u8; 20],
    candidates: Vec<Candidate>,
    queries: usize,
}

impl Traversal {
    /// A search for `target` with no candidates yet.
    pub fn new(target: [u8; 20]) -> Traversal {
        Traversal {
            target,
            candidates: Vec::with_capacity(MAX_CANDIDATES),
            queries: 0,
        }
    }

    /// The key searched for.
    pub fn target(&self) -> &[u8; 20] {
        &self.target
    }

    /// Queries sent so far.
    #[cfg(test)]
    pub fn queries(&self) -> usize {
        self.queries
    }

    /// All candidates, nearest first.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    fn dist_of(&self, id: Option<&NodeId>) -> Distance {
        // Unknown IDs sort first: they are bootstrap contacts that must be asked to get anywhere.
        id.map_or(Distance([0; 20]), |id| {
            Distance::between(&self.target, &id.0)
        })
    }

    /// Adds a candidate unless its address is already known or the ID is `own`.
    pub fn add(&mut self, id: Option<NodeId>, addr: SocketAddr, own: &NodeId, verified: bool) {
        if id.as_ref() == Some(own) || self.candidates.iter().any(|c| c.addr == addr) {
            return;
        }
        let dist = self.dist_of(id.as_ref());
        let pos = self.candidates.partition_point(|c| c.dist <= dist);
        if self.candidates.len() >= MAX_CANDIDATES {
            // Make room by dropping the farthest candidate that nobody waits on and that cannot
            // be part of the result: anything unasked or failed, or answered but beyond the K
            // closest.
            let Some(victim) =
                self.candidates
                    .iter()
                    .enumerate()
                    .rposition(|(i, c)| match c.state {
                        CandidateState::Fresh | CandidateState::Failed => true,
                        CandidateState::Responded => i >= K,
                        CandidateState::InFlight { .. } => false,
                    })
            else {
                return;
            };
            if victim < pos {
                return;
            }
            self.candidates.remove(victim);
        }
        let c = Candidate {
            id,
            addr,
            state: CandidateState::Fresh,
            token: None,
            verified,
            dist,
        };
        self.candidates.insert(pos, c);
    }

    /// Picks the next node to ask and marks it in flight, or `None` if the search should not
    /// send now.
    pub fn next_query(&mut self) -> Option<(Option<NodeId>, SocketAddr)> {
        if self.queries >= MAX_QUERIES {
            return None;
        }
        let active = self
            .candidates
            .iter()
            .filter(|c| c.state == CandidateState::InFlight { slow: false })
            .count();
        if active >= ALPHA {
            return None;
        }
        let c = self
            .candidates
            .iter_mut()
            .filter(|c| c.state != CandidateState::Failed)
            .take(K)
            .find(|c| c.state == CandidateState::Fresh)?;
        c.state = CandidateState::InFlight { slow: false };
        self.queries += 1;
        Some((c.id, c.addr))
    }

    /// Gives a candidate picked by [`Traversal::next_query`] back, when it could not be sent.
    pub fn unsend(&mut self, addr: &SocketAddr) {
        if let Some(c) = self.candidates.iter_mut().find(|c| c.addr == *addr) {
            c.state = CandidateState::Fresh;
            self.queries -= 1;
        }
    }

    /// Records an answer from `addr`. Returns false if `addr` is not a candidate.
    pub fn on_response(
        &mut self,
        addr: &SocketAddr,
        id: NodeId,
        token: Option<&[u8]>,
        verified: bool,
    ) -> bool {
        let Some(i) = self.candidates.iter().position(|c| c.addr == *addr) else {
            return false;
        };
        let mut c = self.candidates.remove(i);
        c.state = CandidateState::Responded;
        c.token = token.and_then(Token::new);
        c.verified = verified;
        c.id = Some(id);
        c.dist = Distance::between(&self.target, &id.0);
        let pos = self.candidates.partition_point(|x| x.dist <= c.dist);
        self.candidates.insert(pos, c);
        true
    }

    /// Records that `addr` timed out or answered with an error.
    pub fn on_failure(&mut self, addr: &SocketAddr) {
        if let Some(c) = self.candidates.iter_mut().find(|c| c.addr == *addr) {
            c.state = CandidateState::Failed;
        }
    }

    /// Records that the query to `addr` is slow.
    pub fn on_slow(&mut self, addr: &SocketAddr) {
        if let Some(c) = self.candidates.iter_mut().find(|c| c.addr == *addr) {
            if matches!(c.state, CandidateState::InFlight { .. }) {
                c.state = CandidateState::InFlight { slow: true };
            }
        }
    }

    /// True once the [`K`] closest live candidates have all answered, or nothing is left to ask.
    pub fn is_done(&self) -> bool {
        let mut top = self
            .candidates
            .iter()
            .filter(|c| c.state != CandidateState::Failed)
            .take(K);
        if top.all(|c| c.state == CandidateState::Responded) {
            return true;
        }
        self.queries >= MAX_QUERIES
            && !self
                .candidates
                .iter()
                .any(|c| matches!(c.state, CandidateState::InFlight { .. }))
    }

    /// Up to `k` candidates that answered, nearest first.
    pub fn closest_responded(&self, k: usize) -> impl Iterator<Item = &Candidate> {
        self.candidates
            .iter()
            .filter(|c| c.state == CandidateState::Responded)
            .take(k)
    }

    /// Number of candidates that answered.
    pub fn responded(&self) -> usize {
        self.candidates
            .iter()
            .filter(|c| c.state == CandidateState::Responded)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        let mut x = [0u8; 20];
        x[0] = b;
        NodeId(x)
    }

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn asks_closest_first_with_alpha_parallelism() {
        let own = id(0xff);
        let mut t = Traversal::new([0; 20]);
        for b in (1..=20u8).rev() {
            t.add(Some(id(b)), addr(u16::from(b)), &own, true);
        }
        let first: Vec<_> = std::iter::from_fn(|| t.next_query()).collect();
        assert_eq!(first.len(), ALPHA);
        assert_eq!(
            first.iter().map(|q| q.0.unwrap()).collect::<Vec<_>>(),
            vec![id(1), id(2), id(3)]
        );
        // A slow query frees a slot.
        t.on_slow(&addr(1));
        assert_eq!(t.next_query().unwrap().0, Some(id(4)));
        assert!(t.next_query().is_none());
    }

    #[test]
    fn done_when_k_closest_live_answered() {
        let own = id(0xff);
        let mut t = Traversal::new([0; 20]);
        for b in 1..=12u8 {
            t.add(Some(id(b)), addr(u16::from(b)), &own, true);
        }
        let mut answered = 0;
        while !t.is_done() {
            let (nid, a) = t.next_query().expect("search stalled");
            // Node 2 never answers.
            if nid == Some(id(2)) {
                t.on_failure(&a);
            } else {
                t.on_response(&a, nid.unwrap(), Some(b"tok"), true);
                answered += 1;
            }
        }
        // K live closest = 1,3..=9; farther candidates are never asked.
        assert_eq!(answered, K);
        let got: Vec<_> = t.closest_responded(K).map(|c| c.id.unwrap()).collect();
        let want: Vec<_> = [1, 3, 4, 5, 6, 7, 8, 9].into_iter().map(id).collect();
        assert_eq!(got, want);
        assert_eq!(
            t.closest_responded(1)
                .next()
                .unwrap()
                .token
                .unwrap()
                .as_bytes(),
            b"tok"
        );
    }

    #[test]
    fn unknown_ids_first_and_candidates_bounded() {
        let own = id(0xff);
        let mut t = Traversal::new([0; 20]);
        t.add(Some(id(1)), addr(1), &own, true);
        t.add(None, addr(999), &own, true);
        t.add(Some(own), addr(5), &own, true);
        t.add(Some(id(3)), addr(1), &own, true);
        assert_eq!(
            t.candidates().len(),
            2,
            "own ID and duplicate address skipped"
        );
        assert_eq!(t.next_query().unwrap(), (None, addr(999)));
        t.on_response(&addr(999), id(200), None, true);
        assert_eq!(
            t.candidates().last().unwrap().addr,
            addr(999),
            "re-sorted by real ID"
        );
        for p in 0..200u16 {
            let mut x = [0u8; 20];
            x[0] = 2;
            x[1..3].copy_from_slice(&p.to_be_bytes());
            t.add(Some(NodeId(x)), addr(1000 + p), &own, true);
        }
        assert_eq!(t.candidates().len(), MAX_CANDIDATES);
        assert!(
            !t.candidates().iter().any(|c| c.addr == addr(999)),
            "a far answered candidate made room"
        );
        // Answered candidates among the K closest are kept even when closer ones keep coming.
        let (nid, a) = t.next_query().unwrap();
        t.on_response(&a, nid.unwrap(), None, true);
        for p in 0..100u16 {
            let mut x = [0u8; 20];
            x[0] = 1;
            x[1..3].copy_from_slice(&p.to_be_bytes());
            t.add(Some(NodeId(x)), addr(5000 + p), &own, true);
        }
        assert!(
            t.candidates().iter().any(|c| c.addr == a)
                == (t.candidates().iter().position(|c| c.addr == a).unwrap_or(K) < K)
        );
        assert!(t.candidates().windows(2).all(|w| w[0].dist <= w[1].dist));
    }

    #[test]
    fn query_budget_ends_search() {
        let own = id(0xff);
        let close = |n: u32| {
            let mut x = [0u8; 20];
            x[16..].copy_from_slice(&n.to_be_bytes());
            NodeId(x)
        };
        let mut t = Traversal::new([0; 20]);
        let mut n = u32::MAX;
        t.add(Some(close(n)), addr(1), &own, true);
        // Every answer offers a node closer than all before it, forever.
        while let Some((nid, a)) = t.next_query() {
            t.on_response(&a, nid.unwrap(), None, true);
            n -= 1;
            t.add(Some(close(n)), addr((n % 60000) as u16 + 2), &own, true);
            assert!(t.queries() <= MAX_QUERIES);
        }
        assert_eq!(t.queries(), MAX_QUERIES);
        assert!(t.is_done());
    }
}
