//! One node probed with hand-made KRPC messages.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::compact::{decode_nodes, decode_peer};
use crate::id::{InfoHash, NodeId};
use crate::krpc::{self, Body, Message, Want};
use crate::node::{Config, Node, MAX_DATAGRAM_LEN, MAX_VALUES_V4};
use crate::rate_limit::RateLimit;
use crate::token::TOKEN_ROTATION;

const CLIENT_ID: NodeId = NodeId([0x11; 20]);

fn client(i: u8) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, i], 4000 + u16::from(i)))
}

fn node(config: Config) -> (Node, Instant) {
    let now = Instant::now();
    (Node::new(config, now, [9; 32]), now)
}

/// Sends `query` and returns the single answer, decoded into an owned copy of its bytes.
fn ask(node: &mut Node, now: Instant, from: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    node.handle_datagram(now, from, query);
    let mut answer = None;
    while let Some(t) = node.poll_transmit() {
        // Ignore the node's own pings to us (it wants to learn about new queriers).
        if let Ok(Message {
            body: Body::Query { .. },
            ..
        }) = Message::decode(&t.data)
        {
            continue;
        }
        assert_eq!(t.to, from);
        assert!(answer.is_none(), "two answers to one query");
        answer = Some(t.data);
    }
    answer
}

fn get_peers(ih: &[u8; 20], want: Option<Want>) -> Vec<u8> {
    let mut q = Vec::new();
    krpc::write_get_peers(&mut q, b"gp", &CLIENT_ID, ih, want, false);
    q
}

fn token_from(answer: &[u8]) -> Vec<u8> {
    match Message::decode(answer).unwrap().body {
        Body::Response(a) => a.token.unwrap().to_vec(),
        other => panic!("{other:?}"),
    }
}

fn announce(ih: &[u8; 20], port: u16, implied: bool, token: &[u8]) -> Vec<u8> {
    let mut q = Vec::new();
    krpc::write_announce_peer(&mut q, b"an", &CLIENT_ID, ih, port, implied, token, false);
    q
}

fn error_code(answer: &[u8]) -> Option<i64> {
    match Message::decode(answer).unwrap().body {
        Body::Error { code, .. } => Some(code),
        _ => None,
    }
}

#[test]
fn tokens_work_until_two_rotations_pass() {
    let (mut n, t0) = node(Config::default());
    let ih = [0x21; 20];
    let me = client(1);
    let tok = token_from(&ask(&mut n, t0, me, &get_peers(&ih, None)).unwrap());
    // A token is bound to the IP it was given to.
    let other = client(2);
    assert_eq!(
        error_code(&ask(&mut n, t0, other, &announce(&ih, 1, false, &tok)).unwrap()),
        Some(203)
    );
    assert_eq!(
        error_code(&ask(&mut n, t0, me, &announce(&ih, 6000, false, &tok)).unwrap()),
        None
    );
    // After one rotation it still works; after the next it is refused.
    let t1 = t0 + TOKEN_ROTATION + Duration::from_secs(1);
    n.handle_timeout(t1);
    assert_eq!(
        error_code(&ask(&mut n, t1, me, &announce(&ih, 6001, false, &tok)).unwrap()),
        None
    );
    let t2 = t1 + TOKEN_ROTATION + Duration::from_secs(1);
    n.handle_timeout(t2);
    assert_eq!(
        error_code(&ask(&mut n, t2, me, &announce(&ih, 6002, false, &tok)).unwrap()),
        Some(203)
    );
    assert_eq!(n.stats().announces_stored, 2);

    // The stored peers come back to a get_peers from the same family, port as announced.
    let answer = ask(&mut n, t2, client(3), &get_peers(&ih, None)).unwrap();
    let Body::Response(a) = Message::decode(&answer).unwrap().body else {
        panic!()
    };
    let mut peers: Vec<_> = a.values.unwrap().iter().filter_map(decode_peer).collect();
    peers.sort();
    assert_eq!(
        peers,
        vec![
            SocketAddr::new(me.ip(), 6000),
            SocketAddr::new(me.ip(), 6001)
        ]
    );
}

#[test]
fn invalid_announces_are_refused() {
    let (mut n, t0) = node(Config::default());
    let ih = [0x22; 20];
    let me = client(1);
    let tok = token_from(&ask(&mut n, t0, me, &get_peers(&ih, None)).unwrap());
    assert_eq!(
        error_code(&ask(&mut n, t0, me, &announce(&ih, 0, false, &tok)).unwrap()),
        Some(203),
        "port 0"
    );
    assert_eq!(
        error_code(&ask(&mut n, t0, me, &announce(&ih, 1, false, b"nope")).unwrap()),
        Some(203)
    );
    assert_eq!(
        error_code(&ask(&mut n, t0, me, &announce(&ih, 0, true, &tok)).unwrap()),
        None,
        "implied port"
    );
    let mut unknown = Vec::new();
    unknown.extend_from_slice(b"d1:ad2:id20:");
    unknown.extend_from_slice(&CLIENT_ID.0);
    unknown.extend_from_slice(b"e1:q4:vote1:t1:x1:y1:qe");
    assert_eq!(
        error_code(&ask(&mut n, t0, me, &unknown).unwrap()),
        Some(204)
    );
}

#[test]
fn rate_limit_holds_per_source() {
    let limit = RateLimit {
        per_second: 5,
        burst: 20,
    };
    let (mut n, t0) = node(Config {
        rate_limit: Some(limit),
        ..Config::default()
    });
    let mut ping = Vec::new();
    krpc::write_ping(&mut ping, b"pp", &CLIENT_ID, false);
    let flooder = client(7);
    let answered = (0..500)
        .filter(|_| ask(&mut n, t0, flooder, &ping).is_some())
        .count();
    assert_eq!(answered, 20);
    assert_eq!(n.stats().dropped_rate_limited, 480);
    // Others are unaffected; the flooder gets its sustained rate back over time.
    assert!(ask(&mut n, t0, client(8), &ping).is_some());
    let t1 = t0 + Duration::from_secs(2);
    let answered = (0..500)
        .filter(|_| ask(&mut n, t1, flooder, &ping).is_some())
        .count();
    assert_eq!(answered, 10);
}

#[test]
fn malformed_and_oversized_input_is_dropped() {
    let (mut n, t0) = node(Config::default());
    let from = client(1);
    let mut ping = Vec::new();
    krpc::write_ping(&mut ping, b"pp", &CLIENT_ID, false);
    let mut oversized = ping.clone();
    oversized.truncate(ping.len() - 1);
    oversized.extend(std::iter::repeat_n(b'0', MAX_DATAGRAM_LEN));
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        b"d".to_vec(),
        b"de".to_vec(),
        b"d1:y1:qe".to_vec(),
        ping[..ping.len() - 1].to_vec(),
        [&ping[..], b"x"].concat(),
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t999999:1:y1:qe".to_vec(),
        oversized,
        b"llllllllllllllllllllllllllllllllllllllllllllll".to_vec(),
    ];
    for c in &cases {
        assert!(
            ask(&mut n, t0, from, c).is_none(),
            "answered {:?}",
            String::from_utf8_lossy(c)
        );
    }
    let s = n.stats();
    assert_eq!(
        s.dropped_malformed + s.dropped_oversized,
        cases.len() as u64
    );
    assert_eq!(s.dropped_oversized, 1);
    // A response nobody asked for is ignored.
    let mut resp = Vec::new();
    krpc::write_response(
        &mut resp,
        b"\0\0\0\0",
        &CLIENT_ID,
        &krpc::ResponseOut::default(),
    );
    assert!(ask(&mut n, t0, from, &resp).is_none());
    assert_eq!(n.stats().unmatched_responses, 1);
    // And it still works.
    assert!(ask(&mut n, t0, from, &ping).is_some());
}

#[test]
fn answers_follow_want_and_carry_requester_ip() {
    let (mut n, t0) = node(Config {
        rate_limit: None,
        one_node_per_ip: false,
        ..Config::default()
    });
    // Fill both tables through pings the node sends to queriers.
    for i in 0..30u16 {
        for from in [
            SocketAddr::from(([10, 0, 0, i as u8], 7000)),
            format!("[fd00::{i:x}]:7000").parse().unwrap(),
        ] {
            let mut id = [0u8; 20];
            id[0] = i as u8 * 8;
            id[1] = u8::from(from.is_ipv6());
            let mut q = Vec::new();
            krpc::write_ping(&mut q, b"p", &NodeId(id), false);
            n.handle_datagram(t0, from, &q);
            while let Some(t) = n.poll_transmit() {
                let m = Message::decode(&t.data).unwrap();
                if let Body::Query { .. } = m.body {
                    let mut r = Vec::new();
                    krpc::write_response(&mut r, m.tid, &NodeId(id), &krpc::ResponseOut::default());
                    n.handle_datagram(t0, t.to, &r);
                }
            }
        }
    }
    assert!(n.routing_table(false).len() >= 8 && n.routing_table(true).len() >= 8);
    let me = client(1);
    let target = [0x40; 20];
    let mut check = |want: Option<Want>, from: SocketAddr, n4: bool, n6: bool| {
        let mut q = Vec::new();
        krpc::write_find_node(&mut q, b"fn", &CLIENT_ID, &target, want, false);
        let answer = ask(&mut n, t0, from, &q).unwrap();
        let m = Message::decode(&answer).unwrap();
        assert_eq!(m.ip, Some(from), "BEP 42 ip");
        let Body::Response(a) = m.body else { panic!() };
        assert_eq!(
            a.nodes.map(|x| decode_nodes(x, false).count()),
            n4.then_some(8)
        );
        assert_eq!(
            a.nodes6.map(|x| decode_nodes(x, true).count()),
            n6.then_some(8)
        );
    };
    check(None, me, true, false);
    check(None, "[2001:db8::5]:5".parse().unwrap(), false, true);
    check(Some(Want { n4: true, n6: true }), me, true, true);
    check(
        Some(Want {
            n4: false,
            n6: true,
        }),
        me,
        false,
        true,
    );
}

#[test]
fn big_swarms_fit_the_packet_limit_and_samples_are_served() {
    let (mut n, t0) = node(Config {
        rate_limit: None,
        ..Config::default()
    });
    let ih = [0x33; 20];
    for i in 0..120u8 {
        let from = SocketAddr::from(([100, 64, 0, i], 6000));
        let tok = token_from(&ask(&mut n, t0, from, &get_peers(&ih, None)).unwrap());
        assert_eq!(
            error_code(&ask(&mut n, t0, from, &announce(&ih, 0, true, &tok)).unwrap()),
            None
        );
    }
    let answer = ask(
        &mut n,
        t0,
        client(1),
        &get_peers(&ih, Some(Want { n4: true, n6: true })),
    )
    .unwrap();
    assert!(answer.len() <= 1024, "{} bytes", answer.len());
    let Body::Response(a) = Message::decode(&answer).unwrap().body else {
        panic!()
    };
    assert_eq!(a.values.unwrap().iter().count(), MAX_VALUES_V4);

    let mut q = Vec::new();
    krpc::write_sample_infohashes(&mut q, b"si", &CLIENT_ID, &[0; 20], false);
    let answer = ask(&mut n, t0, client(2), &q).unwrap();
    let Body::Response(a) = Message::decode(&answer).unwrap().body else {
        panic!()
    };
    assert_eq!(a.samples, Some(&ih[..]));
    assert_eq!(a.num, Some(1));
    assert!(a.interval.unwrap() > 0);
    let _ = InfoHash(ih);
}
