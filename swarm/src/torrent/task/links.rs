//! The torrent's open connections, and the exact count of what they sent. Each connection's
//! writer counts the block payload it hands to the socket; the count reaches the core on
//! every tick and once more after the connection is gone: a closed link keeps its counter
//! until its writer has ended, so no byte a writer sent is missing from the torrent's totals
//! (what the user, the tracker and a ratio limit are told).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::connectivity::Route;
use crate::peer::conn::PeerLink;
use crate::peer::PeerKey;

/// One open connection.
pub(super) struct LinkEntry {
    /// The reader and writer tasks.
    pub link: PeerLink,
    /// The peer's address.
    pub addr: SocketAddr,
    /// How the connection was made.
    pub route: Route,
}

/// Open connections and closed ones whose writers have not ended yet.
#[derive(Default)]
pub(super) struct Links {
    open: HashMap<PeerKey, LinkEntry>,
    closing: Vec<(PeerKey, PeerLink)>,
}

impl Links {
    /// Adds an open connection.
    pub fn insert(&mut self, key: PeerKey, link: PeerLink, addr: SocketAddr, route: Route) {
        self.open.insert(key, LinkEntry { link, addr, route });
    }

    /// An open connection.
    pub fn get(&self, key: &PeerKey) -> Option<&LinkEntry> {
        self.open.get(key)
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// No open connection.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Open connections, in no order.
    pub fn iter(&self) -> impl Iterator<Item = (&PeerKey, &LinkEntry)> {
        self.open.iter()
    }

    /// Keys of the open connections.
    pub fn keys(&self) -> Vec<PeerKey> {
        self.open.keys().copied().collect()
    }

    /// The open connection to `addr`, if any.
    pub fn find(&self, addr: SocketAddr) -> Option<PeerKey> {
        self.open
            .iter()
            .find(|(_, e)| e.addr == addr)
            .map(|(k, _)| *k)
    }

    /// Closes a connection: `graceful` lets the writer send what is queued first. Its
    /// counter stays here until the writer has ended. Returns the peer's address.
    pub fn remove(&mut self, key: PeerKey, graceful: bool) -> Option<SocketAddr> {
        let e = self.open.remove(&key)?;
        if graceful {
            e.link.close()
        } else {
            e.link.abort()
        }
        self.closing.push((key, e.link));
        Some(e.addr)
    }

    /// Payload sent by each connection since the last call, open or closed; forgets closed
    /// connections whose writers have ended once their last bytes are counted.
    pub fn take_sent(&mut self) -> Vec<(PeerKey, u64)> {
        let mut out = Vec::new();
        for (k, e) in self.open.iter_mut() {
            let n = e.link.take_sent();
            if n > 0 {
                out.push((*k, n));
            }
        }
        self.closing.retain_mut(|(k, link)| {
            // Read whether it ended before counting: bytes sent before the end are then
            // all in the counter.
            let ended = link.writer_ended();
            let n = link.take_sent();
            if n > 0 {
                out.push((*k, n));
            }
            !ended
        });
        out
    }

    /// Waits up to `limit` for the writers of closed connections to end, then stops those
    /// still running.
    pub async fn wait_closed(&mut self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        for (_, link) in self.closing.iter_mut() {
            if tokio::time::timeout_at(deadline, link.writer_done())
                .await
                .is_err()
            {
                link.abort();
            }
        }
        for (_, link) in self.closing.iter_mut() {
            link.writer_done().await;
        }
    }
}
