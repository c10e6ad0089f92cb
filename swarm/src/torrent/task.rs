//! The tokio driver of one torrent: it owns the [`TorrentCore`], the peer links, storage and
//! the dialling pool, and carries out the core's actions — messages to writers, pieces to be
//! hashed and written on blocking threads, resume checkpoints, announces and dials.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::bitfield::Bitfield;
use super::core::{Action, CoreConfig, Phase, TorrentCore};
use super::piece_buf::PieceBuf;
use super::resume::{boot_id, plan_start, ResumeData};
use super::status::{TorrentState, TorrentStatus};
use super::storage::Storage;
use crate::connectivity::{PeerPool, PeerSource, ReachEvent, Route};
use crate::metainfo::Info;
use crate::peer::conn::{self, Outgoing, PeerEvent, PeerIo, PeerLink};
use crate::peer::{PeerKey, PeerState};
use crate::session::SessionCtx;
use crate::tracker::{spawn_announcer, AnnounceStats};
use crate::types::{InfoHash, PieceIndex};
use crate::wire::Handshake;

#[path = "control.rs"]
mod control;
pub use control::{PeerDetails, TorrentDetails};

/// How often resume data is written while pieces keep arriving (the default of
/// `SessionConfig::checkpoint_interval`).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(30);

/// How long shutdown waits for a checkpoint still being written before the final save.
const SHUTDOWN_SAVE_WAIT: Duration = Duration::from_secs(30);
/// Peer events buffered between the readers and the torrent; a full queue slows the readers
/// down, which is how a busy torrent pushes back on its peers.
pub const PEER_EVENT_QUEUE: usize = 1024;
/// Time allowed for a TCP connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// DHT lookups while peers are scarce (fewer than [`FEW_PEERS`]).
pub const DHT_INTERVAL_HUNGRY: Duration = Duration::from_secs(5 * 60);
/// DHT announces otherwise: within the 30 minutes other nodes keep an announced peer.
pub const DHT_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// Below this many connected peers, peer sources are asked more often.
pub const FEW_PEERS: usize = 10;
/// Retry of a DHT lookup that found nobody while we have no peers (the routing table may
/// still be filling).
pub const DHT_RETRY_EMPTY: Duration = Duration::from_secs(20);

/// Messages to a torrent's task.
pub(crate) enum TaskMsg {
    /// A connection whose handshake prefix named this torrent.
    Incoming {
        /// The stream, with 48 bytes of handshake read.
        stream: Box<dyn PeerIo>,
        /// Remote address.
        addr: SocketAddr,
        /// The peer's reserved bits.
        reserved: [u8; 8],
        /// How it arrived.
        route: Route,
    },
    /// Peers found somewhere.
    Peers(PeerSource, Vec<SocketAddr>),
    /// Stop, announce `stopped`, save resume data, then answer.
    Shutdown(oneshot::Sender<()>),
    Connected {
        stream: Box<dyn PeerIo>,
        addr: SocketAddr,
        handshake: Handshake,
        route: Route,
        dialled: bool,
    },
    DialFailed(SocketAddr),
    Checked {
        have: Bitfield,
        resume: Option<ResumeData>,
        /// Verified pieces whose bytes may not be on stable storage yet.
        unflushed: Vec<u32>,
    },
    Verified {
        piece: u32,
        result: std::io::Result<bool>,
        buf: PieceBuf,
    },
    /// A save finished; pieces it was to flush but could not go back to the unflushed list.
    Saved {
        retry: Vec<u32>,
    },
    DhtLookupDone {
        found: usize,
    },
    PunchFailed(SocketAddr),
    /// A request from outside (see `control`).
    Control(control::Control),
}

/// What a torrent is started with.
pub struct TorrentParams {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Name to show before metadata arrives.
    pub name: Option<String>,
    /// The info dictionary, unless it must come from peers.
    pub info: Option<Arc<Info>>,
    /// Tracker tiers.
    pub trackers: Vec<Vec<String>>,
    /// Download folder.
    pub download_dir: PathBuf,
    /// Peers to dial first.
    pub peers: Vec<SocketAddr>,
    /// Keep seeding after completion.
    pub seed: bool,
    /// File indices to download; all when `None`.
    pub select_only: Option<Vec<usize>>,
}

/// A handle on a running torrent.
#[derive(Clone)]
pub struct TorrentHandle {
    /// The torrent.
    pub info_hash: InfoHash,
    tx: mpsc::UnboundedSender<TaskMsg>,
    status: watch::Receiver<TorrentStatus>,
}

impl TorrentHandle {
    /// The latest status.
    pub fn status(&self) -> TorrentStatus {
        self.status.borrow().clone()
    }
    /// A receiver that wakes on each status update.
    pub fn watch(&self) -> watch::Receiver<TorrentStatus> {
        self.status.clone()
    }
    /// Adds peers to dial.
    pub fn add_peers(&self, source: PeerSource, peers: Vec<SocketAddr>) {
        let _ = self.tx.send(TaskMsg::Peers(source, peers));
    }
    /// Stops the torrent: `stopped` is announced and resume data saved before this returns.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(TaskMsg::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
    pub(crate) fn sender(&self) -> mpsc::UnboundedSender<TaskMsg> {
        self.tx.clone()
    }
}

struct Task {
    ctx: Arc<SessionCtx>,
    p: TorrentParams,
    core: TorrentCore,
    storage: Option<Arc<Storage>>,
    links: HashMap<PeerKey, (PeerLink, SocketAddr, Route)>,
    pool: PeerPool,
    tx: mpsc::UnboundedSender<TaskMsg>,
    peer_tx: mpsc::Sender<PeerEvent>,
    verifying: usize,
    verify_queue: VecDeque<(u32, PieceBuf)>,
    dirty: bool,
    /// Verified pieces not yet flushed to stable storage by a checkpoint.
    unflushed: Vec<u32>,
    last_checkpoint: Instant,
    lifetime: (u64, u64),
    status: TorrentStatus,
    status_tx: watch::Sender<TorrentStatus>,
    announce_tx: watch::Sender<AnnounceStats>,
    announcers: Vec<JoinHandle<()>>,
    error: Option<String>,
    next_dht: Instant,
    /// Addresses peers gave in their other IP family, by connection.
    other_family: HashMap<PeerKey, SocketAddr>,
    extra: control::Extra,
}

/// Starts a torrent's task.
pub(crate) fn spawn_torrent(ctx: Arc<SessionCtx>, p: TorrentParams) -> TorrentHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let (peer_tx, peer_rx) = mpsc::channel(PEER_EVENT_QUEUE);
    let status = TorrentStatus::new(
        p.info_hash,
        p.name
            .clone()
            .or_else(|| p.info.as_ref().map(|i| i.name.clone())),
    );
    let (status_tx, status_rx) = watch::channel(status.clone());
    let config = CoreConfig {
        listen_port: Some(ctx.port),
        seed: p.seed,
        upload_slots: ctx.config.upload_slots,
        ..CoreConfig::default()
    };
    let core = TorrentCore::new(
        p.info_hash,
        ctx.peer_id,
        p.info.clone(),
        config,
        rand::random(),
    );
    let (announce_tx, announce_rx) = watch::channel(AnnounceStats {
        port: ctx.port,
        left: p.info.as_ref().map_or(1, |i| i.total_length),
        ..Default::default()
    });
    let (apeers_tx, mut apeers_rx) = mpsc::unbounded_channel();
    let (astatus_tx, _astatus_rx) = mpsc::unbounded_channel();
    let announcers = spawn_announcer(
        p.trackers.clone(),
        p.info_hash,
        ctx.peer_id,
        announce_rx,
        apeers_tx,
        astatus_tx,
        ctx.udp_tracker.clone(),
    );
    let fwd = tx.clone();
    tokio::spawn(async move {
        while let Some(peers) = apeers_rx.recv().await {
            if fwd
                .send(TaskMsg::Peers(PeerSource::Tracker, peers))
                .is_err()
            {
                break;
            }
        }
    });
    let mut pool = PeerPool::default();
    let now = Instant::now();
    for a in &p.peers {
        pool.add(*a, PeerSource::Manual, now);
    }
    let task = Task {
        ctx,
        p,
        core,
        storage: None,
        links: HashMap::new(),
        pool,
        tx: tx.clone(),
        peer_tx,
        verifying: 0,
        verify_queue: VecDeque::new(),
        dirty: false,
        unflushed: Vec::new(),
        last_checkpoint: now,
        lifetime: (0, 0),
        status,
        status_tx,
        announce_tx,
        announcers,
        error: None,
        next_dht: now,
        other_family: HashMap::new(),
        extra: control::Extra::default(),
    };
    let info_hash = task.p.info_hash;
    tokio::spawn(task.run(rx, peer_rx));
    TorrentHandle {
        info_hash,
        tx,
        status: status_rx,
    }
}

impl Task {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<TaskMsg>,
        mut peer_rx: mpsc::Receiver<PeerEvent>,
    ) {
        if let Some(info) = self.core.info().cloned() {
            self.start_check(info);
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let done = loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(TaskMsg::Shutdown(done)) => break Some(done),
                    Some(m) => self.on_msg(m),
                    None => break None,
                },
                Some(ev) = peer_rx.recv() => {
                    self.on_peer_event(ev);
                    // Take what else is queued before acting: fewer, larger batches.
                    for _ in 0..64 {
                        match peer_rx.try_recv() {
                            Ok(ev) => self.on_peer_event(ev),
                            Err(_) => break,
                        }
                    }
                }
                _ = tick.tick() => self.on_tick(),
            }
            self.drain_actions();
        };
        self.shutdown(&mut rx).await;
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    fn on_peer_event(&mut self, ev: PeerEvent) {
        let now = Instant::now();
        match ev {
            PeerEvent::Messages(key, msgs) => self.core.peer_messages(key, msgs, now),
            PeerEvent::Closed(key, reason) => {
                tracing::debug!(key, %reason, "peer closed");
                self.core.peer_closed(key);
                self.remove_link(key, false);
            }
        }
    }

    fn remove_link(&mut self, key: PeerKey, graceful: bool) {
        if let Some(other) = self.other_family.remove(&key) {
            self.pool.add(other, PeerSource::Handshake, Instant::now());
        }
        if let Some((link, addr, _)) = self.links.remove(&key) {
            if graceful {
                link.close()
            } else {
                link.abort()
            }
            self.pool.disconnected(addr, Instant::now());
        }
    }

    fn on_msg(&mut self, m: TaskMsg) {
        let now = Instant::now();
        match m {
            TaskMsg::Incoming {
                mut stream,
                addr,
                reserved,
                route,
            } => {
                if self.links.len() >= self.ctx.config.max_peers_per_torrent
                    || self.pool.is_banned(&addr.ip())
                {
                    return;
                }
                let (ih, id, tx) = (self.p.info_hash, self.ctx.peer_id, self.tx.clone());
                tokio::spawn(async move {
                    if let Ok(handshake) =
                        conn::finish_incoming(&mut stream, reserved, ih, id).await
                    {
                        let _ = tx.send(TaskMsg::Connected {
                            stream,
                            addr,
                            handshake,
                            route,
                            dialled: false,
                        });
                    }
                });
            }
            TaskMsg::Connected {
                stream,
                addr,
                handshake,
                route,
                dialled,
            } => {
                if dialled {
                    self.pool.connected(addr, PeerSource::Tracker, now);
                }
                if self.pool.is_banned(&addr.ip()) {
                    return;
                }
                if !dialled {
                    self.ctx
                        .reach
                        .observe(ReachEvent::Incoming { from: addr, route });
                }
                let key = self.ctx.next_peer_key();
                let link = conn::spawn_limited(
                    key,
                    stream,
                    handshake.supports_fast(),
                    self.peer_tx.clone(),
                    self.link_limits(),
                );
                self.links.insert(key, (link, addr, route));
                self.status.count_route(route);
                if addr.is_ipv6() {
                    *self.status.route_totals.entry("ipv6").or_default() += 1;
                }
                tracing::debug!(key, %addr, route = route.label(), "peer connected");
                self.core
                    .peer_connected(key, PeerState::new(addr, handshake, route, now), now);
            }
            TaskMsg::DialFailed(addr) => {
                self.pool.dial_failed(addr, now);
                self.ask_rendezvous(addr, now);
            }
            TaskMsg::PunchFailed(addr) => tracing::debug!(%addr, "holepunch dial failed"),
            TaskMsg::Peers(source, peers) => {
                for a in peers {
                    if !self.is_self(&a) {
                        self.pool.add(a, source, now);
                    }
                }
                self.dial_more();
            }
            TaskMsg::Checked {
                have,
                resume,
                unflushed,
            } => {
                if let Some(r) = resume {
                    self.lifetime = (r.uploaded, r.downloaded);
                }
                self.unflushed = unflushed;
                self.core.attach(have);
                self.publish();
                if let Some(storage) = self.storage.clone() {
                    // Empty files belong to no piece, so no write would ever create them.
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = storage.create_empty_files() {
                            tracing::warn!(error = %e, "cannot create empty files");
                        }
                    });
                }
                if let (Some(sel), Some(info)) = (&self.p.select_only, self.core.info().cloned()) {
                    let mut wanted = Bitfield::new(info.piece_count());
                    for &f in sel.iter().filter(|&&f| f < info.files.len()) {
                        for p in info.pieces_of_file(f) {
                            wanted.set(p, true);
                        }
                    }
                    self.core.set_wanted(wanted);
                }
                self.dial_more();
            }
            TaskMsg::Verified { piece, result, buf } => {
                self.verifying -= 1;
                match result {
                    Ok(ok) => self.core.piece_checked(piece, ok, buf),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot write to disk; torrent stopped");
                        self.error = Some(format!("disk write failed: {e}"));
                    }
                }
                self.next_verify();
            }
            TaskMsg::DhtLookupDone { found } => {
                tracing::debug!(found, "DHT lookup done");
                if found == 0 && self.links.is_empty() {
                    self.next_dht = self.next_dht.min(now + DHT_RETRY_EMPTY);
                }
            }
            TaskMsg::Saved { retry } => {
                self.extra.saving = false;
                self.unflushed.extend(retry);
            }
            TaskMsg::Control(c) => self.on_control(c),
            TaskMsg::Shutdown(_) => unreachable!("handled by the run loop"),
        }
    }

    fn drain_actions(&mut self) {
        while let Some(a) = self.core.poll_action() {
            match a {
                Action::Send(k, m) => self.to_peer(k, Outgoing::Msg(m)),
                Action::Serve(k, r) => {
                    if let Some(s) = self.storage.clone() {
                        self.to_peer(k, Outgoing::Serve(r, s));
                    }
                }
                Action::CancelServe(k, r) => self.to_peer(k, Outgoing::CancelServe(r)),
                Action::ClearServes(k) => self.to_peer(k, Outgoing::ClearServes),
                Action::Close(k, reason) => {
                    tracing::debug!(key = k, ?reason, "closing peer");
                    if reason == super::core::CloseReason::Useless {
                        if let Some((_, addr, _)) = self.links.get(&k) {
                            self.pool.mark_seed(*addr);
                        }
                    }
                    self.remove_link(k, true);
                }
                Action::Verify { piece, data } => {
                    self.verify_queue.push_back((piece, data));
                    self.next_verify();
                }
                Action::MetadataReady(info) => {
                    tracing::info!(name = %info.name, "metadata received");
                    self.status.name = Some(info.name.clone());
                    self.start_check(info);
                }
                Action::PieceVerified(p) => {
                    self.dirty = true;
                    self.unflushed.push(p);
                    self.maybe_checkpoint();
                }
                Action::Completed => {
                    tracing::info!("download complete");
                    self.quick_save();
                    self.publish();
                }
                Action::Ban(ip) => {
                    tracing::warn!(%ip, "banned for sending corrupt data");
                    self.pool.ban(ip);
                }
                Action::PexPeers {
                    via,
                    via_key: _,
                    peers,
                } => {
                    let now = Instant::now();
                    for p in peers {
                        if !self.is_self(&p.addr) {
                            self.pool.add_pex(p.addr, p.flags.0, via, now);
                        }
                    }
                    self.dial_more();
                }
                Action::HolepunchConnect { addr, via } => self.punch(addr, via),
                Action::HolepunchFailed { addr } => {
                    tracing::debug!(%addr, "holepunch rendezvous failed")
                }
                Action::OtherFamily { key, addr } => {
                    // Kept for when this connection ends: then the other family is a second
                    // way back to the peer. Dialling it now would only make a duplicate.
                    if ((addr.is_ipv6() && self.own_v6().is_some()) || addr.is_ipv4())
                        && self.other_family.len() < 4 * self.ctx.config.max_peers_per_torrent
                    {
                        self.other_family.insert(key, addr);
                    }
                }
                Action::YourIp { reported, by } => {
                    self.ctx.reach.observe(ReachEvent::YourIp { reported, by })
                }
                Action::DhtNode(addr) => {
                    if let Some(d) = &self.ctx.dht {
                        d.add_node(addr);
                    }
                }
            }
        }
    }

    fn to_peer(&self, key: PeerKey, o: Outgoing) {
        if let Some((link, _, _)) = self.links.get(&key) {
            let _ = link.tx.send(o);
        }
    }

    fn next_verify(&mut self) {
        let max = std::thread::available_parallelism().map_or(2, |n| n.get());
        while self.verifying < max && self.error.is_none() {
            let Some((piece, data)) = self.verify_queue.pop_front() else {
                return;
            };
            let (Some(storage), Some(info)) = (self.storage.clone(), self.core.info().cloned())
            else {
                return;
            };
            let tx = self.tx.clone();
            self.verifying += 1;
            tokio::task::spawn_blocking(move || {
                let ok = Sha1::digest(&data).as_slice() == info.pieces[piece as usize].0;
                let result = if ok {
                    storage.write_piece(PieceIndex(piece), &data).map(|_| true)
                } else {
                    Ok(false)
                };
                let _ = tx.send(TaskMsg::Verified {
                    piece,
                    result,
                    buf: data,
                });
            });
        }
    }

    fn start_check(&mut self, info: Arc<Info>) {
        let storage = Arc::new(
            Storage::new(&info, &self.p.download_dir).with_direct_io(self.ctx.config.direct_io),
        );
        self.storage = Some(storage.clone());
        let store = self.ctx.resume_store();
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let resume = store.load(&info.info_hash);
            let plan = plan_start(&info, &storage, resume.as_ref());
            let mut have = Bitfield::new(info.piece_count());
            for &p in &plan.trusted {
                have.set(p, true);
            }
            let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
            let checked: Vec<u32> = std::thread::scope(|s| {
                let chunks: Vec<&[u32]> = plan
                    .to_check
                    .chunks(plan.to_check.len().div_ceil(workers).max(1))
                    .collect();
                let handles: Vec<_> = chunks
                    .into_iter()
                    .map(|chunk| {
                        let (info, storage) = (&info, &storage);
                        s.spawn(move || {
                            let mut buf = Vec::new();
                            chunk
                                .iter()
                                .copied()
                                .filter(|&p| {
                                    storage.check_piece(
                                        PieceIndex(p),
                                        info.piece_len(PieceIndex(p)),
                                        &info.pieces[p as usize],
                                        &mut buf,
                                    )
                                })
                                .collect::<Vec<u32>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            // Hashed bytes may have come from the page cache of an earlier run that never
            // flushed them; so may trusted pieces recorded as unflushed in this boot.
            if !plan.trusted.is_empty() || !plan.to_check.is_empty() {
                tracing::info!(
                    trusted = plan.trusted.len(),
                    hashed = plan.to_check.len(),
                    valid = plan.trusted.len() + checked.len(),
                    "pieces found on disk"
                );
            }
            let mut unflushed = plan.unflushed;
            for p in checked {
                have.set(p, true);
                unflushed.push(p);
            }
            storage.mark_unflushed(&unflushed);
            let _ = tx.send(TaskMsg::Checked {
                have,
                resume,
                unflushed,
            });
        });
    }

    fn dial_more(&mut self) {
        if self.error.is_some() || (self.core.phase() == Phase::Complete && !self.p.seed) {
            return;
        }
        let seeding = self.core.phase() == Phase::Complete;
        let max = self.ctx.config.max_peers_per_torrent;
        let open = self.links.len() + self.pool.connecting();
        let n = max.saturating_sub(open).min(
            self.ctx
                .config
                .max_connecting
                .saturating_sub(self.pool.connecting()),
        );
        for addr in self.pool.next_to_dial(Instant::now(), n, seeding) {
            if self.pool.wants_rendezvous(&addr) {
                // Do not wait for the dial to time out at the peer's NAT first.
                self.ask_rendezvous(addr, Instant::now());
            }
            let (ctx, tx, ih) = (self.ctx.clone(), self.tx.clone(), self.p.info_hash);
            tokio::spawn(async move {
                let r = ctx.connect_peer(addr, ih).await;
                let _ = match r {
                    Ok((stream, handshake, route)) => tx.send(TaskMsg::Connected {
                        stream,
                        addr,
                        handshake,
                        route,
                        dialled: true,
                    }),
                    Err(e) => {
                        tracing::debug!(%addr, error = %e, "dial failed");
                        tx.send(TaskMsg::DialFailed(addr))
                    }
                };
            });
        }
    }

    /// Asks the DHT for peers and announces us, on the schedule above. Private torrents
    /// (BEP 27) never use the DHT.
    fn dht_round(&mut self, now: Instant) {
        let private = self.core.info().is_some_and(|i| i.private);
        let Some(dht) = self.ctx.dht.clone() else {
            return;
        };
        if private || now < self.next_dht || self.error.is_some() {
            return;
        }
        let hungry = self.links.len() < FEW_PEERS && self.core.phase() != Phase::Complete;
        self.next_dht = now
            + if hungry {
                DHT_INTERVAL_HUNGRY
            } else {
                DHT_INTERVAL
            };
        let mut found = dht.lookup(self.p.info_hash, Some(Some(self.ctx.port)));
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut total = 0;
            while let Some(peers) = found.recv().await {
                total += peers.len();
                if tx.send(TaskMsg::Peers(PeerSource::Dht, peers)).is_err() {
                    return;
                }
            }
            let _ = tx.send(TaskMsg::DhtLookupDone { found: total });
        });
    }

    /// The connectivity policy's answer to a failed dial: a peer that speaks holepunch and
    /// was heard of through PEX is asked for through the peer that told us about it, which is
    /// connected to both of us. Costs one small message; nothing is spent on peers without a
    /// relay.
    fn ask_rendezvous(&mut self, addr: SocketAddr, now: Instant) {
        // Relays we dialled first: they are reachable, so they are likely to stay connected
        // to the target long enough to pass `connect` on.
        let mut relays = self.pool.punch_candidates(addr, now);
        relays.sort_by_key(|r| {
            !self
                .links
                .values()
                .any(|(_, a, route)| a == r && route.is_outgoing())
        });
        for relay in relays {
            let key = self
                .links
                .iter()
                .find(|(_, (_, a, _))| *a == relay)
                .map(|(k, _)| *k);
            if let Some(k) = key {
                let msg = crate::wire::HolepunchMsg {
                    kind: crate::wire::HolepunchType::Rendezvous,
                    addr,
                    error: crate::wire::HolepunchError::None,
                };
                if self.core.send_holepunch(k, msg) {
                    tracing::debug!(%addr, %relay, "asking for a holepunch rendezvous");
                    self.ctx.note_punch(addr.ip());
                    self.drain_actions();
                    return;
                }
            }
        }
    }

    /// A relay told us to dial `addr` now (it told `addr` the same).
    fn punch(&mut self, addr: SocketAddr, via: SocketAddr) {
        if self.links.values().any(|(_, a, _)| *a == addr)
            || self.pool.is_connected(&addr)
            || self.pool.is_banned(&addr.ip())
        {
            return;
        }
        if self.core.phase() == Phase::Complete && self.pool.is_seed(&addr) {
            return; // Two seeds have nothing to trade.
        }
        tracing::debug!(%addr, %via, "holepunch: dialling");
        let (ctx, tx, ih) = (self.ctx.clone(), self.tx.clone(), self.p.info_hash);
        tokio::spawn(async move {
            let r = async {
                let (mut s, reached, route) =
                    tokio::time::timeout(CONNECT_TIMEOUT, ctx.dial_punch(addr))
                        .await
                        .ok()?
                        .ok()?;
                let h = conn::handshake_outgoing(&mut s, ih, ctx.peer_id)
                    .await
                    .ok()?;
                Some((s, h, reached, route))
            }
            .await;
            let _ = match r {
                Some((stream, handshake, reached, route)) => {
                    if reached != addr {
                        tracing::debug!(%addr, %reached, "holepunch succeeded at a predicted port");
                    }
                    tx.send(TaskMsg::Connected {
                        stream,
                        addr: reached,
                        handshake,
                        route,
                        dialled: true,
                    })
                }
                None => tx.send(TaskMsg::PunchFailed(addr)),
            };
        });
    }

    /// Our global IPv6 address, if this host has one.
    fn own_v6(&self) -> Option<std::net::Ipv6Addr> {
        let snap = self.ctx.reach.snapshot();
        snap.report.external_ipv6.or_else(|| {
            snap.report.local_addresses.iter().find_map(|a| match a {
                std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xe000) == 0x2000 => Some(*v6),
                _ => None,
            })
        })
    }

    /// Tells the core what to announce about us: our addresses in both families and, when
    /// the gateway forwards a different external port, that port.
    fn refresh_own_addresses(&mut self) {
        let snap = self.ctx.reach.snapshot();
        let mapped = snap
            .report
            .mappings
            .iter()
            .find(|m| m.transport == crate::nat::Transport::Tcp)
            .map(|m| m.external.port());
        self.core
            .set_listen_port(Some(mapped.unwrap_or(self.ctx.port)));
        self.core
            .set_own_addresses(snap.report.external_ipv4, self.own_v6());
        let reached = snap.incoming_tcp + snap.incoming_utp > 0;
        self.core
            .set_anchors(if reached { 0 } else { super::core::ANCHORS });
    }

    /// Our own listen address as trackers echo it back to us.
    fn is_self(&self, a: &SocketAddr) -> bool {
        a.port() == self.ctx.port && (a.ip().is_loopback() || a.ip().is_unspecified())
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        for (key, (link, _, _)) in self.links.iter_mut() {
            let sent = link.uploaded.load(std::sync::atomic::Ordering::Relaxed);
            if sent > link.reported {
                self.core.record_upload(*key, sent - link.reported);
                link.reported = sent;
            }
        }
        self.refresh_own_addresses();
        self.core.tick(now);
        self.dht_round(now);
        self.dial_more();
        self.maybe_checkpoint();
        self.publish();
    }

    fn publish(&mut self) {
        let s = self.core.stats();
        let st = &mut self.status;
        st.state = if let Some(e) = &self.error {
            TorrentState::Error(e.clone())
        } else {
            match self.core.phase() {
                Phase::FetchingMetadata => TorrentState::FetchingMetadata,
                Phase::Checking => TorrentState::Checking,
                Phase::Downloading => TorrentState::Downloading,
                Phase::Complete if self.p.seed => TorrentState::Seeding,
                Phase::Complete => TorrentState::Complete,
            }
        };
        if let (Some(info), Some(have)) = (self.core.info(), self.core.have()) {
            st.pieces = info.piece_count();
            st.pieces_have = have.count();
            let last = info.piece_count() - 1;
            let piece_bytes = |i: u32| info.piece_len(PieceIndex(i)) as u64;
            let wanted = self.core.wanted();
            st.wanted_bytes = wanted.map_or(0, |w| {
                w.count() as u64 * info.piece_length as u64
                    - if w.get(last) {
                        info.piece_length as u64 - piece_bytes(last)
                    } else {
                        0
                    }
            });
            let both = wanted.map_or(0, |w| {
                have.ones().filter(|&i| w.get(i)).map(piece_bytes).sum()
            });
            st.verified_bytes = both;
        }
        st.download_rate = s.download_rate;
        st.upload_rate = s.upload_rate;
        st.downloaded = s.downloaded;
        st.uploaded = s.uploaded;
        st.wasted = s.wasted;
        st.hash_failures = s.hash_failures;
        st.peers = s.peers;
        st.seeds = s.seeds;
        st.known_peers = self.pool.len();
        st.connecting = self.pool.connecting();
        st.metadata_progress = self.core.metadata_progress();
        st.routes.clear();
        for (_, addr, r) in self.links.values() {
            *st.routes.entry(r.label()).or_default() += 1;
            if addr.is_ipv6() {
                *st.routes.entry("ipv6").or_default() += 1;
            }
        }
        let _ = self.status_tx.send(st.clone());
        let left = st.wanted_bytes.saturating_sub(st.verified_bytes);
        let complete = self.core.phase() == Phase::Complete;
        let v6 = self.own_v6();
        self.announce_tx.send_modify(|a| {
            a.ipv6 = v6;
            a.uploaded = s.uploaded;
            a.downloaded = s.downloaded;
            a.left = left;
            a.complete = complete;
        });
    }

    fn resume_data(&self) -> Option<(ResumeData, Arc<Storage>)> {
        let (info, have, storage) = (self.core.info()?, self.core.have()?, self.storage.clone()?);
        let s = self.core.stats();
        Some((
            ResumeData {
                info_hash: info.info_hash,
                root: storage.root().to_path_buf(),
                have: have.clone(),
                stamps: Vec::new(),
                uploaded: self.lifetime.0 + s.uploaded,
                downloaded: self.lifetime.1 + s.downloaded,
                unflushed: Vec::new(),
                boot: None,
            },
            storage,
        ))
    }

    /// Flushes written data, then records which pieces are verified: resume data never claims
    /// a piece whose bytes might still be only in memory.
    fn checkpoint(&mut self) {
        self.save_in_background(true);
    }

    /// Records which pieces are verified without waiting for the disk, the unflushed ones
    /// marked with the boot id (see `resume`); a full checkpoint where the boot id is unknown.
    fn quick_save(&mut self) {
        self.save_in_background(boot_id().is_none());
    }

    fn save_in_background(&mut self, flush: bool) {
        if self.extra.saving {
            return;
        }
        let Some(job) = self.save_job(flush) else {
            return;
        };
        self.extra.saving = true;
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let retry = job();
            let _ = tx.send(TaskMsg::Saved { retry });
        });
    }

    /// A blocking job that writes the resume data as it is now, flushing first if `flush`;
    /// it returns the pieces it was to flush if it could not.
    fn save_job(&mut self, flush: bool) -> Option<impl FnOnce() -> Vec<u32> + Send + 'static> {
        let (mut data, storage) = self.resume_data()?;
        self.dirty = false;
        self.last_checkpoint = Instant::now();
        let flushing = if flush {
            std::mem::take(&mut self.unflushed)
        } else {
            data.unflushed = self.unflushed.clone();
            data.boot = boot_id().map(String::from);
            Vec::new()
        };
        let store = self.ctx.resume_store();
        Some(move || {
            if flush {
                if let Err(e) = storage.sync() {
                    tracing::warn!(error = %e, "flushing data failed; resume data not updated");
                    return flushing;
                }
            }
            data.stamps = storage.stamps();
            if let Err(e) = store.save(&data) {
                tracing::warn!(error = %e, "cannot save resume data");
                return flushing;
            }
            Vec::new()
        })
    }

    async fn shutdown(&mut self, rx: &mut mpsc::UnboundedReceiver<TaskMsg>) {
        self.announce_tx.send_modify(|a| a.stopping = true);
        // A checkpoint still being written would race the final save for the same file, and
        // could land after it with older data.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_SAVE_WAIT;
        while self.extra.saving {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(TaskMsg::Saved { retry })) => {
                    self.extra.saving = false;
                    self.unflushed.extend(retry);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let keys: Vec<PeerKey> = self.links.keys().copied().collect();
        for k in keys {
            self.remove_link(k, true);
        }
        // The page cache outlives the process: stopping need not wait for the disk.
        if let Some(job) = self.save_job(boot_id().is_none()) {
            let _ = tokio::task::spawn_blocking(job).await;
        }
        for a in self.announcers.drain(..) {
            let _ = tokio::time::timeout(
                crate::tracker::announcer::STOP_TIMEOUT + Duration::from_secs(1),
                a,
            )
            .await;
        }
    }
}
