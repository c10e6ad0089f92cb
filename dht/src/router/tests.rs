//! Router behaviour with real nodes on a simulated network and a fake clock.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::compact::decode_nodes;
use crate::krpc::{write_announce_peer, write_find_node, write_get_peers, write_ping, Want};
use crate::rate_limit::RateLimit;

fn config() -> RouterConfig {
    RouterConfig {
        node: Config {
            ipv6: false,
            one_node_per_ip: false,
            rate_limit: None,
            ..Config::default()
        },
        cache_size: 1024,
        cache_size_v6: 64,
        rate_limit: None,
        verify_per_sec: 1000,
        ..RouterConfig::default()
    }
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 6881))
}

/// A router at 10.255.0.1 and plain nodes that know it as their only bootstrap contact.
struct Net {
    now: Instant,
    router: Router,
    raddr: SocketAddr,
    nodes: Vec<(SocketAddr, Node)>,
    reply: Vec<u8>,
    /// Nodes that no longer answer anything.
    dead: Vec<SocketAddr>,
}

impl Net {
    fn new(config: RouterConfig, nodes: usize) -> Net {
        let now = Instant::now();
        let mut net = Net {
            now,
            router: Router::new(config, now, [7; 32]),
            raddr: SocketAddr::from(([10, 255, 0, 1], 6881)),
            nodes: Vec::new(),
            reply: Vec::new(),
            dead: Vec::new(),
        };
        for i in 0..nodes {
            net.add_node(i);
        }
        net
    }

    fn add_node(&mut self, i: usize) {
        let c = Config {
            ipv6: false,
            one_node_per_ip: false,
            rate_limit: None,
            ..Config::default()
        };
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        let mut node = Node::new(c, self.now, seed);
        node.bootstrap(self.now, &[self.raddr]);
        self.nodes.push((addr(i), node));
    }

    fn deliver(&mut self) {
        for _ in 0..100 {
            let mut busy = false;
            while let Some(t) = self.router.poll_transmit() {
                busy = true;
                if self.dead.contains(&t.to) {
                    continue;
                }
                if let Some((_, n)) = self.nodes.iter_mut().find(|(a, _)| *a == t.to) {
                    n.handle_datagram(self.now, self.raddr, &t.data);
                }
            }
            for i in 0..self.nodes.len() {
                let from = self.nodes[i].0;
                while let Some(t) = self.nodes[i].1.poll_transmit() {
                    busy = true;
                    if self.dead.contains(&from) {
                        continue;
                    }
                    if t.to == self.raddr {
                        if self
                            .router
                            .handle_datagram(self.now, from, &t.data, &mut self.reply)
                        {
                            self.nodes[i]
                                .1
                                .handle_datagram(self.now, self.raddr, &self.reply);
                        }
                    } else if let Some(j) = self.nodes.iter().position(|(a, _)| *a == t.to) {
                        if !self.dead.contains(&t.to) {
                            self.nodes[j].1.handle_datagram(self.now, from, &t.data);
                        }
                    }
                }
            }
            if !busy {
                return;
            }
        }
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(100);
            self.router.handle_timeout(self.now);
            for (_, n) in &mut self.nodes {
                n.handle_timeout(self.now);
            }
            self.deliver();
        }
    }

    /// Sends a raw query from `from`; returns the reply, if any.
    fn query(&mut self, from: SocketAddr, q: &[u8]) -> Option<Vec<u8>> {
        let mut reply = Vec::new();
        self.router
            .handle_datagram(self.now, from, q, &mut reply)
            .then_some(reply)
    }
}

fn find_node_query(target: [u8; 20], want: Option<Want>) -> Vec<u8> {
    let mut q = Vec::new();
    write_find_node(&mut q, b"aa", &NodeId([0x11; 20]), &target, want, false);
    q
}

fn reply_nodes(reply: &[u8]) -> Vec<crate::compact::NodeInfo> {
    let msg = Message::decode(reply).unwrap();
    let Body::Response(args) = msg.body else {
        panic!("not a response")
    };
    let mut v: Vec<_> = decode_nodes(args.nodes.unwrap_or_default(), false).collect();
    v.extend(decode_nodes(args.nodes6.unwrap_or_default(), true));
    v
}

#[test]
fn queriers_are_verified_then_handed_out() {
    let mut net = Net::new(config(), 30);
    net.run(Duration::from_secs(5));
    let s = net.router.stats();
    assert_eq!(s.cache_v4, 30, "{s:?}");
    assert!(s.verify_sent >= 30 && s.verify_answers >= 30, "{s:?}");
    // Every cached node answered a verification query: they all sit in the cache with the
    // addresses they answered from.
    for (a, n) in &net.nodes {
        assert!(net.router.cache(false).contains(&n.id(false), a));
    }
    // A newcomer asking for a key gets the K closest verified nodes.
    let target = [0x5a; 20];
    let reply = net
        .query(addr(900), &find_node_query(target, None))
        .unwrap();
    let got: Vec<NodeId> = reply_nodes(&reply).into_iter().map(|n| n.id).collect();
    let mut want: Vec<NodeId> = net.nodes.iter().map(|(_, n)| n.id(false)).collect();
    want.sort_by_key(|id| crate::id::Distance::between(&target, &id.0));
    assert_eq!(got, want[..K]);
    // Newcomers that know only the router learn the others through it.
    for i in 100..105 {
        net.add_node(i);
    }
    net.run(Duration::from_secs(5));
    for (_, n) in &net.nodes[30..] {
        assert!(
            n.routing_table(false).len() > K,
            "{}",
            n.routing_table(false).len()
        );
    }
    // The router's own routing table holds verified nodes too.
    assert!(net.router.node().routing_table(false).len() >= K);
}

use crate::routing::K;

#[test]
fn unanswered_or_forged_answers_do_not_enter_the_cache() {
    let mut net = Net::new(config(), 0);
    // A query from a node that never answers pings.
    let silent = addr(1);
    let mut q = Vec::new();
    write_ping(&mut q, b"zz", &NodeId([0x33; 20]), false);
    assert!(net.query(silent, &q).is_some());
    net.run(Duration::from_secs(2));
    assert_eq!(net.router.stats().verify_sent, 1);
    // Someone else forges the answer: wrong transaction ID, then a right-looking one from the
    // wrong address.
    let t = net.router.transmits.front().cloned();
    assert!(t.is_none(), "queued query was drained");
    let mut forged = Vec::new();
    crate::krpc::write_response(
        &mut forged,
        b"\x81234",
        &NodeId([0x33; 20]),
        &crate::krpc::ResponseOut::default(),
    );
    assert!(!net
        .router
        .handle_datagram(net.now, silent, &forged, &mut Vec::new()));
    assert!(net.router.cache(false).is_empty());
    let tid = net.router.verifier.tid(net.router.secs(net.now), &silent);
    let mut right = Vec::new();
    crate::krpc::write_response(&mut right, &tid, &NodeId([0x33; 20]), &Default::default());
    net.router
        .handle_datagram(net.now, addr(2), &right, &mut Vec::new());
    assert!(
        net.router.cache(false).is_empty(),
        "answer from another address"
    );
    net.router
        .handle_datagram(net.now, silent, &right, &mut Vec::new());
    assert_eq!(
        net.router.cache(false).len(),
        1,
        "the genuine answer counts"
    );
}

#[test]
fn ids_failing_bep42_are_not_cached() {
    let mut net = Net::new(config(), 0);
    let public: SocketAddr = "203.0.113.9:6881".parse().unwrap();
    let secs = net.router.secs(net.now);
    let tid = net.router.verifier.tid(secs, &public);
    let mut r = Vec::new();
    crate::krpc::write_response(&mut r, &tid, &NodeId([0x44; 20]), &Default::default());
    net.router
        .handle_datagram(net.now, public, &r, &mut Vec::new());
    assert!(net.router.cache(false).is_empty());
    assert_eq!(net.router.stats().verify_rejected_bep42, 1);
    let mut rng = StdRng::seed_from_u64(3);
    let good = bep42::node_id_for(public.ip(), &mut rng);
    let mut r = Vec::new();
    crate::krpc::write_response(&mut r, &tid, &good, &Default::default());
    net.router
        .handle_datagram(net.now, public, &r, &mut Vec::new());
    assert!(net.router.cache(false).contains(&good, &public));
}

#[test]
fn dead_nodes_stop_being_handed_out_and_are_dropped() {
    let mut c = config();
    c.reverify_after = Duration::from_secs(60);
    let mut net = Net::new(c, 20);
    net.run(Duration::from_secs(5));
    assert_eq!(net.router.cache(false).len(), 20);
    let gone: Vec<SocketAddr> = net.nodes[..5].iter().map(|(a, _)| *a).collect();
    net.dead.extend(gone.iter().copied());
    net.run(Duration::from_secs(200));
    let s = net.router.stats();
    assert_eq!(s.cache_v4, 15, "{s:?}");
    assert_eq!(s.cache_evicted, 5);
    for a in &gone {
        let reply = net
            .query(addr(800), &find_node_query([0; 20], None))
            .unwrap();
        assert!(reply_nodes(&reply).iter().all(|n| n.addr != *a));
    }
    // The living ones stay cached: re-verified, not re-added.
    assert_eq!(s.cache_added, 20);
}

#[test]
fn one_bounded_reply_per_query_and_malformed_input_is_counted() {
    let mut c = config();
    c.node.ipv6 = true;
    c.cache_size_v6 = 256;
    let mut net = Net::new(c, 0);
    let mut rng = StdRng::seed_from_u64(5);
    for i in 0..200u32 {
        let a4 = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 1000));
        let a6 = SocketAddr::new(format!("fd00::{i:x}").parse().unwrap(), 1000);
        let secs = net.router.secs(net.now);
        for a in [a4, a6] {
            let f = fam(&a);
            net.router.caches[f].insert(NodeId(rng.random()), a, secs, 600);
        }
    }
    let from = addr(5);
    let both = Some(Want { n4: true, n6: true });
    let mut queries = Vec::new();
    queries.push(find_node_query([1; 20], None));
    queries.push(find_node_query([2; 20], both));
    let mut q = Vec::new();
    write_get_peers(&mut q, b"a", &NodeId([3; 20]), &[9; 20], both, false);
    queries.push(q);
    let mut q = Vec::new();
    write_ping(&mut q, &[7; 32], &NodeId([3; 20]), false);
    queries.push(q);
    for q in &queries {
        let mut reply = Vec::new();
        assert!(net.router.handle_datagram(net.now, from, q, &mut reply));
        assert!(
            reply.len() <= MAX_AMPLIFICATION * q.len(),
            "{} vs {}",
            reply.len(),
            q.len()
        );
        Message::decode(&reply).unwrap();
    }
    // A plain find_node gets K IPv4 nodes; one asking for both families gets both, trimmed.
    let r = net.query(from, &queries[0]).unwrap();
    assert_eq!(reply_nodes(&r).len(), K);
    let r = net.query(from, &queries[1]).unwrap();
    let nodes = reply_nodes(&r);
    assert!(nodes.iter().filter(|n| n.addr.is_ipv4()).count() == K);
    assert!(nodes.iter().any(|n| n.addr.is_ipv6()));
    assert!(net.router.stats().replies_trimmed >= 1);
    // get_peers gets nodes and no token; announce_peer an error.
    let r = net.query(from, &queries[2]).unwrap();
    let Body::Response(args) = Message::decode(&r).unwrap().body else {
        panic!()
    };
    assert!(args.token.is_none() && args.values.is_none() && args.nodes.is_some());
    let mut q = Vec::new();
    write_announce_peer(
        &mut q,
        b"b",
        &NodeId([3; 20]),
        &[9; 20],
        1,
        false,
        b"tok",
        false,
    );
    let r = net.query(from, &q).unwrap();
    assert!(matches!(
        Message::decode(&r).unwrap().body,
        Body::Error { code: 203, .. }
    ));
    // Junk gets nothing back and is counted.
    let before = net.router.stats();
    for junk in [&b"d1:ad2:id20:"[..], b"hello", b"de", &[b'd'; 5000][..]] {
        assert!(net.query(from, junk).is_none());
    }
    let after = net.router.stats();
    assert_eq!(after.dropped_malformed - before.dropped_malformed, 3);
    assert_eq!(after.dropped_oversized - before.dropped_oversized, 1);
    assert_eq!(after.replies, before.replies);
}

#[test]
fn rate_limit_is_per_source() {
    let mut c = config();
    c.rate_limit = Some(RateLimit {
        per_second: 10,
        burst: 20,
    });
    let mut net = Net::new(c, 0);
    let q = find_node_query([1; 20], None);
    let flooder = addr(1);
    let answered = (0..1000)
        .filter(|_| net.query(flooder, &q).is_some())
        .count();
    assert_eq!(answered, 20);
    assert!(
        net.query(addr(2), &q).is_some(),
        "another source is still answered"
    );
    assert_eq!(net.router.stats().dropped_rate_limited, 980);
}

#[test]
fn state_keeps_the_id_and_requeues_the_cache() {
    let mut net = Net::new(config(), 12);
    net.run(Duration::from_secs(5));
    let id = net.router.id(false);
    let state = net.router.save_state(net.now);
    let restored = Router::from_state(config(), net.now, [9; 32], &state).unwrap();
    assert_eq!(restored.id(false), id);
    assert!(
        restored.cache(false).is_empty(),
        "saved nodes must answer again first"
    );
    assert_eq!(restored.stats().candidates_queued, 12);
    assert!(restored.node().routing_table(false).len() >= K);
    assert!(Router::from_state(config(), net.now, [9; 32], b"d1:vi1ee").is_err());
    assert!(Router::from_state(config(), net.now, [9; 32], b"garbage").is_err());
}
