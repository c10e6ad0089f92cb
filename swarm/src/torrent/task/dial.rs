//! Finding and reaching peers for the torrent: dialling from the pool within the connection
//! limits, DHT lookups and announces on their schedule, and the holepunch side of the
//! connectivity policy (asking a mutual peer for a rendezvous, dialling when told to).

use std::net::SocketAddr;
use std::time::Instant;

use super::{Task, TaskMsg, DHT_INTERVAL, DHT_INTERVAL_HUNGRY, FEW_PEERS};
use crate::connectivity::{PeerSource, CONNECT_TIMEOUT};
use crate::peer::conn;
use crate::torrent::core::Phase;

impl Task {
    pub(super) fn dial_more(&mut self) {
        if self.error.is_some() || (self.core.phase() == Phase::Complete && !self.p.seed) {
            return;
        }
        let seeding = self.core.phase() == Phase::Complete;
        let max = self.env.settings.max_peers_per_torrent;
        let open = self.links.len() + self.pool.connecting();
        let n = max.saturating_sub(open).min(
            self.env
                .settings
                .max_connecting
                .saturating_sub(self.pool.connecting()),
        );
        for addr in self.pool.next_to_dial(Instant::now(), n, seeding) {
            if self.pool.wants_rendezvous(&addr) {
                // Do not wait for the dial to time out at the peer's NAT first.
                self.ask_rendezvous(addr, Instant::now());
            }
            let (env, tx, ih) = (self.env.clone(), self.tx.clone(), self.p.info_hash);
            tokio::spawn(async move {
                let r = env.connector.connect_peer(addr, ih).await;
                let _ = match r {
                    Ok((stream, handshake, route)) => tx.send(TaskMsg::Connected {
                        stream,
                        addr,
                        handshake,
                        route,
                        dialled: true,
                    }),
                    Err(e) => {
                        tracing::debug!(%addr, error = %e, "dial failed");
                        tx.send(TaskMsg::DialFailed(addr))
                    }
                };
            });
        }
    }

    /// Asks the DHT for peers and announces us, on the schedule above. Private torrents
    /// (BEP 27) never use the DHT.
    pub(super) fn dht_round(&mut self, now: Instant) {
        let private = self.core.info().is_some_and(|i| i.private);
        let Some(dht) = self.env.dht.clone() else {
            return;
        };
        if private || now < self.next_dht || self.error.is_some() {
            return;
        }
        let hungry = self.links.len() < FEW_PEERS && self.core.phase() != Phase::Complete;
        self.next_dht = now
            + if hungry {
                DHT_INTERVAL_HUNGRY
            } else {
                DHT_INTERVAL
            };
        let mut found = dht.lookup(self.p.info_hash, Some(Some(self.env.port)));
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut total = 0;
            while let Some(peers) = found.recv().await {
                total += peers.len();
                if tx.send(TaskMsg::Peers(PeerSource::Dht, peers)).is_err() {
                    return;
                }
            }
            let _ = tx.send(TaskMsg::DhtLookupDone { found: total });
        });
    }

    /// The connectivity policy's answer to a failed dial: a peer that speaks holepunch and
    /// was heard of through PEX is asked for through the peer that told us about it, which is
    /// connected to both of us. Costs one small message; nothing is spent on peers without a
    /// relay.
    pub(super) fn ask_rendezvous(&mut self, addr: SocketAddr, now: Instant) {
        // Relays we dialled first: they are reachable, so they are likely to stay connected
        // to the target long enough to pass `connect` on.
        let mut relays = self.pool.punch_candidates(addr, now);
        relays.sort_by_key(|r| {
            !self
                .links
                .iter()
                .any(|(_, l)| l.addr == *r && l.route.is_outgoing())
        });
        for relay in relays {
            if let Some(k) = self.links.find(relay) {
                let msg = crate::wire::HolepunchMsg {
                    kind: crate::wire::HolepunchType::Rendezvous,
                    addr,
                    error: crate::wire::HolepunchError::None,
                };
                if self.core.send_holepunch(k, msg) {
                    tracing::debug!(%addr, %relay, "asking for a holepunch rendezvous");
                    self.env.connector.note_punch(addr.ip());
                    self.drain_actions();
                    return;
                }
            }
        }
    }

    /// A relay told us to dial `addr` now (it told `addr` the same).
    pub(super) fn punch(&mut self, addr: SocketAddr, via: SocketAddr) {
        if self.links.find(addr).is_some()
            || self.pool.is_connected(&addr)
            || self.pool.is_banned(&addr.ip())
        {
            return;
        }
        if self.core.phase() == Phase::Complete && self.pool.is_seed(&addr) {
            return; // Two seeds have nothing to trade.
        }
        tracing::debug!(%addr, %via, "holepunch: dialling");
        let (env, tx, ih) = (self.env.clone(), self.tx.clone(), self.p.info_hash);
        tokio::spawn(async move {
            let r = async {
                let (mut s, reached, route) =
                    tokio::time::timeout(CONNECT_TIMEOUT, env.connector.dial_punch(addr))
                        .await
                        .ok()?
                        .ok()?;
                let h = conn::handshake_outgoing(&mut s, ih, env.peer_id)
                    .await
                    .ok()?;
                Some((s, h, reached, route))
            }
            .await;
            let _ = match r {
                Some((stream, handshake, reached, route)) => {
                    if reached != addr {
                        tracing::debug!(%addr, %reached, "holepunch succeeded at a predicted port");
                    }
                    tx.send(TaskMsg::Connected {
                        stream,
                        addr: reached,
                        handshake,
                        route,
                        dialled: true,
                    })
                }
                None => tx.send(TaskMsg::PunchFailed(addr)),
            };
        });
    }

    /// Our global IPv6 address, if this host has one.
    pub(super) fn own_v6(&self) -> Option<std::net::Ipv6Addr> {
        let snap = self.env.reach.snapshot();
        snap.report.external_ipv6.or_else(|| {
            snap.report.local_addresses.iter().find_map(|a| match a {
                std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xe000) == 0x2000 => Some(*v6),
                _ => None,
            })
        })
    }

    /// Tells the core what to announce about us: our addresses in both families and, when
    /// the gateway forwards a different external port, that port.
    pub(super) fn refresh_own_addresses(&mut self) {
        let snap = self.env.reach.snapshot();
        let mapped = snap
            .report
            .mappings
            .iter()
            .find(|m| m.transport == crate::nat::Transport::Tcp)
            .map(|m| m.external.port());
        self.core
            .set_listen_port(Some(mapped.unwrap_or(self.env.port)));
        self.core
            .set_own_addresses(snap.report.external_ipv4, self.own_v6());
        let reached = snap.incoming_tcp + snap.incoming_utp > 0;
        self.core.set_anchors(if reached {
            0
        } else {
            crate::torrent::core::ANCHORS
        });
    }

    /// Our own listen address as trackers echo it back to us.
    pub(super) fn is_self(&self, a: &SocketAddr) -> bool {
        a.port() == self.env.port && (a.ip().is_loopback() || a.ip().is_unspecified())
    }
}
