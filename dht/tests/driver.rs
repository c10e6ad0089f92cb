//! Nodes run by the tokio driver talk over real UDP sockets on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use burrow_dht::driver::{Dht, DriverConfig, LookupUpdate};
use burrow_dht::{Config, InfoHash, LookupStatus, NodeId};

/// Loopback settings: every node shares 127.0.0.1, so the one-contact-per-IP guard and the
/// per-IP rate limit must be off.
fn loopback_config() -> DriverConfig {
    let node = Config {
        one_node_per_ip: false,
        rate_limit: None,
        ..Config::default()
    };
    DriverConfig::new(node, vec!["127.0.0.1:0".parse().unwrap()])
}

async fn swarm(n: usize) -> Vec<Dht> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(Dht::spawn(loopback_config()).await.unwrap());
    }
    let router = nodes[0].local_addrs()[0];
    let mut joins = Vec::new();
    for d in &nodes[1..] {
        joins.push(d.bootstrap(vec![router]).await.unwrap());
    }
    for j in joins {
        let (_, done) = j.finish().await;
        assert_eq!(done.unwrap().status, LookupStatus::Completed);
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announce_and_find_over_loopback() {
    let nodes = tokio::time::timeout(Duration::from_secs(30), swarm(25))
        .await
        .expect("bootstrap");
    let ih = InfoHash([0x5c; 20]);
    let (_, done) = nodes[3]
        .announce(ih, Some(4242))
        .await
        .unwrap()
        .finish()
        .await;
    let done = done.unwrap();
    assert!(done.announced >= 5, "announced to {}", done.announced);

    let mut lookup = nodes[17].get_peers(ih).await.unwrap();
    let mut found = Vec::new();
    let done = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match lookup.next().await.unwrap() {
                LookupUpdate::Peers(p) => found.extend(p),
                LookupUpdate::Done(d) => return d,
            }
        }
    })
    .await
    .expect("get_peers finished");
    assert_eq!(found, vec![SocketAddr::from(([127, 0, 0, 1], 4242))]);
    assert_eq!(done.peers_found, 1);

    // A node restarted from saved state comes back with its ID and finds the peer at once.
    let state = nodes[9].save_state().await.unwrap();
    let id = nodes[9].node_id(false).await.unwrap();
    nodes[9].shutdown().await;
    let mut config = loopback_config();
    config.state = Some(state);
    let restarted = Dht::spawn(config).await.unwrap();
    assert_eq!(restarted.node_id(false).await.unwrap(), id);
    let (peers, _) = tokio::time::timeout(
        Duration::from_secs(20),
        restarted.get_peers(ih).await.unwrap().finish(),
    )
    .await
    .unwrap();
    assert_eq!(peers, vec![SocketAddr::from(([127, 0, 0, 1], 4242))]);

    let stats = nodes[0].stats().await.unwrap();
    assert!(
        stats.nodes_v4 >= 8 && stats.queries_answered > 0,
        "{stats:?}"
    );
    let closest = nodes[1]
        .find_node(NodeId([0; 20]))
        .await
        .unwrap()
        .finish()
        .await
        .1
        .unwrap();
    assert_eq!(closest.closest.len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_over_loopback() {
    let config = || {
        let node = Config {
            one_node_per_ip: false,
            rate_limit: None,
            ..Config::default()
        };
        DriverConfig::new(
            node,
            vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()],
        )
    };
    let mut nodes = Vec::new();
    for _ in 0..15 {
        nodes.push(Dht::spawn(config()).await.unwrap());
    }
    let routers = nodes[0].local_addrs().to_vec();
    assert!(routers[0].is_ipv4() && routers[1].is_ipv6());
    for d in &nodes[1..] {
        let (_, done) = d.bootstrap(routers.clone()).await.unwrap().finish().await;
        assert_eq!(done.unwrap().status, LookupStatus::Completed);
    }
    let stats = nodes[5].stats().await.unwrap();
    assert!(stats.nodes_v4 >= 8 && stats.nodes_v6 >= 8, "{stats:?}");

    // Announcing with the implied port publishes each family's own socket address.
    let ih = InfoHash([0x66; 20]);
    let (_, done) = nodes[4].announce(ih, None).await.unwrap().finish().await;
    assert!(done.unwrap().announced >= 10);
    let (mut peers, _) = tokio::time::timeout(
        Duration::from_secs(20),
        nodes[11].get_peers(ih).await.unwrap().finish(),
    )
    .await
    .unwrap();
    peers.sort();
    let mut want = nodes[4].local_addrs().to_vec();
    want.sort();
    assert_eq!(peers, want);
}
