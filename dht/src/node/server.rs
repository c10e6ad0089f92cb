//! Answering queries: `ping`, `find_node`, `get_peers`, `announce_peer` (BEP 5), with `want` and
//! `nodes6` (BEP 32), the requester's `ip` in every answer (BEP 42), read-only senders kept out
//! of the routing table (BEP 43) and `sample_infohashes` (BEP 51).
//!
//! This is the hot path of a busy node: one decode, one table walk over at most a few buckets,
//! one output vector. Nothing here allocates beyond that vector.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{fam, Node};
use crate::id::{InfoHash, NodeId};
use crate::krpc::{
    error_code, write_error, write_response, Args, Message, Method, ResponseOut, Want,
};
use crate::routing::K;
use crate::txn::MAX_IN_FLIGHT;

/// Most IPv4 peers in one `get_peers` answer (8 bytes each in `values`); keeps the answer,
/// nodes included, within the 1024 bytes BEP 32 allows.
pub const MAX_VALUES_V4: usize = 50;

/// Most IPv6 peers in one `get_peers` answer (20 bytes each).
pub const MAX_VALUES_V6: usize = 20;

/// Most info-hashes in one `sample_infohashes` answer.
pub const MAX_SAMPLES: usize = 20;

/// How long one sample is served before a new one is drawn (BEP 51 lets nodes precompute the
/// sample so that asking again sooner yields nothing new).
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(300);

impl Node {
    pub(super) fn handle_query(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &Message<'_>,
        method: Method,
        args: &Args<'_>,
    ) {
        if self.config.read_only {
            return;
        }
        if let Some(limiter) = &mut self.limiter {
            if !limiter.allow(from.ip(), now) {
                self.stats.dropped_rate_limited += 1;
                return;
            }
        }
        let Some(sender) = args.id else { return };
        if !msg.read_only {
            self.note_querier(now, sender, from);
        }
        self.stats.queries_answered += 1;
        let tid = msg.tid;
        match method {
            Method::Ping => self.respond(from, tid, ResponseOut::default()),
            Method::FindNode | Method::Unknown if args.target.is_some() => {
                let target = args.target.unwrap_or_default();
                self.respond_with_nodes(from, tid, &target, args.want, ResponseOut::default());
            }
            Method::FindNode => self.error(from, tid, error_code::PROTOCOL, "missing target"),
            Method::GetPeers => match args.info_hash {
                Some(ih) => self.answer_get_peers(now, from, tid, ih, args.want),
                None => self.error(from, tid, error_code::PROTOCOL, "missing info_hash"),
            },
            Method::AnnouncePeer => self.answer_announce(now, from, tid, args),
            Method::SampleInfohashes => match args.target {
                Some(target) => self.answer_sample(now, from, tid, &target, args.want),
                None => self.error(from, tid, error_code::PROTOCOL, "missing target"),
            },
            // Forward compatibility: unknown queries naming a key get the closest nodes.
            Method::Unknown => match args.info_hash {
                Some(ih) => {
                    self.respond_with_nodes(from, tid, &ih, args.want, ResponseOut::default())
                }
                None => self.error(from, tid, error_code::METHOD_UNKNOWN, "method unknown"),
            },
        }
    }

    /// Refreshes a querier already in the table, or pings an unknown one whose bucket has room
    /// (it enters the table only once it has answered).
    fn note_querier(&mut self, now: Instant, sender: NodeId, from: SocketAddr) {
        let table = &mut self.families[fam(&from)].table;
        if !table.on_query(&sender, &from, now)
            && table.has_room_for(&sender, &from, now)
            && self.txns.len() < MAX_IN_FLIGHT / 2
        {
            self.send_ping(now, from, Some(sender));
        }
    }

    fn respond(&mut self, to: SocketAddr, tid: &[u8], mut r: ResponseOut<'_>) {
        r.requester = Some(to);
        let mut data = Vec::with_capacity(64);
        write_response(&mut data, tid, &self.families[fam(&to)].id, &r);
        self.push_transmit(to, data);
    }

    fn error(&mut self, to: SocketAddr, tid: &[u8], code: i64, message: &str) {
        self.stats.errors_sent += 1;
        let mut data = Vec::with_capacity(64);
        write_error(&mut data, tid, code, message, Some(to));
        self.push_transmit(to, data);
    }

    /// Fills the node scratch lists for the families the requester wants (BEP 32: by default
    /// the family the query came over). Returns which lists apply.
    fn gather_nodes(
        &mut self,
        from: &SocketAddr,
        target: &[u8; 20],
        want: Option<Want>,
    ) -> [bool; 2] {
        let w = want.unwrap_or(Want {
            n4: !from.is_ipv6(),
            n6: from.is_ipv6(),
        });
        let mut used = [false; 2];
        for (f, wanted) in [(0, w.n4), (1, w.n6)] {
            if wanted && self.families[f].enabled {
                self.families[f]
                    .table
                    .closest(target, K, &mut self.scratch_nodes[f]);
                used[f] = true;
            }
        }
        used
    }

    fn respond_with_nodes(
        &mut self,
        to: SocketAddr,
        tid: &[u8],
        target: &[u8; 20],
        want: Option<Want>,
        r: ResponseOut<'_>,
    ) {
        let used = self.gather_nodes(&to, target, want);
        let r = ResponseOut {
            requester: Some(to),
            nodes: used[0].then_some(&self.scratch_nodes[0][..]),
            nodes6: used[1].then_some(&self.scratch_nodes[1][..]),
            ..r
        };
        let mut data = Vec::with_capacity(96 + 26 * K + 38 * K);
        write_response(&mut data, tid, &self.families[fam(&to)].id, &r);
        self.push_transmit(to, data);
    }

    fn answer_get_peers(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tid: &[u8],
        ih: [u8; 20],
        want: Option<Want>,
    ) {
        let token = self.tokens.issue(from.ip());
        let v6 = from.is_ipv6();
        let max = if v6 { MAX_VALUES_V6 } else { MAX_VALUES_V4 };
        let mut peers = std::mem::take(&mut self.scratch_peers);
        peers.clear();
        self.peers
            .get(&InfoHash(ih), v6, max, now, &mut self.rng, &mut peers);
        let r = ResponseOut {
            token: Some(&token),
            values: (!peers.is_empty()).then_some(&peers[..]),
            ..ResponseOut::default()
        };
        self.respond_with_nodes(from, tid, &ih, want, r);
        self.scratch_peers = peers;
    }

    fn answer_announce(&mut self, now: Instant, from: SocketAddr, tid: &[u8], args: &Args<'_>) {
        let Some(ih) = args.info_hash else {
            return self.error(from, tid, error_code::PROTOCOL, "missing info_hash");
        };
        if !args
            .token
            .is_some_and(|t| self.tokens.validate(from.ip(), t))
        {
            return self.error(from, tid, error_code::PROTOCOL, "bad token");
        }
        let port = if args.implied_port {
            from.port()
        } else {
            match args
                .port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p != 0)
            {
                Some(p) => p,
                None => return self.error(from, tid, error_code::PROTOCOL, "invalid port"),
            }
        };
        if self.peers.announce(
            InfoHash(ih),
            SocketAddr::new(from.ip(), port),
            now,
            &mut self.rng,
        ) {
            self.stats.announces_stored += 1;
        }
        self.respond(from, tid, ResponseOut::default());
    }

    fn answer_sample(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tid: &[u8],
        target: &[u8; 20],
        want: Option<Want>,
    ) {
        if now >= self.samples_until {
            self.samples = self
                .peers
                .sample(MAX_SAMPLES, &mut self.rng)
                .into_iter()
                .map(|h| h.0)
                .collect();
            self.samples_until = now + SAMPLE_INTERVAL;
        }
        let samples = std::mem::take(&mut self.samples);
        let r = ResponseOut {
            interval: Some(self.samples_until.saturating_duration_since(now).as_secs() as i64),
            num: Some(self.peers.info_hashes() as i64),
            samples: Some(&samples),
            ..ResponseOut::default()
        };
        self.respond_with_nodes(from, tid, target, want, r);
        self.samples = samples;
    }
}
