//! The shared UDP socket on loopback: demultiplexing by kind, tracker transactions, bounded
//! queues, and sending from the session port on both families.

use std::net::SocketAddr;
use std::time::Duration;

use burrow_swarm::net::{NetConfig, SessionSockets, UdpConfig, UdpMux};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const PING: &[u8] = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
const WAIT: Duration = Duration::from_secs(5);

fn v4(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn v6(port: u16) -> SocketAddr {
    "[::1]:0"
        .parse::<SocketAddr>()
        .map(|mut a| {
            a.set_port(port);
            a
        })
        .unwrap()
}

async fn wait_until(mut cond: impl FnMut() -> bool) {
    timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("condition not reached in time");
}

/// A DHT query and a µTP connection arrive on the same port and reach different consumers, on
/// IPv4 and on IPv6.
#[tokio::test]
async fn dht_and_utp_share_the_port() {
    let mut server = SessionSockets::bind(NetConfig::loopback(0)).await.unwrap();
    let client = SessionSockets::bind(NetConfig::loopback(0)).await.unwrap();
    let port = server.port();
    let mut dht = server.udp.take_dht_inbox().unwrap();

    for server_addr in [v4(port), v6(port)] {
        let bind = if server_addr.is_ipv4() { v4(0) } else { v6(0) };
        let querier = UdpSocket::bind(bind).await.unwrap();
        querier.send_to(PING, server_addr).await.unwrap();
        let got = timeout(WAIT, dht.recv()).await.unwrap().unwrap();
        assert_eq!(got.from, querier.local_addr().unwrap());
        assert_eq!(&got.data[..], PING);

        let accept = tokio::spawn({
            let utp = server.utp.clone();
            async move {
                let (mut s, from) = utp.accept().await.unwrap();
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(&buf).await.unwrap();
                s.flush().await.unwrap();
                // Hold the stream until the client has read the echo.
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest).await;
                from
            }
        });
        let mut stream = client.utp.connect(server_addr).await.unwrap();
        assert_eq!(stream.peer_addr(), server_addr);
        assert_eq!(stream.local_addr().port(), client.port());
        stream.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        timeout(WAIT, stream.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"hello");
        drop(stream);
        let from = timeout(WAIT, accept).await.unwrap().unwrap();
        assert_eq!(
            from.port(),
            client.port(),
            "µTP leaves from the session port"
        );
        assert_eq!(from.is_ipv4(), server_addr.is_ipv4());
    }

    let c = server.udp.counters();
    assert_eq!(c.rx_dht, 2);
    assert!(c.rx_utp >= 6, "SYN, DATA and ACKs on both families: {c:?}");
    assert_eq!(c.rx_unknown, 0);
    assert_eq!(c.dropped_dht_queue_full + c.dropped_utp_queue_full, 0);
}

fn tracker_reply(action: u32, id: u32) -> Vec<u8> {
    let mut p = action.to_be_bytes().to_vec();
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&0x1234_5678_9abc_def0u64.to_be_bytes());
    p
}

/// Replies reach the transaction whose id and tracker address they carry; guessed ids, wrong
/// sources and unknown ids are dropped and counted.
#[tokio::test]
async fn tracker_replies_route_by_transaction_id() {
    let mux = UdpMux::bind(UdpConfig::loopback(0)).await.unwrap();
    let sender = mux.sender();
    let tracker_a = UdpSocket::bind(v4(0)).await.unwrap();
    let tracker_b = UdpSocket::bind(v6(0)).await.unwrap();
    let spoofer = UdpSocket::bind(v4(0)).await.unwrap();
    let a_addr = tracker_a.local_addr().unwrap();
    let b_addr = tracker_b.local_addr().unwrap();

    let mut ta = mux.register_tracker_transaction(a_addr).unwrap();
    // The cloneable handle a tracker task would hold works the same way.
    let mut tb = mux.tracker_transactions().register(b_addr).unwrap();
    assert_eq!(mux.pending_tracker_transactions(), 2);

    // BEP 15 connect requests: protocol id, action 0, transaction id.
    for (t, addr) in [(&ta, a_addr), (&tb, b_addr)] {
        let mut req = 0x41727101980u64.to_be_bytes().to_vec();
        req.extend_from_slice(&0u32.to_be_bytes());
        req.extend_from_slice(&t.id().0.to_be_bytes());
        sender.send_to(&req, addr).await.unwrap();
    }
    let mut buf = [0u8; 64];
    let (n, from_a) = tracker_a.recv_from(&mut buf).await.unwrap();
    let id_a = u32::from_be_bytes(buf[12..16].try_into().unwrap());
    assert_eq!((n, id_a), (16, ta.id().0));
    assert_eq!(from_a.port(), mux.port());
    let (_, from_b) = tracker_b.recv_from(&mut buf).await.unwrap();
    let id_b = u32::from_be_bytes(buf[12..16].try_into().unwrap());
    assert_eq!(from_b.port(), mux.port());
    assert!(from_b.is_ipv6());

    // A third party that knows the id is not the tracker; an unknown id matches nothing.
    spoofer
        .send_to(&tracker_reply(0, id_a), from_a)
        .await
        .unwrap();
    tracker_a
        .send_to(&tracker_reply(0, id_a ^ 0xffff), from_a)
        .await
        .unwrap();
    wait_until(|| mux.counters().dropped_tracker_unmatched == 2).await;

    // Real replies, in the opposite order of the requests.
    tracker_b
        .send_to(&tracker_reply(0, id_b), from_b)
        .await
        .unwrap();
    tracker_a
        .send_to(&tracker_reply(3, id_a), from_a)
        .await
        .unwrap();
    let rb = timeout(WAIT, tb.reply()).await.unwrap().unwrap();
    let ra = timeout(WAIT, ta.reply()).await.unwrap().unwrap();
    assert_eq!(rb.from, b_addr);
    assert_eq!(&rb.data[..], &tracker_reply(0, id_b)[..]);
    assert_eq!(ra.from, a_addr);
    assert_eq!(&ra.data[..4], &3u32.to_be_bytes());
    let c = mux.counters();
    assert_eq!((c.rx_tracker, c.dropped_tracker_unmatched), (2, 2));
    assert_eq!(c.tx_datagrams, 2);
    drop((ta, tb));
    assert_eq!(mux.pending_tracker_transactions(), 0);
}

/// A DHT queue nobody reads holds its limit and drops the rest, counted; junk is counted as
/// unknown and does not disturb the other kinds.
#[tokio::test]
async fn full_queue_drops_and_counts() {
    let config = UdpConfig {
        dht_queue: 4,
        ..UdpConfig::loopback(0)
    };
    let mut mux = UdpMux::bind(config).await.unwrap();
    let port = mux.port();
    let peer = UdpSocket::bind(v4(0)).await.unwrap();
    for _ in 0..10 {
        peer.send_to(PING, v4(port)).await.unwrap();
    }
    peer.send_to(b"GET / HTTP/1.1\r\n\r\n", v4(port))
        .await
        .unwrap();
    peer.send_to(&[0x51; 40], v4(port)).await.unwrap(); // µTP version 1 but type 5
    wait_until(|| {
        let c = mux.counters();
        c.rx_dht + c.dropped_dht_queue_full == 10 && c.rx_unknown == 2
    })
    .await;
    let c = mux.counters();
    assert_eq!((c.rx_dht, c.dropped_dht_queue_full), (4, 6));
    let mut inbox = mux.take_dht_inbox().unwrap();
    for _ in 0..4 {
        assert_eq!(&inbox.recv().await.unwrap().data[..], PING);
    }
    assert!(inbox.try_recv().is_err());
    assert!(
        mux.take_dht_inbox().is_none(),
        "the inbox is handed out once"
    );
}

/// With port 0 the two families still share one port number, and each family's sends leave
/// from it.
#[tokio::test]
async fn both_families_share_the_port_number() {
    let mux = UdpMux::bind(UdpConfig::loopback(0)).await.unwrap();
    let addrs = mux.local_addrs();
    assert_eq!(addrs.len(), 2);
    assert!(addrs[0].is_ipv4() && addrs[1].is_ipv6());
    assert_eq!(addrs[0].port(), addrs[1].port());
    let sender = mux.sender();
    for to in [v4(0), v6(0)] {
        let peer = UdpSocket::bind(to).await.unwrap();
        let n = sender
            .send_to(b"x", peer.local_addr().unwrap())
            .await
            .unwrap();
        assert_eq!(n, 1);
        let mut buf = [0u8; 8];
        let (_, from) = peer.recv_from(&mut buf).await.unwrap();
        assert_eq!(from, if to.is_ipv4() { addrs[0] } else { addrs[1] });
    }
    // A v4-mapped destination goes out of the IPv4 socket.
    let peer = UdpSocket::bind(v4(0)).await.unwrap();
    let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{}", peer.local_addr().unwrap().port())
        .parse()
        .unwrap();
    sender.send_to(b"y", mapped).await.unwrap();
    let mut buf = [0u8; 8];
    let (_, from) = peer.recv_from(&mut buf).await.unwrap();
    assert_eq!(from, addrs[0]);
}

/// A second session cannot take a port that is in use.
#[tokio::test]
async fn a_used_port_is_refused() {
    let first = SessionSockets::bind(NetConfig::loopback(0)).await.unwrap();
    let err = SessionSockets::bind(NetConfig::loopback(first.port()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
}

/// An IPv4-only configuration binds one socket and refuses IPv6 destinations with a typed
/// error.
#[tokio::test]
async fn ipv4_only_refuses_ipv6_destinations() {
    let config = UdpConfig {
        ipv6: None,
        ..UdpConfig::loopback(0)
    };
    let mux = UdpMux::bind(config).await.unwrap();
    assert_eq!(mux.local_addrs().len(), 1);
    let err = mux.sender().send_to(b"x", v6(9)).await.unwrap_err();
    assert!(
        matches!(err, burrow_swarm::net::NetError::NoSocketForFamily(_)),
        "{err}"
    );
}

/// A datagram sent in parts arrives whole, on both families, whether or not it may be
/// fragmented, and sending goes on normally after a fragmentable one.
#[tokio::test]
async fn datagrams_sent_in_parts_arrive_whole() {
    let mux = UdpMux::bind(UdpConfig::loopback(0)).await.unwrap();
    let sender = mux.sender();
    for to_v6 in [false, true] {
        let peer = UdpSocket::bind(if to_v6 { v6(0) } else { v4(0) })
            .await
            .unwrap();
        let to = peer.local_addr().unwrap();
        let big = vec![0x5a; 60_000];
        let mut buf = vec![0u8; 65_536];
        sender.send_parts(&[b"head:", &big], to).await.unwrap();
        let (n, _) = timeout(WAIT, peer.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 5 + big.len());
        assert!(buf.starts_with(b"head:") && buf[5..n] == big[..]);
        sender
            .send_fragmentable(&[b"frag:", &big[..1000]], to)
            .await
            .unwrap();
        let (n, _) = timeout(WAIT, peer.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], [&b"frag:"[..], &big[..1000]].concat());
        sender.try_send_parts(&[b"after"], to).unwrap();
        let (n, _) = timeout(WAIT, peer.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"after");
    }
    assert!(sender
        .try_send_parts(&[b"a", b"b", b"c", b"d", b"e"], v4(9))
        .is_err());
}
