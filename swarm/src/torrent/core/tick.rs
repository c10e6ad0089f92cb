//! Once-a-second housekeeping: rates, snubbed peers, the choke round, request refills and
//! metadata request time-outs.

use std::time::{Duration, Instant};

use super::{Action, TorrentCore};
use crate::peer::PeerKey;
use crate::torrent::choker::{Candidate, CHOKE_INTERVAL, OPTIMISTIC_INTERVAL};
use crate::types::BlockRef;
use crate::wire::Message;

/// A peer that answers none of our requests for this long is snubbed: its requests go to
/// other peers and it gets one request at a time.
pub const SNUB_TIMEOUT: Duration = Duration::from_secs(30);

impl TorrentCore {
    /// Call about once a second.
    pub fn tick(&mut self, now: Instant) {
        self.last_tick = Some(now);
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for &k in &keys {
            let p = self.peers.get_mut(&k).expect("present");
            p.down.tick(now);
            p.up.tick(now);
            if !p.outstanding.is_empty()
                && now.duration_since(p.last_block_at) > SNUB_TIMEOUT
                && !p.snubbed
            {
                p.snubbed = true;
                let lost: Vec<BlockRef> = p.outstanding.drain().collect();
                for r in &lost {
                    if let Some(picker) = &mut self.picker {
                        picker.request_failed(r);
                    }
                    self.actions.push_back(Action::Send(k, Message::Cancel(*r)));
                }
            }
        }
        self.smartban_tick(now);
        if self
            .last_choke
            .is_none_or(|t| now.duration_since(t) >= CHOKE_INTERVAL)
        {
            self.last_choke = Some(now);
            self.choke_round(now);
        }
        for k in keys {
            self.fill_requests(k);
        }
        self.request_metadata(now);
        self.pex_round(now);
        self.close_useless();
    }

    fn choke_round(&mut self, now: Instant) {
        if self.picker.is_none() {
            return;
        }
        let seeding = self.phase == super::Phase::Complete;
        let candidates: Vec<Candidate> = self
            .peers
            .iter()
            .map(|(k, p)| Candidate {
                key: *k,
                interested: p.peer_interested,
                rate: if seeding { p.up.rate() } else { p.down.rate() },
                new: now.duration_since(p.connected_at) < OPTIMISTIC_INTERVAL,
            })
            .collect();
        let unchoke = self.choker.decide(now, &candidates);
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            let p = self.peers.get_mut(&k).expect("present");
            let should_choke = !unchoke.contains(&k);
            if should_choke != p.am_choking {
                p.am_choking = should_choke;
                if should_choke {
                    self.actions.push_back(Action::ClearServes(k));
                    self.send(k, Message::Choke);
                } else {
                    self.send(k, Message::Unchoke);
                }
            }
        }
    }
}
