//! The PortMapper against a scripted PCP / NAT-PMP gateway on a loopback address: mapping,
//! renewal, recovery from a gateway that lost its state, fallback from PCP to NAT-PMP, and
//! removal on shutdown. Runs without root; all traffic stays on 127.0.0.0/8. UPnP is never
//! tried here (its discovery is multicast).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burrow_swarm::nat::{MapperConfig, MapperState, MappingProtocol, PortMapper, Retry, Transport};
use tokio::net::UdpSocket;
use tokio::time::Instant;

const PORT: u16 = 51413;
const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(57, 66, 2, 1);

/// One request the fake gateway received: (version, opcode, protocol, internal port, lifetime).
type Seen = (u8, u8, Transport, u16, u32);

#[derive(Clone)]
struct Gateway {
    inner: Arc<Mutex<GatewayState>>,
}

struct GatewayState {
    started: Instant,
    port_offset: u16,
    speaks_pcp: bool,
    /// Drop PCP requests without a word (as a NAT-PMP-only miniupnpd does).
    ignores_pcp: bool,
    seen: Vec<Seen>,
}

impl Gateway {
    /// Serves on `addr:5351`, granting at most `max_lifetime` seconds.
    async fn start(addr: Ipv4Addr, speaks_pcp: bool, max_lifetime: u32) -> Gateway {
        let socket = UdpSocket::bind((addr, 5351))
            .await
            .expect("bind fake gateway");
        let gw = Gateway {
            inner: Arc::new(Mutex::new(GatewayState {
                started: Instant::now(),
                port_offset: 1000,
                speaks_pcp,
                ignores_pcp: false,
                seen: Vec::new(),
            })),
        };
        let state = gw.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1100];
            loop {
                let (n, from) = socket.recv_from(&mut buf).await.unwrap();
                if let Some(reply) = state.answer(&buf[..n], max_lifetime) {
                    socket.send_to(&reply, from).await.unwrap();
                }
            }
        });
        gw
    }

    /// Forgets everything, like a rebooted router, and hands out other ports from now on.
    fn reboot(&self, new_offset: u16) {
        let mut s = self.inner.lock().unwrap();
        s.started = Instant::now();
        s.port_offset = new_offset;
    }

    fn ignore_pcp(&self) {
        self.inner.lock().unwrap().ignores_pcp = true;
    }

    fn seen(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.clone()
    }

    fn answer(&self, req: &[u8], max_lifetime: u32) -> Option<Vec<u8>> {
        let mut s = self.inner.lock().unwrap();
        let epoch = s.started.elapsed().as_secs() as u32;
        match req.first()? {
            2 if s.ignores_pcp => None,
            2 if s.speaks_pcp && req.len() >= 60 && req[1] == 1 => {
                let transport = if req[36] == 6 {
                    Transport::Tcp
                } else {
                    Transport::Udp
                };
                let internal = u16::from_be_bytes([req[40], req[41]]);
                let lifetime = u32::from_be_bytes(req[4..8].try_into().unwrap()).min(max_lifetime);
                s.seen.push((2, 1, transport, internal, lifetime));
                let mut r = vec![2, 0x81, 0, 0];
                r.extend_from_slice(&lifetime.to_be_bytes());
                r.extend_from_slice(&epoch.to_be_bytes());
                r.extend_from_slice(&[0; 12]);
                r.extend_from_slice(&req[24..36]); // nonce
                r.extend_from_slice(&[req[36], 0, 0, 0]);
                r.extend_from_slice(&internal.to_be_bytes());
                r.extend_from_slice(&(internal + s.port_offset).to_be_bytes());
                r.extend_from_slice(&EXTERNAL_IP.to_ipv6_mapped().octets());
                Some(r)
            }
            // A NAT-PMP-only gateway answers PCP with "unsupported version" (RFC 6887 §9).
            2 => Some(vec![0, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            0 if req.len() == 2 => {
                let mut r = vec![0, 0x80, 0, 0];
                r.extend_from_slice(&epoch.to_be_bytes());
                r.extend_from_slice(&EXTERNAL_IP.octets());
                Some(r)
            }
            0 if req.len() == 12 && (req[1] == 1 || req[1] == 2) => {
                let transport = if req[1] == 2 {
                    Transport::Tcp
                } else {
                    Transport::Udp
                };
                let internal = u16::from_be_bytes([req[4], req[5]]);
                let lifetime = u32::from_be_bytes(req[8..12].try_into().unwrap()).min(max_lifetime);
                s.seen.push((0, req[1], transport, internal, lifetime));
                let mut r = vec![0, 0x80 | req[1], 0, 0];
                r.extend_from_slice(&epoch.to_be_bytes());
                r.extend_from_slice(&internal.to_be_bytes());
                let external = if lifetime == 0 {
                    0
                } else {
                    internal + s.port_offset
                };
                r.extend_from_slice(&external.to_be_bytes());
                r.extend_from_slice(&lifetime.to_be_bytes());
                Some(r)
            }
            _ => None,
        }
    }
}

fn config(gateway: Ipv4Addr, lifetime_secs: u64) -> MapperConfig {
    let mut cfg = MapperConfig::new(PORT);
    cfg.gateway = Some(gateway);
    cfg.protocols = vec![MappingProtocol::Pcp, MappingProtocol::NatPmp];
    cfg.lifetime = Duration::from_secs(lifetime_secs);
    cfg.retry = Retry {
        initial: Duration::from_millis(100),
        attempts: 2,
    };
    cfg.retry_after_failure = Duration::from_millis(500);
    cfg
}

async fn wait_for(
    mapper: &PortMapper,
    what: &str,
    limit: Duration,
    cond: impl Fn(&MapperState) -> bool,
) -> MapperState {
    let mut rx = mapper.subscribe();
    let result = tokio::time::timeout(limit, async {
        loop {
            let s = rx.borrow_and_update().clone();
            if cond(&s) {
                return s;
            }
            rx.changed().await.unwrap();
        }
    })
    .await;
    result.unwrap_or_else(|_| panic!("timed out waiting for {what}: {:#?}", mapper.state()))
}

fn ports(s: &MapperState) -> Vec<(Transport, u16)> {
    s.mappings
        .iter()
        .map(|m| (m.transport, m.external.port()))
        .collect()
}

#[tokio::test]
async fn pcp_maps_renews_recovers_and_removes() {
    let addr = Ipv4Addr::new(127, 77, 1, 1);
    let gw = Gateway::start(addr, true, 2).await;
    let mapper = PortMapper::spawn(config(addr, 3600));
    let s = wait_for(&mapper, "mappings", Duration::from_secs(5), |s| {
        s.mappings.len() == 2
    })
    .await;
    assert_eq!(s.active, Some(MappingProtocol::Pcp));
    assert_eq!(s.gateway, Some(addr));
    assert_eq!(s.external_ip, Some(IpAddr::V4(EXTERNAL_IP)));
    assert_eq!(
        ports(&s),
        vec![(Transport::Tcp, PORT + 1000), (Transport::Udp, PORT + 1000)]
    );
    assert!(
        s.mappings.iter().all(|m| m.lease_secs == 2),
        "granted lifetime is what counts"
    );
    assert_eq!(s.generation, 1);

    // Renewal at half the 2 s lease: more MAP requests with the requested lifetime, same state.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let renewals = gw.seen().iter().filter(|r| r.1 == 1 && r.4 == 2).count();
    assert!(
        renewals >= 4,
        "expected renewals, gateway saw {:?}",
        gw.seen()
    );
    assert_eq!(
        mapper.state().generation,
        1,
        "renewal with the same result is not a new mapping"
    );

    // The gateway reboots and hands out other ports: the epoch tells, the mapping follows.
    gw.reboot(2000);
    let s = wait_for(
        &mapper,
        "new mappings after reboot",
        Duration::from_secs(4),
        |s| s.gateway_restarts >= 1 && ports(s).iter().all(|(_, p)| *p == PORT + 2000),
    )
    .await;
    assert!(s.generation >= 2);

    let last = mapper.shutdown().await;
    assert!(last.stopped && last.mappings.is_empty());
    let deletes: Vec<Transport> = gw.seen().iter().filter(|r| r.4 == 0).map(|r| r.2).collect();
    assert_eq!(
        deletes,
        vec![Transport::Tcp, Transport::Udp],
        "shutdown deletes both mappings"
    );
}

#[tokio::test]
async fn falls_back_from_pcp_to_natpmp() {
    let addr = Ipv4Addr::new(127, 77, 2, 1);
    let gw = Gateway::start(addr, false, 3600).await;
    let mapper = PortMapper::spawn(config(addr, 120));
    let s = wait_for(&mapper, "mappings", Duration::from_secs(5), |s| {
        s.mappings.len() == 2
    })
    .await;
    assert_eq!(s.active, Some(MappingProtocol::NatPmp));
    assert_eq!(s.probes.len(), 2);
    // PCP counts as answered: the "unsupported version" reply ended it, not a timeout.
    assert!(s.probes[0].answered, "{:?}", s.probes[0]);
    assert!(s.probes[0].error.as_deref().unwrap().contains("version 0"));
    assert_eq!(s.external_ip, Some(IpAddr::V4(EXTERNAL_IP)));
    let external: Vec<SocketAddr> = s.mappings.iter().map(|m| m.external).collect();
    assert_eq!(
        external,
        vec![SocketAddr::from((EXTERNAL_IP, PORT + 1000)); 2]
    );
    mapper.shutdown().await;
    let deletes = gw.seen().iter().filter(|r| r.0 == 0 && r.4 == 0).count();
    assert_eq!(deletes, 2);
}

#[tokio::test]
async fn silent_pcp_is_given_up_soon_after_natpmp_answers() {
    let addr = Ipv4Addr::new(127, 77, 4, 1);
    let gw = Gateway::start(addr, false, 3600).await;
    gw.ignore_pcp();
    let mut cfg = config(addr, 120);
    // Waiting out PCP's whole retry budget would take 15.75 s.
    cfg.retry = Retry {
        initial: Duration::from_millis(250),
        attempts: 6,
    };
    let mapper = PortMapper::spawn(cfg);
    let s = wait_for(&mapper, "mappings", Duration::from_secs(5), |s| {
        s.mappings.len() == 2
    })
    .await;
    assert_eq!(s.active, Some(MappingProtocol::NatPmp));
    assert!(
        !s.probes[0].answered && s.probes[0].protocol == MappingProtocol::Pcp,
        "{:?}",
        s.probes
    );
    mapper.shutdown().await;
}

#[tokio::test]
async fn silent_gateway_is_reported_and_retried() {
    // Nothing listens on this address: every protocol times out, and the mapper keeps trying.
    let addr = Ipv4Addr::new(127, 77, 3, 1);
    let mapper = PortMapper::spawn(config(addr, 120));
    let s = wait_for(&mapper, "a verdict", Duration::from_secs(5), |s| {
        s.probes.len() == 2
    })
    .await;
    assert!(s.mappings.is_empty() && s.active.is_none());
    assert!(s.probes.iter().all(|p| !p.answered), "{:?}", s.probes);
    assert!(s.error.as_deref().unwrap().contains("no answer"));
    // A gateway that appears later is found on the next round.
    let _gw = Gateway::start(addr, true, 3600).await;
    let s = wait_for(&mapper, "late mapping", Duration::from_secs(5), |s| {
        s.mappings.len() == 2
    })
    .await;
    assert_eq!(s.active, Some(MappingProtocol::Pcp));
    mapper.shutdown().await;
}
