//! TCP on the session port, on loopback: outgoing connections leave from the listen port and
//! fall back to an ephemeral port only when the 4-tuple is taken; IPv4 and IPv6.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use burrow_swarm::net::{TcpDialer, TcpListeners};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

fn loopback(v6: bool) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    if v6 {
        (None, Some(Ipv6Addr::LOCALHOST))
    } else {
        (Some(Ipv4Addr::LOCALHOST), None)
    }
}

async fn remote(v6: bool) -> TcpListener {
    let addr: SocketAddr = if v6 { "[::1]:0" } else { "127.0.0.1:0" }.parse().unwrap();
    TcpListener::bind(addr).await.unwrap()
}

async fn source_ports(v6: bool) {
    let (ip4, ip6) = loopback(v6);
    let listeners = TcpListeners::bind(0, ip4, ip6).unwrap();
    let port = listeners.port();
    assert_ne!(port, 0);
    let dialer = TcpDialer::for_listeners(&listeners);
    let r1 = remote(v6).await;
    let r2 = remote(v6).await;

    // Two different remotes: both connections leave from the listen port.
    let _c1 = dialer.connect(r1.local_addr().unwrap()).await.unwrap();
    let (_s1, from1) = timeout(WAIT, r1.accept()).await.unwrap().unwrap();
    let _c2 = dialer.connect(r2.local_addr().unwrap()).await.unwrap();
    let (_s2, from2) = timeout(WAIT, r2.accept()).await.unwrap().unwrap();
    assert_eq!(from1.port(), port);
    assert_eq!(from2.port(), port);
    assert_eq!(from1.is_ipv6(), v6);

    // The same remote again: the 4-tuple is taken, so this one falls back.
    let _c3 = dialer.connect(r1.local_addr().unwrap()).await.unwrap();
    let (_s3, from3) = timeout(WAIT, r1.accept()).await.unwrap().unwrap();
    assert_ne!(from3.port(), port);
    let counters = dialer.counters();
    assert_eq!(counters.from_session_port, 2);
    assert_eq!(counters.from_ephemeral_port, 1);
    assert_eq!(counters.failed, 0);

    // The listener still accepts while outgoing sockets share its port.
    let listen_addr = listeners.local_addrs()[0];
    let mut incoming = tokio::net::TcpStream::connect(listen_addr).await.unwrap();
    let (mut accepted, peer) = timeout(WAIT, listeners.accept()).await.unwrap().unwrap();
    assert_eq!(peer, incoming.local_addr().unwrap());
    incoming.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    accepted.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
}

#[tokio::test]
async fn outgoing_tcp_leaves_from_the_listen_port_v4() {
    source_ports(false).await;
}

#[tokio::test]
async fn outgoing_tcp_leaves_from_the_listen_port_v6() {
    source_ports(true).await;
}

/// One listener per family on the same port number; each accepts its own family.
#[tokio::test]
async fn dual_stack_listeners_share_the_port() {
    let listeners =
        TcpListeners::bind(0, Some(Ipv4Addr::LOCALHOST), Some(Ipv6Addr::LOCALHOST)).unwrap();
    let addrs = listeners.local_addrs();
    assert_eq!(addrs.len(), 2);
    assert_eq!(addrs[0].port(), addrs[1].port());
    for addr in &addrs {
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_s, peer) = timeout(WAIT, listeners.accept()).await.unwrap().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
    }
}

/// A refused connection is a typed error and is counted.
#[tokio::test]
async fn refused_connection_is_an_error() {
    let listeners = TcpListeners::bind(0, Some(Ipv4Addr::LOCALHOST), None).unwrap();
    let dialer = TcpDialer::for_listeners(&listeners);
    let closed = {
        let l = remote(false).await;
        l.local_addr().unwrap()
    };
    let err = dialer.connect(closed).await.unwrap_err();
    assert!(err.to_string().contains("TCP"), "{err}");
    assert_eq!(dialer.counters().failed, 1);
}
