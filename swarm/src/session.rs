//! The session: owns the listening sockets and what all torrents share — our peer id, the
//! tracker transport, the routing of incoming connections to torrents, and where resume data
//! lives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::connectivity::{PeerSource, Route};
use crate::metainfo::{Magnet, Metainfo};
use crate::peer::conn::{read_handshake_prefix, PeerIo};
use crate::peer::limit::RateLimits;
use crate::peer::PeerKey;
use crate::torrent::resume_store::{FileResumeStore, ResumeStore};
use crate::torrent::task::{spawn_torrent, TaskMsg, TorrentHandle, TorrentParams};
use crate::tracker::UdpTracker;
use crate::types::{InfoHash, PeerId};

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
    /// Longest time verified pieces go unrecorded in resume data while a download runs: what
    /// a crash can cost.
    pub checkpoint_interval: std::time::Duration,
    /// Where resume data is kept; `None`: one file per torrent under `state_dir/resume`.
    pub resume_store: Option<Arc<dyn ResumeStore>>,
    /// Caps on the whole session's transfer rates, shared by every connection; change them
    /// at any time through this handle.
    pub rate_limits: RateLimits,
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
            checkpoint_interval: crate::torrent::task::CHECKPOINT_INTERVAL,
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
    /// UDP tracker client.
    pub udp_tracker: UdpTracker,
    /// Torrent tasks by info-hash, for routing incoming connections. Only senders live here,
    /// no torrent state: each torrent's state stays inside its own task.
    registry: Mutex<HashMap<InfoHash, mpsc::UnboundedSender<TaskMsg>>>,
    next_key: AtomicU64,
}

impl SessionCtx {
    /// A fresh connection key.
    pub fn next_peer_key(&self) -> PeerKey {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Where a torrent's resume data is stored.
    pub fn resume_path(&self, ih: &InfoHash) -> PathBuf {
        self.config.state_dir.join("resume").join(format!("{}.resume", ih.to_hex()))
    }

    /// Where resume data is loaded from and saved to.
    pub fn resume_store(&self) -> Arc<dyn ResumeStore> {
        match &self.config.resume_store {
            Some(s) => s.clone(),
            None => Arc::new(FileResumeStore::new(self.config.state_dir.join("resume"))),
        }
    }

    /// Opens a connection to a peer.
    pub async fn dial(&self, addr: SocketAddr) -> std::io::Result<(Box<dyn PeerIo>, Route)> {
        let s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok((Box::new(s), Route::OutgoingTcp))
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
}

/// A running session.
pub struct Session {
    ctx: Arc<SessionCtx>,
    torrents: Vec<TorrentHandle>,
    accept: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Binds the listening socket and starts accepting peers.
    pub async fn start(config: SessionConfig) -> std::io::Result<Session> {
        let listener = TcpListener::bind(SocketAddr::new(config.listen_ip, config.listen_port)).await?;
        let port = listener.local_addr()?.port();
        let ctx = Arc::new(SessionCtx {
            peer_id: PeerId::generate(),
            port,
            config,
            udp_tracker: UdpTracker::ephemeral(),
            registry: Mutex::default(),
            next_key: AtomicU64::new(1),
        });
        let accept = tokio::spawn(accept_loop(listener, ctx.clone()));
        Ok(Session { ctx, torrents: Vec::new(), accept })
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
        let (info_hash, name, info, trackers, mut peers, select_only) = match add.source {
            TorrentSource::Metainfo(m) => {
                let info = Arc::new(m.info);
                (info.info_hash, Some(info.name.clone()), Some(info), m.trackers, vec![], None)
            }
            TorrentSource::Magnet(m) => {
                let peers: Vec<SocketAddr> = m.peers.iter().filter_map(|p| p.parse().ok()).collect();
                (m.info_hash, m.name, None, m.trackers.into_iter().map(|t| vec![t]).collect(), peers, m.select_only)
            }
        };
        peers.extend(add.peers);
        let handle = spawn_torrent(
            self.ctx.clone(),
            TorrentParams { info_hash, name, info, trackers, download_dir: add.download_dir, peers, seed: add.seed, select_only },
        );
        self.ctx.registry.lock().expect("registry lock").insert(info_hash, handle.sender());
        self.torrents.push(handle.clone());
        handle
    }

    /// Takes a torrent out of the session: incoming connections for it are refused from now
    /// on. The caller then calls [`TorrentHandle::shutdown`], which saves its resume data.
    pub fn remove(&mut self, info_hash: &InfoHash) -> Option<TorrentHandle> {
        self.ctx.registry.lock().expect("registry lock").remove(info_hash);
        let i = self.torrents.iter().position(|t| t.info_hash == *info_hash)?;
        Some(self.torrents.swap_remove(i))
    }

    /// Running torrents.
    pub fn torrents(&self) -> &[TorrentHandle] {
        &self.torrents
    }

    /// Stops every torrent (announcing `stopped`, saving resume data) and the listener.
    pub async fn shutdown(self) {
        for t in &self.torrents {
            t.shutdown().await;
        }
        self.accept.abort();
    }

    /// Adds peers to a torrent.
    pub fn add_peers(&self, info_hash: &InfoHash, peers: Vec<SocketAddr>) {
        if let Some(t) = self.torrents.iter().find(|t| t.info_hash == *info_hash) {
            t.add_peers(PeerSource::Manual, peers);
        }
    }
}

async fn accept_loop(listener: TcpListener, ctx: Arc<SessionCtx>) {
    loop {
        let Ok((stream, addr)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut stream: Box<dyn PeerIo> = Box::new(stream);
            let Ok((reserved, ih)) = read_handshake_prefix(&mut stream).await else { return };
            let tx = ctx.registry.lock().expect("registry lock").get(&ih).cloned();
            if let Some(tx) = tx {
                let _ = tx.send(TaskMsg::Incoming { stream, addr, reserved, route: Route::IncomingTcp });
            }
        });
    }
}
