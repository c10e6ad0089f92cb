//! The outside of a torrent's task: what it is started with, the messages it takes, and the
//! handle the session and the daemon hold.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::control;
use crate::connectivity::{PeerSource, Route};
use crate::metainfo::Info;
use crate::peer::conn::PeerIo;
use crate::torrent::bitfield::Bitfield;
use crate::torrent::piece_buf::PieceBuf;
use crate::torrent::resume::ResumeData;
use crate::torrent::status::TorrentStatus;
use crate::types::InfoHash;
use crate::wire::Handshake;

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
    /// A piece was hashed against its expected hash.
    Hashed {
        piece: u32,
        ok: bool,
        buf: PieceBuf,
    },
    /// A good piece was written.
    Written {
        piece: u32,
        result: std::io::Result<()>,
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
    /// A change of files or order (see `select`).
    Select(super::select::SelectionChange),
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
    /// Which files, in which order.
    pub selection: super::Selection,
}

/// A handle on a running torrent.
#[derive(Clone)]
pub struct TorrentHandle {
    /// The torrent.
    pub info_hash: InfoHash,
    pub(super) tx: mpsc::UnboundedSender<TaskMsg>,
    pub(super) status: watch::Receiver<TorrentStatus>,
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
