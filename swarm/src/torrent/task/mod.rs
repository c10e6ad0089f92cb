//! The tokio driver of one torrent: it owns the [`TorrentCore`], the peer links, storage and
//! the dialling pool, and carries out the core's actions — messages to writers, pieces to be
//! hashed and written on blocking threads, resume checkpoints, announces and dials.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::core::{Action, CoreConfig, TorrentCore};
use super::env::TorrentEnv;
use super::resume::boot_id;
use super::status::TorrentStatus;
use super::storage::Storage;
use crate::connectivity::{PeerPool, PeerSource, ReachEvent};
use crate::peer::conn::{self, Outgoing, PeerEvent};
use crate::peer::{PeerKey, PeerState};
use crate::tracker::{spawn_announcer, AnnounceStats};

mod control;
mod dial;
mod disk;
mod handle;
mod links;
mod report;
mod select;
pub use control::{PeerDetails, TorrentDetails};
pub(crate) use handle::TaskMsg;
pub use handle::{TorrentHandle, TorrentParams};
use links::Links;
pub use select::Selection;

/// How often resume data is written while pieces keep arriving (the default of
/// `SessionConfig::checkpoint_interval`).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(30);

/// How long shutdown waits for a checkpoint still being written before the final save.
const SHUTDOWN_SAVE_WAIT: Duration = Duration::from_secs(30);
/// How long shutdown lets connections send what they have queued before stopping them.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// How often the pipeline is sampled when its trace is on.
const PIPELINE_SAMPLE: Duration = Duration::from_millis(100);
/// Peer events buffered between the readers and the torrent; a full queue slows the readers
/// down, which is how a busy torrent pushes back on its peers.
pub const PEER_EVENT_QUEUE: usize = 1024;
/// DHT lookups while peers are scarce (fewer than [`FEW_PEERS`]).
pub const DHT_INTERVAL_HUNGRY: Duration = Duration::from_secs(5 * 60);
/// DHT announces otherwise: within the 30 minutes other nodes keep an announced peer.
pub const DHT_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// Below this many connected peers, peer sources are asked more often.
pub const FEW_PEERS: usize = 10;
/// Retry of a DHT lookup that found nobody while we have no peers (the routing table may
/// still be filling).
pub const DHT_RETRY_EMPTY: Duration = Duration::from_secs(20);

struct Task {
    env: Arc<TorrentEnv>,
    p: TorrentParams,
    core: TorrentCore,
    storage: Option<Arc<Storage>>,
    links: Links,
    pool: PeerPool,
    tx: mpsc::UnboundedSender<TaskMsg>,
    peer_tx: mpsc::Sender<PeerEvent>,
    disk: disk::DiskQueue,
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
pub(crate) fn spawn_torrent(env: Arc<TorrentEnv>, p: TorrentParams) -> TorrentHandle {
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
        listen_port: Some(env.port),
        seed: p.seed,
        upload_slots: env.settings.upload_slots,
        ..CoreConfig::default()
    };
    let core = TorrentCore::new(
        p.info_hash,
        env.peer_id,
        p.info.clone(),
        config,
        rand::random(),
    );
    let (announce_tx, announce_rx) = watch::channel(AnnounceStats {
        port: env.port,
        left: p.info.as_ref().map_or(1, |i| i.total_length),
        ..Default::default()
    });
    let (apeers_tx, mut apeers_rx) = mpsc::unbounded_channel();
    let (astatus_tx, _astatus_rx) = mpsc::unbounded_channel();
    let announcers = spawn_announcer(
        p.trackers.clone(),
        p.info_hash,
        env.peer_id,
        announce_rx,
        apeers_tx,
        astatus_tx,
        env.udp_tracker.clone(),
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
        env,
        p,
        core,
        storage: None,
        links: Links::default(),
        pool,
        tx: tx.clone(),
        peer_tx,
        disk: disk::DiskQueue::default(),
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
        // `RUST_LOG=burrow::pipeline=trace` samples the download pipeline ten times a
        // second: where a slow download waits (requests, the window, the disk).
        let mut sample = tokio::time::interval(PIPELINE_SAMPLE);
        let sampling = tracing::enabled!(target: "burrow::pipeline", tracing::Level::TRACE);
        let done = loop {
            tokio::select! {
                _ = sample.tick(), if sampling => self.sample_pipeline(),
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
        if let Some(addr) = self.links.remove(key, graceful) {
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
                if self.links.len() >= self.env.settings.max_peers_per_torrent
                    || self.pool.is_banned(&addr.ip())
                {
                    return;
                }
                let (ih, id, tx) = (self.p.info_hash, self.env.peer_id, self.tx.clone());
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
                    self.env
                        .reach
                        .observe(ReachEvent::Incoming { from: addr, route });
                }
                let key = self.env.next_peer_key();
                let link = conn::spawn_limited(
                    key,
                    stream,
                    handshake.supports_fast(),
                    self.peer_tx.clone(),
                    self.link_limits(),
                );
                self.links.insert(key, link, addr, route);
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
                self.apply_selection();
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
                self.dial_more();
            }
            TaskMsg::Hashed { piece, ok, buf } => self.hashed(piece, ok, buf),
            TaskMsg::Written { piece, result, buf } => self.written(piece, result, buf),
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
            TaskMsg::Select(c) => self.on_select(c),
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
                        if let Some(l) = self.links.get(&k) {
                            self.pool.mark_seed(l.addr);
                        }
                    }
                    self.remove_link(k, true);
                }
                Action::Verify { piece, data } => {
                    self.verify(piece, data);
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
                Action::Ban(ip, reason) => {
                    tracing::warn!(%ip, %reason, "banned for sending corrupt data");
                    self.pool.ban(ip);
                    self.status.record_ban(ip, reason.to_string());
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
                        && self.other_family.len() < 4 * self.env.settings.max_peers_per_torrent
                    {
                        self.other_family.insert(key, addr);
                    }
                }
                Action::YourIp { reported, by } => {
                    self.env.reach.observe(ReachEvent::YourIp { reported, by })
                }
                Action::DhtNode(addr) => {
                    if let Some(d) = &self.env.dht {
                        d.add_node(addr);
                    }
                }
            }
        }
    }

    fn to_peer(&self, key: PeerKey, o: Outgoing) {
        if let Some(l) = self.links.get(&key) {
            let _ = l.link.tx.send(o);
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        self.count_uploads();
        self.refresh_own_addresses();
        self.core.tick(now);
        self.dht_round(now);
        self.dial_more();
        self.maybe_checkpoint();
        self.publish();
    }

    async fn shutdown(&mut self, rx: &mut mpsc::UnboundedReceiver<TaskMsg>) {
        // Connections first, so that the totals in the final status, the `stopped` announce
        // and the resume data include every byte their writers sent.
        for k in self.links.keys() {
            self.remove_link(k, true);
        }
        self.links.wait_closed(CLOSE_WAIT).await;
        self.count_uploads();
        self.publish();
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
