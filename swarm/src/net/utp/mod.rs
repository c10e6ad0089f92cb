//! µTP (BEP 29) over the session's shared UDP socket.
//!
//! The protocol is ours and sans-IO: [`packet`] (header and selective-ACK extension), [`seq`]
//! (wrapping sequence numbers), [`congestion`] (LEDBAT per RFC 6817 and the BEP 29 timeout
//! rules) and `conn` (one connection's state machine). A single driver task per socket feeds
//! them the mux's µTP queue, runs their timers and sends through the shared [`UdpSender`]
//! (see `driver`); [`UtpStream`] is the tokio face of one connection. `UTP.md` beside this
//! module records why µTP is implemented here and what was measured.

pub mod congestion;
mod conn;
mod driver;
pub mod packet;
mod pmtu;
pub mod seq;
mod stream;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Mutex};

pub use self::conn::ConnStats as UtpStats;
use self::conn::{ConnConfig, ConnError};
use self::driver::{Counters, Driver, DriverConfig, Event};
use self::stream::ConnShared;
pub use self::stream::UtpStream;
use super::udp::{canonical, UdpMux, UdpSender, MAX_UTP_DATAGRAM_LEN};
use super::{NetError, Transport};

/// Default limit on live µTP connections of one socket; each may hold up to
/// [`UTP_SEND_BUFFER_BYTES`] + [`UTP_RECV_BUFFER_BYTES`], so at most 256 × 2 MiB.
pub const DEFAULT_MAX_UTP_CONNECTIONS: usize = 256;

/// Default receive buffer per connection, which is also the window advertised to the sender.
pub const UTP_RECV_BUFFER_BYTES: usize = 1 << 20;

/// Default send buffer per connection: bytes written and not yet acknowledged.
pub const UTP_SEND_BUFFER_BYTES: usize = 1 << 20;

/// Incoming connections answered but not yet taken by [`UtpSocket::accept`]; SYNs beyond
/// this are refused with ST_RESET.
pub const UTP_ACCEPT_BACKLOG: usize = 64;

/// Default time allowed for the handshake.
pub const UTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default silence after which a connection is declared dead. We send a keepalive every
/// 29 s on an idle connection; other clients may send nothing below the peer wire's own
/// keep-alive (every 1–2 minutes), so this stays well above that.
pub const UTP_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// IP packet size µTP starts with, bytes: below Ethernet's 1500 with room for PPPoE and
/// common tunnels, as libtorrent's starting size is. Packets grow beyond it only toward a
/// remote that announces a larger receive limit, up to the route's MTU (see `pmtu`).
pub const UTP_LINK_MTU: usize = 1400;

const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const UDP_HEADER: usize = 8;

/// Tunables of a [`UtpSocket`].
#[derive(Debug, Clone)]
pub struct UtpConfig {
    /// Limit on live connections (incoming and outgoing together).
    pub max_connections: usize,
    /// Receive buffer per connection, bytes.
    pub recv_buffer_bytes: usize,
    /// Send buffer per connection, bytes.
    pub send_buffer_bytes: usize,
    /// Handshake timeout for [`UtpSocket::connect`].
    pub connect_timeout: Duration,
    /// Silence after which a connection is dropped.
    pub idle_timeout: Duration,
    /// IP packet size to start with.
    pub link_mtu: usize,
    /// Largest datagram announced as receivable, letting remotes that understand the
    /// announcement send larger packets; 0 announces nothing. At most what the UDP reader
    /// accepts ([`MAX_UTP_DATAGRAM_LEN`]).
    pub max_datagram: u16,
}

impl Default for UtpConfig {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_UTP_CONNECTIONS,
            recv_buffer_bytes: UTP_RECV_BUFFER_BYTES,
            send_buffer_bytes: UTP_SEND_BUFFER_BYTES,
            connect_timeout: UTP_CONNECT_TIMEOUT,
            idle_timeout: UTP_IDLE_TIMEOUT,
            link_mtu: UTP_LINK_MTU,
            max_datagram: MAX_UTP_DATAGRAM_LEN as u16,
        }
    }
}

impl UtpConfig {
    fn conn(&self, ip_header: usize) -> ConnConfig {
        ConnConfig {
            mss: self
                .link_mtu
                .saturating_sub(ip_header + UDP_HEADER + packet::HEADER_LEN)
                .max(150),
            ip_overhead: ip_header + UDP_HEADER,
            max_datagram: self.max_datagram.min(MAX_UTP_DATAGRAM_LEN as u16),
            send_capacity: self.send_buffer_bytes.max(1),
            recv_capacity: self.recv_buffer_bytes.max(1),
            idle_timeout: self.idle_timeout,
        }
    }
}

/// A snapshot of a µTP socket's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UtpCounters {
    /// Outgoing connection attempts.
    pub connects: u64,
    /// Incoming connections accepted.
    pub accepts: u64,
    /// Incoming SYNs refused (connection limit or full backlog).
    pub refused_syns: u64,
    /// Datagrams that were not valid µTP packets.
    pub invalid: u64,
    /// ST_RESETs sent for packets of unknown connections.
    pub resets_sent: u64,
    /// µTP packets received.
    pub packets_in: u64,
    /// µTP packets sent.
    pub packets_out: u64,
}

/// A µTP endpoint on the shared UDP socket. Cloning is cheap. The driver task runs while any
/// handle or stream exists, then lets open connections finish closing.
#[derive(Clone)]
pub struct UtpSocket {
    inner: Arc<Inner>,
}

struct Inner {
    events: mpsc::UnboundedSender<Event>,
    accepted: Mutex<mpsc::Receiver<Arc<ConnShared>>>,
    sender: UdpSender,
    connect_timeout: Duration,
    counters: Arc<Counters>,
}

impl UtpSocket {
    /// Starts µTP on `mux`'s sockets; takes the mux's µTP queue, so one per mux.
    pub fn new(mux: &mut UdpMux, config: UtpConfig) -> Result<Self, NetError> {
        let inbox = mux.take_utp_inbox().ok_or(NetError::UtpInboxTaken)?;
        let sender = mux.sender();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (accept_tx, accept_rx) = mpsc::channel(UTP_ACCEPT_BACKLOG);
        let counters = Arc::new(Counters::default());
        let driver_config = DriverConfig {
            conn_v4: config.conn(IPV4_HEADER),
            conn_v6: config.conn(IPV6_HEADER),
            max_connections: config.max_connections,
        };
        let driver = Driver::new(
            sender.clone(),
            inbox,
            events_rx,
            accept_tx,
            driver_config,
            Arc::clone(&counters),
        );
        tokio::spawn(driver.run());
        Ok(Self {
            inner: Arc::new(Inner {
                events: events_tx,
                accepted: Mutex::new(accept_rx),
                sender,
                connect_timeout: config.connect_timeout,
                counters,
            }),
        })
    }

    /// Opens a µTP connection to `addr`.
    pub async fn connect(&self, addr: SocketAddr) -> Result<UtpStream, NetError> {
        let addr = canonical(addr);
        let (reply, answer) = oneshot::channel();
        self.inner
            .events
            .send(Event::Connect { addr, reply })
            .map_err(|_| NetError::Closed)?;
        let result = tokio::time::timeout(self.inner.connect_timeout, answer)
            .await
            .map_err(|_| NetError::ConnectTimeout {
                addr,
                transport: Transport::Utp,
            })?
            .map_err(|_| NetError::Closed)?;
        match result {
            Ok(shared) => Ok(self.stream(shared)),
            Err(ConnError::TimedOut) => Err(NetError::ConnectTimeout {
                addr,
                transport: Transport::Utp,
            }),
            Err(e) => Err(NetError::Connect {
                addr,
                transport: Transport::Utp,
                source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, e),
            }),
        }
    }

    /// Waits for the next incoming µTP connection. Connections are answered as they arrive
    /// (up to [`UTP_ACCEPT_BACKLOG`] waiting), whether or not a task is in `accept`.
    pub async fn accept(&self) -> Result<(UtpStream, SocketAddr), NetError> {
        let shared = self
            .inner
            .accepted
            .lock()
            .await
            .recv()
            .await
            .ok_or(NetError::Closed)?;
        let peer = shared.peer;
        Ok((self.stream(shared), peer))
    }

    fn stream(&self, shared: Arc<ConnShared>) -> UtpStream {
        let local = self
            .inner
            .sender
            .local_addr_for(shared.peer)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        UtpStream::new(shared, self.inner.events.clone(), local)
    }

    /// The local addresses µTP listens on (those of the shared UDP socket).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.inner.sender.local_addrs()
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> UtpCounters {
        let c = &self.inner.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        UtpCounters {
            connects: get(&c.connects),
            accepts: get(&c.accepts),
            refused_syns: get(&c.refused_syns),
            invalid: get(&c.invalid),
            resets_sent: get(&c.resets_sent),
            packets_in: get(&c.packets_in),
            packets_out: get(&c.packets_out),
        }
    }
}

impl std::fmt::Debug for UtpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtpSocket")
            .field("local_addrs", &self.local_addrs())
            .finish_non_exhaustive()
    }
}
