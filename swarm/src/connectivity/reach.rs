//! What the session knows about its own reachability, gathered in one task: the gateway's
//! port mappings, our external address and NAT behaviour as voted by DHT nodes (`ip`) and
//! peers (BEP 10 `yourip`), and evidence that the outside really reaches us — incoming peer
//! connections and unsolicited DHT queries from public addresses. Published as a
//! [`Report`] for the progress line, `burrow nat-check` and the daemon.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::Route;
use crate::nat::voter::is_public;
use crate::nat::{AddressVoter, MapperState, Report, Vote, VoteSource};

/// Something the session saw that bears on reachability.
#[derive(Debug, Clone)]
pub enum ReachEvent {
    /// A DHT node told us the address it sees for our UDP socket.
    DhtVote {
        /// The address reported.
        reported: SocketAddr,
        /// The node that reported it.
        by: SocketAddr,
    },
    /// A peer told us (BEP 10 `yourip`) the address it sees us at.
    YourIp {
        /// The address reported.
        reported: IpAddr,
        /// The peer.
        by: IpAddr,
    },
    /// A peer connected to us and completed a handshake.
    Incoming {
        /// Its address.
        from: SocketAddr,
        /// TCP or µTP.
        route: Route,
    },
    /// A DHT query arrived from a node we never sent anything to.
    UnsolicitedUdp {
        /// The node.
        from: SocketAddr,
    },
}

/// The published view.
#[derive(Debug, Clone)]
pub struct ReachSnapshot {
    /// The report, inbound checks filled from what was observed.
    pub report: Report,
    /// Incoming TCP connections from public addresses.
    pub incoming_tcp: u64,
    /// Incoming µTP connections from public addresses.
    pub incoming_utp: u64,
    /// Unsolicited DHT queries from public addresses.
    pub unsolicited_udp: u64,
}

/// Handle to the reachability task.
#[derive(Clone)]
pub struct Reachability {
    tx: mpsc::UnboundedSender<ReachEvent>,
    snapshot: watch::Receiver<ReachSnapshot>,
}

impl Reachability {
    /// Starts the task for a session on `port`, fed by `mapper` (if port mapping is on).
    pub fn spawn(port: u16, mapper: Option<watch::Receiver<MapperState>>) -> Reachability {
        let (tx, rx) = mpsc::unbounded_channel();
        let locals = crate::nat::ifaddrs::local_addresses();
        let voter = AddressVoter::new(port, locals.clone());
        let first = ReachSnapshot {
            report: Report::new(port, locals.clone(), &MapperState::default(), &voter),
            incoming_tcp: 0,
            incoming_utp: 0,
            unsolicited_udp: 0,
        };
        let (snap_tx, snap_rx) = watch::channel(first.clone());
        tokio::spawn(run(port, locals, voter, mapper, rx, snap_tx, first));
        Reachability {
            tx,
            snapshot: snap_rx,
        }
    }

    /// Reports an observation.
    pub fn observe(&self, e: ReachEvent) {
        let _ = self.tx.send(e);
    }

    /// A sender for observations (for the DHT service).
    pub fn sender(&self) -> mpsc::UnboundedSender<ReachEvent> {
        self.tx.clone()
    }

    /// The latest view.
    pub fn snapshot(&self) -> ReachSnapshot {
        self.snapshot.borrow().clone()
    }

    /// A receiver that wakes on each change.
    pub fn watch(&self) -> watch::Receiver<ReachSnapshot> {
        self.snapshot.clone()
    }
}

async fn run(
    port: u16,
    locals: Vec<IpAddr>,
    mut voter: AddressVoter,
    mut mapper: Option<watch::Receiver<MapperState>>,
    mut rx: mpsc::UnboundedReceiver<ReachEvent>,
    out: watch::Sender<ReachSnapshot>,
    mut snap: ReachSnapshot,
) {
    let mut mapper_state = MapperState::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut dirty = false;
    loop {
        tokio::select! {
            e = rx.recv() => {
                let Some(e) = e else { return };
                let now = Instant::now();
                match e {
                    ReachEvent::DhtVote { reported, by } => voter.add(
                        Vote { source: VoteSource::Dht, reporter: by.ip(), address: reported.ip(), udp_port: Some(reported.port()) },
                        now,
                    ),
                    ReachEvent::YourIp { reported, by } => {
                        voter.add(Vote { source: VoteSource::PeerYourIp, reporter: by, address: reported, udp_port: None }, now)
                    }
                    // A holepunched connection says only that the punch worked.
                    ReachEvent::Incoming { from, route } if is_public(from.ip()) => match route {
                        Route::IncomingUtp => snap.incoming_utp += 1,
                        Route::IncomingTcp => snap.incoming_tcp += 1,
                        _ => {}
                    },
                    ReachEvent::UnsolicitedUdp { from } if is_public(from.ip()) => snap.unsolicited_udp += 1,
                    _ => {}
                }
                dirty = true;
            }
            changed = async {
                match &mut mapper {
                    Some(m) => m.changed().await.map(|_| m.borrow().clone()),
                    None => std::future::pending().await,
                }
            } => {
                match changed {
                    Ok(state) => {
                        if let Some(ext) = state.external_ip {
                            if let Some(p) = state.active {
                                let gw = state.gateway.map_or(ext, IpAddr::V4);
                                voter.add(Vote { source: VoteSource::Gateway(p), reporter: gw, address: ext, udp_port: None }, Instant::now());
                            }
                        }
                        mapper_state = state;
                    }
                    Err(_) => mapper = None,
                }
                dirty = true;
            }
            _ = tick.tick() => {
                if dirty {
                    dirty = false;
                    let mut report = Report::new(port, locals.clone(), &mapper_state, &voter);
                    report.inbound_tcp = (snap.incoming_tcp > 0).then_some(true);
                    report.inbound_udp = (snap.incoming_utp + snap.unsolicited_udp > 0).then_some(true);
                    report.refresh_advice();
                    snap.report = report;
                    let _ = out.send(snap.clone());
                }
            }
        }
    }
}
