//! The engine: the one task that owns the session, the database and every torrent's record.
//! The RPC, the web page, the metrics and the watch folder talk to it by message
//! ([`EngineHandle`]), so torrents are started, stopped and queued in one place and in order.
//!
//! Starting a torrent adds it to the session; stopping takes it out and lets its task shut
//! down (announce `stopped`, save resume data) in the background. A torrent whose task is
//! still shutting down is not started again until that is done, so two tasks never share
//! its files.

mod ops;
mod relocate;
mod tick;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use burrow_swarm::metainfo::{Info, Magnet};
use burrow_swarm::peer::limit::RateLimits;
use burrow_swarm::session::{Session, SessionConfig};
use burrow_swarm::torrent::status::TorrentStatus;
use burrow_swarm::torrent::task::Selection;
use burrow_swarm::torrent::task::TorrentHandle;
use burrow_swarm::types::InfoHash;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::config::Config;
use super::db::{Db, SqliteResumeStore};
use super::model::{Settings, Snapshot, StatsBlock, TorrentSettings};

/// Commands queued to the engine; senders wait when it is this far behind.
pub const COMMAND_QUEUE: usize = 256;
/// How often seeding time and session totals are written to the database.
pub const PERSIST_INTERVAL: Duration = Duration::from_secs(60);

type Reply<T> = oneshot::Sender<T>;

/// How a torrent is given to `add`.
#[derive(Debug)]
pub enum AddSource {
    /// `.torrent` bytes.
    Metainfo(Vec<u8>),
    /// A magnet link.
    Magnet(String),
}

/// A torrent to add.
#[derive(Debug)]
pub struct AddRequest {
    /// The torrent.
    pub source: AddSource,
    /// Download folder; the session's default when `None`.
    pub download_dir: Option<PathBuf>,
    /// Add it stopped.
    pub paused: bool,
}

/// The outcome of `add`.
#[derive(Debug, Clone)]
pub struct Added {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its info-hash.
    pub info_hash: InfoHash,
    /// It was there already.
    pub duplicate: bool,
}

/// What to do to torrents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Start (through the queue).
    Start,
    /// Start at once, bypassing the queue.
    StartNow,
    /// Stop.
    Stop,
    /// Hash the data on disk again.
    Verify,
    /// Remove from the daemon, and the files too when `delete`.
    Remove {
        /// Delete downloaded files.
        delete: bool,
    },
}

pub(super) enum Cmd {
    Add(AddRequest, Reply<Result<Added, String>>),
    Act(Act, Vec<i64>, Reply<Result<(), String>>),
    SetTorrent(i64, TorrentSettings, Reply<Result<(), String>>),
    SetSession(Box<Settings>, Reply<Result<(), String>>),
    Relocate(i64, PathBuf, bool, Reply<Result<(), String>>),
    Snapshot(Reply<Snapshot>),
    InfoFetched(i64, Arc<Info>),
    /// The pieces a torrent had when it was asked to stop.
    StoppedHave(i64, burrow_swarm::torrent::bitfield::Bitfield),
    Shutdown(Reply<()>),
}

/// A cheap, cloneable way to talk to the engine.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Cmd>,
}

const GONE: &str = "the daemon is shutting down";

impl EngineHandle {
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Adds a torrent.
    pub async fn add(&self, req: AddRequest) -> Result<Added, String> {
        self.ask(|r| Cmd::Add(req, r))
            .await
            .unwrap_or_else(|| Err(GONE.into()))
    }

    /// Starts, stops, verifies or removes torrents by id.
    pub async fn act(&self, act: Act, ids: Vec<i64>) -> Result<(), String> {
        self.ask(|r| Cmd::Act(act, ids, r))
            .await
            .unwrap_or_else(|| Err(GONE.into()))
    }

    /// Replaces a torrent's settings.
    pub async fn set_torrent(&self, id: i64, s: TorrentSettings) -> Result<(), String> {
        self.ask(|r| Cmd::SetTorrent(id, s, r))
            .await
            .unwrap_or_else(|| Err(GONE.into()))
    }

    /// Gives a torrent a new download folder, moving its data there when `move_data`.
    pub async fn relocate(&self, id: i64, loc: PathBuf, move_data: bool) -> Result<(), String> {
        self.ask(|r| Cmd::Relocate(id, loc, move_data, r))
            .await
            .unwrap_or_else(|| Err(GONE.into()))
    }

    /// Replaces the session settings (a new peer port restarts the listener).
    pub async fn set_session(&self, s: Settings) -> Result<(), String> {
        self.ask(|r| Cmd::SetSession(Box::new(s), r))
            .await
            .unwrap_or_else(|| Err(GONE.into()))
    }

    /// A snapshot of everything.
    pub async fn snapshot(&self) -> Option<Snapshot> {
        self.ask(Cmd::Snapshot).await
    }

    /// Stops every torrent (saving resume data) and the session.
    pub async fn shutdown(&self) {
        let _ = self.ask(Cmd::Shutdown).await;
    }
}

/// How a torrent was given to us.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// A `.torrent` file (its info dictionary is kept in the entry).
    Torrent { trackers: Vec<Vec<String>> },
    /// A magnet link.
    Magnet(Magnet),
}

/// What happens once a stopping torrent's task has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    /// Nothing: it is stopped or queued.
    Idle,
    /// Clear its verified pieces so the next start hashes everything.
    Verify,
}

pub(super) enum Run {
    Idle,
    Running(TorrentHandle),
    Stopping(JoinHandle<()>, After),
}

/// The engine's record of one torrent.
pub(super) struct Entry {
    pub id: i64,
    pub info_hash: InfoHash,
    pub name: String,
    pub source: Source,
    pub info: Option<Arc<Info>>,
    pub download_dir: PathBuf,
    pub added_at: i64,
    pub done_at: Option<i64>,
    pub paused: bool,
    pub finished: bool,
    pub settings: TorrentSettings,
    /// Lifetime totals when the current run started.
    pub base: (u64, u64),
    pub seeding_secs: u64,
    /// `seeding_secs` as last written to the database.
    pub seeding_saved: u64,
    pub run: Run,
    /// Bypasses the queue on its next start.
    pub force: bool,
    /// Waiting to be hashed again.
    pub verify_pending: bool,
    pub last: Option<TorrentStatus>,
    /// (verified, wanted) bytes as last known.
    pub progress: (u64, u64),
    /// Verified pieces as last stored (read when the torrent is not running).
    pub stored_have: Option<burrow_swarm::torrent::bitfield::Bitfield>,
    /// Session (uploaded, downloaded) of the current run already counted into the stats.
    pub counted: (u64, u64),
    pub info_requested: bool,
    pub error: Option<String>,
}

impl Entry {
    fn trackers(&self) -> Vec<Vec<String>> {
        match &self.source {
            Source::Torrent { trackers } => trackers.clone(),
            Source::Magnet(m) => m.trackers.iter().map(|t| vec![t.clone()]).collect(),
        }
    }

    /// Which files, in which order: the user's choice over RPC, else a magnet's `so`.
    pub(super) fn selection(&self) -> Selection {
        let count = self
            .info
            .as_ref()
            .map(|i| burrow_swarm::torrent::selection::user_files(i).len());
        Selection {
            files: count.and_then(|n| self.settings.file_priorities(n)),
            so: match &self.source {
                Source::Magnet(m) => m.select_only.clone(),
                Source::Torrent { .. } => None,
            },
            sequential: self.settings.sequential,
            ..Selection::default()
        }
    }

    /// (verified, wanted) bytes of the files the user wants, from the stored pieces.
    fn stored_progress(&self) -> (u64, u64) {
        let Some(info) = &self.info else {
            return (0, 0);
        };
        let none = burrow_swarm::torrent::bitfield::Bitfield::new(info.piece_count());
        let have = self.stored_have.as_ref().unwrap_or(&none);
        let (wanted, verified) = burrow_swarm::torrent::selection::wanted_and_verified(
            info,
            have,
            &self.selection().resolve(info),
        );
        (verified, wanted)
    }

    /// Complete as far as is known.
    fn complete(&self) -> bool {
        self.progress.1 > 0 && self.progress.0 >= self.progress.1
    }

    /// Wants to run (not stopped by the user or by its seeding limit).
    fn wants_run(&self) -> bool {
        !self.paused && !self.finished
    }
}

/// The engine's state.
pub struct Engine {
    db: Arc<Db>,
    config: Config,
    settings: Settings,
    session: Option<Session>,
    limits: RateLimits,
    entries: BTreeMap<i64, Entry>,
    by_hash: HashMap<InfoHash, i64>,
    /// Torrents being removed, until their task has stopped and files are deleted.
    removing: HashMap<InfoHash, JoinHandle<()>>,
    allowed_dirs: Vec<PathBuf>,
    self_tx: mpsc::Sender<Cmd>,
    current: StatsBlock,
    cumulative: StatsBlock,
    started: Instant,
    last_persist: Instant,
    last_tick: Instant,
    /// Route totals of runs that have ended.
    past_routes: BTreeMap<&'static str, u64>,
}

impl Engine {
    /// Opens the database, starts the session on the configured port and loads every stored
    /// torrent (queued unless it was stopped).
    pub async fn start(config: Config) -> anyhow::Result<EngineHandle> {
        let db = Db::open(&config.db_path())?;
        let mut settings = Settings::from_config(&config);
        if let Some(saved) = db
            .meta("settings")
            .and_then(|s| serde_json::from_str::<Settings>(&s).ok())
        {
            settings = saved;
        }
        for d in std::iter::once(&settings.download_dir)
            .chain(&config.allowed_dirs)
            .chain(std::iter::once(&config.download_dir))
        {
            std::fs::create_dir_all(d)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", d.display()))?;
        }
        let mut dirs = vec![config.download_dir.clone(), settings.download_dir.clone()];
        dirs.extend(config.allowed_dirs.iter().cloned());
        let allowed_dirs = super::paths::resolve_allowed(&dirs);
        let limits = RateLimits::default();
        let (down, up) = settings.rate_caps();
        limits.set(down, up);
        let session = Session::start(session_config(&config, &db, &limits, settings.peer_port))
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen for peers on port {}: {e}",
                    settings.peer_port
                )
            })?;
        let mut cumulative: StatsBlock = db
            .meta("stats")
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        cumulative.session_count += 1;
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let now = Instant::now();
        let mut engine = Engine {
            db,
            config,
            settings,
            session: Some(session),
            limits,
            entries: BTreeMap::new(),
            by_hash: HashMap::new(),
            removing: HashMap::new(),
            allowed_dirs,
            self_tx: tx.clone(),
            current: StatsBlock {
                session_count: 1,
                ..Default::default()
            },
            cumulative,
            started: now,
            last_persist: now,
            last_tick: now,
            past_routes: BTreeMap::new(),
        };
        engine.load()?;
        engine.schedule();
        tracing::info!(
            torrents = engine.entries.len(),
            port = engine.port(),
            "daemon started"
        );
        tokio::spawn(engine.run(rx));
        Ok(EngineHandle { tx })
    }

    fn port(&self) -> u16 {
        self.session.as_ref().map_or(0, |s| s.port())
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let done = loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Shutdown(done)) => break Some(done),
                    Some(cmd) => self.on_cmd(cmd).await,
                    None => break None,
                },
                _ = tick.tick() => self.tick(),
            }
        };
        self.shutdown().await;
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    async fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Add(req, reply) => {
                let r = self.add(req);
                self.schedule();
                let _ = reply.send(r);
            }
            Cmd::Act(act, ids, reply) => {
                let r = self.act(act, &ids);
                self.schedule();
                let _ = reply.send(r);
            }
            Cmd::SetTorrent(id, s, reply) => {
                let _ = reply.send(self.set_torrent(id, s));
            }
            Cmd::SetSession(s, reply) => {
                let r = self.set_session(*s).await;
                self.schedule();
                let _ = reply.send(r);
            }
            Cmd::Snapshot(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Cmd::Relocate(id, loc, move_data, reply) => {
                let r = self.relocate(id, loc, move_data).await;
                let _ = reply.send(r);
            }
            Cmd::InfoFetched(id, info) => self.info_fetched(id, info),
            Cmd::StoppedHave(id, have) => {
                // Only while it stops: once stopped, the database is the authority.
                if let Some(e) = self
                    .entries
                    .get_mut(&id)
                    .filter(|e| matches!(e.run, Run::Stopping(..)))
                {
                    e.stored_have = Some(have);
                }
            }
            Cmd::Shutdown(_) => unreachable!("handled by the run loop"),
        }
    }

    async fn shutdown(&mut self) {
        let mut stops = Vec::new();
        let ids: Vec<i64> = self.entries.keys().copied().collect();
        for id in ids {
            self.observe(id);
            let e = self.entries.get_mut(&id).expect("present");
            match std::mem::replace(&mut e.run, Run::Idle) {
                Run::Running(h) => {
                    if let Some(s) = &mut self.session {
                        s.remove(&e.info_hash);
                    }
                    stops.push(tokio::spawn(async move { h.shutdown().await }));
                }
                Run::Stopping(j, _) => stops.push(j),
                Run::Idle => {}
            }
        }
        for j in stops
            .into_iter()
            .chain(self.removing.drain().map(|(_, j)| j))
        {
            let _ = j.await;
        }
        self.persist();
        if let Some(s) = self.session.take() {
            s.shutdown().await;
        }
        tracing::info!("daemon stopped");
    }
}

/// The session settings the daemon runs with.
fn session_config(config: &Config, db: &Arc<Db>, limits: &RateLimits, port: u16) -> SessionConfig {
    let dht = config.peer.dht.then(|| {
        let mut d = burrow_swarm::dht::DhtConfig::default();
        if !config.peer.dht_bootstrap.is_empty() {
            d.bootstrap = config.peer.dht_bootstrap.clone();
        }
        d
    });
    SessionConfig {
        dht,
        port_mapping: config.peer.port_mapping,
        lsd: config.peer.lsd,
        listen_port: port,
        listen_ip: config.peer.listen,
        state_dir: config.data_dir.clone(),
        max_peers_per_torrent: config.peer.max_peers_per_torrent,
        upload_slots: config.peer.upload_slots,
        checkpoint_interval: config.checkpoint_interval(),
        direct_io: config.direct_io,
        resume_store: Some(Arc::new(SqliteResumeStore(db.clone()))),
        rate_limits: limits.clone(),
        ..SessionConfig::default()
    }
}
