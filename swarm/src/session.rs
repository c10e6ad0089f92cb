//! The session: owns the listening sockets and what all torrents share — our peer id, the
//! tracker transport, the routing of incoming connections to torrents, and where resume data
//! lives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tokio::sync::mpsc;

use crate::connectivity::{PeerSource, Reachability, Route};
use crate::dht::DhtHandle;
use crate::metainfo::{Magnet, Metainfo};
use crate::nat::{MapperConfig, PortMapper};
use crate::net::udp::UdpConfig;
use crate::net::{Dialer, NetConfig, SessionSockets, TcpListeners, Transport, UdpMux, UtpSocket};
use crate::peer::conn::{handshake_outgoing, read_handshake_prefix, ConnError, PeerIo};
use crate::peer::limit::RateLimits;
use crate::peer::PeerKey;
use crate::torrent::resume_store::{FileResumeStore, ResumeStore};
use crate::torrent::task::{spawn_torrent, TaskMsg, TorrentHandle, TorrentParams};
use crate::tracker::{MuxTransport, UdpTracker};
use crate::types::{InfoHash, PeerId};
use crate::wire::mse::EncryptionPolicy;
use crate::wire::Handshake;

/// Session settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Port to listen on (TCP, and UDP for µTP and the DHT); 0 picks one.
    pub listen_port: u16,
    /// Address to listen on.
    pub listen_ip: std::net::IpAddr,
    /// Where resume data is kept.
    pub state_dir: PathBuf,
    /// Most connections per torrent.
    pub max_peers_per_torrent: usize,
    /// Most connection attempts in flight per torrent.
    pub max_connecting: usize,
    /// Upload slots per torrent.
    pub upload_slots: usize,
    /// The DHT; `None` turns it off.
    pub dht: Option<crate::dht::DhtConfig>,
    /// Which transports outgoing connections use.
    pub transports: Transports,
    /// Ask the gateway to forward our port (PCP, NAT-PMP, UPnP-IGD).
    pub port_mapping: bool,
    /// Lease to ask the gateway for; mappings are renewed at half of it.
    pub mapping_lease: std::time::Duration,
    /// Local service discovery (BEP 14) on the LAN.
    pub lsd: bool,
    /// Message stream encryption (MSE/PE): what we accept and offer.
    pub encryption: EncryptionPolicy,
    /// Longest time verified pieces go unrecorded in resume data while a download runs: what
    /// a crash can cost.
    pub checkpoint_interval: std::time::Duration,
    /// Write verified pieces by direct I/O where the file system allows (see
    /// `torrent::storage`); otherwise through the page cache.
    pub direct_io: bool,
    /// Where resume data is kept; `None`: one file per torrent under `state_dir/resume`.
    pub resume_store: Option<Arc<dyn ResumeStore>>,
    /// Caps on the whole session's transfer rates, shared by every connection; change them
    /// at any time through this handle.
    pub rate_limits: RateLimits,
}

/// Transports for outgoing connections (incoming ones are accepted on both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transports {
    /// TCP first, µTP shortly after if TCP has not connected (the dialer's policy).
    #[default]
    Both,
    /// TCP only.
    Tcp,
    /// µTP only.
    Utp,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            listen_port: 51413,
            listen_ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
            state_dir: default_state_dir(),
            max_peers_per_torrent: 50,
            max_connecting: 10,
            upload_slots: 8,
            dht: Some(crate::dht::DhtConfig::default()),
            transports: Transports::Both,
            port_mapping: true,
            mapping_lease: crate::nat::DEFAULT_LEASE,
            lsd: true,
            encryption: EncryptionPolicy::PlaintextPreferred,
            checkpoint_interval: crate::torrent::task::CHECKPOINT_INTERVAL,
            direct_io: true,
            resume_store: None,
            rate_limits: RateLimits::default(),
        }
    }
}

/// `$XDG_DATA_HOME/burrow`, or `~/.local/share/burrow`.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("burrow");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/burrow"),
        None => PathBuf::from(".burrow"),
    }
}

/// What every torrent task shares.
pub struct SessionCtx {
    /// Our peer id.
    pub peer_id: PeerId,
    /// The port we listen on.
    pub port: u16,
    /// Settings.
    pub config: SessionConfig,
    /// UDP tracker client (on the shared UDP socket).
    pub udp_tracker: UdpTracker,
    /// The DHT, when enabled.
    pub dht: Option<DhtHandle>,
    /// What we know of our own reachability.
    pub reach: Reachability,
    dialer: Dialer,
    /// Torrent tasks by info-hash, for routing incoming connections. Only senders live here,
    /// no torrent state: each torrent's state stays inside its own task.
    registry: Mutex<HashMap<InfoHash, mpsc::UnboundedSender<TaskMsg>>>,
    /// Torrents that may be announced on the LAN (not private).
    lsd_hashes: Mutex<Vec<InfoHash>>,
    /// Tells LSD about a torrent just added, so it is announced at once.
    lsd_added: Mutex<Option<mpsc::UnboundedSender<InfoHash>>>,
    /// Our torrents by MSE's `req2` hash, to recognise which one an encrypted peer wants.
    req2: Mutex<HashMap<[u8; 20], InfoHash>>,
    /// Addresses we dialled for a holepunch lately: a connection from one of them is the
    /// other half of the punch, not evidence that the outside reaches us.
    punches: Mutex<HashMap<IpAddr, std::time::Instant>>,
    next_key: AtomicU64,
}

impl SessionCtx {
    /// A fresh connection key.
    pub fn next_peer_key(&self) -> PeerKey {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Where a torrent's resume data is stored.
    pub fn resume_path(&self, ih: &InfoHash) -> PathBuf {
        self.config
            .state_dir
            .join("resume")
            .join(format!("{}.resume", ih.to_hex()))
    }

    /// Where resume data is loaded from and saved to.
    pub fn resume_store(&self) -> Arc<dyn ResumeStore> {
        match &self.config.resume_store {
            Some(s) => s.clone(),
            None => Arc::new(FileResumeStore::new(self.config.state_dir.join("resume"))),
        }
    }

    /// Remembers that a holepunch toward `ip` is under way (we asked a relay for a
    /// rendezvous, or one told us to dial).
    pub fn note_punch(&self, ip: IpAddr) {
        let now = std::time::Instant::now();
        let mut punches = self.punches.lock().expect("punches lock");
        punches.retain(|_, at| now.duration_since(*at) < PUNCH_MEMORY);
        punches.insert(ip, now);
    }

    /// How a connection came about: one with an address we are punching toward, whichever
    /// side dialled, exists thanks to the rendezvous.
    fn punched_route(&self, addr: SocketAddr, route: Route) -> Route {
        let punched = self
            .punches
            .lock()
            .expect("punches lock")
            .get(&addr.ip())
            .is_some_and(|at| at.elapsed() < PUNCH_MEMORY);
        match route {
            Route::IncomingTcp | Route::OutgoingTcp if punched => Route::HolepunchedTcp,
            Route::IncomingUtp | Route::OutgoingUtp if punched => Route::HolepunchedUtp,
            other => other,
        }
    }

    /// Opens a connection to a peer, over TCP from our listen port or over µTP from our
    /// shared UDP socket, as the dialer's policy decides.
    pub async fn dial(&self, addr: SocketAddr) -> std::io::Result<(Box<dyn PeerIo>, Route)> {
        let s = self
            .dialer
            .dial(addr)
            .await
            .map_err(std::io::Error::other)?;
        let route = match s.transport() {
            Transport::Tcp => Route::OutgoingTcp,
            Transport::Utp => Route::OutgoingUtp,
        };
        Ok((Box::new(s), route))
    }

    /// Connects to a peer and completes the BitTorrent handshake for `info_hash`. Plain first
    /// (every client accepts it unless told to insist on encryption); a peer that hangs up on
    /// the plain handshake gets one more try through MSE. With a policy that requires
    /// encryption, only MSE is used.
    pub async fn connect_peer(
        &self,
        addr: SocketAddr,
        info_hash: InfoHash,
    ) -> Result<(Box<dyn PeerIo>, Handshake, Route), String> {
        let timeout = crate::torrent::task::CONNECT_TIMEOUT;
        let dial = || async {
            let (s, route) = tokio::time::timeout(timeout, self.dial(addr))
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((s, self.punched_route(addr, route)))
        };
        let encrypted = || async {
            let (s, route) = dial().await?;
            let mut s: Box<dyn PeerIo> = Box::new(
                crate::peer::mse::mse_connect(s, info_hash, self.config.encryption)
                    .await
                    .map_err(|e| format!("encryption: {e}"))?,
            );
            let h = handshake_outgoing(&mut s, info_hash, self.peer_id)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            Ok::<_, String>((s, h, route))
        };
        if self.config.encryption == EncryptionPolicy::Rc4Required {
            return encrypted().await;
        }
        let (mut s, route) = dial().await?;
        match handshake_outgoing(&mut s, info_hash, self.peer_id).await {
            Ok(h) => Ok((s, h, route)),
            Err(ConnError::Eof) | Err(ConnError::Io(_)) => encrypted()
                .await
                .map_err(|e| format!("plain handshake refused; {e}")),
            Err(e) => Err(format!("handshake: {e}")),
        }
    }

    /// Dials for a holepunch rendezvous: µTP from the shared UDP socket and TCP from the
    /// listen port at the same moment (a simultaneous open when the other side does the
    /// same, as the relay asked it to). The first to connect wins.
    ///
    /// Port prediction, the last resort for a peer behind a NAT that maps each destination to
    /// a new port: the relay saw the peer's mapping toward itself, and many such NATs hand
    /// out the next mapping close by, so after a short head start µTP is also tried toward
    /// the [`PREDICTED_PORTS`] ports above it. Bounded: at most that many extra SYNs, each
    /// retried by µTP's own timers, all cancelled once one connects.
    pub async fn dial_punch(
        self: &Arc<Self>,
        addr: SocketAddr,
    ) -> std::io::Result<(Box<dyn PeerIo>, SocketAddr, Route)> {
        self.note_punch(addr.ip());
        let mut attempts = tokio::task::JoinSet::new();
        let me = self.clone();
        attempts.spawn(async move {
            let s = me
                .dialer
                .tcp()
                .connect(addr)
                .await
                .map_err(std::io::Error::other)?;
            let _ = s.set_nodelay(true);
            Ok::<_, std::io::Error>((Box::new(s) as Box<dyn PeerIo>, addr, Route::HolepunchedTcp))
        });
        if let Some(utp) = self.dialer.utp().cloned() {
            let direct = utp.clone();
            attempts.spawn(async move {
                Ok((
                    Box::new(direct.connect(addr).await.map_err(std::io::Error::other)?)
                        as Box<dyn PeerIo>,
                    addr,
                    Route::HolepunchedUtp,
                ))
            });
            for k in 1..=PREDICTED_PORTS {
                let Some(port) = addr.port().checked_add(k) else {
                    break;
                };
                let guess = SocketAddr::new(addr.ip(), port);
                let u = utp.clone();
                attempts.spawn(async move {
                    tokio::time::sleep(PREDICTION_DELAY).await;
                    Ok((
                        Box::new(u.connect(guess).await.map_err(std::io::Error::other)?)
                            as Box<dyn PeerIo>,
                        guess,
                        Route::PortPredicted,
                    ))
                });
            }
        }
        let mut last = std::io::Error::other("no transport");
        while let Some(r) = attempts.join_next().await {
            match r {
                Ok(Ok(found)) => {
                    attempts.abort_all();
                    return Ok(found);
                }
                Ok(Err(e)) => last = e,
                Err(e) => last = std::io::Error::other(e),
            }
        }
        Err(last)
    }
}

/// Ports above the relay-observed one that a holepunch also tries (port prediction).
pub const PREDICTED_PORTS: u16 = 8;

/// How long a connection from a peer we dialled for a holepunch counts as part of it.
const PUNCH_MEMORY: std::time::Duration = std::time::Duration::from_secs(30);
/// Head start of the direct holepunch attempt before predicted ports are tried.
pub const PREDICTION_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

/// What to add.
pub enum TorrentSource {
    /// A parsed `.torrent`.
    Metainfo(Box<Metainfo>),
    /// A magnet link.
    Magnet(Magnet),
}

/// A torrent to add to the session.
pub struct AddTorrent {
    /// The torrent.
    pub source: TorrentSource,
    /// Where its files go.
    pub download_dir: PathBuf,
    /// Peers to dial at once.
    pub peers: Vec<SocketAddr>,
    /// Keep seeding after completion.
    pub seed: bool,
}

/// A running session.
pub struct Session {
    ctx: Arc<SessionCtx>,
    torrents: Vec<TorrentHandle>,
    accept: Vec<tokio::task::JoinHandle<()>>,
    mapper: Option<PortMapper>,
    /// Owns the UDP readers; dropping it stops them.
    _udp: UdpMux,
}

impl Session {
    /// Binds the session's sockets (TCP and UDP on one port, both families), starts the DHT
    /// on the shared UDP socket and starts accepting peers.
    pub async fn start(mut config: SessionConfig) -> std::io::Result<Session> {
        if config.listen_ip.is_loopback() {
            // A loopback-only session has no gateway to ask, no LAN to announce on, and must
            // not reach for the public DHT routers: tests run this way.
            config.port_mapping = false;
            config.lsd = false;
            if let Some(dht) = &mut config.dht {
                let defaults: Vec<String> = burrow_dht::DEFAULT_BOOTSTRAP
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                if dht.bootstrap == defaults {
                    dht.bootstrap.clear();
                }
                dht.node.one_node_per_ip = false;
                dht.node.rate_limit = None;
            }
        }
        let (ipv4, ipv6) = families(config.listen_ip);
        let mut net = NetConfig {
            udp: UdpConfig {
                port: config.listen_port,
                ipv4,
                ipv6,
                ..UdpConfig::default()
            },
            ..NetConfig::default()
        };
        match config.transports {
            Transports::Both => {}
            Transports::Tcp => net.dial.fallback = false,
            Transports::Utp => {
                net.dial.first = Transport::Utp;
                net.dial.fallback = false;
            }
        }
        let mut sockets = SessionSockets::bind(net)
            .await
            .map_err(std::io::Error::other)?;
        let port = sockets.port();
        let sender = sockets.udp.sender();
        let udp_tracker = UdpTracker::new(Arc::new(MuxTransport {
            transactions: sockets.udp.tracker_transactions(),
            sender: sender.clone(),
        }));
        let mapper = config.port_mapping.then(|| {
            PortMapper::spawn(MapperConfig {
                lifetime: config.mapping_lease,
                ..MapperConfig::new(port)
            })
        });
        let reach = Reachability::spawn(port, mapper.as_ref().map(|m| m.subscribe()));
        let dht = match (config.dht.clone(), sockets.udp.take_dht_inbox()) {
            (Some(mut c), Some(inbox)) => {
                if c.state_path.is_none() {
                    c.state_path = Some(config.state_dir.join("dht.state"));
                }
                Some(crate::dht::spawn(c, inbox, sender, Some(reach.sender())))
            }
            _ => None,
        };
        let SessionSockets {
            udp,
            utp,
            tcp,
            dialer,
        } = sockets;
        let ctx = Arc::new(SessionCtx {
            peer_id: PeerId::generate(),
            port,
            config,
            udp_tracker,
            dht,
            reach,
            dialer,
            registry: Mutex::default(),
            lsd_hashes: Mutex::default(),
            lsd_added: Mutex::default(),
            req2: Mutex::default(),
            punches: Mutex::default(),
            next_key: AtomicU64::new(1),
        });
        let tcp = Arc::new(tcp);
        let mut accept = vec![
            tokio::spawn(accept_tcp(tcp, ctx.clone())),
            tokio::spawn(accept_utp(utp, ctx.clone())),
        ];
        if ctx.config.lsd {
            let (found_tx, mut found_rx) = mpsc::unbounded_channel();
            let hashes_ctx = ctx.clone();
            let hashes = move || hashes_ctx.lsd_hashes.lock().expect("lsd lock").clone();
            let (added_tx, added_rx) = mpsc::unbounded_channel();
            if let Some(task) = crate::connectivity::lsd::spawn(port, hashes, found_tx, added_rx) {
                *ctx.lsd_added.lock().expect("lsd lock") = Some(added_tx);
                accept.push(task);
                let route_ctx = ctx.clone();
                accept.push(tokio::spawn(async move {
                    while let Some((ih, peer)) = found_rx.recv().await {
                        let tx = route_ctx
                            .registry
                            .lock()
                            .expect("registry lock")
                            .get(&ih)
                            .cloned();
                        if let Some(tx) = tx {
                            let _ = tx.send(TaskMsg::Peers(PeerSource::Lsd, vec![peer]));
                        }
                    }
                }));
            }
        }
        Ok(Session {
            ctx,
            torrents: Vec::new(),
            accept,
            mapper,
            _udp: udp,
        })
    }

    /// The port peers can reach us on.
    pub fn port(&self) -> u16 {
        self.ctx.port
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.ctx.peer_id
    }

    /// Adds a torrent and starts it.
    pub fn add(&mut self, add: AddTorrent) -> TorrentHandle {
        let private = matches!(&add.source, TorrentSource::Metainfo(m) if m.info.private);
        let (info_hash, name, info, trackers, mut peers, select_only) = match add.source {
            TorrentSource::Metainfo(m) => {
                let info = Arc::new(m.info);
                (
                    info.info_hash,
                    Some(info.name.clone()),
                    Some(info),
                    m.trackers,
                    vec![],
                    None,
                )
            }
            TorrentSource::Magnet(m) => {
                let peers: Vec<SocketAddr> =
                    m.peers.iter().filter_map(|p| p.parse().ok()).collect();
                (
                    m.info_hash,
                    m.name,
                    None,
                    m.trackers.into_iter().map(|t| vec![t]).collect(),
                    peers,
                    m.select_only,
                )
            }
        };
        peers.extend(add.peers);
        let handle = spawn_torrent(
            self.ctx.clone(),
            TorrentParams {
                info_hash,
                name,
                info,
                trackers,
                download_dir: add.download_dir,
                peers,
                seed: add.seed,
                select_only,
            },
        );
        self.ctx
            .registry
            .lock()
            .expect("registry lock")
            .insert(info_hash, handle.sender());
        self.ctx
            .req2
            .lock()
            .expect("req2 lock")
            .insert(crate::wire::mse::req2_hash(&info_hash), info_hash);
        if !private {
            self.ctx
                .lsd_hashes
                .lock()
                .expect("lsd lock")
                .push(info_hash);
            if let Some(tx) = &*self.ctx.lsd_added.lock().expect("lsd lock") {
                let _ = tx.send(info_hash);
            }
        }
        self.torrents.push(handle.clone());
        handle
    }

    /// Takes a torrent out of the session: incoming connections for it are refused from now
    /// on. The caller then calls [`TorrentHandle::shutdown`], which saves its resume data.
    pub fn remove(&mut self, info_hash: &InfoHash) -> Option<TorrentHandle> {
        self.ctx
            .registry
            .lock()
            .expect("registry lock")
            .remove(info_hash);
        self.ctx
            .lsd_hashes
            .lock()
            .expect("lsd lock")
            .retain(|h| h != info_hash);
        self.ctx
            .req2
            .lock()
            .expect("req2 lock")
            .remove(&crate::wire::mse::req2_hash(info_hash));
        let i = self
            .torrents
            .iter()
            .position(|t| t.info_hash == *info_hash)?;
        Some(self.torrents.swap_remove(i))
    }

    /// Running torrents.
    pub fn torrents(&self) -> &[TorrentHandle] {
        &self.torrents
    }

    /// Stops every torrent (announcing `stopped`, saving resume data), saves the DHT's
    /// routing table, and closes the sockets.
    pub async fn shutdown(self) {
        for t in &self.torrents {
            t.shutdown().await;
        }
        if let Some(d) = &self.ctx.dht {
            d.shutdown().await;
        }
        if let Some(m) = self.mapper {
            // Removes the gateway's forwarding, so nothing points at a closed port.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), m.shutdown()).await;
        }
        for a in &self.accept {
            a.abort();
        }
    }

    /// What the session knows of its own reachability.
    pub fn reachability(&self) -> &Reachability {
        &self.ctx.reach
    }

    /// The DHT, when enabled.
    pub fn dht(&self) -> Option<&DhtHandle> {
        self.ctx.dht.as_ref()
    }

    /// Adds peers to a torrent.
    pub fn add_peers(&self, info_hash: &InfoHash, peers: Vec<SocketAddr>) {
        if let Some(t) = self.torrents.iter().find(|t| t.info_hash == *info_hash) {
            t.add_peers(PeerSource::Manual, peers);
        }
    }
}

/// Socket families for a listen address: the unspecified address means both families; a
/// loopback address means both loopbacks (handy for tests); any other address only its own.
fn families(ip: IpAddr) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    match ip {
        IpAddr::V4(a) if a.is_unspecified() => (Some(a), Some(Ipv6Addr::UNSPECIFIED)),
        IpAddr::V6(a) if a.is_unspecified() => (Some(Ipv4Addr::UNSPECIFIED), Some(a)),
        IpAddr::V4(a) if a.is_loopback() => (Some(a), Some(Ipv6Addr::LOCALHOST)),
        IpAddr::V6(a) if a.is_loopback() => (Some(Ipv4Addr::LOCALHOST), Some(a)),
        IpAddr::V4(a) => (Some(a), None),
        IpAddr::V6(a) => (None, Some(a)),
    }
}

async fn accept_tcp(tcp: Arc<TcpListeners>, ctx: Arc<SessionCtx>) {
    loop {
        let Ok((stream, addr)) = tcp.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(route_incoming(
            Box::new(stream),
            addr,
            Route::IncomingTcp,
            ctx.clone(),
        ));
    }
}

async fn accept_utp(utp: UtpSocket, ctx: Arc<SessionCtx>) {
    loop {
        match utp.accept().await {
            Ok((stream, addr)) => {
                tokio::spawn(route_incoming(
                    Box::new(stream),
                    addr,
                    Route::IncomingUtp,
                    ctx.clone(),
                ));
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

/// Tells a plain BitTorrent handshake from an MSE one by its first bytes, completes the
/// encryption handshake if there is one, then reads the start of the BitTorrent handshake and
/// hands the connection to its torrent.
async fn route_incoming(
    stream: Box<dyn PeerIo>,
    addr: SocketAddr,
    route: Route,
    ctx: Arc<SessionCtx>,
) {
    let known = |h: &[u8; 20]| ctx.req2.lock().expect("req2 lock").get(h).copied();
    let accepted = match crate::peer::mse::accept(stream, known, ctx.config.encryption).await {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(%addr, error = %e, "incoming connection refused during encryption handshake");
            return;
        }
    };
    let named = accepted.info_hash();
    let mut stream: Box<dyn PeerIo> = Box::new(accepted.into_stream());
    let Ok((reserved, ih)) = read_handshake_prefix(&mut stream).await else {
        return;
    };
    if named.is_some_and(|n| n != ih) {
        return; // The encrypted handshake named one torrent, the BitTorrent one another.
    }
    let route = ctx.punched_route(addr, route);
    let tx = ctx
        .registry
        .lock()
        .expect("registry lock")
        .get(&ih)
        .cloned();
    if let Some(tx) = tx {
        let _ = tx.send(TaskMsg::Incoming {
            stream,
            addr,
            reserved,
            route,
        });
    }
}
