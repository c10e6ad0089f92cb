//! Our side of the protocol: sending queries, matching answers, and running searches (BEP 5
//! lookups, announces after `get_peers`, BEP 32 dual-family bootstrap, BEP 51 sampling).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Instant;

use super::types::{Event, LookupDone, LookupId, LookupStatus, SampleResult};
use super::{fam, Node};
use crate::bep42;
use crate::compact::{decode_nodes, decode_peer, NodeInfo};
use crate::id::{InfoHash, NodeId};
use crate::krpc::{self, Args, Message, Want};
use crate::lookup::{Traversal, MAX_CANDIDATES};
use crate::routing::{Insertion, K, MAX_BUCKETS};
use crate::txn::{Expired, Txn, MAX_IN_FLIGHT};

/// Most searches running at once (internal refreshes included).
pub const MAX_LOOKUPS: usize = 128;

/// Most distinct peers one search reports; a search that has found this many has done its job.
pub const MAX_PEERS_PER_LOOKUP: usize = 2000;

/// Most liveness pings outstanding at once.
pub const MAX_PENDING_PINGS: usize = MAX_IN_FLIGHT / 4;

/// What one of our queries was for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TxnKind {
    Ping,
    Lookup { lookup: LookupId, family: u8 },
    Announce { lookup: LookupId },
    Sample { lookup: LookupId },
}

/// Why a search runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LookupKind {
    /// A self-lookup through bootstrap contacts.
    Bootstrap,
    /// A search for a random key in a bucket that has been quiet (BEP 5 bucket refresh).
    Refresh,
    FindNode,
    GetPeers,
    Announce {
        port: Option<u16>,
    },
}

/// A search across the enabled families.
#[derive(Debug)]
pub(crate) struct Lookup {
    target: [u8; 20],
    kind: LookupKind,
    report: bool,
    parts: [Option<Traversal>; 2],
    searching: bool,
    announcing: usize,
    announced: usize,
    seen: HashSet<SocketAddr>,
}

impl Node {
    /// Starts a search in the families set in `families`. `target: None` means our own ID.
    pub(super) fn start_lookup_in(
        &mut self,
        now: Instant,
        target: Option<[u8; 20]>,
        kind: LookupKind,
        report: bool,
        families: [bool; 2],
    ) -> LookupId {
        let id = self.new_lookup_id();
        let key = target.unwrap_or(self.families[0].id.0);
        if self.lookups.len() >= MAX_LOOKUPS {
            if report {
                self.push_event(Event::LookupDone(done(
                    id,
                    key,
                    LookupStatus::TooManyLookups,
                )));
            }
            return id;
        }
        let mut parts = [None, None];
        let mut seeds = Vec::new();
        for f in 0..2 {
            let fs = &self.families[f];
            if !fs.enabled || !families[f] {
                continue;
            }
            let key = target.unwrap_or(fs.id.0);
            let mut tr = Traversal::new(key);
            fs.table.closest(&key, 2 * K, &mut seeds);
            for n in &seeds {
                tr.add(
                    Some(n.id),
                    n.addr,
                    &fs.id,
                    bep42::is_verified(&n.id, n.addr.ip()),
                );
            }
            if kind == LookupKind::Bootstrap || fs.table.len() < K {
                for s in &fs.seeds {
                    tr.add(None, *s, &fs.id, false);
                }
            }
            if !tr.candidates().is_empty() {
                parts[f] = Some(tr);
            }
        }
        if parts.iter().all(Option::is_none) {
            if report {
                self.push_event(Event::LookupDone(done(id, key, LookupStatus::NoNodes)));
            }
            return id;
        }
        let lookup = Lookup {
            target: key,
            kind,
            report,
            parts,
            searching: true,
            announcing: 0,
            announced: 0,
            seen: HashSet::new(),
        };
        self.lookups.insert(id, lookup);
        self.drive(now, id);
        id
    }

    pub(super) fn start_lookup(
        &mut self,
        now: Instant,
        target: Option<[u8; 20]>,
        kind: LookupKind,
        report: bool,
    ) -> LookupId {
        self.start_lookup_in(now, target, kind, report, [true, true])
    }

    /// Sends whatever a search may send now, and finishes it when it is over.
    pub(super) fn drive(&mut self, now: Instant, id: LookupId) {
        let Some(mut l) = self.lookups.remove(&id) else {
            return;
        };
        if l.searching {
            let both = self.families[0].enabled && self.families[1].enabled;
            // BEP 32: a dual-stack node asks for both families while bootstrapping.
            let want =
                (l.kind == LookupKind::Bootstrap && both).then_some(Want { n4: true, n6: true });
            for f in 0..2 {
                let Some(tr) = l.parts[f].as_mut() else {
                    continue;
                };
                let target = *tr.target();
                while let Some((nid, addr)) = tr.next_query() {
                    if !self.send_lookup_query(now, f, addr, nid, l.kind, &target, want, id) {
                        tr.unsend(&addr);
                        self.stats.queries_deferred += 1;
                        break;
                    }
                }
            }
            if l.parts.iter().flatten().all(Traversal::is_done) {
                l.searching = false;
                if let LookupKind::Announce { port } = l.kind {
                    self.send_announces(now, id, &mut l, port);
                }
            }
        }
        if l.searching || l.announcing > 0 {
            self.lookups.insert(id, l);
        } else {
            self.finish(id, l);
            self.start_refreshes(now);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send_lookup_query(
        &mut self,
        now: Instant,
        f: usize,
        addr: SocketAddr,
        nid: Option<NodeId>,
        kind: LookupKind,
        target: &[u8; 20],
        want: Option<Want>,
        lookup: LookupId,
    ) -> bool {
        let txn = Txn {
            addr,
            id: nid,
            kind: TxnKind::Lookup {
                lookup,
                family: f as u8,
            },
        };
        let Some(tid) = self.txns.insert(txn, true, now, &mut self.rng) else {
            return false;
        };
        let own = self.families[f].id;
        let ro = self.config.read_only;
        let mut data = Vec::with_capacity(128);
        match kind {
            LookupKind::GetPeers | LookupKind::Announce { .. } => {
                krpc::write_get_peers(&mut data, &tid, &own, target, want, ro)
            }
            _ => krpc::write_find_node(&mut data, &tid, &own, target, want, ro),
        }
        self.push_transmit(addr, data);
        true
    }

    /// Announces to the K closest nodes that gave a token, BEP 42-verified ones first (BEP 42
    /// "Enforcement": store on compliant nodes).
    fn send_announces(&mut self, now: Instant, id: LookupId, l: &mut Lookup, port: Option<u16>) {
        for f in 0..2 {
            let Some(tr) = &l.parts[f] else { continue };
            let with_token = || {
                tr.closest_responded(MAX_CANDIDATES)
                    .filter(|c| c.token.is_some())
            };
            let chosen: Vec<_> = with_token()
                .filter(|c| c.verified)
                .chain(with_token().filter(|c| !c.verified))
                .take(K)
                .filter_map(|c| Some((c.addr, c.id, c.token?)))
                .collect();
            let own = self.families[f].id;
            // With implied_port the receiver ignores `port`; the key is sent for parsers that
            // require it.
            let port_value =
                port.unwrap_or_else(|| self.families[f].external.map_or(1, |a| a.port()));
            for (addr, nid, token) in chosen {
                let txn = Txn {
                    addr,
                    id: nid,
                    kind: TxnKind::Announce { lookup: id },
                };
                let Some(tid) = self.txns.insert(txn, false, now, &mut self.rng) else {
                    self.stats.queries_deferred += 1;
                    break;
                };
                let mut data = Vec::with_capacity(160);
                krpc::write_announce_peer(
                    &mut data,
                    &tid,
                    &own,
                    &l.target,
                    port_value,
                    port.is_none(),
                    token.as_bytes(),
                    self.config.read_only,
                );
                self.push_transmit(addr, data);
                l.announcing += 1;
            }
        }
    }

    fn finish(&mut self, id: LookupId, l: Lookup) {
        if l.kind == LookupKind::Bootstrap {
            // Fill the far buckets a self-lookup leaves sparse.
            for f in 0..2 {
                for p in self.families[f].table.sparse_prefixes() {
                    if self.pending_refresh.len() < 2 * MAX_BUCKETS
                        && !self.pending_refresh.contains(&(f, p))
                    {
                        self.pending_refresh.push_back((f, p));
                    }
                }
            }
        }
        if !l.report {
            return;
        }
        let closest = l
            .parts
            .iter()
            .flatten()
            .flat_map(|tr| {
                tr.closest_responded(K).filter_map(|c| {
                    Some(NodeInfo {
                        id: c.id?,
                        addr: c.addr,
                    })
                })
            })
            .collect();
        let mut d = done(id, l.target, LookupStatus::Completed);
        d.closest = closest;
        d.responded = l.parts.iter().flatten().map(Traversal::responded).sum();
        d.announced = l.announced;
        d.peers_found = l.seen.len();
        self.push_event(Event::LookupDone(d));
    }

    /// Pings `addr` unless a ping to it is already outstanding. Returns false if not sent.
    pub(super) fn send_ping(&mut self, now: Instant, addr: SocketAddr, id: Option<NodeId>) -> bool {
        if self.pinging.contains(&addr) || self.pinging.len() >= MAX_PENDING_PINGS {
            return false;
        }
        let txn = Txn {
            addr,
            id,
            kind: TxnKind::Ping,
        };
        let Some(tid) = self.txns.insert(txn, false, now, &mut self.rng) else {
            self.stats.queries_deferred += 1;
            return false;
        };
        self.pinging.insert(addr);
        let mut data = Vec::with_capacity(64);
        krpc::write_ping(
            &mut data,
            &tid,
            &self.families[fam(&addr)].id,
            self.config.read_only,
        );
        self.push_transmit(addr, data);
        true
    }

    pub(super) fn send_sample(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        target: NodeId,
        lookup: LookupId,
    ) -> bool {
        if !self.families[fam(&addr)].enabled {
            return false;
        }
        let txn = Txn {
            addr,
            id: None,
            kind: TxnKind::Sample { lookup },
        };
        let Some(tid) = self.txns.insert(txn, false, now, &mut self.rng) else {
            return false;
        };
        let mut data = Vec::with_capacity(96);
        krpc::write_sample_infohashes(
            &mut data,
            &tid,
            &self.families[fam(&addr)].id,
            &target.0,
            self.config.read_only,
        );
        self.push_transmit(addr, data);
        true
    }

    pub(super) fn handle_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &Message<'_>,
        args: &Args<'_>,
    ) {
        let Some(txn) = self.txns.take(msg.tid, &from) else {
            self.stats.unmatched_responses += 1;
            return;
        };
        self.stats.responses_in += 1;
        let Some(id) = args.id else { return };
        let verified = bep42::is_verified(&id, from.ip());
        if matches!(txn.kind, TxnKind::Ping) {
            self.pinging.remove(&from);
        }
        if let Insertion::Pending { ping: Some(n) } = self.families[fam(&from)]
            .table
            .on_response(id, from, verified, now)
        {
            if !self.send_ping(now, n.addr, Some(n.id)) {
                self.families[fam(&n.addr)]
                    .table
                    .clear_pinging(&n.id, &n.addr);
            }
        }
        if let Some(reported) = msg.ip {
            self.push_event(Event::ExternalAddrVote { reported, by: from });
        }
        match txn.kind {
            TxnKind::Ping => {}
            TxnKind::Lookup { lookup, family } => {
                self.lookup_response(now, lookup, usize::from(family), from, id, verified, args)
            }
            TxnKind::Announce { lookup } => {
                if let Some(l) = self.lookups.get_mut(&lookup) {
                    l.announcing -= 1;
                    l.announced += 1;
                }
                self.drive(now, lookup);
            }
            TxnKind::Sample { lookup } => {
                let result = SampleResult {
                    samples: args
                        .samples
                        .unwrap_or_default()
                        .chunks_exact(20)
                        .filter_map(InfoHash::from_slice)
                        .collect(),
                    num: args.num.unwrap_or(0),
                    interval: args.interval.unwrap_or(0),
                    nodes: decode_nodes(args.nodes.unwrap_or_default(), false)
                        .chain(decode_nodes(args.nodes6.unwrap_or_default(), true))
                        .collect(),
                };
                self.push_event(Event::Samples {
                    lookup,
                    from,
                    result: Some(result),
                });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn lookup_response(
        &mut self,
        now: Instant,
        lookup: LookupId,
        f: usize,
        from: SocketAddr,
        id: NodeId,
        verified: bool,
        args: &Args<'_>,
    ) {
        let own = [self.families[0].id, self.families[1].id];
        let enabled = [self.families[0].enabled, self.families[1].enabled];
        let Some(l) = self.lookups.get_mut(&lookup) else {
            return;
        };
        let Some(tr) = l.parts[f].as_mut() else {
            return;
        };
        if !tr.on_response(&from, id, args.token, verified) {
            return;
        }
        for (g, list) in [(0usize, args.nodes), (1, args.nodes6)] {
            let Some(list) = list else { continue };
            if !enabled[g] {
                continue;
            }
            if l.parts[g].is_none() && l.kind == LookupKind::Bootstrap {
                // BEP 32: nodes of the other family learned while bootstrapping seed its search.
                l.parts[g] = Some(Traversal::new(own[g].0));
            }
            let Some(part) = l.parts[g].as_mut() else {
                continue;
            };
            for n in decode_nodes(list, g == 1) {
                part.add(
                    Some(n.id),
                    n.addr,
                    &own[g],
                    bep42::is_verified(&n.id, n.addr.ip()),
                );
            }
        }
        let mut found = Vec::new();
        if let (Some(values), LookupKind::GetPeers | LookupKind::Announce { .. }) =
            (args.values, l.kind)
        {
            for peer in values.iter().filter_map(decode_peer) {
                if peer.port() != 0 && l.seen.len() < MAX_PEERS_PER_LOOKUP && l.seen.insert(peer) {
                    found.push(peer);
                }
            }
        }
        if !found.is_empty() && l.report {
            let info_hash = InfoHash(l.target);
            self.push_event(Event::Peers {
                lookup,
                info_hash,
                peers: found,
            });
        }
        self.drive(now, lookup);
    }

    pub(super) fn handle_error(&mut self, now: Instant, from: SocketAddr, tid: &[u8]) {
        let Some(txn) = self.txns.take(tid, &from) else {
            self.stats.unmatched_responses += 1;
            return;
        };
        self.txn_failed(now, txn);
    }

    pub(super) fn on_expired(&mut self, now: Instant, e: Expired<TxnKind>) {
        match e {
            Expired::Slow(txn) => {
                if let TxnKind::Lookup { lookup, family } = txn.kind {
                    if let Some(tr) = self
                        .lookups
                        .get_mut(&lookup)
                        .and_then(|l| l.parts[usize::from(family)].as_mut())
                    {
                        tr.on_slow(&txn.addr);
                    }
                    self.drive(now, lookup);
                }
            }
            Expired::Timeout(txn) => {
                self.stats.timeouts += 1;
                if let Some(id) = txn.id {
                    self.families[fam(&txn.addr)]
                        .table
                        .on_failure(&id, &txn.addr, now);
                }
                self.txn_failed(now, txn);
            }
        }
    }

    /// A query got an error answer or none at all.
    fn txn_failed(&mut self, now: Instant, txn: Txn<TxnKind>) {
        match txn.kind {
            TxnKind::Ping => {
                self.pinging.remove(&txn.addr);
            }
            TxnKind::Lookup { lookup, family } => {
                if let Some(tr) = self
                    .lookups
                    .get_mut(&lookup)
                    .and_then(|l| l.parts[usize::from(family)].as_mut())
                {
                    tr.on_failure(&txn.addr);
                }
                self.drive(now, lookup);
            }
            TxnKind::Announce { lookup } => {
                if let Some(l) = self.lookups.get_mut(&lookup) {
                    l.announcing -= 1;
                }
                self.drive(now, lookup);
            }
            TxnKind::Sample { lookup } => self.push_event(Event::Samples {
                lookup,
                from: txn.addr,
                result: None,
            }),
        }
    }

    /// True if a search of this kind is running.
    pub(super) fn running(&self, kind: LookupKind) -> usize {
        self.lookups.values().filter(|l| l.kind == kind).count()
    }
}

fn done(lookup: LookupId, target: [u8; 20], status: LookupStatus) -> LookupDone {
    LookupDone {
        lookup,
        target,
        status,
        closest: Vec::new(),
        responded: 0,
        announced: 0,
        peers_found: 0,
    }
}
