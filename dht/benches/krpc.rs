//! Query handling throughput on one core: decode + handle + encode of `find_node` and
//! `get_peers` queries against a node with a full routing table and a stored swarm, as a busy
//! bootstrap node sees them. Sources rotate over many addresses so the per-IP rate limit (left
//! on, as in production) never trips but is always consulted.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, RngCore, SeedableRng};

use burrow_dht::krpc::{self, Body, Message, ResponseOut};
use burrow_dht::{Config, Node, NodeId};

const SOURCES: usize = 4096;

fn source(i: usize) -> SocketAddr {
    SocketAddr::from(([100, 64 + (i >> 16) as u8, (i >> 8) as u8, i as u8], 6881))
}

/// A node whose routing table has been filled the way the network fills it: nodes query it,
/// it pings them back, they answer.
fn populated_node(now: Instant) -> Node {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut node = Node::new(
        Config {
            ipv6: false,
            ..Config::default()
        },
        now,
        [7; 32],
    );
    for i in 0..5000 {
        let from = SocketAddr::from(([45, (i >> 16) as u8, (i >> 8) as u8, i as u8], 6881));
        let id = NodeId::random(&mut rng);
        let mut q = Vec::new();
        krpc::write_ping(&mut q, b"pi", &id, false);
        node.handle_datagram(now, from, &q);
        while let Some(t) = node.poll_transmit() {
            if let Ok(Message {
                tid,
                body: Body::Query { .. },
                ..
            }) = Message::decode(&t.data)
            {
                let mut r = Vec::new();
                krpc::write_response(&mut r, tid, &id, &ResponseOut::default());
                node.handle_datagram(now, t.to, &r);
            }
        }
    }
    node
}

fn queries(kind: &str, info_hash: &[u8; 20], n: usize) -> Vec<Vec<u8>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    (0..n)
        .map(|i| {
            let mut q = Vec::new();
            let id = NodeId::random(&mut rng);
            let tid = (i as u16).to_be_bytes();
            match kind {
                "find_node" => {
                    let mut target = [0u8; 20];
                    rng.fill_bytes(&mut target);
                    krpc::write_find_node(&mut q, &tid, &id, &target, None, false);
                }
                _ => krpc::write_get_peers(&mut q, &tid, &id, info_hash, None, false),
            }
            q
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let now = Instant::now();
    let mut node = populated_node(now);
    eprintln!(
        "routing table: {} contacts",
        node.routing_table(false).len()
    );

    // A swarm of 100 peers under one info-hash, announced with valid tokens.
    let swarm = [0x5e; 20];
    for i in 0..100 {
        let from = SocketAddr::from(([77, 0, 0, i as u8], 6881));
        let mut q = Vec::new();
        krpc::write_get_peers(&mut q, b"g", &NodeId([i as u8; 20]), &swarm, None, false);
        node.handle_datagram(now, from, &q);
        let mut token = Vec::new();
        while let Some(t) = node.poll_transmit() {
            if let Ok(Message {
                body: Body::Response(a),
                ..
            }) = Message::decode(&t.data)
            {
                token = a.token.unwrap().to_vec();
            }
        }
        let mut a = Vec::new();
        krpc::write_announce_peer(
            &mut a,
            b"a",
            &NodeId([i as u8; 20]),
            &swarm,
            0,
            true,
            &token,
            false,
        );
        node.handle_datagram(now, from, &a);
        while node.poll_transmit().is_some() {}
    }
    assert_eq!(node.stats().stored_peers, 100);

    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut absent = [0u8; 20];
    rng.fill(&mut absent);
    let cases = [
        ("find_node", queries("find_node", &absent, 1024)),
        (
            "get_peers (nodes only)",
            queries("get_peers", &absent, 1024),
        ),
        (
            "get_peers (50 values + nodes)",
            queries("get_peers", &swarm, 1024),
        ),
    ];

    let mut group = c.benchmark_group("query decode+handle+encode");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    for (name, qs) in &cases {
        let mut i = 0usize;
        // The clock advances one second per round over all sources, so each source sends one
        // query per second: well within the rate limit, which is still checked every time.
        let mut t = now + Duration::from_secs(1);
        group.bench_function(*name, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                if i % SOURCES == 0 {
                    t += Duration::from_secs(1);
                }
                node.handle_datagram(t, source(i % SOURCES), &qs[i % qs.len()]);
                while let Some(out) = node.poll_transmit() {
                    black_box(out);
                }
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decode only");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(2));
    let qs = &cases[2].1;
    let mut i = 0usize;
    group.bench_function("get_peers query", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(Message::decode(black_box(&qs[i % qs.len()])).unwrap());
        })
    });
    group.finish();
    let s = node.stats();
    assert_eq!(s.dropped_rate_limited, 0, "{s:?}");
}

criterion_group!(benches, bench);
criterion_main!(benches);
