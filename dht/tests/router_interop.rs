//! The bootstrap router (`burrow_dht::serve`, the code behind `burrow dht-node`) with nodes of
//! an independent implementation, the `mainline` crate, on 127.0.0.1. A population of mainline
//! and burrow nodes knows only the router; a newcomer that knows only the router ends up with a
//! routing table full of them.

#![allow(deprecated)] // mainline's blocking API, used from blocking threads

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use burrow_dht::driver::{Dht, DriverConfig};
use burrow_dht::serve::{ServeConfig, Server};
use burrow_dht::Config;

fn router_config() -> ServeConfig {
    let mut c = ServeConfig::new(0);
    c.bind = vec![Ipv4Addr::LOCALHOST.into()];
    c.router.node.one_node_per_ip = false;
    c.router.rate_limit = None;
    c.router.cache_size = 4096;
    c
}

fn mainline_node(router: SocketAddr, server: bool) -> mainline::Dht {
    let mut b = mainline::Dht::builder();
    b.bootstrap(&[router.to_string()])
        .bind_address(Ipv4Addr::LOCALHOST)
        .port(0);
    if server {
        b.server_mode();
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mainline_newcomer_learns_the_dht_through_the_router() {
    let server = Server::spawn(router_config()).await.unwrap();
    let router = server.local_addrs()[0];

    // The population: mainline nodes in server mode and burrow nodes, all bootstrapping from
    // the router alone.
    let population = tokio::task::spawn_blocking(move || {
        (0..8)
            .map(|_| mainline_node(router, true))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let mut burrows = Vec::new();
    for _ in 0..4 {
        let node = Config {
            one_node_per_ip: false,
            rate_limit: None,
            ipv6: false,
            ..Config::default()
        };
        let d = Dht::spawn(DriverConfig::new(
            node,
            vec!["127.0.0.1:0".parse().unwrap()],
        ))
        .await
        .unwrap();
        let _ = d.bootstrap(vec![router]).await.unwrap().finish().await;
        burrows.push(d);
    }
    let mut members: HashSet<SocketAddr> = burrows.iter().map(|d| d.local_addrs()[0]).collect();
    members.extend(
        population
            .iter()
            .map(|d| SocketAddr::V4(d.info().local_addr())),
    );

    // The router verifies them (they queried it) and caches them.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut stats = server.stats().await.unwrap();
    while stats.cache_v4 < 12 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stats = server.stats().await.unwrap();
    }
    assert!(stats.cache_v4 >= 12, "{stats:?}");
    assert!(
        stats.routing_v4 >= 8,
        "the router keeps its own table: {stats:?}"
    );

    // A newcomer (client mode) that knows only the router.
    let (known, found) = tokio::task::spawn_blocking(move || {
        let newcomer = mainline_node(router, false);
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut known = Vec::new();
        while Instant::now() < deadline {
            // A lookup through the router fills the newcomer's table.
            let found = newcomer.find_node(mainline::Id::random());
            known = newcomer.to_bootstrap();
            if known.len() >= 10 {
                return (known, found.len());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        (known, 0)
    })
    .await
    .unwrap();
    let learned: HashSet<SocketAddr> = known
        .iter()
        .filter_map(|s| s.parse().ok())
        .filter(|a| *a != router)
        .collect();
    println!(
        "newcomer's table: {} nodes, {} of the population of {}; router cache {}",
        known.len(),
        learned.intersection(&members).count(),
        members.len(),
        stats.cache_v4
    );
    assert!(
        learned.intersection(&members).count() >= 8,
        "newcomer's table {known:?}, population {members:?}"
    );
    assert!(found >= 8, "find_node through the router found {found}");

    let stats = server.stats().await.unwrap();
    assert!(stats.queries[1] + stats.queries[2] > 0, "{stats:?}");
    assert_eq!(stats.dropped_malformed, 0, "{stats:?}");
    drop(population);
    server.shutdown().await;
}
