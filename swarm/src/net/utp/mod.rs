//! µTP (BEP 29) over the session's shared UDP socket.
//!
//! The protocol engine is librqbit-utp (selective ACK, MTU probing, CUBIC congestion
//! control; see `UTP.md` beside this module for why and what was measured). It is generic over
//! its datagram transport; [`SharedTransport`] feeds it the µTP queue of the [`UdpMux`] and
//! sends through the mux's [`UdpSender`], so µTP shares the port, and every NAT mapping, with
//! the DHT and the trackers.

mod transport;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, DropGuard};

use self::transport::SharedTransport;
use super::udp::UdpMux;
use super::{NetError, Transport};

/// Default limit on live µTP connections of one socket. Each holds a task and up to
/// [`UTP_RX_BUFFER_BYTES`] + [`UTP_TX_BUFFER_MAX_BYTES`] of buffers, so the worst case is
/// 256 × 2 MiB = 512 MiB, reached only if every peer stops reading while we keep writing.
pub const DEFAULT_MAX_UTP_CONNECTIONS: usize = 256;

/// Default receive buffer (and advertised window) per connection.
pub const UTP_RX_BUFFER_BYTES: usize = 1 << 20;

/// Default ceiling of the send buffer per connection (it starts small and grows with the
/// congestion window).
pub const UTP_TX_BUFFER_MAX_BYTES: usize = 1 << 20;

/// Default time to wait for a µTP handshake (SYN → STATE).
pub const UTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default time without any packet from the remote before a connection is closed.
pub const UTP_INACTIVITY_TIMEOUT: Duration = Duration::from_secs(30);

/// Link MTU assumed before path-MTU probing; Ethernet's.
pub const UTP_LINK_MTU: usize = 1500;

/// Connection attempts to one remote address that may be pending at once. The engine has
/// room for exactly this many and fails further attempts with an opaque error, so they are
/// refused here with [`NetError::TooManyPendingConnects`] instead.
pub const UTP_MAX_PENDING_CONNECTS_PER_ADDR: usize = 4;

/// Tunables of a [`UtpSocket`].
#[derive(Debug, Clone)]
pub struct UtpConfig {
    /// Limit on live connections (incoming and outgoing together).
    pub max_connections: usize,
    /// Receive buffer per connection, bytes.
    pub rx_buffer_bytes: usize,
    /// Send buffer ceiling per connection, bytes.
    pub tx_buffer_max_bytes: usize,
    /// Handshake timeout for [`UtpSocket::connect`].
    pub connect_timeout: Duration,
    /// Silence after which a connection is dropped.
    pub inactivity_timeout: Duration,
    /// Link MTU assumed before probing.
    pub link_mtu: usize,
}

impl Default for UtpConfig {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_UTP_CONNECTIONS,
            rx_buffer_bytes: UTP_RX_BUFFER_BYTES,
            tx_buffer_max_bytes: UTP_TX_BUFFER_MAX_BYTES,
            connect_timeout: UTP_CONNECT_TIMEOUT,
            inactivity_timeout: UTP_INACTIVITY_TIMEOUT,
            link_mtu: UTP_LINK_MTU,
        }
    }
}

/// The environment type librqbit-utp's own UDP socket uses (clock and randomness). It is not
/// exported by name, so it is read off the exported `UtpSocketUdp` alias.
trait EnvOf {
    type Env;
}
impl<T, E> EnvOf for librqbit_utp::UtpSocket<T, E> {
    type Env = E;
}
type DefaultEnv = <librqbit_utp::UtpSocketUdp as EnvOf>::Env;

type Engine = librqbit_utp::UtpSocket<SharedTransport, DefaultEnv>;

/// A µTP endpoint on the shared UDP socket. Cloning is cheap; when the last clone is dropped
/// the engine and all its connections stop.
#[derive(Clone)]
pub struct UtpSocket {
    engine: Arc<Engine>,
    sender: super::UdpSender,
    connect_timeout: Duration,
    pending: Arc<Mutex<HashMap<SocketAddr, usize>>>,
    _stop: Arc<DropGuard>,
}

impl UtpSocket {
    /// Starts µTP on `mux`'s sockets; takes the mux's µTP queue, so one per mux.
    pub fn new(mux: &mut UdpMux, config: UtpConfig) -> Result<Self, NetError> {
        let inbox = mux.take_utp_inbox().ok_or(NetError::UtpInboxTaken)?;
        let sender = mux.sender();
        let stop = CancellationToken::new();
        let opts = librqbit_utp::SocketOpts {
            link_mtu: NonZeroUsize::new(config.link_mtu),
            vsock_rx_bufsize_bytes: NonZeroUsize::new(config.rx_buffer_bytes),
            vsock_tx_bufsize_bytes_max: NonZeroUsize::new(config.tx_buffer_max_bytes),
            max_live_vsocks: NonZeroUsize::new(config.max_connections),
            remote_inactivity_timeout: Some(config.inactivity_timeout),
            cancellation_token: stop.clone(),
            ..Default::default()
        };
        let transport = SharedTransport::new(sender.clone(), inbox);
        let engine = Engine::new_with_opts(transport, DefaultEnv::default(), opts)?;
        Ok(Self {
            engine,
            sender,
            connect_timeout: config.connect_timeout,
            pending: Arc::default(),
            _stop: Arc::new(stop.drop_guard()),
        })
    }

    /// Opens a µTP connection to `addr`.
    pub async fn connect(&self, addr: SocketAddr) -> Result<UtpStream, NetError> {
        let addr = super::udp::canonical(addr);
        let _slot = PendingSlot::take(&self.pending, addr)?;
        let stream = tokio::time::timeout(self.connect_timeout, self.engine.connect(addr))
            .await
            .map_err(|_| NetError::ConnectTimeout {
                addr,
                transport: Transport::Utp,
            })?
            .map_err(|e| NetError::Connect {
                addr,
                transport: Transport::Utp,
                source: io::Error::other(e),
            })?;
        Ok(self.wrap(stream))
    }

    /// Waits for the next incoming µTP connection.
    pub async fn accept(&self) -> Result<(UtpStream, SocketAddr), NetError> {
        let stream = self.engine.accept().await?;
        let stream = self.wrap(stream);
        let peer = stream.peer;
        Ok((stream, peer))
    }

    fn wrap(&self, inner: librqbit_utp::UtpStream) -> UtpStream {
        let peer = inner.remote_addr();
        let local = self
            .sender
            .local_addr_for(peer)
            .unwrap_or_else(|| self.engine.bind_addr());
        UtpStream { inner, peer, local }
    }

    /// The local addresses µTP listens on (those of the shared UDP socket).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sender.local_addrs()
    }
}

/// One of the [`UTP_MAX_PENDING_CONNECTS_PER_ADDR`] connect slots of an address, released
/// on drop (also when the connect future is cancelled).
struct PendingSlot<'a> {
    table: &'a Mutex<HashMap<SocketAddr, usize>>,
    addr: SocketAddr,
}

impl<'a> PendingSlot<'a> {
    fn take(table: &'a Mutex<HashMap<SocketAddr, usize>>, addr: SocketAddr) -> Result<Self, NetError> {
        let mut pending = table.lock().unwrap_or_else(PoisonError::into_inner);
        let count = pending.entry(addr).or_insert(0);
        if *count >= UTP_MAX_PENDING_CONNECTS_PER_ADDR {
            return Err(NetError::TooManyPendingConnects {
                addr,
                limit: UTP_MAX_PENDING_CONNECTS_PER_ADDR,
            });
        }
        *count += 1;
        Ok(Self { table, addr })
    }
}

impl Drop for PendingSlot<'_> {
    fn drop(&mut self) {
        let mut pending = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = pending.get_mut(&self.addr) {
            *count -= 1;
            if *count == 0 {
                pending.remove(&self.addr);
            }
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

/// One µTP connection: an ordered, reliable byte stream.
pub struct UtpStream {
    inner: librqbit_utp::UtpStream,
    peer: SocketAddr,
    local: SocketAddr,
}

impl UtpStream {
    /// The remote end.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Our end: the shared UDP socket's address of the peer's family.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl std::fmt::Debug for UtpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtpStream")
            .field("peer", &self.peer)
            .field("local", &self.local)
            .finish()
    }
}

impl AsyncRead for UtpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for UtpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
