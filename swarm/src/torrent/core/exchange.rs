//! Peer exchange (BEP 11) and holepunch relaying (BEP 55), the two ways peers help each other
//! find and reach the rest of the swarm. PEX tells each peer whom we are connected to (at
//! most once a minute, as a diff); holepunch lets two peers that cannot dial each other meet
//! through us: on `rendezvous` we send `connect` to both, and both dial at once.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::{Action, TorrentCore};
use crate::peer::PeerKey;
use crate::wire::{
    HolepunchError, HolepunchMsg, HolepunchType, Message, PexFlags, PexMessage, PexPeer,
    MAX_PEX_PEERS,
};

/// Time between PEX messages to one peer (BEP 11: at most one a minute).
pub const PEX_INTERVAL: Duration = Duration::from_secs(60);
/// Wait after a connection opens before the first PEX message: long enough for the
/// extension handshakes to cross, short because a newcomer behind a NAT learns from this
/// message whom it can meet by holepunch.
pub const PEX_FIRST_DELAY: Duration = Duration::from_secs(1);
/// Rendezvous one peer may ask us to relay per [`RELAY_WINDOW`].
pub const MAX_RELAYS_PER_WINDOW: usize = 10;
/// The window of the relay rate limit.
pub const RELAY_WINDOW: Duration = Duration::from_secs(60);

/// Whether an address may be a holepunch target at all: loopback, private, link-local and
/// unspecified addresses are only relayed between two local peers, so a relay can never be
/// used to make a remote peer probe somebody's LAN.
fn is_local(ip: IpAddr) -> bool {
    !crate::nat::voter::is_public(ip)
}

impl TorrentCore {
    /// Sends due PEX messages (called from `tick`).
    pub(super) fn pex_round(&mut self, now: Instant) {
        if self.is_private() {
            return;
        }
        let mut everyone: Vec<(PeerKey, SocketAddr, PexFlags)> = self
            .peers
            .iter()
            .filter_map(|(k, p)| {
                let addr = p.dialable()?;
                let mut f = 0;
                if p.is_seed() {
                    f |= PexFlags::SEED;
                }
                if p.route.is_utp() {
                    f |= PexFlags::UTP;
                }
                if p.supports_holepunch() {
                    f |= PexFlags::HOLEPUNCH;
                }
                if p.route.is_outgoing() {
                    f |= PexFlags::REACHABLE;
                }
                Some((*k, addr, PexFlags(f)))
            })
            .collect();
        // Peers we know in both families go out in both lists (`added` and `added6`), so
        // PEX carries IPv6 peers even when we reach them over IPv4.
        let others: Vec<(PeerKey, SocketAddr, PexFlags)> = self
            .peers
            .iter()
            .filter_map(|(k, p)| {
                let other = p.ext.as_ref().and_then(|e| p.other_family(e))?;
                let flags = if p.supports_holepunch() {
                    PexFlags::HOLEPUNCH
                } else {
                    0
                };
                Some((*k, other, PexFlags(flags)))
            })
            .collect();
        everyone.extend(others);
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            let p = self.peers.get_mut(&k).expect("present");
            let Some(id) = p.ext.as_ref().and_then(|e| e.ids.ut_pex) else {
                continue;
            };
            let due = match p.pex_at {
                Some(t) => now.duration_since(t) >= PEX_INTERVAL,
                None => now.duration_since(p.connected_at) >= PEX_FIRST_DELAY,
            };
            if !due {
                continue;
            }
            let current: HashSet<SocketAddr> = everyone
                .iter()
                .filter(|(o, ..)| *o != k)
                .map(|(_, a, _)| *a)
                .collect();
            let added: Vec<PexPeer> = everyone
                .iter()
                .filter(|(o, a, _)| *o != k && !p.pex_sent.contains(a))
                .take(MAX_PEX_PEERS)
                .map(|(_, addr, flags)| PexPeer {
                    addr: *addr,
                    flags: *flags,
                })
                .collect();
            let dropped: Vec<SocketAddr> = p
                .pex_sent
                .iter()
                .filter(|a| !current.contains(a))
                .take(MAX_PEX_PEERS)
                .copied()
                .collect();
            p.pex_at = Some(now);
            if added.is_empty() && dropped.is_empty() {
                continue;
            }
            for a in &added {
                p.pex_sent.insert(a.addr);
            }
            for d in &dropped {
                p.pex_sent.remove(d);
            }
            let payload = PexMessage { added, dropped }.encode();
            self.actions.push_back(Action::Send(
                k,
                Message::Extended {
                    id,
                    payload: payload.into(),
                },
            ));
        }
    }

    /// A PEX message arrived.
    pub(super) fn on_pex(&mut self, key: PeerKey, msg: PexMessage) {
        if self.is_private() || msg.added.is_empty() {
            return;
        }
        let from = &self.peers[&key];
        // Some peers list us among their peers (libtorrent does): the address this peer says
        // it sees us at, with our listen port, is not a peer to dial.
        let us = from
            .ext
            .as_ref()
            .and_then(|e| e.yourip)
            .zip(self.config.listen_port)
            .map(|(ip, port)| SocketAddr::new(ip, port));
        let peers: Vec<PexPeer> = msg
            .added
            .into_iter()
            .filter(|p| Some(p.addr) != us)
            .collect();
        if peers.is_empty() {
            return;
        }
        let via = from.dialable().unwrap_or(from.addr);
        self.actions.push_back(Action::PexPeers {
            via,
            via_key: key,
            peers,
        });
    }

    /// Sends a holepunch message to a connected peer (the task uses this to ask a relay for a
    /// rendezvous). Returns false if the peer does not speak ut_holepunch.
    pub fn send_holepunch(&mut self, key: PeerKey, msg: HolepunchMsg) -> bool {
        let Some(id) = self
            .peers
            .get(&key)
            .and_then(|p| p.ext.as_ref())
            .and_then(|e| e.ids.ut_holepunch)
        else {
            return false;
        };
        self.actions.push_back(Action::Send(
            key,
            Message::Extended {
                id,
                payload: msg.encode().into(),
            },
        ));
        true
    }

    fn holepunch_reply(
        &mut self,
        key: PeerKey,
        kind: HolepunchType,
        addr: SocketAddr,
        error: HolepunchError,
    ) {
        self.send_holepunch(key, HolepunchMsg { kind, addr, error });
    }

    /// A ut_holepunch message arrived from `key`.
    pub(super) fn on_holepunch(&mut self, key: PeerKey, msg: HolepunchMsg, now: Instant) {
        match msg.kind {
            HolepunchType::Rendezvous => self.relay(key, msg.addr, now),
            HolepunchType::Connect => {
                let via = self.peers[&key].addr;
                self.actions.push_back(Action::HolepunchConnect {
                    addr: msg.addr,
                    via,
                });
            }
            HolepunchType::Error => {
                tracing::debug!(target = %msg.addr, error = ?msg.error, "holepunch rendezvous refused");
                self.actions
                    .push_back(Action::HolepunchFailed { addr: msg.addr });
            }
        }
    }

    /// The relay role: introduce `from` to the peer at `target`.
    fn relay(&mut self, from: PeerKey, target: SocketAddr, now: Instant) {
        let requester = &mut self.peers.get_mut(&from).expect("present");
        while requester
            .relay_times
            .front()
            .is_some_and(|t| now.duration_since(*t) > RELAY_WINDOW)
        {
            requester.relay_times.pop_front();
        }
        if requester.relay_times.len() >= MAX_RELAYS_PER_WINDOW {
            return; // Silently: a peer flooding rendezvous gets nothing more.
        }
        requester.relay_times.push_back(now);
        let from_addr = requester.addr;
        if target.port() == 0 || target.ip().is_unspecified() || target.ip().is_multicast() {
            return self.holepunch_reply(
                from,
                HolepunchType::Error,
                target,
                HolepunchError::NoSuchPeer,
            );
        }
        if is_local(target.ip()) && !is_local(from_addr.ip()) {
            return self.holepunch_reply(
                from,
                HolepunchType::Error,
                target,
                HolepunchError::NoSuchPeer,
            );
        }
        if self.peers.get(&from).and_then(|p| p.dialable()) == Some(target) || from_addr == target {
            return self.holepunch_reply(
                from,
                HolepunchType::Error,
                target,
                HolepunchError::NoSelf,
            );
        }
        let found = self
            .peers
            .iter()
            .find(|(k, p)| **k != from && (p.addr == target || p.dialable() == Some(target)))
            .map(|(k, p)| (*k, p.supports_holepunch(), p.addr));
        match found {
            None => self.holepunch_reply(
                from,
                HolepunchType::Error,
                target,
                HolepunchError::NotConnected,
            ),
            Some((_, false, _)) => self.holepunch_reply(
                from,
                HolepunchType::Error,
                target,
                HolepunchError::NoSupport,
            ),
            Some((to, true, to_addr)) => {
                // Each side learns the other's address as we see it: for a NATed peer that
                // is its mapping, the one its hole must be punched toward.
                self.holepunch_reply(from, HolepunchType::Connect, to_addr, HolepunchError::None);
                self.holepunch_reply(to, HolepunchType::Connect, from_addr, HolepunchError::None);
                self.stats.relayed += 1;
            }
        }
    }
}
