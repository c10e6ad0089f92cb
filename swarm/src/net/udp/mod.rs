//! The session's UDP socket: one per address family on the session port, read in batches by
//! one task per family and demultiplexed by the datagram's first bytes ([`classify`]) to the
//! DHT (a bounded queue the DHT driver reads), µTP (a bounded queue the µTP socket reads) and
//! UDP-tracker requests (by transaction id, BEP 15). Everything that sends UDP sends through a
//! cloneable [`UdpSender`] on the same sockets, so each NAT mapping serves every protocol.
//!
//! Queues never block the reader: when one is full the datagram is dropped and counted, as
//! the network would have done.

mod classify;
mod counters;
mod sender;
mod tracker;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use classify::{
    classify, tracker_transaction_id, DatagramKind, MAX_DHT_DATAGRAM_LEN, MAX_UTP_DATAGRAM_LEN,
    TRACKER_REPLY_MIN_LEN, UTP_HEADER_LEN,
};
pub use counters::UdpCounters;
pub use sender::UdpSender;
pub use tracker::{
    TrackerTransaction, TrackerTransactions, TransactionId, MAX_PENDING_TRACKER_TRANSACTIONS,
};

use self::counters::CounterCells;
use self::tracker::{TrackerRoute, TrackerTable};
use super::bind;
use super::NetError;

/// Default capacity of the DHT's inbound queue, in datagrams. A DHT node answers a few
/// hundred queries per second; this absorbs bursts while the driver is busy.
pub const DHT_QUEUE_LEN: usize = 1024;

/// Default capacity of the µTP inbound queue, in datagrams. At 100 MB/s of 1.4 kB packets
/// this is ~50 ms of traffic, enough to ride out a scheduling hiccup of the µTP dispatcher.
pub const UTP_QUEUE_LEN: usize = 4096;

/// Default limit on the bytes held in the µTP inbound queue. µTP packets toward burrow peers
/// grow up to 64 KiB on loopback, so the count alone ([`UTP_QUEUE_LEN`]) would let a flood pin
/// 256 MiB; this keeps it to 16 MiB (~5 ms at 3 GB/s) while 1.4 kB packets still fill the count.
pub const UTP_QUEUE_BYTES: usize = 16 << 20;

/// Datagrams a reader takes from its socket before yielding to other tasks.
pub const READ_BATCH: usize = 64;

/// Largest UDP payload; the reader's buffer is this big so nothing is truncated.
const MAX_UDP_PAYLOAD: usize = 65_535;

/// µTP datagrams at least this long are handed on in the buffer they were received into (which
/// is then replaced) instead of being copied out; at most half of such a buffer is unused, so a
/// packet held in a reorder buffer pins at most twice its size. Shorter datagrams are copied.
const ZERO_COPY_MIN: usize = MAX_UDP_PAYLOAD / 2;

/// Times to retry an ephemeral port whose number the other family already uses.
pub(crate) const EPHEMERAL_BIND_ATTEMPTS: usize = 16;

/// One datagram received on the shared socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The sender.
    pub from: SocketAddr,
    /// The payload.
    pub data: Bytes,
}

/// Where and how to bind the shared UDP socket.
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// The session port; 0 picks a free port shared by both families.
    pub port: u16,
    /// IPv4 address to bind, usually 0.0.0.0; `None` disables IPv4.
    pub ipv4: Option<Ipv4Addr>,
    /// IPv6 address to bind, usually `::`; `None` disables IPv6.
    pub ipv6: Option<Ipv6Addr>,
    /// Capacity of the DHT inbound queue (datagrams).
    pub dht_queue: usize,
    /// Capacity of the µTP inbound queue (datagrams).
    pub utp_queue: usize,
    /// Capacity of the µTP inbound queue (bytes held).
    pub utp_queue_bytes: usize,
    /// Limit on UDP-tracker transactions waiting at once.
    pub max_tracker_transactions: usize,
}

impl Default for UdpConfig {
    fn default() -> Self {
        Self {
            port: 0,
            ipv4: Some(Ipv4Addr::UNSPECIFIED),
            ipv6: Some(Ipv6Addr::UNSPECIFIED),
            dht_queue: DHT_QUEUE_LEN,
            utp_queue: UTP_QUEUE_LEN,
            utp_queue_bytes: UTP_QUEUE_BYTES,
            max_tracker_transactions: MAX_PENDING_TRACKER_TRANSACTIONS,
        }
    }
}

impl UdpConfig {
    /// Binds 127.0.0.1 and ::1 only, on `port` (0 = any); for tests and local tools.
    pub fn loopback(port: u16) -> Self {
        Self {
            port,
            ipv4: Some(Ipv4Addr::LOCALHOST),
            ipv6: Some(Ipv6Addr::LOCALHOST),
            ..Self::default()
        }
    }
}

/// The shared UDP socket(s) of a session and their demultiplexer. Dropping it stops the
/// readers, which closes the DHT and µTP queues.
pub struct UdpMux {
    sender: UdpSender,
    trackers: Arc<TrackerTable>,
    counters: Arc<CounterCells>,
    dht_inbox: Option<mpsc::Receiver<Datagram>>,
    utp_inbox: Option<UtpInbox>,
    readers: Vec<JoinHandle<()>>,
}

impl UdpMux {
    /// Binds one socket per configured family on the same port and starts the readers.
    /// A family the host does not support is skipped with a warning; at least one must bind.
    pub async fn bind(config: UdpConfig) -> Result<Self, NetError> {
        let (v4, v6) = bind_pair(&config)?;
        Ok(Self::from_sockets(&config, v4, v6))
    }

    pub(crate) fn from_sockets(
        config: &UdpConfig,
        v4: Option<UdpSocket>,
        v6: Option<UdpSocket>,
    ) -> Self {
        let counters = Arc::new(CounterCells::default());
        let trackers = TrackerTable::new(config.max_tracker_transactions);
        let (dht_tx, dht_rx) = mpsc::channel(config.dht_queue.max(1));
        let (utp_tx, utp_rx) = mpsc::channel(config.utp_queue.max(1));
        let utp_queued = Arc::new(AtomicUsize::new(0));
        let router = Arc::new(Router {
            dht: dht_tx,
            utp: utp_tx,
            utp_queued: Arc::clone(&utp_queued),
            utp_budget: config.utp_queue_bytes.max(MAX_UTP_DATAGRAM_LEN),
            trackers: Arc::clone(&trackers),
            counters: Arc::clone(&counters),
        });
        let v4 = v4.map(Arc::new);
        let v6 = v6.map(Arc::new);
        let readers = [&v4, &v6]
            .into_iter()
            .flatten()
            .map(|socket| tokio::spawn(read_loop(Arc::clone(socket), Arc::clone(&router))))
            .collect();
        Self {
            sender: UdpSender::new(v4, v6, Arc::clone(&counters)),
            trackers,
            counters,
            dht_inbox: Some(dht_rx),
            utp_inbox: Some(UtpInbox {
                rx: utp_rx,
                queued: utp_queued,
            }),
            readers,
        }
    }

    /// A handle to send from the shared sockets.
    pub fn sender(&self) -> UdpSender {
        self.sender.clone()
    }

    /// The session port (the same for both families).
    pub fn port(&self) -> u16 {
        self.sender.port()
    }

    /// The bound local addresses, IPv4 first.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sender.local_addrs()
    }

    /// Takes the queue of KRPC datagrams for the DHT driver; `None` after the first call.
    pub fn take_dht_inbox(&mut self) -> Option<mpsc::Receiver<Datagram>> {
        self.dht_inbox.take()
    }

    /// Takes the queue of µTP datagrams; used by [`crate::net::UtpSocket::new`].
    pub fn take_utp_inbox(&mut self) -> Option<UtpInbox> {
        self.utp_inbox.take()
    }

    /// Registers a UDP-tracker transaction with `tracker`: write its id into the request,
    /// send with [`UdpSender::send_to`], then await [`TrackerTransaction::reply`].
    pub fn register_tracker_transaction(
        &self,
        tracker: SocketAddr,
    ) -> Result<TrackerTransaction, NetError> {
        self.trackers.register(tracker)
    }

    /// A cloneable handle to register UDP-tracker transactions from other tasks.
    pub fn tracker_transactions(&self) -> TrackerTransactions {
        TrackerTransactions::new(Arc::clone(&self.trackers))
    }

    /// UDP-tracker transactions currently waiting for a reply.
    pub fn pending_tracker_transactions(&self) -> usize {
        self.trackers.pending()
    }

    /// A snapshot of the datagram counters.
    pub fn counters(&self) -> UdpCounters {
        self.counters.snapshot()
    }
}

impl Drop for UdpMux {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

impl std::fmt::Debug for UdpMux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpMux")
            .field("local_addrs", &self.local_addrs())
            .finish_non_exhaustive()
    }
}

/// Binds the configured families on one port number, retrying when an ephemeral port picked
/// for IPv4 is taken on IPv6.
pub(crate) fn bind_pair(
    config: &UdpConfig,
) -> Result<(Option<UdpSocket>, Option<UdpSocket>), NetError> {
    let mut last_err = None;
    for _ in 0..EPHEMERAL_BIND_ATTEMPTS {
        let v4 = match config.ipv4 {
            Some(ip) => bind_family(SocketAddr::new(IpAddr::V4(ip), config.port))?,
            None => None,
        };
        let port = match &v4 {
            Some(s) => s
                .local_addr()
                .map_err(|source| NetError::Bind {
                    addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), config.port),
                    source,
                })?
                .port(),
            None => config.port,
        };
        let v6 = match config.ipv6 {
            Some(ip) => match bind_family(SocketAddr::new(IpAddr::V6(ip), port)) {
                Ok(s) => s,
                Err(e) if config.port == 0 && v4.is_some() && is_addr_in_use(&e) => {
                    last_err = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            },
            None => None,
        };
        if v4.is_none() && v6.is_none() {
            return Err(NetError::NoFamily(format!(
                "neither {:?} nor {:?} could be bound on port {}",
                config.ipv4, config.ipv6, config.port
            )));
        }
        return Ok((v4, v6));
    }
    Err(last_err.unwrap_or(NetError::NoFamily("no free port".into())))
}

pub(crate) fn is_addr_in_use(e: &NetError) -> bool {
    matches!(e, NetError::Bind { source, .. } if source.kind() == io::ErrorKind::AddrInUse)
}

/// Binds one family; `Ok(None)` when the host lacks that family.
fn bind_family(addr: SocketAddr) -> Result<Option<UdpSocket>, NetError> {
    let bound = bind::udp_socket(addr).and_then(UdpSocket::from_std);
    match bound {
        Ok(s) => Ok(Some(s)),
        Err(e) if family_unavailable(&e) => {
            tracing::warn!(%addr, error = %e, "address family unavailable, not binding it");
            Ok(None)
        }
        Err(source) => Err(NetError::Bind { addr, source }),
    }
}

/// Whether a bind error means the host has no such family (rather than a real conflict).
pub(crate) fn family_unavailable(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EAFNOSUPPORT) || e.kind() == io::ErrorKind::AddrNotAvailable
}

/// Maps v4-mapped IPv6 addresses to IPv4 so one peer has one address.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The receiving end of the µTP queue; taking a datagram returns its bytes to the queue's
/// budget.
#[derive(Debug)]
pub struct UtpInbox {
    rx: mpsc::Receiver<Datagram>,
    queued: Arc<AtomicUsize>,
}

impl UtpInbox {
    /// The next datagram; `None` once the readers stopped.
    pub async fn recv(&mut self) -> Option<Datagram> {
        let d = self.rx.recv().await?;
        self.queued.fetch_sub(d.data.len(), Ordering::Relaxed);
        Some(d)
    }

    /// The next datagram if one is queued.
    pub fn try_recv(&mut self) -> Option<Datagram> {
        let d = self.rx.try_recv().ok()?;
        self.queued.fetch_sub(d.data.len(), Ordering::Relaxed);
        Some(d)
    }
}

/// Hands classified datagrams to their consumers.
struct Router {
    dht: mpsc::Sender<Datagram>,
    utp: mpsc::Sender<Datagram>,
    /// Bytes in the µTP queue, and the most it may hold.
    utp_queued: Arc<AtomicUsize>,
    utp_budget: usize,
    trackers: Arc<TrackerTable>,
    counters: Arc<CounterCells>,
}

impl Router {
    /// Routes the datagram in `buf`, leaving `buf` empty with room for the next one.
    fn route(&self, buf: &mut BytesMut, from: SocketAddr) {
        let len = buf.len();
        let kind = classify(buf);
        let data = if kind == DatagramKind::Utp && len >= ZERO_COPY_MIN {
            std::mem::replace(buf, BytesMut::with_capacity(MAX_UDP_PAYLOAD)).freeze()
        } else {
            let copy = Bytes::copy_from_slice(buf);
            buf.clear();
            copy
        };
        self.route_bytes(kind, data, from);
    }

    fn route_bytes(&self, kind: DatagramKind, bytes: Bytes, from: SocketAddr) {
        let c = &self.counters;
        let data: &[u8] = &bytes;
        let datagram = || Datagram {
            from,
            data: bytes.clone(),
        };
        match kind {
            DatagramKind::Dht => match self.dht.try_send(datagram()) {
                Ok(()) => CounterCells::bump(&c.rx_dht),
                Err(_) => CounterCells::bump(&c.dropped_dht_queue_full),
            },
            DatagramKind::Utp => {
                // The two readers (one per family) may both pass the check at once; the
                // budget is then exceeded by at most one datagram each.
                if self.utp_queued.load(Ordering::Relaxed) + data.len() > self.utp_budget {
                    CounterCells::bump(&c.dropped_utp_queue_full);
                    return;
                }
                self.utp_queued.fetch_add(data.len(), Ordering::Relaxed);
                match self.utp.try_send(datagram()) {
                    Ok(()) => CounterCells::bump(&c.rx_utp),
                    Err(_) => {
                        self.utp_queued.fetch_sub(data.len(), Ordering::Relaxed);
                        CounterCells::bump(&c.dropped_utp_queue_full);
                    }
                }
            }
            DatagramKind::Tracker => {
                let id = tracker_transaction_id(data).expect("classified as tracker");
                match self.trackers.route(id, datagram()) {
                    TrackerRoute::Delivered => CounterCells::bump(&c.rx_tracker),
                    TrackerRoute::Unmatched => CounterCells::bump(&c.dropped_tracker_unmatched),
                }
            }
            DatagramKind::Unknown => CounterCells::bump(&c.rx_unknown),
        }
    }
}

/// Reads `socket` until the task is aborted: waits for readiness, then drains up to
/// [`READ_BATCH`] datagrams without waiting again.
async fn read_loop(socket: Arc<UdpSocket>, router: Arc<Router>) {
    let mut buf = BytesMut::with_capacity(MAX_UDP_PAYLOAD);
    loop {
        if let Err(e) = socket.readable().await {
            tracing::warn!(error = %e, "UDP socket no longer readable; reader stops");
            return;
        }
        let mut drained = false;
        for _ in 0..READ_BATCH {
            match socket.try_recv_buf_from(&mut buf) {
                Ok((_, from)) => router.route(&mut buf, from),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(e) => {
                    CounterCells::bump(&router.counters.rx_errors);
                    tracing::debug!(error = %e, "UDP receive error");
                }
            }
        }
        if !drained {
            // Let the consumers run before the next batch; without this a flooded socket
            // would keep this task busy while the queues fill.
            tokio::task::yield_now().await;
        }
    }
}
