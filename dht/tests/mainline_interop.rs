//! Interoperation with an independent implementation: the `mainline` crate's local testnet on
//! 127.0.0.1 (its nodes bootstrap only from each other, never from public routers).

#![allow(deprecated)] // mainline's blocking API, used from blocking threads

use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use burrow_dht::driver::{Dht, DriverConfig};
use burrow_dht::{Config, InfoHash, LookupStatus};
use mainline::{Id, Testnet};

fn loopback_config() -> DriverConfig {
    let node = Config {
        one_node_per_ip: false,
        rate_limit: None,
        ipv6: false,
        ..Config::default()
    };
    DriverConfig::new(node, vec!["127.0.0.1:0".parse().unwrap()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burrow_and_mainline_find_each_others_peers() {
    let testnet = tokio::task::spawn_blocking(|| Testnet::builder(12).build().unwrap())
        .await
        .unwrap();
    let routers: Vec<SocketAddr> = testnet
        .bootstrap
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(routers.iter().all(|a| a.ip().is_loopback()));

    let burrow = Dht::spawn(loopback_config()).await.unwrap();
    let (_, done) = burrow
        .bootstrap(routers.clone())
        .await
        .unwrap()
        .finish()
        .await;
    let done = done.unwrap();
    assert_eq!(done.status, LookupStatus::Completed);
    assert!(done.responded >= 8, "{done:?}");

    // A mainline node announces; burrow finds it.
    let ih_a = [0xa1u8; 20];
    let announcer = testnet.nodes[3].clone();
    tokio::task::spawn_blocking(move || {
        announcer
            .announce_peer(Id::from_bytes(ih_a).unwrap(), Some(45001))
            .unwrap()
    })
    .await
    .unwrap();
    let (peers, done) = burrow
        .get_peers(InfoHash(ih_a))
        .await
        .unwrap()
        .finish()
        .await;
    assert!(
        peers.contains(&SocketAddr::from(([127, 0, 0, 1], 45001))),
        "{peers:?} {done:?}"
    );

    // Burrow announces; a fresh mainline client (bootstrapped from the testnet) finds it.
    let ih_b = [0xb2u8; 20];
    let (_, done) = burrow
        .announce(InfoHash(ih_b), Some(45002))
        .await
        .unwrap()
        .finish()
        .await;
    let done = done.unwrap();
    assert!(done.announced >= 6, "{done:?}");
    let boot = testnet.bootstrap.clone();
    let found = tokio::task::spawn_blocking(move || {
        let client = mainline::Dht::builder()
            .bootstrap(&boot)
            .bind_address(std::net::Ipv4Addr::LOCALHOST)
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let want = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 45002);
        while Instant::now() < deadline {
            let peers: Vec<SocketAddrV4> = client
                .get_peers(Id::from_bytes(ih_b).unwrap())
                .flatten()
                .collect();
            if peers.contains(&want) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    })
    .await
    .unwrap();
    assert!(found, "mainline did not find the peer burrow announced");

    // Mainline's nodes answer burrow's lookups and put burrow in their tables.
    let stats = burrow.stats().await.unwrap();
    assert!(
        stats.queries_answered > 0,
        "mainline nodes never queried burrow: {stats:?}"
    );
    assert_eq!(stats.dropped_malformed, 0, "{stats:?}");
}
