//! Timers: query timeouts, token rotation, peer expiry, liveness pings of questionable contacts,
//! bucket refresh (BEP 5: refresh buckets unchanged for 15 minutes) and re-bootstrap when a
//! table has emptied.

use std::time::{Duration, Instant};

use super::client::LookupKind;
use super::Node;
use crate::compact::NodeInfo;
use crate::id::random_in_bucket;

/// How often the periodic upkeep runs.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(5);

/// How often expired peers are purged from the store (they are never served once expired).
pub const PEER_EXPIRY_INTERVAL: Duration = Duration::from_secs(60);

/// A bucket unchanged this long is refreshed with a search for a random key in it.
pub const BUCKET_REFRESH: Duration = Duration::from_secs(15 * 60);

/// A bucket holding bad contacts with no replacements waiting is refreshed this often, so
/// that live nodes are found to take their places.
pub const REPAIR_INTERVAL: Duration = Duration::from_secs(60);

/// Questionable contacts pinged per family per upkeep round. Two every five seconds re-checks
/// a full table of a few hundred contacts well within the 15 minutes a good node stays good.
pub const PINGS_PER_TICK: usize = 2;

/// While a table is empty and bootstrap contacts are known, re-bootstrap this often.
pub const REBOOTSTRAP_INTERVAL: Duration = Duration::from_secs(30);

/// Most refresh searches running at once.
pub const MAX_CONCURRENT_REFRESH: usize = 2;

impl Node {
    /// Runs whatever timers are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(e) = self.txns.poll_expired(now) {
            self.on_expired(now, e);
        }
        if now >= self.next_maintenance {
            self.next_maintenance = now + MAINTENANCE_INTERVAL;
            self.maintain(now);
        }
    }

    /// Starts queued bucket refreshes, up to [`MAX_CONCURRENT_REFRESH`] at a time.
    pub(super) fn start_refreshes(&mut self, now: Instant) {
        let mut running = self.running(LookupKind::Refresh);
        while running < MAX_CONCURRENT_REFRESH {
            let Some((f, prefix)) = self.pending_refresh.pop_front() else {
                break;
            };
            let target = random_in_bucket(&self.families[f].id.0, prefix, &mut self.rng);
            let mut only = [false; 2];
            only[f] = true;
            self.start_lookup_in(now, Some(target), LookupKind::Refresh, false, only);
            running += 1;
        }
    }

    fn maintain(&mut self, now: Instant) {
        self.tokens.maybe_rotate(&mut self.rng, now);
        if now >= self.next_peer_expiry {
            self.peers.expire(now);
            self.next_peer_expiry = now + PEER_EXPIRY_INTERVAL;
        }
        let mut to_ping: Vec<NodeInfo> = Vec::new();
        for f in 0..2 {
            if !self.families[f].enabled {
                continue;
            }
            self.families[f]
                .table
                .questionable(now, PINGS_PER_TICK, &mut to_ping);
            let table = &mut self.families[f].table;
            let mut due = Vec::new();
            if let Some(before) = now.checked_sub(BUCKET_REFRESH) {
                due.extend(table.take_stale_buckets(before, now));
            }
            if let Some(before) = now.checked_sub(REPAIR_INTERVAL) {
                due.extend(table.take_buckets_needing_repair(before, now));
            }
            for p in due {
                if !self.pending_refresh.contains(&(f, p)) {
                    self.pending_refresh.push_back((f, p));
                }
            }
        }
        for n in to_ping {
            if !self.send_ping(now, n.addr, Some(n.id)) {
                self.families[usize::from(n.addr.is_ipv6())]
                    .table
                    .clear_pinging(&n.id, &n.addr);
            }
        }
        let empty = (0..2).any(|f| {
            let fs = &self.families[f];
            fs.enabled && fs.table.is_empty() && !fs.seeds.is_empty()
        });
        if empty && now >= self.next_rebootstrap && self.running(LookupKind::Bootstrap) == 0 {
            self.next_rebootstrap = now + REBOOTSTRAP_INTERVAL;
            self.start_lookup(now, None, LookupKind::Bootstrap, false);
        }
        self.start_refreshes(now);
        // Searches stalled by a full transaction table get another chance.
        let ids: Vec<_> = self.lookups.keys().copied().collect();
        for id in ids {
            self.drive(now, id);
        }
    }
}
