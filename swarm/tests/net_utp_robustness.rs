//! µTP under hostile or lossy conditions, on loopback: garbage datagrams, packets for unknown
//! connections, connection limits and backlogs, resets, and a lossy reordering path between
//! two burrow sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use burrow_swarm::net::utp::packet::{encode, Header, Packet, PacketType};
use burrow_swarm::net::utp::seq::Seq;
use burrow_swarm::net::{
    NetConfig, NetError, SessionSockets, UdpConfig, UdpMux, UtpConfig, UtpSocket,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

async fn utp_socket(config: UtpConfig) -> (UdpMux, UtpSocket) {
    let mut mux = UdpMux::bind(UdpConfig::loopback(0)).await.unwrap();
    let utp = UtpSocket::new(&mut mux, config).unwrap();
    (mux, utp)
}

fn packet(kind: PacketType, conn_id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        kind,
        conn_id,
        timestamp: 1,
        timestamp_diff: 0,
        wnd_size: 65536,
        seq_nr: Seq(seq),
        ack_nr: Seq(0),
    };
    let mut out = Vec::new();
    encode(&header, None, payload, &mut out);
    out
}

async fn recv_packet(socket: &UdpSocket) -> Header {
    let mut buf = [0u8; 2048];
    let (n, _) = timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    Packet::decode(&buf[..n]).unwrap().header
}

/// Datagrams that look like µTP but are not valid packets are counted and change nothing.
#[tokio::test]
async fn garbage_is_counted_and_ignored() {
    let (server_mux, server) = utp_socket(UtpConfig::default()).await;
    let (_client_mux, client) = utp_socket(UtpConfig::default()).await;
    let to = server_mux.local_addrs()[0];
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut state = 0x2545_f491_u32;
    for len in 20..120 {
        let mut junk: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        junk[0] = 0x01; // ST_DATA, version 1: routed to µTP by the demultiplexer
        junk[1] = 0x07; // an extension chain that runs off the end
        raw.send_to(&junk, to).await.unwrap();
    }
    let accept = tokio::spawn(async move {
        let (mut s, _) = server.accept().await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        (server, buf)
    });
    let mut stream = client.connect(to).await.unwrap();
    stream.write_all(b"ping").await.unwrap();
    let (server, buf) = timeout(WAIT, accept).await.unwrap().unwrap();
    assert_eq!(&buf, b"ping");
    let c = server.counters();
    assert!(c.invalid >= 90, "{c:?}");
    assert_eq!(c.accepts, 1);
}

/// A data packet for a connection we do not have is answered with ST_RESET; a RESET is not.
#[tokio::test]
async fn unknown_connections_are_reset() {
    let (mux, utp) = utp_socket(UtpConfig::default()).await;
    let to = mux.local_addrs()[0];
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    raw.send_to(&packet(PacketType::Data, 4242, 7, b"stray"), to)
        .await
        .unwrap();
    let reply = recv_packet(&raw).await;
    assert_eq!(reply.kind, PacketType::Reset);
    assert_eq!(reply.conn_id, 4242);
    raw.send_to(&packet(PacketType::Reset, 4242, 7, &[]), to)
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(timeout(Duration::from_millis(200), raw.recv_from(&mut buf))
        .await
        .is_err());
    assert_eq!(utp.counters().resets_sent, 1);
}

/// SYNs beyond the connection limit, or beyond the backlog nobody accepts from, get ST_RESET;
/// our own connect to a full socket fails fast as refused.
#[tokio::test]
async fn connection_limit_and_backlog_refuse_with_reset() {
    let (mux, utp) = utp_socket(UtpConfig {
        max_connections: 3,
        ..UtpConfig::default()
    })
    .await;
    let to = mux.local_addrs()[0];
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for id in 0..3u16 {
        raw.send_to(&packet(PacketType::Syn, id * 10, 1, &[]), to)
            .await
            .unwrap();
        let reply = recv_packet(&raw).await;
        assert_eq!(
            (reply.kind, reply.conn_id, reply.ack_nr),
            (PacketType::State, id * 10, Seq(1))
        );
    }
    raw.send_to(&packet(PacketType::Syn, 99, 1, &[]), to)
        .await
        .unwrap();
    assert_eq!(recv_packet(&raw).await.kind, PacketType::Reset);
    assert_eq!(utp.counters().refused_syns, 1);

    let (_client_mux, client) = utp_socket(UtpConfig::default()).await;
    let started = std::time::Instant::now();
    let err = client.connect(to).await.unwrap_err();
    assert!(matches!(err, NetError::Connect { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// A peer's ST_RESET surfaces as ConnectionReset on read and write.
#[tokio::test]
async fn reset_surfaces_as_connection_reset() {
    let (mux, utp) = utp_socket(UtpConfig::default()).await;
    let to = mux.local_addrs()[0];
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    raw.send_to(&packet(PacketType::Syn, 500, 1, &[]), to)
        .await
        .unwrap();
    let syn_ack = recv_packet(&raw).await;
    let (mut stream, from) = timeout(WAIT, utp.accept()).await.unwrap().unwrap();
    assert_eq!(from, raw.local_addr().unwrap());
    // The acceptor's packets carry 500 (our send id); ours carry 501 (its receive id).
    assert_eq!(syn_ack.conn_id, 500);
    raw.send_to(&packet(PacketType::Reset, 501, 2, &[]), to)
        .await
        .unwrap();
    let mut buf = [0u8; 8];
    let err = timeout(WAIT, stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    assert_eq!(
        stream.write(b"x").await.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionReset
    );
}

/// Dropping a stream ends the other side's read with end-of-stream after all the data.
#[tokio::test]
async fn drop_closes_gracefully_after_the_data() {
    let server = SessionSockets::bind(NetConfig::loopback(0)).await.unwrap();
    let client = SessionSockets::bind(NetConfig::loopback(0)).await.unwrap();
    let to = server.udp.local_addrs()[0];
    let mut stream = client.utp.connect(to).await.unwrap();
    let data = vec![9u8; 300_000];
    stream.write_all(&data).await.unwrap();
    drop(stream);
    let (mut accepted, _) = timeout(WAIT, server.utp.accept()).await.unwrap().unwrap();
    let mut got = Vec::new();
    timeout(WAIT, accepted.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, data);
}

/// Forwards datagrams between a client and `server`, dropping `loss_percent` and holding some
/// back to reorder them.
async fn lossy_proxy(server: SocketAddr, loss_percent: u32) -> SocketAddr {
    let proxy = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = proxy.local_addr().unwrap();
    tokio::spawn(async move {
        let mut client: Option<SocketAddr> = None;
        let mut held: Option<(Vec<u8>, SocketAddr)> = None;
        let mut rng = 0x9e37_79b9_u32;
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, from)) = proxy.recv_from(&mut buf).await else {
                return;
            };
            let to = if from == server {
                match client {
                    Some(c) => c,
                    None => continue,
                }
            } else {
                client = Some(from);
                server
            };
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            match rng % 100 {
                r if r < loss_percent => continue,
                // Hold this one back until the next datagram has gone.
                r if r < loss_percent * 2 && held.is_none() => held = Some((buf[..n].to_vec(), to)),
                _ => {
                    let _ = proxy.send_to(&buf[..n], to).await;
                    if let Some((late, late_to)) = held.take() {
                        let _ = proxy.send_to(&late, late_to).await;
                    }
                }
            }
        }
    });
    addr
}

/// 20 MB through a path that loses 3% of packets in each direction and reorders as many, in
/// 1400-byte packets (the server announces no datagram limit, as other clients do not): about
/// 15,000 packets, so loss recovery runs hundreds of times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_survives_a_lossy_reordering_path() {
    let stats = lossy_transfer(0).await;
    assert_eq!(stats.packet_size, 1_352);
}

/// The same with packets that grow toward 64 KiB: the packet-size search keeps going while
/// losses keep the window small, and lost probes do not stall the transfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_with_large_packets_survives_a_lossy_reordering_path() {
    let stats = lossy_transfer(u16::MAX).await;
    assert!(stats.packet_size > 1_352, "{stats:?}");
}

async fn lossy_transfer(server_max_datagram: u16) -> burrow_swarm::net::UtpStats {
    let mut config = NetConfig::loopback(0);
    config.utp.max_datagram = server_max_datagram;
    let server = SessionSockets::bind(config).await.unwrap();
    let client = SessionSockets::bind(NetConfig::loopback(0)).await.unwrap();
    let proxy = lossy_proxy(server.udp.local_addrs()[0], 3).await;
    let data: Vec<u8> = (0..20_000_000u32).map(|i| (i % 251) as u8).collect();
    let expected = data.clone();
    let reader = tokio::spawn(async move {
        let (mut s, _) = server.utp.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        got
    });
    let mut stream = client.utp.connect(proxy).await.unwrap();
    stream.write_all(&data).await.unwrap();
    stream.shutdown().await.unwrap();
    // Recovery by selective ACK, the time rule and tail-loss probes takes a few seconds here;
    // falling back to half-second retransmission timeouts for every loss took over a minute.
    let got = timeout(Duration::from_secs(60), reader)
        .await
        .expect("recovery too slow")
        .unwrap();
    assert!(got == expected, "stream corrupted over the lossy path");
    let stats = stream.stats();
    assert!(stats.retransmissions > 0 && stats.losses > 0, "{stats:?}");
    stats
}
