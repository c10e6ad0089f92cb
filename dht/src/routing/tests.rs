use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use super::*;
use crate::id::random_in_bucket;

fn addr(i: u32) -> SocketAddr {
    let b = i.to_be_bytes();
    SocketAddr::from(([10, b[1], b[2], b[3]], 1000 + (i % 60000) as u16))
}

fn rng() -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(42)
}

#[test]
fn buckets_split_and_never_overfill() {
    let now = Instant::now();
    let mut r = rng();
    let own = NodeId::random(&mut r);
    let mut t = RoutingTable::new(own, false, now);
    for i in 0..2000 {
        t.on_response(NodeId::random(&mut r), addr(i), true, now);
    }
    assert!(t.bucket_count() > 5, "{}", t.bucket_count());
    for b in &t.buckets {
        assert!(b.nodes.len() <= K);
        assert!(b.replacements.len() <= REPLACEMENTS_PER_BUCKET);
    }
    // Every contact sits in the bucket its shared prefix names.
    for (i, b) in t.buckets.iter().enumerate() {
        for e in &b.nodes {
            let lz = own.distance(&e.id.0).leading_zeros();
            assert!(lz == i || (i == t.bucket_count() - 1 && lz >= i));
        }
    }
    assert_eq!(t.len(), t.entries().count());
    // Random IDs fill the far buckets completely.
    assert_eq!(t.buckets[0].nodes.len(), K);
}

#[test]
fn closest_matches_brute_force() {
    let now = Instant::now();
    let mut r = rng();
    let own = NodeId::random(&mut r);
    let mut t = RoutingTable::new(own, false, now);
    for i in 0..600 {
        // Bias some IDs toward our own so deep buckets exist.
        let id = if i % 3 == 0 {
            NodeId(random_in_bucket(&own.0, r.random_range(0..20), &mut r))
        } else {
            NodeId::random(&mut r)
        };
        t.on_response(id, addr(i), true, now);
    }
    let all: Vec<NodeInfo> = t.entries().map(|e| e.info()).collect();
    let mut out = Vec::new();
    for _ in 0..300 {
        let target = if r.random_bool(0.5) {
            NodeId::random(&mut r).0
        } else {
            random_in_bucket(&own.0, r.random_range(0..25), &mut r)
        };
        for k in [1, 8, 20] {
            t.closest(&target, k, &mut out);
            let mut brute = all.clone();
            brute.sort_by_key(|n| Distance::between(&target, &n.id.0));
            brute.truncate(k);
            assert_eq!(out, brute);
        }
    }
}

#[test]
fn questionable_node_is_pinged_and_replaced_when_bad() {
    let start = Instant::now();
    let mut r = rng();
    let own = NodeId([0; 20]);
    let mut t = RoutingTable::new(own, false, start);
    // Force a split so bucket 0 (IDs starting with bit 1) is no longer the last bucket.
    for i in 0..8 {
        t.on_response(
            NodeId(random_in_bucket(&own.0, 5, &mut r)),
            addr(100 + i),
            true,
            start,
        );
    }
    let far = |r: &mut rand::rngs::StdRng| NodeId(random_in_bucket(&own.0, 0, r));
    for i in 0..8 {
        assert_eq!(
            t.on_response(far(&mut r), addr(i), true, start),
            Insertion::Added
        );
    }
    assert!(t.bucket_count() >= 2);
    // All good: the newcomer waits, nobody is pinged.
    let newcomer = far(&mut r);
    assert_eq!(
        t.on_response(newcomer, addr(50), true, start),
        Insertion::Pending { ping: None }
    );

    // After 15 minutes of silence they are questionable; the stalest gets pinged.
    let later = start + GOOD_FOR + Duration::from_secs(1);
    let newcomer2 = far(&mut r);
    let Insertion::Pending { ping: Some(victim) } = t.on_response(newcomer2, addr(51), true, later)
    else {
        panic!("expected a ping")
    };
    assert_eq!(
        t.get(&victim.addr).unwrap().status(later),
        NodeStatus::Questionable
    );
    // One miss is not enough (BEP 5: try once more).
    t.on_failure(&victim.id, &victim.addr, later);
    assert!(t.get(&victim.addr).is_some());
    t.on_failure(&victim.id, &victim.addr, later);
    assert!(t.get(&victim.addr).is_none(), "bad node stays");
    // The most recently confirmed replacement took the slot.
    assert_eq!(t.get(&addr(51)).map(|e| e.id), Some(newcomer2));
    assert_eq!(t.len(), 16);
}

#[test]
fn node_states_follow_bep5() {
    let now = Instant::now();
    let mut e = Entry::responded(NodeId([1; 20]), addr(1), true, now);
    assert_eq!(e.status(now), NodeStatus::Good);
    let later = now + GOOD_FOR;
    assert_eq!(e.status(later), NodeStatus::Questionable);
    // Answered once and queried us recently: good again.
    e.last_query = Some(later);
    assert_eq!(e.status(later), NodeStatus::Good);
    e.failures = 1;
    assert_eq!(e.status(later), NodeStatus::Questionable);
    e.failures = BAD_AFTER_FAILURES;
    assert_eq!(e.status(later), NodeStatus::Bad);
    // Never answered: never good, even if it queries us.
    let mut q = Entry::responded(NodeId([2; 20]), addr(2), true, now);
    q.last_response = None;
    q.last_query = Some(now);
    assert_eq!(q.status(now), NodeStatus::Questionable);
}

#[test]
fn one_contact_per_ip_when_restricted() {
    let now = Instant::now();
    let mut t = RoutingTable::new(NodeId([0; 20]), true, now);
    let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
    let b: SocketAddr = "10.0.0.1:2".parse().unwrap();
    assert_eq!(
        t.on_response(NodeId([1; 20]), a, true, now),
        Insertion::Added
    );
    assert_eq!(
        t.on_response(NodeId([2; 20]), b, true, now),
        Insertion::Rejected
    );
    assert!(!t.has_room_for(&NodeId([3; 20]), &b, now));
    let mut open = RoutingTable::new(NodeId([0; 20]), false, now);
    open.on_response(NodeId([1; 20]), a, true, now);
    assert_eq!(
        open.on_response(NodeId([2; 20]), b, true, now),
        Insertion::Added
    );
}

#[test]
fn id_conflicts_and_restarts() {
    let now = Instant::now();
    let mut t = RoutingTable::new(NodeId([0; 20]), false, now);
    let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
    let b: SocketAddr = "10.0.0.2:1".parse().unwrap();
    assert_eq!(
        t.on_response(NodeId([0; 20]), a, true, now),
        Insertion::Rejected,
        "own ID"
    );
    t.on_response(NodeId([1; 20]), a, true, now);
    // A second address claiming a live ID is refused.
    assert_eq!(
        t.on_response(NodeId([1; 20]), b, true, now),
        Insertion::Rejected
    );
    // The same address with a new ID replaces the old identity.
    assert_eq!(
        t.on_response(NodeId([2; 20]), a, true, now),
        Insertion::Added
    );
    assert_eq!(t.len(), 1);
    assert_eq!(t.get(&a).unwrap().id, NodeId([2; 20]));
}

#[test]
fn rebuilt_table_keeps_contacts() {
    let now = Instant::now();
    let mut r = rng();
    let mut t = RoutingTable::new(NodeId::random(&mut r), false, now);
    let mut inserted = std::collections::HashMap::new();
    for i in 0..40 {
        let id = NodeId::random(&mut r);
        t.on_response(id, addr(i), true, now);
        inserted.insert(addr(i), id);
    }
    let n = t.len();
    let t2 = t.rebuilt(NodeId::random(&mut r), now);
    // Buckets fill differently around a new ID, but the close ones stay and the table holds
    // only contacts it knew.
    assert!(t2.len() >= n.min(16), "{} of {n}", t2.len());
    for e in t2.entries() {
        assert_eq!(inserted.get(&e.addr), Some(&e.id));
    }
}
