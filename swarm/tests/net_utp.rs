//! µTP over the shared UDP socket, burrow to burrow on loopback, and the transport-agnostic
//! dialer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use burrow_swarm::net::{
    DialPolicy, Dialer, NetConfig, NetError, PeerStream, SessionSockets, TcpDialer, Transport,
    UdpConfig, UdpMux, UtpConfig, UtpSocket,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

/// Deterministic pseudo-random bytes (xorshift64*), so corruption anywhere is detected.
struct Pattern(u64);

impl Pattern {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

async fn write_pattern(w: &mut (impl AsyncWrite + Unpin), seed: u64, len: u64) {
    let mut pattern = Pattern(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        pattern.fill(&mut buf[..n]);
        w.write_all(&buf[..n]).await.unwrap();
        left -= n as u64;
    }
    w.flush().await.unwrap();
}

async fn check_pattern(r: &mut (impl AsyncRead + Unpin), seed: u64, len: u64) {
    let mut pattern = Pattern(seed);
    let mut expect = vec![0u8; 64 * 1024];
    let mut got = vec![0u8; 64 * 1024];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(got.len() as u64) as usize;
        r.read_exact(&mut got[..n]).await.unwrap();
        pattern.fill(&mut expect[..n]);
        assert!(got[..n] == expect[..n], "corrupt data at offset {done}");
        done += n as u64;
    }
}

/// Sends `len` bytes through one µTP connection and echoes them back, checking every byte.
async fn echo(
    server_addr: SocketAddr,
    server: &UtpSocket,
    client: &UtpSocket,
    len: u64,
) -> Duration {
    let echo = tokio::spawn({
        let server = server.clone();
        async move {
            let (stream, _) = server.accept().await.unwrap();
            let (mut r, mut w) = tokio::io::split(stream);
            let copied = tokio::io::copy(&mut (&mut r).take(len), &mut w)
                .await
                .unwrap();
            w.flush().await.unwrap();
            // Keep the stream open until the client has everything.
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest).await;
            copied
        }
    });
    let started = Instant::now();
    let stream = client.connect(server_addr).await.unwrap();
    let (mut r, mut w) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        write_pattern(&mut w, 7, len).await;
        w
    });
    check_pattern(&mut r, 7, len).await;
    let elapsed = started.elapsed();
    drop(writer.await.unwrap());
    drop(r);
    assert_eq!(timeout(WAIT, echo).await.unwrap().unwrap(), len);
    elapsed
}

async fn pair() -> (SessionSockets, SessionSockets) {
    (
        SessionSockets::bind(NetConfig::loopback(0)).await.unwrap(),
        SessionSockets::bind(NetConfig::loopback(0)).await.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utp_echo_v4_and_v6() {
    let (server, client) = pair().await;
    for addr in server.udp.local_addrs() {
        echo(addr, &server.utp, &client.utp, 8 << 20).await;
    }
}

/// Sends 8 MiB from `client` to `server` over `family`'s loopback; returns the sender's
/// packet size afterwards.
async fn packet_size_after_transfer(
    server: &SessionSockets,
    client: &SessionSockets,
    family: usize,
) -> usize {
    let addr = server.udp.local_addrs()[family];
    let len = 8 << 20;
    let reader = tokio::spawn({
        let utp = server.utp.clone();
        async move {
            let (mut s, _) = utp.accept().await.unwrap();
            check_pattern(&mut s, 3, len).await;
            s
        }
    });
    let mut s = client.utp.connect(addr).await.unwrap();
    write_pattern(&mut s, 3, len).await;
    let _server_end = timeout(WAIT, reader).await.unwrap().unwrap();
    s.stats().packet_size
}

/// Between two burrow endpoints packets grow to what loopback carries (64 KiB datagrams); a
/// remote that does not announce its datagram limit, as other clients do not, keeps getting
/// 1400-byte packets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utp_packets_grow_only_toward_a_remote_that_announces_its_limit() {
    let (server, client) = pair().await;
    // IPv4: 65,535 bytes less 20 of IP, 8 of UDP and 20 of µTP header.
    assert_eq!(
        packet_size_after_transfer(&server, &client, 0).await,
        65_487
    );
    // IPv6: the 40-byte IP header is not counted in its 65,535-byte payload limit, but the
    // route's MTU (65,536) is an IP packet size, so 65,535 − 48 − 20.
    assert_eq!(
        packet_size_after_transfer(&server, &client, 1).await,
        65_467
    );

    let mut quiet = NetConfig::loopback(0);
    quiet.utp.max_datagram = 0;
    let quiet = SessionSockets::bind(quiet).await.unwrap();
    assert_eq!(packet_size_after_transfer(&quiet, &client, 0).await, 1_352);
    assert_eq!(packet_size_after_transfer(&quiet, &client, 1).await, 1_332);
    // The quiet end still heard the client's limit, so its own packets may grow.
    assert_eq!(packet_size_after_transfer(&client, &quiet, 0).await, 65_487);
}

/// ≥ 1 GiB each way through one µTP connection (sequence numbers wrap many times); about a second
/// in the test profile, whose code is optimised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utp_echo_one_gibibyte() {
    let (server, client) = pair().await;
    let addr = server.udp.local_addrs()[0];
    let len = 1u64 << 30;
    let elapsed = echo(addr, &server.utp, &client.utp, len).await;
    eprintln!(
        "1 GiB echoed over µTP in {:.1} s ({:.1} MB/s each way)",
        elapsed.as_secs_f64(),
        len as f64 / elapsed.as_secs_f64() / 1e6
    );
}

/// Many connections at once on one socket, both directions of connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utp_many_connections() {
    let (a, b) = pair().await;
    let a_addr = a.udp.local_addrs()[0];
    let acceptor = tokio::spawn({
        let utp = a.utp.clone();
        async move {
            let mut tasks = Vec::new();
            for _ in 0..16 {
                let (mut s, _) = utp.accept().await.unwrap();
                tasks.push(tokio::spawn(async move {
                    let mut buf = [0u8; 4];
                    s.read_exact(&mut buf).await.unwrap();
                    s.write_all(&buf).await.unwrap();
                    s.flush().await.unwrap();
                    let _ = s.read_to_end(&mut Vec::new()).await;
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
    });
    let mut clients = Vec::new();
    for i in 0..16u32 {
        let utp = b.utp.clone();
        clients.push(tokio::spawn(async move {
            let mut s = utp.connect(a_addr).await.unwrap();
            s.write_all(&i.to_be_bytes()).await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(u32::from_be_bytes(buf), i);
        }));
    }
    for c in clients {
        timeout(WAIT, c).await.unwrap().unwrap();
    }
    timeout(WAIT, acceptor).await.unwrap().unwrap();
}

/// Connecting to a port where nobody speaks µTP times out with a typed error.
#[tokio::test]
async fn utp_connect_to_silence_times_out() {
    let mut mux = UdpMux::bind(UdpConfig::loopback(0)).await.unwrap();
    let config = UtpConfig {
        connect_timeout: Duration::from_millis(300),
        ..UtpConfig::default()
    };
    let utp = UtpSocket::new(&mut mux, config.clone()).unwrap();
    assert!(matches!(
        UtpSocket::new(&mut mux, config),
        Err(NetError::UtpInboxTaken)
    ));
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let err = utp.connect(silent.local_addr().unwrap()).await.unwrap_err();
    assert!(
        matches!(
            err,
            NetError::ConnectTimeout {
                transport: Transport::Utp,
                ..
            }
        ),
        "{err}"
    );
}

/// Greets with "hello" before the dialing side has said anything, then expects "hi".
async fn serve_hello(stream: PeerStream) {
    let mut s = stream;
    s.write_all(b"hello").await.unwrap();
    let mut hi = [0u8; 2];
    s.read_exact(&mut hi).await.unwrap();
    assert_eq!(&hi, b"hi");
    s.flush().await.unwrap();
    let _ = s.read_to_end(&mut Vec::new()).await;
}

/// A peer that accepts both: TCP wins, from the session port, and is remembered.
#[tokio::test]
async fn dialer_prefers_tcp_and_remembers() {
    let (server, client) = pair().await;
    for target in server.tcp.local_addrs() {
        let accept = async {
            let (s, _) = server.tcp.accept().await.unwrap();
            serve_hello(s.into()).await;
        };
        let dial = async {
            let mut stream = client.dialer.dial(target).await.unwrap();
            assert_eq!(stream.transport(), Transport::Tcp);
            assert_eq!(stream.peer_addr().unwrap(), target);
            assert_eq!(stream.local_addr().unwrap().port(), client.port());
            let mut buf = [0u8; 5];
            stream.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"hello");
            stream.write_all(b"hi").await.unwrap();
        };
        tokio::select! {
            () = accept => panic!("server finished first"),
            r = timeout(WAIT, dial) => r.expect("dial timed out"),
        }
        assert_eq!(client.dialer.remembered(target), Some(Transport::Tcp));
    }
    assert_eq!(client.dialer.counters().tcp, 2);
}

/// A peer that only speaks µTP on the port (TCP refused): the dialer falls back to µTP at once,
/// remembers it, and dials µTP first next time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialer_falls_back_to_utp_and_remembers() {
    let mut mux = UdpMux::bind(UdpConfig::loopback(0)).await.unwrap();
    let utp_only = UtpSocket::new(&mut mux, UtpConfig::default()).unwrap();
    let client = SessionSockets::bind(NetConfig::loopback(0)).await.unwrap();
    let target = mux.local_addrs()[1]; // IPv6
    let server = tokio::spawn({
        let utp = utp_only.clone();
        async move {
            for _ in 0..2 {
                let (s, _) = utp.accept().await.unwrap();
                tokio::spawn(serve_hello(s.into()));
            }
        }
    });
    for round in 0..2 {
        let started = Instant::now();
        let mut stream = timeout(WAIT, client.dialer.dial(target))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stream.transport(), Transport::Utp);
        assert_eq!(stream.local_addr().unwrap().port(), client.port());
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        stream.write_all(b"hi").await.unwrap();
        assert_eq!(client.dialer.remembered(target), Some(Transport::Utp));
        if round == 0 {
            // TCP was refused at once, so µTP did not wait out the head start.
            assert!(
                started.elapsed() < Duration::from_millis(250),
                "{:?}",
                started.elapsed()
            );
            assert_eq!(client.dialer.tcp().counters().failed, 1);
        } else {
            // µTP went first and won before TCP's head start ran out, so no new TCP attempt.
            assert_eq!(client.dialer.tcp().counters().failed, 1);
        }
    }
    timeout(WAIT, server).await.unwrap().unwrap();
    assert_eq!(client.dialer.counters().utp, 2);
}

/// When every transport fails the error lists both, and the peer is forgotten.
#[tokio::test]
async fn dialer_reports_every_failure() {
    let mut mux = UdpMux::bind(UdpConfig::loopback(0)).await.unwrap();
    let utp = UtpSocket::new(
        &mut mux,
        UtpConfig {
            connect_timeout: Duration::from_millis(200),
            ..UtpConfig::default()
        },
    )
    .unwrap();
    let tcp = TcpDialer::new(
        0,
        std::net::Ipv4Addr::LOCALHOST,
        std::net::Ipv6Addr::LOCALHOST,
    );
    let dialer = Dialer::new(tcp, Some(utp), DialPolicy::default());
    // A bound UDP socket that never answers and no TCP listener on its port.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let err = dialer.dial(silent.local_addr().unwrap()).await.unwrap_err();
    match err {
        NetError::DialFailed { errors, .. } => {
            assert_eq!(errors.len(), 2, "{errors:?}");
            assert!(matches!(
                errors[0],
                NetError::Connect {
                    transport: Transport::Tcp,
                    ..
                }
            ));
            assert!(matches!(
                errors[1],
                NetError::ConnectTimeout {
                    transport: Transport::Utp,
                    ..
                }
            ));
        }
        other => panic!("unexpected error {other}"),
    }
    assert_eq!(dialer.counters().failed, 1);
    assert_eq!(dialer.remembered(silent.local_addr().unwrap()), None);
}
