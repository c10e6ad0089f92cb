//! A tokio task that runs a [`Node`] on its own UDP socket(s): for `burrow dht-node`, for
//! standalone use and for tests. A client that shares one UDP socket between the DHT and other
//! protocols drives [`Node`] itself instead; this driver is deliberately thin so that both paths
//! exercise the same core.
//!
//! Owned by one task; the [`Dht`] handle talks to it through a channel. Searches report through
//! a per-search channel ([`LookupHandle`]); other events go to a broadcast channel.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::id::{InfoHash, NodeId};
use crate::node::{Config, Event, LookupDone, LookupId, Node, Stats, MAX_DATAGRAM_LEN};
use crate::votes::ExternalAddrVotes;

/// Commands queued from handles to the task.
const COMMAND_QUEUE: usize = 256;

/// Non-search events buffered for slow broadcast subscribers (older ones are skipped).
const EVENT_BROADCAST: usize = 256;

/// The driver task has stopped.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("the DHT task has stopped")]
pub struct Stopped;

/// Progress of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupUpdate {
    /// Newly found peers.
    Peers(Vec<SocketAddr>),
    /// The search is over; nothing follows.
    Done(LookupDone),
}

/// Receives the progress of one search. Each search sends at most
/// [`crate::node::MAX_PEERS_PER_LOOKUP`] peers in a bounded number of updates, so the channel
/// behind it cannot grow without bound.
#[derive(Debug)]
pub struct LookupHandle {
    /// The search's ID.
    pub id: LookupId,
    rx: mpsc::UnboundedReceiver<LookupUpdate>,
}

impl LookupHandle {
    /// The next update; `None` after [`LookupUpdate::Done`] or if the task stopped.
    pub async fn next(&mut self) -> Option<LookupUpdate> {
        self.rx.recv().await
    }

    /// Waits for the end of the search; returns every peer found and the final report.
    pub async fn finish(mut self) -> (Vec<SocketAddr>, Option<LookupDone>) {
        let mut peers = Vec::new();
        while let Some(u) = self.rx.recv().await {
            match u {
                LookupUpdate::Peers(p) => peers.extend(p),
                LookupUpdate::Done(d) => return (peers, Some(d)),
            }
        }
        (peers, None)
    }
}

/// Driver settings beyond the node's own.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The node's configuration. `ipv4`/`ipv6` are overridden by the families actually bound.
    pub node: Config,
    /// Addresses to bind, at most one per family.
    pub bind: Vec<SocketAddr>,
    /// Saved state from [`Dht::save_state`] to resume from.
    pub state: Option<Vec<u8>>,
    /// Tally `ip` votes and hand the winner to the node (BEP 42 ID regeneration).
    pub learn_external_addr: bool,
}

impl DriverConfig {
    /// Binds `bind` with node settings `node`, no saved state, learning the external address
    /// from votes.
    pub fn new(node: Config, bind: Vec<SocketAddr>) -> DriverConfig {
        DriverConfig {
            node,
            bind,
            state: None,
            learn_external_addr: true,
        }
    }
}

enum Command {
    Bootstrap(Vec<SocketAddr>, oneshot::Sender<LookupHandle>),
    GetPeers(InfoHash, oneshot::Sender<LookupHandle>),
    Announce(InfoHash, Option<u16>, oneshot::Sender<LookupHandle>),
    FindNode(NodeId, oneshot::Sender<LookupHandle>),
    AddNode(SocketAddr),
    SetExternalAddr(SocketAddr),
    Stats(oneshot::Sender<Stats>),
    SaveState(oneshot::Sender<Vec<u8>>),
    Id(bool, oneshot::Sender<NodeId>),
    Shutdown,
}

/// A handle to a running DHT task; cheap to clone. The task stops when every handle is gone.
#[derive(Debug, Clone)]
pub struct Dht {
    tx: mpsc::Sender<Command>,
    local_addrs: Vec<SocketAddr>,
    events: broadcast::Sender<Event>,
}

impl Dht {
    /// Binds the sockets and starts the task on the current tokio runtime.
    pub async fn spawn(config: DriverConfig) -> io::Result<Dht> {
        let mut sockets: [Option<UdpSocket>; 2] = [None, None];
        for addr in &config.bind {
            let f = usize::from(addr.is_ipv6());
            if sockets[f].is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "one bind address per family",
                ));
            }
            sockets[f] = Some(UdpSocket::bind(addr).await?);
        }
        let mut local_addrs = Vec::new();
        for s in sockets.iter().flatten() {
            local_addrs.push(s.local_addr()?);
        }
        let mut node_config = config.node.clone();
        node_config.ipv4 = sockets[0].is_some();
        node_config.ipv6 = sockets[1].is_some();
        let seed: [u8; 32] = rand::random();
        let now = Instant::now();
        let node = match &config.state {
            Some(state) => Node::from_state(node_config, now, seed, state)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
            None => Node::new(node_config, now, seed),
        };
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let (events, _) = broadcast::channel(EVENT_BROADCAST);
        let task = Task {
            node,
            sockets,
            rx,
            subscribers: HashMap::new(),
            events: events.clone(),
            votes: config.learn_external_addr.then(ExternalAddrVotes::new),
        };
        tokio::spawn(task.run());
        Ok(Dht {
            tx,
            local_addrs,
            events,
        })
    }

    /// The bound socket addresses.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Events other than search progress (address votes, ID changes, samples).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    async fn lookup(
        &self,
        make: impl FnOnce(oneshot::Sender<LookupHandle>) -> Command,
    ) -> Result<LookupHandle, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Joins the DHT through the given nodes or routers.
    pub async fn bootstrap(&self, addrs: Vec<SocketAddr>) -> Result<LookupHandle, Stopped> {
        self.lookup(|tx| Command::Bootstrap(addrs, tx)).await
    }

    /// Resolves `host:port` names (e.g. [`crate::DEFAULT_BOOTSTRAP`]) and joins through them.
    /// Names that do not resolve are skipped.
    pub async fn bootstrap_hosts(&self, hosts: &[&str]) -> Result<LookupHandle, Stopped> {
        let mut addrs = Vec::new();
        for h in hosts {
            match tokio::net::lookup_host(h).await {
                Ok(found) => addrs.extend(found),
                Err(e) => tracing::debug!(host = h, error = %e, "bootstrap host did not resolve"),
            }
        }
        self.bootstrap(addrs).await
    }

    /// Searches for peers of `info_hash`.
    pub async fn get_peers(&self, info_hash: InfoHash) -> Result<LookupHandle, Stopped> {
        self.lookup(|tx| Command::GetPeers(info_hash, tx)).await
    }

    /// Searches for peers of `info_hash` and announces us (`port: None` = our UDP port).
    pub async fn announce(
        &self,
        info_hash: InfoHash,
        port: Option<u16>,
    ) -> Result<LookupHandle, Stopped> {
        self.lookup(|tx| Command::Announce(info_hash, port, tx))
            .await
    }

    /// Searches for the nodes closest to `target`.
    pub async fn find_node(&self, target: NodeId) -> Result<LookupHandle, Stopped> {
        self.lookup(|tx| Command::FindNode(target, tx)).await
    }

    /// Pings `addr` and adds it to the routing table if it answers.
    pub async fn add_node(&self, addr: SocketAddr) -> Result<(), Stopped> {
        self.tx
            .send(Command::AddNode(addr))
            .await
            .map_err(|_| Stopped)
    }

    /// Tells the node its external address (see [`Node::set_external_addr`]).
    pub async fn set_external_addr(&self, addr: SocketAddr) -> Result<(), Stopped> {
        self.tx
            .send(Command::SetExternalAddr(addr))
            .await
            .map_err(|_| Stopped)
    }

    /// Current counters.
    pub async fn stats(&self) -> Result<Stats, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Stats(tx))
            .await
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// The node's state for [`DriverConfig::state`] on the next start.
    pub async fn save_state(&self) -> Result<Vec<u8>, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::SaveState(tx))
            .await
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Our node ID in one family.
    pub async fn node_id(&self, ipv6: bool) -> Result<NodeId, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Id(ipv6, tx))
            .await
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Stops the task.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
}

struct Task {
    node: Node,
    sockets: [Option<UdpSocket>; 2],
    rx: mpsc::Receiver<Command>,
    subscribers: HashMap<LookupId, mpsc::UnboundedSender<LookupUpdate>>,
    events: broadcast::Sender<Event>,
    votes: Option<ExternalAddrVotes>,
}

async fn recv(sock: &Option<UdpSocket>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

impl Task {
    async fn run(mut self) {
        // One byte more than the node accepts, so oversized datagrams are seen as such.
        let mut buf4 = vec![0u8; MAX_DATAGRAM_LEN + 1];
        let mut buf6 = vec![0u8; MAX_DATAGRAM_LEN + 1];
        loop {
            let deadline = self.node.poll_timeout().map(tokio::time::Instant::from_std);
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = recv(&self.sockets[0], &mut buf4) => self.received(r, &buf4),
                r = recv(&self.sockets[1], &mut buf6) => self.received(r, &buf6),
                cmd = self.rx.recv() => match cmd {
                    Some(Command::Shutdown) | None => return,
                    Some(cmd) => self.command(cmd),
                },
                () = sleep => self.node.handle_timeout(Instant::now()),
            }
            self.flush().await;
        }
    }

    fn received(&mut self, r: io::Result<(usize, SocketAddr)>, buf: &[u8]) {
        match r {
            Ok((n, from)) => self.node.handle_datagram(Instant::now(), from, &buf[..n]),
            // ICMP errors surface as receive errors on some systems; they concern one peer only.
            Err(e) => tracing::trace!(error = %e, "DHT socket receive error"),
        }
    }

    fn subscribe(&mut self, id: LookupId, reply: oneshot::Sender<LookupHandle>) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.insert(id, tx);
        let _ = reply.send(LookupHandle { id, rx });
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Bootstrap(addrs, reply) => {
                let id = self.node.bootstrap(now, &addrs);
                self.subscribe(id, reply);
            }
            Command::GetPeers(ih, reply) => {
                let id = self.node.get_peers(now, ih);
                self.subscribe(id, reply);
            }
            Command::Announce(ih, port, reply) => {
                let id = self.node.announce(now, ih, port);
                self.subscribe(id, reply);
            }
            Command::FindNode(target, reply) => {
                let id = self.node.find_node(now, target);
                self.subscribe(id, reply);
            }
            Command::AddNode(addr) => self.node.add_node(now, addr),
            Command::SetExternalAddr(addr) => self.node.set_external_addr(now, addr),
            Command::Stats(reply) => {
                let _ = reply.send(self.node.stats());
            }
            Command::SaveState(reply) => {
                let _ = reply.send(self.node.save_state(now));
            }
            Command::Id(ipv6, reply) => {
                let _ = reply.send(self.node.id(ipv6));
            }
            Command::Shutdown => {}
        }
    }

    /// Sends what the node queued and delivers its events, until both queues are empty
    /// (handling an event can queue more datagrams).
    async fn flush(&mut self) {
        loop {
            let mut busy = false;
            while let Some(t) = self.node.poll_transmit() {
                busy = true;
                let Some(sock) = &self.sockets[usize::from(t.to.is_ipv6())] else {
                    continue;
                };
                if let Err(e) = sock.send_to(&t.data, t.to).await {
                    tracing::trace!(to = %t.to, error = %e, "DHT send failed");
                }
            }
            while let Some(e) = self.node.poll_event() {
                busy = true;
                self.deliver(e);
            }
            if !busy {
                return;
            }
        }
    }

    fn deliver(&mut self, e: Event) {
        match e {
            Event::Peers { lookup, peers, .. } => {
                if let Some(s) = self.subscribers.get(&lookup) {
                    let _ = s.send(LookupUpdate::Peers(peers));
                }
            }
            Event::LookupDone(d) => {
                if let Some(s) = self.subscribers.remove(&d.lookup) {
                    let _ = s.send(LookupUpdate::Done(d));
                }
            }
            other => {
                if let (Some(votes), Event::ExternalAddrVote { reported, by }) =
                    (&mut self.votes, &other)
                {
                    if let Some(addr) = votes.record(*reported, *by) {
                        tracing::debug!(%addr, "external address agreed by DHT votes");
                        self.node.set_external_addr(Instant::now(), addr);
                    }
                }
                let _ = self.events.send(other);
            }
        }
    }
}
