//! The session's DHT service: drives burrow-dht's sans-IO [`Node`] from the session's shared
//! UDP socket (datagrams starting with `d` arrive on the DHT inbox; replies leave through the
//! same socket), finds peers for torrents, announces them, and passes on the `ip` votes other
//! nodes make about our external address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use burrow_dht::{Config, Event, LookupId, Node};
use tokio::sync::{mpsc, oneshot, watch};

use crate::connectivity::ReachEvent;
use crate::net::{Datagram, UdpSender};
use crate::types::InfoHash;

/// How often the routing table is saved while running.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(300);
/// Most lookups the session keeps running at once; more wait for the torrent's next round.
pub const MAX_SESSION_LOOKUPS: usize = 64;

/// Settings of the session's DHT.
#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// Bootstrap contacts as `host:port` (defaults: the well-known routers).
    pub bootstrap: Vec<String>,
    /// Where the node ID and good nodes are saved between runs.
    pub state_path: Option<PathBuf>,
    /// BEP 43: take no queries, only ask.
    pub read_only: bool,
    /// Node settings (rate limits, families).
    pub node: Config,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            bootstrap: burrow_dht::DEFAULT_BOOTSTRAP
                .iter()
                .map(|s| s.to_string())
                .collect(),
            state_path: None,
            read_only: false,
            node: Config::default(),
        }
    }
}

/// What the DHT reports to the session.
#[derive(Debug, Clone, Default)]
pub struct DhtStatus {
    /// Nodes in the IPv4 routing table.
    pub nodes_v4: usize,
    /// Nodes in the IPv6 routing table.
    pub nodes_v6: usize,
    /// Lookups running.
    pub lookups: usize,
}

enum Cmd {
    Lookup {
        info_hash: InfoHash,
        announce: Option<Option<u16>>,
        peers: mpsc::UnboundedSender<Vec<SocketAddr>>,
    },
    AddNode(SocketAddr),
    Shutdown(oneshot::Sender<()>),
}

/// A handle on the running DHT.
#[derive(Clone)]
pub struct DhtHandle {
    tx: mpsc::UnboundedSender<Cmd>,
    status: watch::Receiver<DhtStatus>,
}

impl DhtHandle {
    /// Searches for peers of `info_hash`; when `announce` is `Some(port)` (`Some(None)`:
    /// implied port, BEP 5) we also announce ourselves. Peers arrive in batches; the channel
    /// closes when the search ends.
    pub fn lookup(
        &self,
        info_hash: InfoHash,
        announce: Option<Option<u16>>,
    ) -> mpsc::UnboundedReceiver<Vec<SocketAddr>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.tx.send(Cmd::Lookup {
            info_hash,
            announce,
            peers: tx,
        });
        rx
    }

    /// A node worth knowing (from a peer's `port` message).
    pub fn add_node(&self, addr: SocketAddr) {
        let _ = self.tx.send(Cmd::AddNode(addr));
    }

    /// The latest status.
    pub fn status(&self) -> DhtStatus {
        self.status.borrow().clone()
    }

    /// Saves state and stops.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Starts the DHT on the shared socket. `reach` receives the `ip` votes nodes make about our
/// address and queries from nodes we never contacted (evidence that inbound UDP works).
pub fn spawn(
    config: DhtConfig,
    inbox: mpsc::Receiver<Datagram>,
    sender: UdpSender,
    reach: Option<mpsc::UnboundedSender<ReachEvent>>,
) -> DhtHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let (status_tx, status_rx) = watch::channel(DhtStatus::default());
    tokio::spawn(run(config, inbox, sender, rx, status_tx, reach));
    DhtHandle {
        tx,
        status: status_rx,
    }
}

fn load_node(config: &DhtConfig, now: Instant) -> Node {
    let seed: [u8; 32] = rand::random();
    let mut node_config = config.node.clone();
    node_config.read_only = config.read_only;
    let read = |p: &PathBuf| match crate::fsread::read_bounded(p, burrow_dht::MAX_STATE_SIZE) {
        Ok(b) => Some(b),
        Err(e) if e.is_not_found() => None,
        Err(e) => {
            tracing::warn!(file = %p.display(), error = %e, "DHT state unreadable; starting afresh");
            None
        }
    };
    if let Some(bytes) = config.state_path.as_ref().and_then(read) {
        match Node::from_state(node_config.clone(), now, seed, &bytes) {
            Ok(n) => return n,
            Err(e) => tracing::warn!(error = %e, "DHT state unreadable; starting afresh"),
        }
    }
    Node::new(node_config, now, seed)
}

fn save(node: &Node, path: &Option<PathBuf>, now: Instant) {
    let Some(path) = path else { return };
    let bytes = node.save_state(now);
    let tmp = path.with_extension("tmp");
    let res = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|_| std::fs::write(&tmp, &bytes))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = res {
        tracing::warn!(error = %e, path = %path.display(), "cannot save DHT state");
    }
}

async fn resolve(hosts: &[String]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for h in hosts {
        match tokio::net::lookup_host(h.as_str()).await {
            Ok(addrs) => out.extend(addrs),
            Err(e) => tracing::debug!(host = %h, error = %e, "cannot resolve DHT bootstrap host"),
        }
    }
    out
}

async fn run(
    config: DhtConfig,
    mut inbox: mpsc::Receiver<Datagram>,
    sender: UdpSender,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    status: watch::Sender<DhtStatus>,
    reach: Option<mpsc::UnboundedSender<ReachEvent>>,
) {
    let mut contacted = Contacted::default();
    let mut node = load_node(&config, Instant::now());
    let boot = resolve(&config.bootstrap).await;
    node.bootstrap(Instant::now(), &boot);
    let mut lookups: HashMap<LookupId, mpsc::UnboundedSender<Vec<SocketAddr>>> = HashMap::new();
    let mut last_save = Instant::now();
    let mut last_status = Instant::now();
    loop {
        flush(&mut node, &sender, &mut contacted);
        while let Some(ev) = node.poll_event() {
            match ev {
                Event::Peers { lookup, peers, .. } => {
                    if let Some(tx) = lookups.get(&lookup) {
                        let _ = tx.send(peers);
                    }
                }
                Event::LookupDone(done) => {
                    lookups.remove(&done.lookup);
                }
                Event::ExternalAddrVote { reported, by } => {
                    if let Some(r) = &reach {
                        let _ = r.send(ReachEvent::DhtVote { reported, by });
                    }
                }
                _ => {}
            }
        }
        flush(&mut node, &sender, &mut contacted);
        let now = Instant::now();
        if now.duration_since(last_status) >= Duration::from_secs(1) {
            last_status = now;
            let _ = status.send(DhtStatus {
                nodes_v4: node.routing_table(false).len(),
                nodes_v6: node.routing_table(true).len(),
                lookups: lookups.len(),
            });
        }
        if now.duration_since(last_save) >= SAVE_INTERVAL {
            last_save = now;
            save(&node, &config.state_path, now);
        }
        let deadline = node
            .poll_timeout()
            .unwrap_or(now + Duration::from_secs(1))
            .min(now + Duration::from_secs(1));
        tokio::select! {
            d = inbox.recv() => match d {
                Some(d) => {
                    let mut next = Some(d);
                    // Take what else is queued before sending replies.
                    while let Some(d) = next {
                        if let Some(r) = &reach {
                            if is_query(&d.data) && !contacted.contains(d.from.ip()) {
                                let _ = r.send(ReachEvent::UnsolicitedUdp { from: d.from });
                            }
                        }
                        node.handle_datagram(Instant::now(), d.from, &d.data);
                        next = inbox.try_recv().ok();
                    }
                }
                None => break,
            },
            cmd = rx.recv() => match cmd {
                Some(Cmd::Lookup { info_hash, announce, peers }) => {
                    lookups.retain(|_, tx| !tx.is_closed());
                    if lookups.len() < MAX_SESSION_LOOKUPS {
                        let ih = burrow_dht::InfoHash(info_hash.0);
                        let id = match announce {
                            Some(port) => node.announce(Instant::now(), ih, port),
                            None => node.get_peers(Instant::now(), ih),
                        };
                        lookups.insert(id, peers);
                    }
                }
                Some(Cmd::AddNode(addr)) => node.add_node(Instant::now(), addr),
                Some(Cmd::Shutdown(done)) => {
                    save(&node, &config.state_path, Instant::now());
                    let _ = done.send(());
                    return;
                }
                None => break,
            },
            _ = tokio::time::sleep_until(deadline.into()) => node.handle_timeout(Instant::now()),
        }
    }
    save(&node, &config.state_path, Instant::now());
}

/// Most addresses remembered as contacted; the set starts over when full (an address
/// forgotten early only makes a later query from it look unsolicited, which is harmless).
pub const MAX_CONTACTED: usize = 16_384;

/// IPs we have sent to: a query from anyone else proves that strangers reach our UDP port.
#[derive(Default)]
struct Contacted(std::collections::HashSet<std::net::IpAddr>);

impl Contacted {
    fn insert(&mut self, ip: std::net::IpAddr) {
        if self.0.len() >= MAX_CONTACTED {
            self.0.clear();
        }
        self.0.insert(ip);
    }
    fn contains(&self, ip: std::net::IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

/// A KRPC query carries `y` = `q`; keys are sorted, so this is a cheap, allocation-free test.
fn is_query(d: &[u8]) -> bool {
    d.windows(6).any(|w| w == b"1:y1:q")
}

fn flush(node: &mut Node, sender: &UdpSender, contacted: &mut Contacted) {
    while let Some(t) = node.poll_transmit() {
        contacted.insert(t.to.ip());
        // A full socket buffer drops the datagram, as the network might; KRPC retries.
        let _ = sender.try_send_to(&t.data, t.to);
    }
}
