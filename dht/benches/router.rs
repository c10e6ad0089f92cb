//! The router's fast path on one core, without sockets: decode, rate-limit check, cache walk
//! and reply encoding, against a router whose verified-node cache is full (a million IPv4
//! nodes, filled the way the network fills it: nodes query, the router verifies them, they
//! answer). Sources rotate over many addresses and the clock advances, so the per-IP limit is
//! consulted every time but never trips.
//!
//!     cargo bench -p burrow-dht --bench router

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{RngCore, SeedableRng};

use burrow_dht::krpc::{self, Body, Message, ResponseOut};
use burrow_dht::router::{Router, RouterConfig};
use burrow_dht::{Config, NodeId};

const SOURCES: usize = 4096;

fn source(i: usize) -> SocketAddr {
    SocketAddr::from(([100, 64 + (i >> 16) as u8, (i >> 8) as u8, i as u8], 6881))
}

/// Fills the cache through the real path: a query from each node, the router's verification
/// query, the node's answer. Addresses are in 10/8, exempt from BEP 42.
fn populated_router(now: &mut Instant, nodes: usize) -> Router {
    let config = RouterConfig {
        node: Config {
            ipv6: false,
            ..Config::default()
        },
        cache_size: nodes,
        verify_per_sec: 10_000_000,
        // The fill below compresses hours into moments; nothing should age out meanwhile.
        reverify_after: Duration::from_secs(36_000),
        ..RouterConfig::default()
    };
    let mut router = Router::new(config, *now, [5; 32]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut reply = Vec::new();
    let mut q = Vec::new();
    let mut done = 0u32;
    while (router.cache(false).len() as f64) < 0.99 * nodes as f64 && done < 4 * nodes as u32 {
        for _ in 0..30_000 {
            done += 1;
            let from = SocketAddr::from((
                [10, (done >> 16) as u8, (done >> 8) as u8, done as u8],
                6881,
            ));
            let mut id = [0u8; 20];
            rng.fill_bytes(&mut id);
            q.clear();
            krpc::write_ping(&mut q, b"pi", &NodeId(id), false);
            router.handle_datagram(*now, from, &q, &mut reply);
        }
        // Past the recently-pinged window, so the next batch's addresses are all new to it.
        *now += Duration::from_secs(120);
        for _ in 0..20 {
            *now += Duration::from_millis(200);
            router.handle_timeout(*now);
            while let Some(t) = router.poll_transmit() {
                let Ok(Message {
                    tid,
                    body: Body::Query { .. },
                    ..
                }) = Message::decode(&t.data)
                else {
                    continue;
                };
                // Each node answers with an ID of its own, derived from its address.
                let SocketAddr::V4(a) = t.to else { continue };
                let mut r = Vec::new();
                let mut id = [0u8; 20];
                let mut seeded = rand::rngs::StdRng::seed_from_u64(u64::from(u32::from(*a.ip())));
                seeded.fill_bytes(&mut id);
                krpc::write_response(&mut r, tid, &NodeId(id), &ResponseOut::default());
                router.handle_datagram(*now, t.to, &r, &mut reply);
            }
        }
    }
    router
}

/// Resident memory of this process (Linux), in MiB.
fn resident_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1 << 20) as f64
}

fn bench(c: &mut Criterion) {
    let before = resident_mib();
    let mut now = Instant::now();
    let started = Instant::now();
    let mut router = populated_router(&mut now, 1_000_000);
    let s = router.stats();
    eprintln!(
        "cache: {} of {} slots, {} MiB allocated, filled in {:.1} s; the whole router adds {:.1} MiB resident ({:.1} bytes per cached node)",
        s.cache_v4,
        router.cache(false).capacity(),
        s.cache_bytes >> 20,
        started.elapsed().as_secs_f64(),
        resident_mib() - before,
        (resident_mib() - before) * (1 << 20) as f64 / s.cache_v4 as f64
    );

    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut make = |kind: &str| -> Vec<Vec<u8>> {
        (0..1024u16)
            .map(|i| {
                let mut q = Vec::new();
                let mut id = [0u8; 20];
                let mut key = [0u8; 20];
                rng.fill_bytes(&mut id);
                rng.fill_bytes(&mut key);
                let tid = i.to_be_bytes();
                match kind {
                    "ping" => krpc::write_ping(&mut q, &tid, &NodeId(id), false),
                    "find_node" => {
                        krpc::write_find_node(&mut q, &tid, &NodeId(id), &key, None, false)
                    }
                    _ => krpc::write_get_peers(&mut q, &tid, &NodeId(id), &key, None, false),
                }
                q
            })
            .collect()
    };
    let cases = [
        ("ping", make("ping")),
        ("find_node", make("find_node")),
        ("get_peers", make("get_peers")),
    ];

    let mut group = c.benchmark_group("router query (1M-node cache)");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    let mut reply = Vec::with_capacity(1024);
    for (name, qs) in &cases {
        let mut i = 0usize;
        let mut t = now + Duration::from_secs(1);
        group.bench_function(*name, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                if i % SOURCES == 0 {
                    t += Duration::from_secs(1);
                }
                black_box(router.handle_datagram(
                    t,
                    source(i % SOURCES),
                    &qs[i % qs.len()],
                    &mut reply,
                ));
            })
        });
    }
    group.finish();
    let s = router.stats();
    assert_eq!(s.dropped_rate_limited, 0, "{s:?}");
}

criterion_group!(benches, bench);
criterion_main!(benches);
