//! The driver of `burrow dht-node`: a tokio task that runs a [`Router`] on its sockets, one per
//! bound address, all on the same port (IPv6 sockets with `IPV6_V6ONLY`, so the IPv4 socket
//! gets the IPv4 traffic).
//!
//! Built to run on one core: a single task owns the router, reads each socket in batches
//! ([`batch`]) until it is drained, answers every query in the batch with one system call, and
//! only then looks at timers and commands. The [`Server`] handle reaches it through a channel;
//! [`metrics`] serves its counters over HTTP.

pub mod batch;
pub mod metrics;

use std::future::{poll_fn, Future};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::task::Poll;
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::id::NodeId;
use crate::router::{Router, RouterConfig, RouterStats};
use batch::Batch;

/// Default datagrams per batch.
pub const DEFAULT_BATCH: usize = 64;

/// Batches handled per socket wake-up before timers and commands get a turn.
pub const BATCHES_PER_WAKE: usize = 16;

/// Socket buffer sizes asked for (the kernel caps them at `net.core.rmem_max`/`wmem_max`):
/// room for a burst of several thousand queries while the router is busy elsewhere.
pub const SOCKET_BUFFER: usize = 8 << 20;

/// Attempts at finding a free port number for all sockets when the port is chosen by the OS.
const PORT_ATTEMPTS: usize = 16;

/// Commands queued from handles to the task.
const COMMAND_QUEUE: usize = 64;

/// The router task has stopped.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("the DHT router task has stopped")]
pub struct Stopped;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The router's settings. `node.ipv4`/`node.ipv6` are overridden by the families bound.
    pub router: RouterConfig,
    /// UDP port for every socket; 0 lets the OS choose one free for all of them.
    pub port: u16,
    /// Addresses to bind (one socket each); empty means `0.0.0.0` and `::`.
    pub bind: Vec<IpAddr>,
    /// Saved state ([`Server::save_state`]) to resume from.
    pub state: Option<Vec<u8>>,
    /// Nodes or routers to join the DHT through.
    pub bootstrap: Vec<SocketAddr>,
    /// Datagrams per batch; 1 uses one system call per datagram.
    pub batch: usize,
}

impl ServeConfig {
    /// Default router settings on `port`, all addresses, no state, no bootstrap contacts.
    pub fn new(port: u16) -> ServeConfig {
        ServeConfig {
            router: RouterConfig::default(),
            port,
            bind: Vec::new(),
            state: None,
            bootstrap: Vec::new(),
            batch: DEFAULT_BATCH,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum ServeError {
    /// A socket could not be set up or bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The saved state is unusable.
    #[error(transparent)]
    State(#[from] crate::node::StateError),
}

enum Command {
    Stats(oneshot::Sender<RouterStats>),
    SaveState(oneshot::Sender<Vec<u8>>),
    Id(bool, oneshot::Sender<NodeId>),
    Shutdown(oneshot::Sender<()>),
}

/// A handle to the router task; cheap to clone. The task stops on [`Server::shutdown`] or when
/// every handle is gone.
#[derive(Debug, Clone)]
pub struct Server {
    tx: mpsc::Sender<Command>,
    local_addrs: Vec<SocketAddr>,
}

impl Server {
    /// Binds the sockets, builds (or restores) the router, starts joining the DHT and spawns
    /// the task on the current tokio runtime.
    pub async fn spawn(config: ServeConfig) -> Result<Server, ServeError> {
        let sockets = bind_all(&config)?;
        let mut local_addrs = Vec::new();
        for s in &sockets {
            local_addrs.push(s.local_addr().map_err(|source| ServeError::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], config.port)),
                source,
            })?);
        }
        let mut rc = config.router.clone();
        rc.node.ipv4 = local_addrs.iter().any(SocketAddr::is_ipv4);
        rc.node.ipv6 = local_addrs.iter().any(SocketAddr::is_ipv6);
        let seed: [u8; 32] = rand::random();
        let now = Instant::now();
        let mut router = match &config.state {
            Some(state) => Router::from_state(rc, now, seed, state)?,
            None => Router::new(rc, now, seed),
        };
        if !config.bootstrap.is_empty() {
            router.bootstrap(now, &config.bootstrap);
        }
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let batches = sockets.iter().map(|_| Batch::new(config.batch)).collect();
        let task = Task {
            router,
            local: local_addrs.clone(),
            sockets,
            batches,
            rx,
        };
        tokio::spawn(task.run());
        Ok(Server { tx, local_addrs })
    }

    /// The bound socket addresses.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Current counters.
    pub async fn stats(&self) -> Result<RouterStats, Stopped> {
        self.ask(Command::Stats).await
    }

    /// The router's state, for [`ServeConfig::state`] on the next start.
    pub async fn save_state(&self) -> Result<Vec<u8>, Stopped> {
        self.ask(Command::SaveState).await
    }

    /// Our node ID in one family.
    pub async fn node_id(&self, ipv6: bool) -> Result<NodeId, Stopped> {
        self.ask(|tx| Command::Id(ipv6, tx)).await
    }

    /// Stops the task and waits until it has.
    pub async fn shutdown(&self) {
        let _ = self.ask(Command::Shutdown).await;
    }
}

/// Binds one socket per address on a common port.
fn bind_all(config: &ServeConfig) -> Result<Vec<UdpSocket>, ServeError> {
    let ips: Vec<IpAddr> = if config.bind.is_empty() {
        vec![Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()]
    } else {
        config.bind.clone()
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        match bind_on_one_port(&ips, config.port, config.bind.is_empty()) {
            Ok(sockets) => return Ok(sockets),
            // A port the OS picked for the first socket may be taken for another address;
            // try a fresh one.
            Err(ServeError::Bind { source, .. })
                if config.port == 0
                    && source.kind() == io::ErrorKind::AddrInUse
                    && attempt < PORT_ATTEMPTS => {}
            Err(e) => return Err(e),
        }
    }
}

/// One socket per address, all on `port` (or, if 0, on the port the OS gives the first one).
/// With `default_addrs`, a host without IPv6 runs on IPv4 alone.
fn bind_on_one_port(
    ips: &[IpAddr],
    mut port: u16,
    default_addrs: bool,
) -> Result<Vec<UdpSocket>, ServeError> {
    let mut sockets = Vec::new();
    for ip in ips {
        let addr = SocketAddr::new(*ip, port);
        let s = match bind_one(addr) {
            Ok(s) => s,
            Err(e) if default_addrs && ip.is_ipv6() && e.kind() != io::ErrorKind::AddrInUse => {
                tracing::warn!(%addr, error = %e, "no IPv6; serving IPv4 only");
                continue;
            }
            Err(source) => return Err(ServeError::Bind { addr, source }),
        };
        if port == 0 {
            port = s
                .local_addr()
                .map_err(|source| ServeError::Bind { addr, source })?
                .port();
        }
        sockets.push(s);
    }
    Ok(sockets)
}

fn bind_one(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // The IPv4 socket on the same port takes IPv4; without this the IPv6 wildcard would
        // claim it too (and the bind would fail).
        s.set_only_v6(true)?;
    }
    // Best effort: the kernel caps these at its configured maxima.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

struct Task {
    router: Router,
    local: Vec<SocketAddr>,
    sockets: Vec<UdpSocket>,
    batches: Vec<Batch>,
    rx: mpsc::Receiver<Command>,
}

enum Wake {
    Readable(usize),
    Command(Option<Command>),
    Timer,
}

impl Task {
    async fn run(mut self) {
        loop {
            let deadline = tokio::time::Instant::from_std(self.router.poll_timeout());
            let sleep = tokio::time::sleep_until(deadline);
            tokio::pin!(sleep);
            let wake = {
                let sockets = &self.sockets;
                let rx = &mut self.rx;
                poll_fn(|cx| {
                    if let Poll::Ready(cmd) = rx.poll_recv(cx) {
                        return Poll::Ready(Wake::Command(cmd));
                    }
                    for (i, s) in sockets.iter().enumerate() {
                        if s.poll_recv_ready(cx).is_ready() {
                            return Poll::Ready(Wake::Readable(i));
                        }
                    }
                    sleep.as_mut().poll(cx).map(|()| Wake::Timer)
                })
                .await
            };
            match wake {
                Wake::Readable(i) => self.drain(i),
                Wake::Command(None) => return,
                Wake::Command(Some(cmd)) => {
                    if let Some(done) = self.command(cmd) {
                        let _ = done.send(());
                        return;
                    }
                }
                Wake::Timer => {}
            }
            // Timers run even while the sockets never fall silent.
            let now = Instant::now();
            if now >= self.router.poll_timeout() {
                self.router.handle_timeout(now);
            }
            self.flush();
        }
    }

    /// Reads socket `i` until it is empty or [`BATCHES_PER_WAKE`] batches have been handled,
    /// answering each batch with one send.
    fn drain(&mut self, i: usize) {
        let sock = &self.sockets[i];
        let batch = &mut self.batches[i];
        for _ in 0..BATCHES_PER_WAKE {
            let n = match batch.recv(sock) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // ICMP errors surface as receive errors; they concern one peer only.
                Err(e) => {
                    tracing::trace!(error = %e, "DHT socket receive error");
                    continue;
                }
            };
            let now = Instant::now();
            let mut k = 0;
            for j in 0..n {
                let (from, bytes, reply) = batch.datagram_and_reply(j, k);
                let Some(from) = from else { continue };
                if self.router.handle_datagram(now, from, bytes, reply) {
                    batch.reply_to[k] = from;
                    k += 1;
                }
            }
            batch.reply_count = k;
            let failed = batch.send(sock);
            self.router.count_send_failures(failed as u64);
            if n < batch.size() {
                return;
            }
        }
    }

    /// Sends the router's own queries (verification, the embedded node's lookups).
    fn flush(&mut self) {
        let mut failed = 0;
        while let Some(t) = self.router.poll_transmit() {
            let at = self
                .local
                .iter()
                .position(|a| a.is_ipv6() == t.to.is_ipv6());
            match at.map(|i| &self.sockets[i]) {
                Some(s) if s.try_send_to(&t.data, t.to).is_ok() => {}
                _ => failed += 1,
            }
        }
        self.router.count_send_failures(failed);
    }

    fn command(&mut self, cmd: Command) -> Option<oneshot::Sender<()>> {
        match cmd {
            Command::Stats(reply) => {
                let _ = reply.send(self.router.stats());
            }
            Command::SaveState(reply) => {
                let _ = reply.send(self.router.save_state(Instant::now()));
            }
            Command::Id(ipv6, reply) => {
                let _ = reply.send(self.router.id(ipv6));
            }
            Command::Shutdown(done) => return Some(done),
        }
        None
    }
}
