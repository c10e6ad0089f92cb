//! Node behaviour on a simulated network with a fake clock.

mod raw;
mod sim;

use std::net::SocketAddr;
use std::time::Duration;

use sim::Sim;

use super::*;
use crate::id::Distance;
use crate::routing::NodeStatus;

/// Defaults, except IPv4 only.
fn v4_config(_: usize) -> Config {
    Config {
        ipv6: false,
        ..Config::default()
    }
}

fn closest_ids(sim: &Sim, target: &[u8; 20], exclude: usize, ipv6: bool) -> Vec<NodeId> {
    let mut ids: Vec<(Distance, NodeId)> = (0..sim.nodes.len())
        .filter(|&i| i != exclude && !sim.dead.contains(&i))
        .map(|i| sim.nodes[i].id(ipv6))
        .map(|id| (Distance::between(target, &id.0), id))
        .collect();
    ids.sort();
    ids.into_iter()
        .take(crate::routing::K)
        .map(|x| x.1)
        .collect()
}

#[test]
fn lookups_converge_to_the_closest_nodes() {
    let mut sim = Sim::new(300, v4_config);
    sim.join_all(false);
    let mut rng = StdRng::seed_from_u64(77);
    let mut exact = 0;
    for round in 0..20 {
        let asker = 1 + (round * 37) % 299;
        let target = NodeId::random(&mut rng);
        let now = sim.now;
        let id = sim.nodes[asker].find_node(now, target);
        let deadline = sim.now + Duration::from_secs(30);
        assert!(
            sim.run_until(deadline, |s| s.done_event(asker, id).is_some()),
            "lookup {round} did not finish"
        );
        let done = sim.done_event(asker, id).unwrap();
        assert_eq!(done.status, LookupStatus::Completed);
        let got: Vec<NodeId> = done.closest.iter().map(|n| n.id).collect();
        let want = closest_ids(&sim, &target.0, asker, false);
        // Ordered nearest first.
        assert!(got.windows(2).all(
            |w| Distance::between(&target.0, &w[0].0) <= Distance::between(&target.0, &w[1].0)
        ));
        if got == want {
            exact += 1;
        }
        let overlap = got.iter().filter(|g| want.contains(g)).count();
        assert!(
            overlap >= 7,
            "round {round}: only {overlap} of the 8 closest found"
        );
    }
    assert!(exact >= 18, "exact in {exact}/20 lookups");
    // Routing tables hold what BEP 5 predicts for 300 nodes: a few full buckets each.
    let sizes: Vec<usize> = sim
        .nodes
        .iter()
        .map(|n| n.routing_table(false).len())
        .collect();
    let avg = sizes.iter().sum::<usize>() / sizes.len();
    assert!(avg >= 30, "average table size {avg}");
}

#[test]
fn get_peers_finds_announced_peers() {
    let mut sim = Sim::new(150, v4_config);
    sim.join_all(false);
    let ih = InfoHash([0xab; 20]);
    let now = sim.now;
    let a = sim.nodes[5].announce(now, ih, Some(5555));
    let b = sim.nodes[9].announce(now, ih, None);
    let deadline = sim.now + Duration::from_secs(30);
    assert!(sim.run_until(deadline, |s| s.done_event(5, a).is_some()
        && s.done_event(9, b).is_some()));
    let done = sim.done_event(5, a).unwrap();
    assert!(done.announced >= 6, "announced to {}", done.announced);
    // The nodes storing it are among those closest to the info-hash.
    let mut by_distance: Vec<usize> = (0..sim.nodes.len()).collect();
    by_distance.sort_by_key(|&i| Distance::between(&ih.0, &sim.nodes[i].id(false).0));
    let storing: Vec<usize> = (0..sim.nodes.len())
        .filter(|&i| sim.nodes[i].peers.info_hashes() == 1)
        .collect();
    assert!(storing.len() >= 6, "{storing:?}");
    for i in &storing {
        assert!(
            by_distance[..16].contains(i),
            "node {i} stores a far-away info-hash"
        );
    }

    let now = sim.now;
    let q = sim.nodes[100].get_peers(now, ih);
    let deadline = sim.now + Duration::from_secs(30);
    assert!(sim.run_until(deadline, |s| s.done_event(100, q).is_some()));
    let mut found = sim.peers_found(100, q);
    found.sort();
    let explicit = SocketAddr::new(sim.addrs[5][0].ip(), 5555);
    let implied = sim.addrs[9][0];
    let mut want = vec![explicit, implied];
    want.sort();
    assert_eq!(
        found, want,
        "explicit port and implied port (BEP 5 implied_port)"
    );
    assert_eq!(sim.done_event(100, q).unwrap().peers_found, 2);
}

#[test]
fn dead_nodes_are_replaced() {
    let mut sim = Sim::new(200, v4_config);
    sim.join_all(false);
    let dead: Vec<usize> = (150..200).collect();
    let count_dead = |sim: &Sim| -> usize {
        sim.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !sim.dead.contains(i))
            .map(|(_, n)| {
                n.routing_table(false)
                    .entries()
                    .filter(|e| dead.iter().any(|&d| sim.addrs[d][0] == e.addr))
                    .count()
            })
            .sum()
    };
    sim.dead.extend(dead.iter().copied());
    let before = count_dead(&sim);
    assert!(
        before > 200,
        "dead nodes were known to the network: {before}"
    );
    // Keep the network busy so that dead contacts are queried, then let upkeep run past the
    // 15 minutes after which silent contacts become questionable and get pinged.
    let mut rng = StdRng::seed_from_u64(3);
    for step in 0..40 {
        let asker = step % 150;
        let now = sim.now;
        sim.nodes[asker].find_node(now, NodeId::random(&mut rng));
        sim.run_for(Duration::from_secs(30));
    }
    let after = count_dead(&sim);
    assert!(
        after < before,
        "dead contacts: {before} before, {after} after"
    );
    // A dead contact is left only where no living node could take its place: every living
    // node of its bucket's range is already in the table.
    let now = sim.now;
    for (i, n) in sim.nodes.iter().enumerate().take(150) {
        let table = n.routing_table(false);
        for e in table.entries() {
            if !dead.iter().any(|&d| sim.addrs[d][0] == e.addr) {
                continue;
            }
            assert_eq!(
                e.status(now),
                NodeStatus::Bad,
                "node {i} has not noticed a dead contact"
            );
            let bucket = table.index(&e.id.0);
            for j in (0..150).filter(|&j| j != i) {
                let id = sim.nodes[j].id(false);
                if table.index(&id.0) == bucket {
                    assert!(
                        table.get(&sim.addrs[j][0]).is_some(),
                        "node {i}: dead contact kept while node {j} fits its bucket"
                    );
                }
            }
        }
    }
    // Lookups still converge among the living.
    let now = sim.now;
    let target = NodeId::random(&mut rng);
    let id = sim.nodes[3].find_node(now, target);
    let deadline = sim.now + Duration::from_secs(60);
    assert!(sim.run_until(deadline, |s| s.done_event(3, id).is_some()));
    let got: Vec<NodeId> = sim
        .done_event(3, id)
        .unwrap()
        .closest
        .iter()
        .map(|n| n.id)
        .collect();
    let want = closest_ids(&sim, &target.0, 3, false);
    assert!(got.iter().filter(|g| want.contains(g)).count() >= 7);
}

#[test]
fn dual_stack_bootstrap_fills_both_tables() {
    let mut sim = Sim::new(80, |_| Config::default());
    sim.join_all(true);
    let with_v6 = sim
        .nodes
        .iter()
        .filter(|n| n.routing_table(true).len() >= 8)
        .count();
    assert_eq!(with_v6, 80);
    // A newcomer that knows only an IPv4 router fills its IPv6 table from `nodes6`, asked
    // for with BEP 32 `want` while bootstrapping.
    let late = sim.add(Node::new(Config::default(), sim.now, sim::seed(500)));
    let now = sim.now;
    let router = sim.addrs[0][0];
    sim.nodes[late].bootstrap(now, &[router]);
    sim.run_for(Duration::from_secs(30));
    assert!(
        sim.nodes[late].routing_table(true).len() >= 16,
        "{}",
        sim.nodes[late].routing_table(true).len()
    );
    // A lookup searches both DHTs and reports closest nodes of both families.
    let now = sim.now;
    let target = NodeId([0x42; 20]);
    let id = sim.nodes[7].find_node(now, target);
    let deadline = sim.now + Duration::from_secs(30);
    assert!(sim.run_until(deadline, |s| s.done_event(7, id).is_some()));
    let done = sim.done_event(7, id).unwrap();
    let v4 = done.closest.iter().filter(|n| n.addr.is_ipv4()).count();
    let v6 = done.closest.iter().filter(|n| n.addr.is_ipv6()).count();
    assert_eq!((v4, v6), (8, 8));
    // Peers announced over IPv6 are found over IPv6.
    let ih = InfoHash([0x17; 20]);
    let now = sim.now;
    let a = sim.nodes[11].announce(now, ih, None);
    let deadline = sim.now + Duration::from_secs(30);
    assert!(sim.run_until(deadline, |s| s.done_event(11, a).is_some()));
    let now = sim.now;
    let q = sim.nodes[60].get_peers(now, ih);
    let deadline = sim.now + Duration::from_secs(30);
    assert!(sim.run_until(deadline, |s| s.done_event(60, q).is_some()));
    let mut found = sim.peers_found(60, q);
    found.sort();
    assert_eq!(found, vec![sim.addrs[11][0], sim.addrs[11][1]]);
}

#[test]
fn restart_from_saved_state_rejoins_at_once() {
    let mut sim = Sim::new(100, v4_config);
    sim.join_all(false);
    let ih = InfoHash([0x99; 20]);
    let now = sim.now;
    let a = sim.nodes[4].announce(now, ih, Some(7000));
    let deadline = sim.now + Duration::from_secs(30);
    assert!(sim.run_until(deadline, |s| s.done_event(4, a).is_some()));

    let saved = sim.nodes[20].save_state(sim.now);
    let old_id = sim.nodes[20].id(false);
    let old_len = sim.nodes[20].routing_table(false).len();
    let restored = Node::from_state(v4_config(20), sim.now, sim::seed(1000), &saved).unwrap();
    assert_eq!(restored.id(false), old_id);
    assert_eq!(restored.routing_table(false).len(), old_len);
    sim.nodes[20] = restored;
    // No bootstrap call: a search works straight away.
    let now = sim.now;
    let q = sim.nodes[20].get_peers(now, ih);
    let deadline = sim.now + Duration::from_secs(30);
    assert!(sim.run_until(deadline, |s| s.done_event(20, q).is_some()));
    assert_eq!(
        sim.peers_found(20, q),
        vec![SocketAddr::new(sim.addrs[4][0].ip(), 7000)]
    );

    assert!(matches!(
        Node::from_state(v4_config(0), sim.now, [0; 32], b"d2:idi1ee"),
        Err(StateError::Bencode(_))
    ));
    assert_eq!(
        Node::from_state(v4_config(0), sim.now, [0; 32], b"d1:vi1ee").unwrap_err(),
        StateError::Invalid("id")
    );
    assert_eq!(
        Node::from_state(v4_config(0), sim.now, [0; 32], b"de").unwrap_err(),
        StateError::Invalid("v")
    );
}

#[test]
fn read_only_nodes_stay_out_of_tables() {
    let mut sim = Sim::new(40, |i| Config {
        read_only: i == 39,
        ..v4_config(i)
    });
    sim.join_all(false);
    let ro = sim.addrs[39][0];
    for (i, n) in sim.nodes.iter().enumerate() {
        assert!(
            n.routing_table(false).get(&ro).is_none(),
            "node {i} added the read-only node"
        );
    }
    // It still searches fine, and answers nobody.
    let ih = InfoHash([0x31; 20]);
    let now = sim.now;
    let a = sim.nodes[1].announce(now, ih, Some(1234));
    let deadline = sim.now + Duration::from_secs(30);
    sim.run_until(deadline, |s| s.done_event(1, a).is_some());
    let now = sim.now;
    let q = sim.nodes[39].get_peers(now, ih);
    let deadline = sim.now + Duration::from_secs(30);
    assert!(sim.run_until(deadline, |s| s.done_event(39, q).is_some()));
    assert_eq!(sim.peers_found(39, q).len(), 1);
    assert_eq!(sim.nodes[39].stats().queries_answered, 0);
    assert!(sim.nodes[39].routing_table(false).len() >= 8);
}

#[test]
fn external_address_gives_bep42_id() {
    let now = std::time::Instant::now();
    let mut node = Node::new(Config::default(), now, [1; 32]);
    let public: SocketAddr = "203.0.113.50:6881".parse().unwrap();
    assert!(!crate::bep42::id_matches_ip(&node.id(false), public.ip()));
    node.set_external_addr(now, public);
    let id = node.id(false);
    assert!(crate::bep42::id_matches_ip(&id, public.ip()));
    assert!(
        matches!(node.poll_event(), Some(Event::NodeIdChanged { ipv6: false, id: x }) if x == id)
    );
    // Same address again, or a private one: nothing changes.
    node.set_external_addr(now, public);
    node.set_external_addr(now, "192.168.1.5:6881".parse().unwrap());
    assert_eq!(node.id(false), id);
    assert!(node.poll_event().is_none());
    // The IPv6 ID is separate.
    let public6: SocketAddr = "[2001:db8:aaaa:bbbb::1]:6881".parse().unwrap();
    node.set_external_addr(now, public6);
    assert!(crate::bep42::id_matches_ip(&node.id(true), public6.ip()));
    assert_eq!(node.id(false), id);
}

#[test]
fn sample_infohashes_and_add_node() {
    let mut sim = Sim::new(30, v4_config);
    sim.join_all(false);
    let hashes: Vec<InfoHash> = (0..3u8).map(|i| InfoHash([0x70 + i; 20])).collect();
    for (k, ih) in hashes.iter().enumerate() {
        let now = sim.now;
        let a = sim.nodes[k + 1].announce(now, *ih, Some(9000));
        let deadline = sim.now + Duration::from_secs(30);
        assert!(sim.run_until(deadline, |s| s.done_event(k + 1, a).is_some()));
    }
    // Ask a node that stores all three (in a 30-node DHT, the nodes closest to each key).
    let holder = (0..30)
        .max_by_key(|&i| sim.nodes[i].peers.info_hashes())
        .unwrap();
    let stored = sim.nodes[holder].peers.info_hashes();
    assert!(stored >= 2, "best holder stores {stored}");
    let asker = (holder + 1) % 30;
    let now = sim.now;
    let to = sim.addrs[holder][0];
    let q = sim.nodes[asker].sample_infohashes(now, to, NodeId([0; 20]));
    sim.run_for(Duration::from_secs(1));
    let result = sim.events[asker].iter().find_map(|e| match e {
        Event::Samples {
            lookup,
            from,
            result,
        } if *lookup == q => Some((*from, result.clone())),
        _ => None,
    });
    let (from, result) = result.expect("no answer");
    assert_eq!(from, to);
    let result = result.unwrap();
    assert_eq!(result.num, stored as i64);
    assert_eq!(result.samples.len(), stored);
    assert!(result.samples.iter().all(|h| hashes.contains(h)));
    assert_eq!(result.nodes.len(), 8);

    // A silent address yields a failed result once the query times out.
    let now = sim.now;
    let q = sim.nodes[asker].sample_infohashes(now, "10.9.9.9:1".parse().unwrap(), NodeId([0; 20]));
    sim.run_for(crate::txn::QUERY_TIMEOUT + Duration::from_secs(1));
    assert!(sim.events[asker]
        .iter()
        .any(|e| matches!(e, Event::Samples { lookup, result: None, .. } if *lookup == q)));

    // add_node: a node unknown to another joins its table once it answers a ping.
    let fresh = sim.add(Node::new(v4_config(0), sim.now, sim::seed(900)));
    let fresh_addr = sim.addrs[fresh][0];
    assert!(sim.nodes[2].routing_table(false).get(&fresh_addr).is_none());
    let now = sim.now;
    sim.nodes[2].add_node(now, fresh_addr);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        sim.nodes[2]
            .routing_table(false)
            .get(&fresh_addr)
            .map(|e| e.id),
        Some(sim.nodes[fresh].id(false))
    );
}
