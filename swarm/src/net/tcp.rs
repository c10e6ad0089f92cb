//! TCP on the session port: one listener per address family, and a dialer whose outgoing
//! connections leave from that same port.
//!
//! Leaving from the listen port means a NAT that maps endpoint-independently shows remotes the
//! port we announce, and a remote that dials our source port reaches the listener. Linux allows
//! many connected sockets on one local port as long as the 4-tuples differ; SO_REUSEADDR and
//! SO_REUSEPORT (on the listener and every dialing socket) let them bind beside the listener.
//! A second connection to a remote we are already connected to from that port would repeat the
//! 4-tuple, so that one — and only that one — falls back to an ephemeral port.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::udp::{canonical, family_unavailable};
use super::{bind, NetError, Transport};

/// Default time allowed for a TCP handshake.
pub const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The session's TCP listeners, one per bound address family, all on one port.
#[derive(Debug)]
pub struct TcpListeners {
    v4: Option<TcpListener>,
    v6: Option<TcpListener>,
}

impl TcpListeners {
    /// Listens on `port` (0 = any, shared by both families) on the given addresses. A family
    /// the host lacks is skipped with a warning; at least one must bind.
    pub fn bind(
        port: u16,
        ipv4: Option<Ipv4Addr>,
        ipv6: Option<Ipv6Addr>,
    ) -> Result<Self, NetError> {
        let v4 = ipv4
            .map(|ip| listen(SocketAddr::new(IpAddr::V4(ip), port)))
            .transpose()?
            .flatten();
        let port = match &v4 {
            Some(l) => l.local_addr().map_err(NetError::Accept)?.port(),
            None => port,
        };
        let v6 = ipv6
            .map(|ip| listen(SocketAddr::new(IpAddr::V6(ip), port)))
            .transpose()?
            .flatten();
        if v4.is_none() && v6.is_none() {
            return Err(NetError::NoFamily(format!(
                "no TCP listener could be bound on port {port}"
            )));
        }
        Ok(Self { v4, v6 })
    }

    /// Waits for the next incoming connection on either family.
    pub async fn accept(&self) -> Result<(TcpStream, SocketAddr), NetError> {
        let accepted = match (&self.v4, &self.v6) {
            (Some(a), Some(b)) => tokio::select! {
                r = a.accept() => r,
                r = b.accept() => r,
            },
            (Some(l), None) | (None, Some(l)) => l.accept().await,
            (None, None) => unreachable!("bind requires one family"),
        };
        let (stream, peer) = accepted.map_err(NetError::Accept)?;
        // Best effort: Nagle only delays the small control messages of the peer wire.
        let _ = stream.set_nodelay(true);
        Ok((stream, peer))
    }

    /// The bound local addresses, IPv4 first.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        [&self.v4, &self.v6]
            .into_iter()
            .flatten()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.local_addrs().first().map_or(0, SocketAddr::port)
    }
}

fn listen(addr: SocketAddr) -> Result<Option<TcpListener>, NetError> {
    match bind::tcp_listener(addr).and_then(TcpListener::from_std) {
        Ok(l) => Ok(Some(l)),
        Err(e) if family_unavailable(&e) => {
            tracing::warn!(%addr, error = %e, "address family unavailable, not listening on it");
            Ok(None)
        }
        Err(source) => Err(NetError::Bind { addr, source }),
    }
}

/// Counters of the TCP dialer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpDialCounters {
    /// Connections that left from the session port.
    pub from_session_port: u64,
    /// Connections that fell back to an ephemeral port because the 4-tuple was taken.
    pub from_ephemeral_port: u64,
    /// Connection attempts that failed.
    pub failed: u64,
}

#[derive(Debug, Default)]
struct DialCounterCells {
    from_session_port: AtomicU64,
    from_ephemeral_port: AtomicU64,
    failed: AtomicU64,
}

/// Makes outgoing TCP connections from the session port. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct TcpDialer {
    port: u16,
    ipv4: Ipv4Addr,
    ipv6: Ipv6Addr,
    timeout: Duration,
    counters: Arc<DialCounterCells>,
}

impl TcpDialer {
    /// A dialer binding `port` (the listeners' port; 0 = always ephemeral) on the given local
    /// addresses (the listeners' addresses, usually unspecified).
    pub fn new(port: u16, ipv4: Ipv4Addr, ipv6: Ipv6Addr) -> Self {
        Self {
            port,
            ipv4,
            ipv6,
            timeout: TCP_CONNECT_TIMEOUT,
            counters: Arc::default(),
        }
    }

    /// A dialer matching `listeners`' port and addresses.
    pub fn for_listeners(listeners: &TcpListeners) -> Self {
        let mut ipv4 = Ipv4Addr::UNSPECIFIED;
        let mut ipv6 = Ipv6Addr::UNSPECIFIED;
        for addr in listeners.local_addrs() {
            match addr.ip() {
                IpAddr::V4(ip) => ipv4 = ip,
                IpAddr::V6(ip) => ipv6 = ip,
            }
        }
        Self::new(listeners.port(), ipv4, ipv6)
    }

    /// Sets the handshake timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The handshake timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Connects to `addr` from the session port, or from an ephemeral port if that 4-tuple is
    /// already in use.
    pub async fn connect(&self, addr: SocketAddr) -> Result<TcpStream, NetError> {
        let addr = canonical(addr);
        let result = tokio::time::timeout(self.timeout, self.connect_inner(addr)).await;
        let result = match result {
            Ok(r) => r,
            Err(_) => Err(NetError::ConnectTimeout {
                addr,
                transport: Transport::Tcp,
            }),
        };
        if result.is_err() {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn connect_inner(&self, addr: SocketAddr) -> Result<TcpStream, NetError> {
        let local_ip = match addr {
            SocketAddr::V4(_) => IpAddr::V4(self.ipv4),
            SocketAddr::V6(_) => IpAddr::V6(self.ipv6),
        };
        let err = |source| NetError::Connect {
            addr,
            transport: Transport::Tcp,
            source,
        };
        if self.port != 0 {
            match connect_from(SocketAddr::new(local_ip, self.port), addr).await {
                Ok(stream) => {
                    self.counters
                        .from_session_port
                        .fetch_add(1, Ordering::Relaxed);
                    return Ok(stream);
                }
                Err(e) if is_collision(&e) => {
                    tracing::debug!(%addr, error = %e, "session port taken for this remote; using an ephemeral port");
                }
                Err(e) => return Err(err(e)),
            }
        }
        let stream = connect_from(SocketAddr::new(local_ip, 0), addr)
            .await
            .map_err(err)?;
        self.counters
            .from_ephemeral_port
            .fetch_add(1, Ordering::Relaxed);
        Ok(stream)
    }

    /// A snapshot of the dial counters.
    pub fn counters(&self) -> TcpDialCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TcpDialCounters {
            from_session_port: get(&self.counters.from_session_port),
            from_ephemeral_port: get(&self.counters.from_ephemeral_port),
            failed: get(&self.counters.failed),
        }
    }
}

/// Whether a bind/connect error means "this local port cannot be used for this remote".
fn is_collision(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable
    )
}

async fn connect_from(local: SocketAddr, remote: SocketAddr) -> io::Result<TcpStream> {
    let socket = bind::tcp_socket(&local)?;
    socket.bind(&local.into())?;
    let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(socket));
    socket.connect(remote).await
}
