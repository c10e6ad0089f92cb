//! Controlling a running torrent from outside its task: rate caps and a detailed snapshot
//! (files, pieces, peers, trackers) for the daemon's RPC. The messages travel over the task's
//! own channel like every other event, so the torrent's state never leaves its task.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::{Task, TaskMsg, TorrentHandle};
use crate::connectivity::Route;
use crate::metainfo::Info;
use crate::peer::limit::{LinkLimits, RateLimits};
use crate::torrent::bitfield::Bitfield;
use crate::torrent::selection::FilePriority;

/// Requests to a running torrent.
#[derive(Debug)]
pub(crate) enum Control {
    /// New per-torrent caps in bytes per second (0: none).
    SetRateLimits { down: u64, up: u64 },
    /// Answer with a detailed snapshot.
    Details(oneshot::Sender<TorrentDetails>),
}

/// State the task keeps for outside control.
#[derive(Debug, Default)]
pub(crate) struct Extra {
    /// This torrent's caps, shared with its connections.
    pub limits: RateLimits,
    /// A checkpoint is being written; another must wait for it, so that one checkpoint's
    /// flush can never be overtaken by a later checkpoint's record.
    pub saving: bool,
    /// Counts changes of the selection, so derived figures know when to be recomputed.
    pub selection_version: u64,
    /// Wanted and verified bytes, and the (verified pieces, selection version) they are for.
    pub sizes: (Option<(u32, u64)>, (u64, u64)),
}

/// One connected peer, as shown to users.
#[derive(Debug, Clone)]
pub struct PeerDetails {
    /// Its address.
    pub addr: SocketAddr,
    /// How the connection was made.
    pub route: Route,
    /// Client name from its extension handshake.
    pub client: Option<String>,
    /// Payload rate from it, bytes/s.
    pub download_rate: f64,
    /// Payload rate to it, bytes/s.
    pub upload_rate: f64,
    /// It has every piece.
    pub is_seed: bool,
    /// It lets us request blocks.
    pub unchoked_us: bool,
    /// We let it request blocks.
    pub we_unchoked: bool,
}

/// A detailed snapshot of a running torrent.
#[derive(Debug, Clone)]
pub struct TorrentDetails {
    /// The info dictionary, once known.
    pub info: Option<Arc<Info>>,
    /// Verified pieces, once storage was checked.
    pub have: Option<Bitfield>,
    /// Wanted pieces, once storage was checked.
    pub wanted: Option<Bitfield>,
    /// Tracker tiers.
    pub trackers: Vec<Vec<String>>,
    /// The download folder.
    pub download_dir: PathBuf,
    /// Connected peers.
    pub peers: Vec<PeerDetails>,
    /// Addresses banned for bad data (the latest), and why.
    pub banned: Vec<crate::torrent::status::BannedPeer>,
    /// Priority of each file as users number them (pad files left out), once files are known.
    pub file_priorities: Vec<FilePriority>,
    /// Pieces are picked in order.
    pub sequential: bool,
}

impl TorrentHandle {
    /// Caps this torrent's transfer rates in bytes per second (0: no cap), on top of the
    /// session's caps. Takes effect on open connections at once.
    pub fn set_rate_limits(&self, down: u64, up: u64) {
        let _ = self
            .tx
            .send(TaskMsg::Control(Control::SetRateLimits { down, up }));
    }

    /// A detailed snapshot; `None` once the torrent has stopped.
    pub async fn details(&self) -> Option<TorrentDetails> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(TaskMsg::Control(Control::Details(tx))).ok()?;
        rx.await.ok()
    }
}

impl Task {
    pub(super) fn on_control(&mut self, c: Control) {
        match c {
            Control::SetRateLimits { down, up } => self.extra.limits.set(down, up),
            Control::Details(reply) => {
                let peers = self
                    .core
                    .peers()
                    .map(|(_, p)| PeerDetails {
                        addr: p.addr,
                        route: p.route,
                        client: p.ext.as_ref().and_then(|e| e.client.clone()),
                        download_rate: p.down.rate(),
                        upload_rate: p.up.rate(),
                        is_seed: p.is_seed(),
                        unchoked_us: !p.peer_choking,
                        we_unchoked: !p.am_choking,
                    })
                    .collect();
                let _ = reply.send(TorrentDetails {
                    info: self.core.info().cloned(),
                    have: self.core.have().cloned(),
                    wanted: self.core.wanted().cloned(),
                    trackers: self.p.trackers.clone(),
                    download_dir: self.p.download_dir.clone(),
                    peers,
                    file_priorities: self.user_priorities(),
                    sequential: self.p.selection.sequential,
                    banned: self.status.banned.clone(),
                });
            }
        }
    }

    /// The caps a new connection of this torrent is subject to: the session's, then its own.
    pub(super) fn link_limits(&self) -> LinkLimits {
        self.env.settings.rate_limits.with(&self.extra.limits)
    }

    /// Writes a checkpoint if verified pieces are unrecorded or unflushed and the interval has
    /// passed.
    pub(super) fn maybe_checkpoint(&mut self) {
        if (self.dirty || !self.unflushed.is_empty())
            && Instant::now().duration_since(self.last_checkpoint)
                >= self.env.settings.checkpoint_interval
        {
            self.checkpoint();
        }
    }
}
