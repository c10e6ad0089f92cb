//! The KRPC fuzz target's checks as a plain test that runs on stable: random and mutated
//! datagrams for a bounded time (`BURROW_FUZZ_SECS`, default 3 s), seeded randomly and printing
//! the seed (`BURROW_FUZZ_SEED` reproduces a run). Nothing may panic, and everything the node
//! sends must be valid KRPC within the BEP 32 size limit. The coverage-guided version is
//! `cargo +nightly fuzz run krpc` (fuzz/fuzz_targets/krpc.rs).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use burrow_dht::krpc::{self, Message, ResponseOut, Want};
use burrow_dht::{Config, Node, NodeId, NodeInfo};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

fn seeds() -> Vec<Vec<u8>> {
    let id = NodeId(*b"abcdefghij0123456789");
    let t = *b"mnopqrstuvwxyz123456";
    let mut out = vec![
        b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re".to_vec(),
        b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee".to_vec(),
    ];
    let mut push = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = Vec::new();
        f(&mut v);
        out.push(v);
    };
    push(&|v| krpc::write_ping(v, b"aa", &id, false));
    push(&|v| krpc::write_find_node(v, b"aa", &id, &t, Some(Want { n4: true, n6: true }), true));
    push(&|v| krpc::write_get_peers(v, b"aa", &id, &t, None, false));
    push(&|v| krpc::write_announce_peer(v, b"aa", &id, &t, 6881, true, b"tok", false));
    push(&|v| krpc::write_sample_infohashes(v, b"aa", &id, &t, false));
    let nodes = [NodeInfo {
        id,
        addr: "10.0.0.1:1".parse().unwrap(),
    }];
    let peers: [SocketAddr; 1] = ["1.2.3.4:5".parse().unwrap()];
    push(&|v| {
        let r = ResponseOut {
            nodes: Some(&nodes),
            values: Some(&peers),
            token: Some(b"x"),
            ..Default::default()
        };
        krpc::write_response(v, b"aa", &id, &r)
    });
    out
}

fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..4) {
        let len = v.len().max(1);
        match rng.random_range(0..7) {
            0 => {
                let i = rng.random_range(0..len);
                if let Some(b) = v.get_mut(i) {
                    *b ^= 1 << rng.random_range(0..8);
                }
            }
            1 => v.insert(
                rng.random_range(0..=v.len()),
                b"0123456789:deil"[rng.random_range(0..15)],
            ),
            2 if !v.is_empty() => {
                v.remove(rng.random_range(0..v.len()));
            }
            3 => v.truncate(rng.random_range(0..=v.len())),
            4 => {
                // Splice in a piece of another seed.
                let other = &seeds[rng.random_range(0..seeds.len())];
                let a = rng.random_range(0..other.len());
                let b = rng.random_range(a..=other.len());
                let at = rng.random_range(0..=v.len());
                v.splice(at..at, other[a..b].iter().copied());
            }
            5 => {
                // Inflate a length or integer.
                let at = rng.random_range(0..=v.len());
                v.splice(at..at, b"99999999".iter().copied());
            }
            _ => {
                let mut junk = vec![0u8; rng.random_range(0..64)];
                rng.fill_bytes(&mut junk);
                let at = rng.random_range(0..=v.len());
                v.splice(at..at, junk);
            }
        }
    }
    v
}

#[test]
fn random_and_mutated_datagrams() {
    let seed: u64 = std::env::var("BURROW_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let secs: u64 = std::env::var("BURROW_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    eprintln!("BURROW_FUZZ_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let seeds = seeds();
    let now = Instant::now();
    let mut node = Node::new(
        Config {
            rate_limit: None,
            ..Config::default()
        },
        now,
        [3; 32],
    );
    let from4: SocketAddr = "192.0.2.7:6881".parse().unwrap();
    let from6: SocketAddr = "[2001:db8::7]:6881".parse().unwrap();
    let (mut runs, mut decoded, mut answered) = (0u64, 0u64, 0u64);
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        for _ in 0..1000 {
            let data = if rng.random_bool(0.1) {
                let mut d = vec![0u8; rng.random_range(0..200)];
                rng.fill_bytes(&mut d);
                d
            } else {
                mutate(&mut rng, &seeds)
            };
            runs += 1;
            decoded += u64::from(Message::decode(&data).is_ok());
            node.handle_datagram(now, if rng.random_bool(0.5) { from4 } else { from6 }, &data);
            while let Some(t) = node.poll_transmit() {
                answered += 1;
                assert!(t.data.len() <= 1024, "{} byte answer", t.data.len());
                if let Err(e) = Message::decode(&t.data) {
                    panic!(
                        "invalid KRPC sent ({e}) for input {:?}",
                        String::from_utf8_lossy(&data)
                    );
                }
            }
            while node.poll_event().is_some() {}
        }
    }
    eprintln!("{runs} inputs, {decoded} decoded, {answered} answers");
    // The mutations must keep some inputs valid, or the test exercises only the error paths.
    assert!(
        decoded * 100 > runs && answered > 0,
        "{decoded}/{runs} decoded, {answered} answered"
    );
}
