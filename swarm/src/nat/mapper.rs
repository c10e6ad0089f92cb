//! The port-mapping task: asks the gateway to forward our port (TCP and UDP) by PCP, NAT-PMP
//! or UPnP-IGD, preferred in that order (all three are probed at once first, see
//! `Worker::probe`), keeps the mappings alive, re-creates them when the gateway
//! forgets them, and removes them on shutdown. State changes are published on a watch channel
//! that the session and `burrow nat-check` read.
//!
//! Renewal happens at half the granted lifetime (RFC 6886 §3.7, RFC 6887 §11.2.1). A renewal
//! is the same request again, so a gateway that restarted and lost its table gets the mapping
//! back at the next renewal; the PCP / NAT-PMP epoch (RFC 6887 §8.5) tells us it happened.
//! A renewal nobody answers sends the mapper back to probing all protocols.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::epoch::{renew_after, EpochTracker};
use super::udp_client::{GatewaySocket, Retry};
use super::upnp::{self, UpnpGateway};
use super::{gateway, natpmp, pcp, MapError, MappingProtocol, Transport};

/// The lease requested unless configured otherwise: two hours, renewed every hour.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(7200);

/// What to map and how persistently.
#[derive(Debug, Clone)]
pub struct MapperConfig {
    /// The local port to map (TCP and UDP share it); the same external port is requested.
    pub port: u16,
    /// Transports to map.
    pub transports: Vec<Transport>,
    /// Protocols to try, in order.
    pub protocols: Vec<MappingProtocol>,
    /// Lease to request.
    pub lifetime: Duration,
    /// The gateway to ask; `None` reads the default route.
    pub gateway: Option<Ipv4Addr>,
    /// Retransmissions for PCP and NAT-PMP.
    pub retry: Retry,
    /// How long to wait for an SSDP answer.
    pub upnp_search: Duration,
    /// Pause before probing again after every protocol failed.
    pub retry_after_failure: Duration,
    /// Description shown in the router's UPnP table.
    pub description: String,
}

impl MapperConfig {
    /// TCP and UDP on `port`, all protocols, a two-hour lease, the default gateway.
    pub fn new(port: u16) -> Self {
        MapperConfig {
            port,
            transports: vec![Transport::Tcp, Transport::Udp],
            protocols: MappingProtocol::ORDER.to_vec(),
            lifetime: DEFAULT_LEASE,
            gateway: None,
            retry: Retry::default(),
            upnp_search: Duration::from_secs(3),
            retry_after_failure: Duration::from_secs(60),
            description: format!("burrow {port}"),
        }
    }
}

/// One active port mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mapping {
    /// TCP or UDP.
    pub transport: Transport,
    /// The protocol that made it.
    pub protocol: MappingProtocol,
    /// Where the gateway forwards to (our address and port).
    pub internal: SocketAddrV4,
    /// The address and port the outside can reach us on.
    pub external: SocketAddr,
    /// Lease granted, in seconds (0: permanent).
    pub lease_secs: u32,
    /// When the lease ends (`None` for permanent).
    #[serde(skip)]
    pub expires: Option<Instant>,
}

/// Whether a protocol answered when last tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtocolStatus {
    /// The protocol.
    pub protocol: MappingProtocol,
    /// The gateway answered (even with an error).
    pub answered: bool,
    /// Why it did not give us a mapping, if it did not.
    pub error: Option<String>,
}

/// Everything the mapper knows, published after each change.
#[derive(Debug, Clone, Default)]
pub struct MapperState {
    /// The gateway being asked.
    pub gateway: Option<Ipv4Addr>,
    /// Our address toward the gateway.
    pub local: Option<Ipv4Addr>,
    /// The protocol currently holding our mappings.
    pub active: Option<MappingProtocol>,
    /// The gateway's external address, as it reported it.
    pub external_ip: Option<IpAddr>,
    /// Current mappings (empty when none).
    pub mappings: Vec<Mapping>,
    /// Outcome of the last try of each protocol.
    pub probes: Vec<ProtocolStatus>,
    /// The gateway answered but said it has no usable external address of its own: it sits
    /// behind another NAT (double NAT).
    pub gateway_lacks_external_address: bool,
    /// Times the gateway was seen to lose its state (epoch reset).
    pub gateway_restarts: u32,
    /// Bumped whenever the mappings are created anew (first time, after a loss, new port).
    pub generation: u64,
    /// The last failure, if the mapper is currently without mappings.
    pub error: Option<String>,
    /// The mapper has shut down (mappings removed).
    pub stopped: bool,
}

/// Handle to the running port-mapping task. Dropping it aborts the task without removing
/// the mappings (they lapse with their lease); call [`PortMapper::shutdown`] to remove them.
pub struct PortMapper {
    shutdown: Option<oneshot::Sender<()>>,
    state: watch::Receiver<MapperState>,
    task: Option<JoinHandle<()>>,
}

impl PortMapper {
    /// Starts the task on the current tokio runtime.
    pub fn spawn(config: MapperConfig) -> PortMapper {
        let (tx, rx) = watch::channel(MapperState::default());
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(config, tx, stop_rx));
        PortMapper {
            shutdown: Some(stop_tx),
            state: rx,
            task: Some(task),
        }
    }

    /// A receiver that sees every published state.
    pub fn subscribe(&self) -> watch::Receiver<MapperState> {
        self.state.clone()
    }

    /// The latest state.
    pub fn state(&self) -> MapperState {
        self.state.borrow().clone()
    }

    /// Removes the mappings from the gateway, stops the task and returns the final state.
    pub async fn shutdown(mut self) -> MapperState {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.state.borrow().clone()
    }
}

impl Drop for PortMapper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The protocol session holding our mappings.
enum Active {
    Pcp {
        socket: GatewaySocket,
        nonces: Vec<(Transport, pcp::Nonce)>,
    },
    NatPmp {
        socket: GatewaySocket,
    },
    Upnp {
        gateway: UpnpGateway,
    },
}

impl Active {
    fn protocol(&self) -> MappingProtocol {
        match self {
            Active::Pcp { .. } => MappingProtocol::Pcp,
            Active::NatPmp { .. } => MappingProtocol::NatPmp,
            Active::Upnp { .. } => MappingProtocol::Upnp,
        }
    }
}

/// The task's working state.
/// How long a preferred mapping protocol may stay silent after a less preferred one answered.
pub const PROBE_GRACE: Duration = Duration::from_secs(1);

/// What probing found out about one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heard {
    /// The gateway replied (possibly with an error: mapping will tell).
    Answered,
    /// No reply within the retry budget, or none soon after another protocol replied.
    Silent,
    /// Not known yet (or not needed: a preferred protocol answered).
    Pending,
    /// The question could not be asked (a socket error): the mapping attempt will say why.
    Unknown,
}

/// One protocol's probe result.
enum Answer {
    Heard,
    Silent,
    Failed,
    /// The SSDP search's result, kept so that mapping need not search again.
    Upnp(Result<UpnpGateway, MapError>),
}

/// Asks the gateway one question in `protocol` that maps nothing. Any reply from port 5351
/// counts, even an error or a NAT-PMP server's "unsupported version" to PCP.
async fn ask(
    protocol: MappingProtocol,
    gw: Ipv4Addr,
    local: Ipv4Addr,
    retry: Retry,
    search: Duration,
) -> Answer {
    let replied = |b: &[u8]| (b.len() >= 2).then_some(());
    let heard = match protocol {
        MappingProtocol::Upnp => return Answer::Upnp(upnp::discover(local, search).await),
        MappingProtocol::Pcp => match GatewaySocket::connect(gw, pcp::SERVER_PORT).await {
            Ok(s) => match s.local_ip() {
                Ok(ip) => {
                    s.exchange(&pcp::encode_announce(IpAddr::V4(ip)), retry, replied)
                        .await
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
        MappingProtocol::NatPmp => match GatewaySocket::connect(gw, natpmp::SERVER_PORT).await {
            Ok(s) => {
                s.exchange(&natpmp::encode_external_address(), retry, replied)
                    .await
            }
            Err(e) => Err(e),
        },
    };
    match heard {
        Ok(Some(())) => Answer::Heard,
        Err(_) => Answer::Failed,
        Ok(None) => Answer::Silent,
    }
}

struct Worker {
    config: MapperConfig,
    tx: watch::Sender<MapperState>,
    epoch: EpochTracker,
    /// What the last probe round's SSDP search found, for `open` to use.
    upnp_found: Option<Result<UpnpGateway, MapError>>,
}

async fn run(
    config: MapperConfig,
    tx: watch::Sender<MapperState>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut w = Worker {
        config,
        tx,
        epoch: EpochTracker::new(),
        upnp_found: None,
    };
    loop {
        let established = tokio::select! {
            _ = &mut stop => return w.finish(None).await,
            r = w.establish() => r,
        };
        let Some(mut active) = established else {
            tokio::select! {
                _ = &mut stop => return w.finish(None).await,
                _ = tokio::time::sleep(w.config.retry_after_failure) => continue,
            }
        };
        // Keep the mappings alive until a renewal fails or we are told to stop.
        loop {
            let at = w.next_renewal();
            tokio::select! {
                _ = &mut stop => return w.finish(Some(active)).await,
                _ = tokio::time::sleep_until(at) => {}
            }
            if let Err(e) = w.map_all(&mut active).await {
                tracing::info!(error = %e, "port mapping renewal failed; probing again");
                w.tx.send_modify(|s| {
                    s.mappings.clear();
                    s.active = None;
                    s.error = Some(e.to_string());
                });
                break;
            }
        }
    }
}

impl Worker {
    /// Finds the gateway and tries each protocol until one maps every transport.
    async fn establish(&mut self) -> Option<Active> {
        let (gw, local) = match self.locate() {
            Ok(v) => v,
            Err(e) => {
                self.tx.send_modify(|s| s.error = Some(e.to_string()));
                return None;
            }
        };
        if self.tx.borrow().gateway != Some(gw) {
            self.epoch.reset();
        }
        self.tx.send_modify(|s| {
            s.gateway = Some(gw);
            s.local = Some(local);
        });
        let mut probes = Vec::new();
        let mut last_error = None;
        let heard = self.probe(gw, local).await;
        for (protocol, heard) in heard {
            if heard == Heard::Silent {
                tracing::debug!(%protocol, "port mapping protocol silent");
                let e = MapError::NoAnswer(protocol);
                probes.push(ProtocolStatus {
                    protocol,
                    answered: false,
                    error: Some(e.to_string()),
                });
                last_error = Some(e.to_string());
                continue;
            }
            let attempt = match self.open(protocol, gw, local).await {
                Ok(mut active) => match self.map_all(&mut active).await {
                    Ok(()) => Ok(active),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match attempt {
                Ok(active) => {
                    probes.push(ProtocolStatus {
                        protocol,
                        answered: true,
                        error: None,
                    });
                    self.tx.send_modify(|s| {
                        s.gateway_lacks_external_address = false;
                        s.probes = probes;
                        s.error = None;
                    });
                    return Some(active);
                }
                Err(e) => {
                    let answered = !matches!(e, MapError::NoAnswer(_));
                    if matches!(e, MapError::NoExternalAddress(_)) {
                        self.tx
                            .send_modify(|s| s.gateway_lacks_external_address = true);
                    }
                    tracing::debug!(%protocol, error = %e, "port mapping protocol failed");
                    probes.push(ProtocolStatus {
                        protocol,
                        answered,
                        error: Some(e.to_string()),
                    });
                    last_error = Some(e.to_string());
                }
            }
        }
        self.tx.send_modify(|s| {
            s.probes = probes;
            s.active = None;
            s.mappings.clear();
            s.error = last_error;
        });
        None
    }

    /// Asks every configured protocol at once something that maps nothing (PCP ANNOUNCE,
    /// NAT-PMP's external address, an SSDP search), so that a silent gateway costs one
    /// retry budget rather than one per protocol. A protocol still silent [`PROBE_GRACE`]
    /// after a less preferred one was heard is given up: PCP and NAT-PMP share the gateway's
    /// port 5351, and a gateway that answers one way answers at once. Returns the protocols
    /// in order of preference with what was heard.
    async fn probe(&mut self, gw: Ipv4Addr, local: Ipv4Addr) -> Vec<(MappingProtocol, Heard)> {
        let protocols = self.config.protocols.clone();
        let (retry, search) = (self.config.retry, self.config.upnp_search);
        self.upnp_found = None;
        let mut asks = tokio::task::JoinSet::new();
        for &protocol in &protocols {
            asks.spawn(async move { (protocol, ask(protocol, gw, local, retry, search).await) });
        }
        let mut heard: Vec<(MappingProtocol, Heard)> =
            protocols.iter().map(|p| (*p, Heard::Pending)).collect();
        let mut first_heard: Option<Instant> = None;
        loop {
            // Done once every protocol preferred to the best one heard has an outcome.
            let best = heard
                .iter()
                .position(|(_, h)| *h == Heard::Answered)
                .unwrap_or(heard.len());
            if heard[..best].iter().all(|(_, h)| *h != Heard::Pending) {
                break;
            }
            let next = match first_heard {
                Some(t) => match tokio::time::timeout_at(t + PROBE_GRACE, asks.join_next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        // Too late: the preferred protocols still pending are silent.
                        for (_, h) in &mut heard[..best] {
                            if *h == Heard::Pending {
                                *h = Heard::Silent;
                            }
                        }
                        break;
                    }
                },
                None => asks.join_next().await,
            };
            let Some(Ok((protocol, answer))) = next else {
                break;
            };
            let outcome = match answer {
                Answer::Heard => Heard::Answered,
                Answer::Silent => Heard::Silent,
                Answer::Failed => Heard::Unknown,
                Answer::Upnp(found) => {
                    let silent = matches!(found, Err(MapError::NoAnswer(_)));
                    self.upnp_found = Some(found);
                    if silent {
                        Heard::Silent
                    } else {
                        Heard::Answered
                    }
                }
            };
            if outcome == Heard::Answered {
                first_heard.get_or_insert_with(Instant::now);
            }
            if let Some(slot) = heard.iter_mut().find(|(p, _)| *p == protocol) {
                slot.1 = outcome;
            }
        }
        asks.abort_all();
        heard
    }

    fn locate(&self) -> Result<(Ipv4Addr, Ipv4Addr), MapError> {
        let gw = match self.config.gateway {
            Some(gw) => gw,
            None => gateway::default_gateway()?.ok_or(MapError::NoGateway)?,
        };
        Ok((gw, gateway::local_address_toward(gw)?))
    }

    async fn open(
        &mut self,
        protocol: MappingProtocol,
        gw: Ipv4Addr,
        local: Ipv4Addr,
    ) -> Result<Active, MapError> {
        Ok(match protocol {
            MappingProtocol::Pcp => {
                let socket = GatewaySocket::connect(gw, pcp::SERVER_PORT).await?;
                let nonces = self
                    .config
                    .transports
                    .iter()
                    .map(|t| (*t, rand::random()))
                    .collect();
                Active::Pcp { socket, nonces }
            }
            MappingProtocol::NatPmp => Active::NatPmp {
                socket: GatewaySocket::connect(gw, natpmp::SERVER_PORT).await?,
            },
            MappingProtocol::Upnp => Active::Upnp {
                gateway: match self.upnp_found.take() {
                    Some(found) => found?,
                    None => upnp::discover(local, self.config.upnp_search).await?,
                },
            },
        })
    }

    /// Creates or renews every configured mapping through `active`, then publishes the result.
    async fn map_all(&mut self, active: &mut Active) -> Result<(), MapError> {
        let local = self.tx.borrow().local.ok_or(MapError::NoGateway)?;
        let internal = SocketAddrV4::new(local, self.config.port);
        let lifetime = u32::try_from(self.config.lifetime.as_secs())
            .unwrap_or(u32::MAX)
            .max(1);
        let mut mappings = Vec::new();
        let mut external_ip = None;
        let mut restarted = false;
        if let Active::NatPmp { socket } = active {
            let req = natpmp::encode_external_address();
            let resp = socket
                .exchange(&req, self.config.retry, |b| {
                    natpmp::decode_external_address(b).ok()
                })
                .await?
                .ok_or(MapError::NoAnswer(MappingProtocol::NatPmp))?;
            // §3.5: "network failure" here means the gateway has no external address itself.
            if resp.result == natpmp::ResultCode::NetworkFailure {
                return Err(MapError::NoExternalAddress(MappingProtocol::NatPmp));
            }
            if resp.result != natpmp::ResultCode::Success {
                return Err(refused(MappingProtocol::NatPmp, resp.result));
            }
            restarted |= self.epoch.observe(resp.epoch, Instant::now().into_std());
            external_ip = Some(IpAddr::V4(resp.ip));
        }
        if let Active::Upnp { gateway } = active {
            external_ip = Some(gateway.external_ip().await?);
        }
        for &transport in &self.config.transports {
            let previous = self.previous_external_port(transport);
            let (external, lease, epoch) = self
                .map_one(active, transport, internal, previous, lifetime)
                .await?;
            if let Some(e) = epoch {
                restarted |= self.epoch.observe(e, Instant::now().into_std());
            }
            if external.ip().is_unspecified() {
                // NAT-PMP map responses carry no address; use the one it reported.
                let ip = external_ip.unwrap_or(external.ip());
                mappings.push((transport, SocketAddr::new(ip, external.port()), lease));
            } else {
                external_ip.get_or_insert(external.ip());
                mappings.push((transport, external, lease));
            }
        }
        let now = Instant::now();
        let protocol = active.protocol();
        let mappings: Vec<Mapping> = mappings
            .into_iter()
            .map(|(transport, external, lease_secs)| Mapping {
                transport,
                protocol,
                internal,
                external,
                lease_secs,
                expires: (lease_secs > 0).then(|| now + Duration::from_secs(lease_secs.into())),
            })
            .collect();
        if restarted {
            tracing::info!(%protocol, "gateway lost its mappings (epoch reset); they were made again");
        }
        self.tx.send_modify(|s| {
            let same = s.active == Some(protocol)
                && s.mappings.len() == mappings.len()
                && s.mappings
                    .iter()
                    .zip(&mappings)
                    .all(|(a, b)| a.external == b.external);
            if !same || restarted {
                s.generation += 1;
            }
            s.gateway_restarts += u32::from(restarted);
            s.active = Some(protocol);
            s.external_ip = external_ip;
            s.mappings = mappings;
            s.error = None;
        });
        Ok(())
    }

    fn previous_external_port(&self, transport: Transport) -> u16 {
        let state = self.tx.borrow();
        state
            .mappings
            .iter()
            .find(|m| m.transport == transport)
            .map_or(self.config.port, |m| m.external.port())
    }

    /// One MAP (or delete, with `lifetime` 0) through `active`: the external address, the
    /// granted lease and the server epoch if the protocol has one.
    async fn map_one(
        &self,
        active: &Active,
        transport: Transport,
        internal: SocketAddrV4,
        external_port: u16,
        lifetime: u32,
    ) -> Result<(SocketAddr, u32, Option<u32>), MapError> {
        let retry = self.config.retry;
        match active {
            Active::Pcp { socket, nonces } => {
                let nonce = nonces
                    .iter()
                    .find(|(t, _)| *t == transport)
                    .map(|(_, n)| *n)
                    .unwrap_or_default();
                let req = pcp::MapRequest {
                    nonce,
                    transport,
                    client: IpAddr::V4(socket.local_ip()?),
                    internal_port: internal.port(),
                    suggested_external_port: external_port,
                    lifetime,
                };
                let bytes = req.encode();
                let resp = socket
                    .exchange(&bytes, retry, |b| match pcp::decode_map(b) {
                        Ok(r) if r.answers(&req) || r.header.result != pcp::ResultCode::Success => {
                            Some(Ok(r))
                        }
                        Ok(_) => None,
                        // A NAT-PMP-only server answers "unsupported version" in its format.
                        Err(pcp::DecodeError::Version(v)) => Some(Err(v)),
                        Err(_) => None,
                    })
                    .await?
                    .ok_or(MapError::NoAnswer(MappingProtocol::Pcp))?;
                let resp = resp.map_err(|v| MapError::Refused {
                    protocol: MappingProtocol::Pcp,
                    reason: format!("server speaks version {v}"),
                })?;
                if resp.header.result != pcp::ResultCode::Success {
                    return Err(refused(MappingProtocol::Pcp, resp.header.result));
                }
                let external = SocketAddr::new(resp.external_ip, resp.external_port);
                Ok((external, resp.header.lifetime, Some(resp.header.epoch)))
            }
            Active::NatPmp { socket } => {
                let req = natpmp::MapRequest {
                    transport,
                    internal_port: internal.port(),
                    suggested_external_port: if lifetime == 0 { 0 } else { external_port },
                    lifetime,
                };
                let resp = socket
                    .exchange(&req.encode(), retry, |b| {
                        natpmp::decode_map(b, transport).ok().filter(|r| {
                            r.internal_port == internal.port()
                                || r.result != natpmp::ResultCode::Success
                        })
                    })
                    .await?
                    .ok_or(MapError::NoAnswer(MappingProtocol::NatPmp))?;
                if resp.result != natpmp::ResultCode::Success {
                    return Err(refused(MappingProtocol::NatPmp, resp.result));
                }
                let external = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), resp.external_port);
                Ok((external, resp.lifetime, Some(resp.epoch)))
            }
            Active::Upnp { gateway } => {
                if lifetime == 0 {
                    gateway.unmap(transport, external_port).await?;
                    return Ok((
                        SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), external_port),
                        0,
                        None,
                    ));
                }
                let lease = gateway
                    .map(
                        transport,
                        internal,
                        external_port,
                        lifetime,
                        &self.config.description,
                    )
                    .await?;
                let external = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), lease.external_port);
                Ok((external, lease.lease, None))
            }
        }
    }

    /// When to renew: half of the shortest lease (permanent UPnP mappings are re-added at half
    /// the requested lifetime, which is how a restarted router gets them back).
    fn next_renewal(&self) -> Instant {
        let state = self.tx.borrow();
        let shortest = state
            .mappings
            .iter()
            .map(|m| {
                if m.lease_secs == 0 {
                    self.config.lifetime
                } else {
                    Duration::from_secs(m.lease_secs.into())
                }
            })
            .min()
            .unwrap_or(self.config.lifetime);
        Instant::now() + renew_after(shortest)
    }

    /// Removes every mapping (best effort) and publishes the final state.
    async fn finish(mut self, active: Option<Active>) {
        if let Some(active) = active {
            let mappings = self.tx.borrow().mappings.clone();
            for m in mappings {
                if let Err(e) = self
                    .map_one(&active, m.transport, m.internal, m.external.port(), 0)
                    .await
                {
                    tracing::info!(transport = %m.transport, error = %e, "could not remove port mapping");
                }
            }
        }
        self.epoch.reset();
        self.tx.send_modify(|s| {
            s.mappings.clear();
            s.active = None;
            s.stopped = true;
        });
    }
}

fn refused(protocol: MappingProtocol, code: impl std::fmt::Debug) -> MapError {
    MapError::Refused {
        protocol,
        reason: format!("{code:?}"),
    }
}
