//! Keeping each peer's request pipeline full: as many outstanding requests as its rate
//! justifies (so a fast peer on a long path is never idle) but within what it accepts.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Instant;

use super::{Action, Phase, TorrentCore};
use crate::peer::{PeerHas, PeerKey};
use crate::torrent::picker::Has;
use crate::types::{BlockRef, BLOCK_SIZE};
use crate::wire::Message;

/// Fewest requests kept outstanding to a peer that is not snubbed.
pub const MIN_REQUESTS: usize = 16;
/// Most requests outstanding to one peer, whatever it accepts.
pub const MAX_REQUESTS: usize = 1000;
/// Seconds of the peer's current rate worth of requests kept outstanding.
pub const REQUEST_QUEUE_SECONDS: f64 = 2.0;

impl TorrentCore {
    /// Sends requests to `key` until its pipeline is full.
    pub(super) fn fill_requests(&mut self, key: PeerKey) {
        if self.phase != Phase::Downloading {
            return;
        }
        let Some(ip) = self.peers.get(&key).map(|p| p.addr.ip()) else {
            return;
        };
        let parole = self.ban.on_parole(&ip);
        // A peer on parole may take over a started piece only if nobody else is in it.
        let busy = if parole {
            self.shared_pieces(key, ip)
        } else {
            HashSet::new()
        };
        let Some(picker) = &mut self.picker else {
            return;
        };
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.peer_choking || !p.am_interested {
            return;
        }
        let reqq = p
            .ext
            .as_ref()
            .and_then(|e| e.reqq)
            .map_or(250, |q| q as usize)
            .clamp(1, MAX_REQUESTS);
        let by_rate = (p.down.rate() * REQUEST_QUEUE_SECONDS / BLOCK_SIZE as f64) as usize;
        p.max_requests = if p.snubbed {
            1
        } else {
            by_rate.max(p.max_requests).max(MIN_REQUESTS).min(reqq)
        };
        if p.outstanding.len() >= p.max_requests {
            return;
        }
        // Refill in batches of at least a quarter of the pipeline: fewer, larger writes.
        let room = p.max_requests - p.outstanding.len();
        if room < (p.max_requests / 4).max(1) && !p.outstanding.is_empty() {
            return;
        }
        let has = match &p.has {
            PeerHas::All => Has::All,
            PeerHas::Some(b) => Has::Some(b),
            _ => return,
        };
        let mut picked: Vec<BlockRef> = Vec::with_capacity(room);
        let outstanding = &p.outstanding;
        let ban = &self.ban;
        picker.pick_where(
            has,
            room,
            |r| outstanding.contains(r),
            |i, started| ban.may_take(key, &ip, parole, i, started && busy.contains(&i)),
            &mut picked,
        );
        for r in picked {
            self.ban.claim(r.piece.0, key, parole);
            p.outstanding.insert(r);
            self.actions
                .push_back(Action::Send(key, Message::Request(r)));
        }
    }

    /// Tops up every peer's pipeline: called when a piece leaves the picker's window, which
    /// may have been all that held new requests back. Without it, a download whose window
    /// filled with pieces waiting for the disk sits idle until the next tick.
    pub(super) fn fill_all_requests(&mut self) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.fill_requests(k);
        }
    }

    /// Pieces that another connection has requests in or that hold blocks from another
    /// address than `ip`.
    fn shared_pieces(&self, key: PeerKey, ip: IpAddr) -> HashSet<u32> {
        let mut out: HashSet<u32> = self
            .peers
            .iter()
            .filter(|(k, _)| **k != key)
            .flat_map(|(_, q)| q.outstanding.iter().map(|r| r.piece.0))
            .collect();
        for (&piece, a) in &self.assembling {
            if a.verifying || a.senders.iter().flatten().any(|s| *s != ip) {
                out.insert(piece);
            }
        }
        out
    }

    /// Unchokes an interested peer at once when an upload slot is free, rather than making it
    /// wait for the next choke round.
    pub(super) fn maybe_fast_unchoke(&mut self, key: PeerKey, _now: Instant) {
        let unchoked = self.peers.values().filter(|p| !p.am_choking).count();
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.peer_interested
            && p.am_choking
            && unchoked < self.choker.slots()
            && self.picker.is_some()
        {
            p.am_choking = false;
            self.send(key, Message::Unchoke);
        }
    }
}
