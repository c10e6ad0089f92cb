//! The session: owns the listening sockets and what all torrents share — our peer id, the
//! tracker transport, the routing of incoming connections to torrents, and where resume data
//! lives.

mod incoming;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::connectivity::{Connector, PeerSource, Reachability};
use crate::dht::DhtHandle;
use crate::metainfo::{Magnet, Metainfo};
use crate::nat::{MapperConfig, PortMapper};
use crate::net::udp::UdpConfig;
use crate::net::{NetConfig, SessionSockets, Transport, UdpMux};
use crate::peer::limit::RateLimits;
use crate::torrent::env::{TorrentEnv, TorrentSettings};
use crate::torrent::resume_store::{FileResumeStore, ResumeStore};
use crate::torrent::task::{spawn_torrent, TorrentHandle, TorrentParams};
use crate::tracker::{MuxTransport, UdpTracker};
use crate::types::{InfoHash, PeerId};
use crate::wire::mse::EncryptionPolicy;
use incoming::Routing;

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
    /// Which files, in which order (a magnet's `so` applies when this names no files).
    pub selection: crate::torrent::task::Selection,
}

/// A running session.
pub struct Session {
    env: Arc<TorrentEnv>,
    routing: Arc<Routing>,
    /// Torrents that may be announced on the LAN (not private).
    lsd_hashes: Arc<Mutex<Vec<InfoHash>>>,
    /// Tells LSD about a torrent just added, so it is announced at once.
    lsd_added: Option<mpsc::UnboundedSender<InfoHash>>,
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
        let peer_id = PeerId::generate();
        let connector = Arc::new(Connector::new(peer_id, config.encryption, dialer));
        let resume: Arc<dyn ResumeStore> = match &config.resume_store {
            Some(s) => s.clone(),
            None => Arc::new(FileResumeStore::new(config.state_dir.join("resume"))),
        };
        let settings = TorrentSettings {
            max_peers_per_torrent: config.max_peers_per_torrent,
            max_connecting: config.max_connecting,
            upload_slots: config.upload_slots,
            direct_io: config.direct_io,
            checkpoint_interval: config.checkpoint_interval,
            rate_limits: config.rate_limits.clone(),
        };
        let env = Arc::new(TorrentEnv::new(
            peer_id,
            port,
            settings,
            connector.clone(),
            udp_tracker,
            dht,
            reach,
            resume,
        ));
        let routing = Arc::new(Routing::default());
        let mut accept = vec![
            tokio::spawn(incoming::accept_tcp(
                Arc::new(tcp),
                routing.clone(),
                connector.clone(),
            )),
            tokio::spawn(incoming::accept_utp(utp, routing.clone(), connector)),
        ];
        let lsd_hashes: Arc<Mutex<Vec<InfoHash>>> = Arc::default();
        let mut lsd_added = None;
        if config.lsd {
            let (found_tx, mut found_rx) = mpsc::unbounded_channel();
            let h = lsd_hashes.clone();
            let hashes = move || h.lock().expect("lsd lock").clone();
            let (added_tx, added_rx) = mpsc::unbounded_channel();
            if let Some(task) = crate::connectivity::lsd::spawn(port, hashes, found_tx, added_rx) {
                lsd_added = Some(added_tx);
                accept.push(task);
                let routing = routing.clone();
                accept.push(tokio::spawn(async move {
                    while let Some((ih, peer)) = found_rx.recv().await {
                        routing.lsd_peer(&ih, peer);
                    }
                }));
            }
        }
        Ok(Session {
            env,
            routing,
            lsd_hashes,
            lsd_added,
            torrents: Vec::new(),
            accept,
            mapper,
            _udp: udp,
        })
    }

    /// The port peers can reach us on.
    pub fn port(&self) -> u16 {
        self.env.port
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.env.peer_id
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
            self.env.clone(),
            TorrentParams {
                info_hash,
                name,
                info,
                trackers,
                download_dir: add.download_dir,
                peers,
                seed: add.seed,
                selection: crate::torrent::task::Selection {
                    so: add.selection.so.clone().or(select_only),
                    ..add.selection
                },
            },
        );
        self.routing.insert(info_hash, handle.sender());
        if !private {
            self.lsd_hashes.lock().expect("lsd lock").push(info_hash);
            if let Some(tx) = &self.lsd_added {
                let _ = tx.send(info_hash);
            }
        }
        self.torrents.push(handle.clone());
        handle
    }

    /// Takes a torrent out of the session: incoming connections for it are refused from now
    /// on. The caller then calls [`TorrentHandle::shutdown`], which saves its resume data.
    pub fn remove(&mut self, info_hash: &InfoHash) -> Option<TorrentHandle> {
        self.routing.remove(info_hash);
        self.lsd_hashes
            .lock()
            .expect("lsd lock")
            .retain(|h| h != info_hash);
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
        if let Some(d) = &self.env.dht {
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
        &self.env.reach
    }

    /// The DHT, when enabled.
    pub fn dht(&self) -> Option<&DhtHandle> {
        self.env.dht.as_ref()
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
