//! Port mapping and NAT classification against real Linux NAT and miniupnpd in the netns lab.
//! Needs root; prints `SKIPPED (needs root): ...` and passes without it.

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use burrow_netlab::{parse_echo_reply, Home, HomeSpec, Host, Lab, MappingProtocols, Nat};
use burrow_swarm::nat::{
    AddressVoter, MapperConfig, MapperState, MappingBehaviour, MappingProtocol, PortMapper, Retry,
    Transport, Vote, VoteSource,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{oneshot, watch};

const PORT: u16 = 51413;
const ECHO_PORT: u16 = 7000;

/// A mapper configured for the lab: short timeouts so a silent protocol is skipped quickly.
fn lab_config(lifetime: Duration) -> MapperConfig {
    let mut cfg = MapperConfig::new(PORT);
    cfg.lifetime = lifetime;
    cfg.retry = Retry {
        initial: Duration::from_millis(200),
        attempts: 3,
    };
    cfg.upnp_search = Duration::from_secs(2);
    cfg.retry_after_failure = Duration::from_secs(1);
    cfg
}

/// A PortMapper running inside a LAN host on its own thread.
struct RunningMapper {
    state: watch::Receiver<MapperState>,
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Result<MapperState, burrow_netlab::LabError>>,
}

impl RunningMapper {
    fn start(host: &Host, cfg: MapperConfig) -> RunningMapper {
        let (state_tx, state_rx) = mpsc::channel();
        let (stop, stop_rx) = oneshot::channel();
        let h = host.clone();
        let thread = std::thread::spawn(move || {
            h.block_on(move || async move {
                let mapper = PortMapper::spawn(cfg);
                state_tx.send(mapper.subscribe()).unwrap();
                let _ = stop_rx.await;
                mapper.shutdown().await
            })
        });
        RunningMapper {
            state: state_rx.recv().unwrap(),
            stop,
            thread,
        }
    }

    /// Waits (polling) until `cond` holds for the published state; panics after `limit`.
    fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        cond: impl Fn(&MapperState) -> bool,
    ) -> MapperState {
        let start = Instant::now();
        loop {
            let s = self.state.borrow().clone();
            if cond(&s) {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}; state: {s:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn shutdown(self) -> MapperState {
        self.stop.send(()).unwrap();
        self.thread.join().unwrap().unwrap()
    }
}

/// Starts a TCP echo and a UDP echo on `PORT` in `host` for the lab's lifetime (bound before
/// this returns).
fn serve_on_port(host: &Host) {
    let any = SocketAddr::from(([0, 0, 0, 0], PORT));
    host.serve_tcp_echo(any).unwrap();
    host.serve_udp_echo(any).unwrap();
}

/// From `outside`, tries TCP and UDP to `target`; returns (tcp worked, udp worked). Working
/// means bytes went both ways through the mapping.
fn reach(outside: &Host, target_tcp: SocketAddr, target_udp: SocketAddr) -> (bool, bool) {
    outside
        .block_on(move || async move {
            let tcp = async {
                let mut s = TcpStream::connect(target_tcp).await.ok()?;
                let mut line = [0u8; 64];
                let n = s.read(&mut line).await.ok()?;
                parse_echo_reply(&line[..n])?;
                s.write_all(b"piece").await.ok()?;
                let mut back = [0u8; 5];
                s.read_exact(&mut back).await.ok()?;
                (&back == b"piece").then_some(())
            };
            let tcp_ok = matches!(
                tokio::time::timeout(Duration::from_secs(2), tcp).await,
                Ok(Some(()))
            );
            let socket = UdpSocket::bind("0.0.0.0:0").await.unwrap();
            let mut udp_ok = false;
            for _ in 0..3 {
                socket.send_to(b"ping", target_udp).await.unwrap();
                let mut buf = [0u8; 64];
                if let Ok(Ok((n, from))) =
                    tokio::time::timeout(Duration::from_millis(400), socket.recv_from(&mut buf))
                        .await
                {
                    udp_ok = from == target_udp && parse_echo_reply(&buf[..n]).is_some();
                    break;
                }
            }
            (tcp_ok, udp_ok)
        })
        .unwrap()
}

fn external(state: &MapperState, t: Transport) -> SocketAddr {
    state
        .mappings
        .iter()
        .find(|m| m.transport == t)
        .unwrap()
        .external
}

fn home_with(lab: &mut Lab, nat: Nat, protocols: MappingProtocols) -> Home {
    let mut spec = HomeSpec::new(nat);
    spec.mapping = Some(protocols);
    lab.home("home", spec).unwrap()
}

/// Behind a router offering only `protocols`, the mapper maps TCP and UDP with `expect`,
/// a public host reaches the LAN through it, and after shutdown it cannot any more.
fn maps_reaches_and_unmaps(test: &str, protocols: MappingProtocols, expect: MappingProtocol) {
    let Some(mut lab) = Lab::new_or_skip(test) else {
        return;
    };
    let outside = lab.public_host("out").unwrap();
    let home = home_with(&mut lab, Nat::EndpointIndependent, protocols);
    let lan = &home.hosts[0];
    serve_on_port(lan);
    let wan = SocketAddr::new(home.router.wan_ipv4().into(), PORT);
    assert_eq!(
        reach(&outside, wan, wan),
        (false, false),
        "reachable before any mapping"
    );

    let mapper = RunningMapper::start(lan, lab_config(Duration::from_secs(120)));
    let s = mapper.wait_for("two mappings", Duration::from_secs(30), |s| {
        s.mappings.len() == 2
    });
    assert_eq!(s.active, Some(expect));
    assert_eq!(s.gateway, Some(home.router.lan_ipv4()));
    assert_eq!(s.local, Some(lan.ipv4()));
    assert_eq!(s.external_ip, Some(IpAddr::V4(home.router.wan_ipv4())));
    let tried: Vec<MappingProtocol> = s.probes.iter().map(|p| p.protocol).collect();
    let expected_order: Vec<MappingProtocol> = MappingProtocol::ORDER
        .iter()
        .copied()
        .take_while(|p| *p != expect)
        .chain([expect])
        .collect();
    assert_eq!(
        tried, expected_order,
        "protocols tried in order until one worked"
    );
    for m in &s.mappings {
        assert_eq!(m.protocol, expect);
        assert_eq!(m.internal.ip(), &lan.ipv4());
        assert!(
            m.lease_secs > 0 && m.lease_secs <= 120,
            "lease {}",
            m.lease_secs
        );
    }
    let rules = home.router.forwarding_rules().unwrap();
    assert!(
        rules.contains(&format!("{}:{PORT}", lan.ipv4())),
        "no DNAT rule: {rules}"
    );

    let (tcp, udp) = reach(
        &outside,
        external(&s, Transport::Tcp),
        external(&s, Transport::Udp),
    );
    assert!(
        tcp && udp,
        "through the mapping: tcp {tcp}, udp {udp}\n{}",
        home.router.mapping_log()
    );

    let last = mapper.shutdown();
    assert!(last.stopped && last.mappings.is_empty());
    let rules = home.router.forwarding_rules().unwrap();
    assert!(
        !rules.contains(&format!("{}:{PORT}", lan.ipv4())),
        "mapping left behind: {rules}"
    );
    let after = reach(
        &outside,
        external(&s, Transport::Tcp),
        external(&s, Transport::Udp),
    );
    assert_eq!(
        after,
        (false, false),
        "still reachable after the mappings were removed"
    );
}

#[test]
fn upnp_only_router_maps_tcp_and_udp() {
    maps_reaches_and_unmaps(
        "upnp_only_router_maps_tcp_and_udp",
        MappingProtocols::UPNP_ONLY,
        MappingProtocol::Upnp,
    );
}

#[test]
fn natpmp_only_router_maps_tcp_and_udp() {
    maps_reaches_and_unmaps(
        "natpmp_only_router_maps_tcp_and_udp",
        MappingProtocols::NATPMP_ONLY,
        MappingProtocol::NatPmp,
    );
}

#[test]
fn pcp_only_router_maps_tcp_and_udp() {
    maps_reaches_and_unmaps(
        "pcp_only_router_maps_tcp_and_udp",
        MappingProtocols::PCP_ONLY,
        MappingProtocol::Pcp,
    );
}

/// After the router restarts with its rules flushed, the mapper maps again within one lease.
fn remaps_after_router_restart(test: &str, protocols: MappingProtocols, epoch: bool) {
    let Some(mut lab) = Lab::new_or_skip(test) else {
        return;
    };
    let outside = lab.public_host("out").unwrap();
    let home = home_with(&mut lab, Nat::EndpointIndependent, protocols);
    let lan = &home.hosts[0];
    serve_on_port(lan);
    let lease = Duration::from_secs(4);
    let mapper = RunningMapper::start(lan, lab_config(lease));
    let first = mapper.wait_for("first mapping", Duration::from_secs(30), |s| {
        s.mappings.len() == 2
    });
    // Let the gateway's epoch grow so that its reset is unambiguous.
    std::thread::sleep(Duration::from_secs(3));
    home.router.restart_mapping().unwrap();
    let restarted_at = Instant::now();
    let rule = format!("{}:{PORT}", lan.ipv4());
    // Checked on the rules, not by connecting: the mapper may well have the mapping back
    // before a SYN the router dropped is retransmitted.
    assert!(
        !home.router.forwarding_rules().unwrap().contains(&rule),
        "restart must drop the mapping"
    );

    while !home.router.forwarding_rules().unwrap().contains(&rule) {
        assert!(
            restarted_at.elapsed() < lease + Duration::from_secs(3),
            "not re-mapped within a lease"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let remapped_in = restarted_at.elapsed();
    eprintln!("{test}: mapping back {remapped_in:?} after the router restart (lease {lease:?})");
    if epoch {
        let s = mapper.wait_for("epoch reset noticed", Duration::from_secs(5), |s| {
            s.gateway_restarts >= 1
        });
        assert!(s.generation > first.generation);
    }
    let s = mapper.state.borrow().clone();
    let (tcp, udp) = reach(
        &outside,
        external(&s, Transport::Tcp),
        external(&s, Transport::Udp),
    );
    assert!(tcp && udp, "after the restart: tcp {tcp}, udp {udp}");
    mapper.shutdown();
}

#[test]
fn pcp_mapping_comes_back_after_router_restart() {
    remaps_after_router_restart(
        "pcp_mapping_comes_back_after_router_restart",
        MappingProtocols::PCP_ONLY,
        true,
    );
}

#[test]
fn natpmp_mapping_comes_back_after_router_restart() {
    remaps_after_router_restart(
        "natpmp_mapping_comes_back_after_router_restart",
        MappingProtocols::NATPMP_ONLY,
        true,
    );
}

#[test]
fn upnp_mapping_comes_back_after_router_restart() {
    remaps_after_router_restart(
        "upnp_mapping_comes_back_after_router_restart",
        MappingProtocols::UPNP_ONLY,
        false,
    );
}

/// Sends from ONE UDP socket in `client` to each echo host and turns each reply into a DHT-like
/// vote (reporter = the echo host, address and port = what it saw).
fn votes_from_echoes(client: &Host, echo_hosts: &[&Host]) -> (u16, Vec<Vote>) {
    let targets: Vec<SocketAddr> = echo_hosts
        .iter()
        .map(|h| SocketAddr::new(h.ipv4().into(), ECHO_PORT))
        .collect();
    client
        .block_on(move || async move {
            let socket = UdpSocket::bind("0.0.0.0:0").await.unwrap();
            let local_port = socket.local_addr().unwrap().port();
            let mut votes = Vec::new();
            for target in targets {
                let mut buf = [0u8; 128];
                let mut seen = None;
                for _ in 0..5 {
                    socket.send_to(b"ip?", target).await.unwrap();
                    if let Ok(Ok((n, from))) =
                        tokio::time::timeout(Duration::from_millis(400), socket.recv_from(&mut buf))
                            .await
                    {
                        seen = parse_echo_reply(&buf[..n]).filter(|_| from == target);
                        break;
                    }
                }
                let seen = seen.unwrap_or_else(|| panic!("no echo from {target}"));
                votes.push(Vote {
                    source: VoteSource::Dht,
                    reporter: target.ip(),
                    address: seen.ip(),
                    udp_port: Some(seen.port()),
                });
            }
            (local_port, votes)
        })
        .unwrap()
}

fn classify(test: &str, spec: impl FnOnce(&mut Lab) -> Home) -> Option<(AddressVoter, Home)> {
    let mut lab = Lab::new_or_skip(test)?;
    let a = lab.public_host("echo-a").unwrap();
    let b = lab.public_host("echo-b").unwrap();
    for h in [&a, &b] {
        h.serve_udp_echo(SocketAddr::from(([0, 0, 0, 0], ECHO_PORT)))
            .unwrap();
    }
    let home = spec(&mut lab);
    let lan = &home.hosts[0];
    let (port, votes) = votes_from_echoes(lan, &[&a, &b]);
    let mut voter = AddressVoter::new(port, vec![IpAddr::V4(lan.ipv4())]);
    let now = std::time::Instant::now();
    for v in votes {
        voter.add(v, now);
    }
    // The namespaces were only needed for the votes; `home` is kept for its addresses.
    drop(lab);
    Some((voter, home))
}

#[test]
fn classifier_sees_endpoint_independent_mapping() {
    let Some((voter, home)) = classify("classifier_sees_endpoint_independent_mapping", |lab| {
        lab.home("home", HomeSpec::new(Nat::EndpointIndependent))
            .unwrap()
    }) else {
        return;
    };
    assert_eq!(voter.external_ipv4(), Some(home.router.wan_ipv4()));
    assert_eq!(voter.behaviour(), MappingBehaviour::EndpointIndependent);
}

#[test]
fn classifier_sees_endpoint_dependent_mapping() {
    let Some((voter, home)) = classify("classifier_sees_endpoint_dependent_mapping", |lab| {
        lab.home("home", HomeSpec::new(Nat::EndpointDependent))
            .unwrap()
    }) else {
        return;
    };
    assert_eq!(voter.external_ipv4(), Some(home.router.wan_ipv4()));
    assert_eq!(voter.behaviour(), MappingBehaviour::EndpointDependent);
}

#[test]
fn classifier_sees_no_nat_on_a_routed_home() {
    let Some((voter, home)) = classify("classifier_sees_no_nat_on_a_routed_home", |lab| {
        lab.home("home", HomeSpec::new(Nat::Routed)).unwrap()
    }) else {
        return;
    };
    assert_eq!(voter.external_ipv4(), Some(home.hosts[0].ipv4()));
    assert_eq!(voter.behaviour(), MappingBehaviour::NoNat);
}

#[test]
fn report_behind_carrier_grade_nat() {
    use burrow_netlab::Upstream;
    use burrow_swarm::nat::Report;
    let Some(mut lab) = Lab::new_or_skip("report_behind_carrier_grade_nat") else {
        return;
    };
    let a = lab.public_host("echo-a").unwrap();
    let b = lab.public_host("echo-b").unwrap();
    for h in [&a, &b] {
        h.serve_udp_echo(SocketAddr::from(([0, 0, 0, 0], ECHO_PORT)))
            .unwrap();
    }
    let carrier = lab.carrier("cgn", Nat::EndpointIndependent).unwrap();
    let mut spec = HomeSpec::new(Nat::EndpointIndependent);
    spec.mapping = Some(MappingProtocols::ALL);
    spec.upstream = Upstream::Carrier(&carrier);
    let home = lab.home("home", spec).unwrap();
    let lan = &home.hosts[0];
    let mapper = RunningMapper::start(lan, lab_config(Duration::from_secs(120)));
    let state = mapper.wait_for("a verdict", Duration::from_secs(30), |s| {
        s.mappings.len() == 2 || s.probes.len() == 3
    });
    let (port, votes) = votes_from_echoes(lan, &[&a, &b]);
    let mut voter = AddressVoter::new(port, vec![IpAddr::V4(lan.ipv4())]);
    let now = std::time::Instant::now();
    for v in votes {
        voter.add(v, now);
    }
    if let (Some(gw), Some(protocol)) = (state.external_ip, state.active) {
        voter.add(
            Vote {
                source: VoteSource::Gateway(protocol),
                reporter: home.router.lan_ipv4().into(),
                address: gw,
                udp_port: None,
            },
            now,
        );
    }
    let report = Report::new(PORT, vec![IpAddr::V4(lan.ipv4())], &state, &voter);
    eprintln!("{report}\n{}", serde_json::to_string(&report).unwrap());
    assert_eq!(report.gateway, Some(home.router.lan_ipv4()));
    assert_eq!(
        report.external_ipv4,
        Some(carrier.router.ipv4()),
        "remotes see the carrier's address"
    );
    assert_eq!(report.nat_behaviour, MappingBehaviour::EndpointIndependent);
    assert!(report.double_nat, "double NAT not detected: {report}");
    assert_eq!(
        report.advice,
        "You are behind carrier-grade NAT: IPv6 or your ISP can help."
    );
    mapper.shutdown();
}

#[test]
fn report_for_a_router_without_mapping_service() {
    use burrow_swarm::nat::Report;
    let Some(mut lab) = Lab::new_or_skip("report_for_a_router_without_mapping_service") else {
        return;
    };
    let home = lab
        .home("home", HomeSpec::new(Nat::EndpointIndependent))
        .unwrap();
    let lan = &home.hosts[0];
    let mapper = RunningMapper::start(lan, lab_config(Duration::from_secs(120)));
    let state = mapper.wait_for("all protocols tried", Duration::from_secs(30), |s| {
        s.probes.len() == 3
    });
    assert!(state.mappings.is_empty());
    assert!(
        state.probes.iter().all(|p| !p.answered),
        "{:?}",
        state.probes
    );
    let voter = AddressVoter::new(PORT, vec![IpAddr::V4(lan.ipv4())]);
    let report = Report::new(PORT, vec![IpAddr::V4(lan.ipv4())], &state, &voter);
    assert_eq!(
        report.advice,
        format!(
            "Enable UPnP or NAT-PMP on your router, or forward TCP and UDP port {PORT} to {}.",
            lan.ipv4()
        )
    );
    assert!(!report.double_nat);
    mapper.shutdown();
}
