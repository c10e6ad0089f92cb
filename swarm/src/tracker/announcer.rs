//! The announce schedule of one torrent: every tier of trackers (BEP 12) is announced to in
//! parallel; within a tier trackers are tried in order and the one that answers moves to the
//! front. `started` first, `completed` when the download finishes, `stopped` on the way out.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::http::announce_http;
use super::{AnnounceRequest, Event, TrackerError, UdpTracker};
use crate::types::{InfoHash, PeerId};

/// Shortest re-announce interval we accept from a tracker.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// Longest re-announce interval we accept from a tracker.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Time allowed for one announce.
pub const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(20);
/// Time allowed for the `stopped` announce on the way out.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// What the torrent tells its announcer.
#[derive(Debug, Clone, Default)]
pub struct AnnounceStats {
    /// Payload uploaded this session.
    pub uploaded: u64,
    /// Payload downloaded this session.
    pub downloaded: u64,
    /// Bytes missing.
    pub left: u64,
    /// All wanted pieces verified.
    pub complete: bool,
    /// The port peers should dial.
    pub port: u16,
    /// The torrent is shutting down: send `stopped` and end.
    pub stopping: bool,
    /// Our global IPv6 address, when we have one (BEP 7).
    pub ipv6: Option<std::net::Ipv6Addr>,
}

/// Tracker state for the torrent's status display.
#[derive(Debug, Clone)]
pub struct TrackerStatus {
    /// The URL.
    pub url: String,
    /// Outcome of the last announce.
    pub last: Result<usize, String>,
}

/// Starts one announcing task per tier; peers found are sent to `peers`, per-tracker
/// results to `status`. Tasks end after `stopping` is set (having sent `stopped`).
pub fn spawn_announcer(
    tiers: Vec<Vec<String>>,
    info_hash: InfoHash,
    peer_id: PeerId,
    stats: watch::Receiver<AnnounceStats>,
    peers: mpsc::UnboundedSender<Vec<SocketAddr>>,
    status: mpsc::UnboundedSender<TrackerStatus>,
    udp: UdpTracker,
) -> Vec<JoinHandle<()>> {
    let key: u32 = rand::random();
    tiers
        .into_iter()
        .filter(|t| !t.is_empty())
        .map(|tier| {
            let t = Tier {
                urls: tier,
                info_hash,
                peer_id,
                key,
                udp: udp.clone(),
            };
            tokio::spawn(t.run(stats.clone(), peers.clone(), status.clone()))
        })
        .collect()
}

struct Tier {
    urls: Vec<String>,
    info_hash: InfoHash,
    peer_id: PeerId,
    key: u32,
    udp: UdpTracker,
}

impl Tier {
    fn request(&self, s: &AnnounceStats, event: Event) -> AnnounceRequest {
        AnnounceRequest {
            info_hash: self.info_hash,
            peer_id: self.peer_id,
            port: s.port,
            uploaded: s.uploaded,
            downloaded: s.downloaded,
            left: s.left,
            event,
            num_want: if event == Event::Stopped { 0 } else { 50 },
            key: self.key,
            ipv6: s.ipv6,
        }
    }

    async fn announce_one(
        &self,
        url: &str,
        r: &AnnounceRequest,
        timeout: Duration,
    ) -> Result<super::AnnounceResponse, TrackerError> {
        if url.starts_with("udp://") {
            tokio::time::timeout(timeout, self.udp.announce(url, r))
                .await
                .map_err(|_| TrackerError::Timeout)?
        } else {
            announce_http(url, r, timeout).await
        }
    }

    async fn run(
        mut self,
        mut stats: watch::Receiver<AnnounceStats>,
        peers: mpsc::UnboundedSender<Vec<SocketAddr>>,
        status: mpsc::UnboundedSender<TrackerStatus>,
    ) {
        let mut started = false;
        // `completed` is only for downloads that finish while we are announced: a torrent
        // that was complete from the start never sends it.
        let mut completed_sent = true;
        let mut event = Event::Started;
        let mut failures: u32 = 0;
        let mut wait = Duration::ZERO;
        loop {
            let sleep = tokio::time::sleep(wait);
            tokio::pin!(sleep);
            let mut stop = false;
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    changed = stats.changed() => {
                        let s = stats.borrow().clone();
                        if changed.is_err() || s.stopping {
                            stop = true;
                            break;
                        }
                        if s.complete && !completed_sent && started {
                            event = Event::Completed;
                            break;
                        }
                    }
                }
            }
            if stop {
                if started {
                    let r = self.request(&stats.borrow().clone(), Event::Stopped);
                    if let Some(url) = self.urls.first().cloned() {
                        let _ = self.announce_one(&url, &r, STOP_TIMEOUT).await;
                    }
                }
                return;
            }
            // Try each tracker of the tier once, in order.
            let mut answered = false;
            for i in 0..self.urls.len() {
                let url = self.urls[i].clone();
                let s = stats.borrow().clone();
                if s.stopping {
                    break;
                }
                let r = self.request(&s, event);
                match self.announce_one(&url, &r, ANNOUNCE_TIMEOUT).await {
                    Ok(resp) => {
                        tracing::debug!(%url, peers = resp.peers.len(), "announce ok");
                        if let Some(w) = &resp.warning {
                            tracing::warn!(%url, warning = %w, "tracker warning");
                        }
                        let _ = status.send(TrackerStatus {
                            url: url.clone(),
                            last: Ok(resp.peers.len()),
                        });
                        if !resp.peers.is_empty() {
                            let _ = peers.send(resp.peers);
                        }
                        let u = self.urls.remove(i);
                        self.urls.insert(0, u);
                        started = true;
                        if event == Event::Completed || s.complete {
                            completed_sent = true;
                        } else if event == Event::Started {
                            completed_sent = false;
                        }
                        event = Event::None;
                        failures = 0;
                        wait = resp.interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
                        answered = true;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(%url, error = %e, "announce failed");
                        let _ = status.send(TrackerStatus {
                            url,
                            last: Err(e.to_string()),
                        });
                    }
                }
            }
            if !answered {
                failures += 1;
                wait = (Duration::from_secs(15) * (1 << failures.min(7)))
                    .min(Duration::from_secs(1800));
            }
        }
    }
}
