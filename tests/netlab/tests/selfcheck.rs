//! Proofs that the lab behaves as documented: NAT mapping behaviours, double NAT, the IPv6
//! firewall, and isolation from the machine's real network. Needs root; skips visibly without.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use burrow_netlab::{parse_echo_reply, HomeSpec, Host, Lab, Nat, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const ECHO_PORT: u16 = 7000;

/// Starts a UDP echo server on `host` for the lab's lifetime (bound before this returns).
fn udp_echo(host: &Host) {
    host.serve_udp_echo(SocketAddr::from(([0, 0, 0, 0], ECHO_PORT)))
        .unwrap();
}

/// From `client`, sends one datagram from ONE socket to each target; returns what each saw.
fn seen_from_one_socket(client: &Host, targets: Vec<SocketAddr>) -> Vec<SocketAddr> {
    client
        .block_on(move || async move {
            let socket = UdpSocket::bind("0.0.0.0:0").await.unwrap();
            let mut seen = Vec::new();
            for target in targets {
                let mut buf = [0u8; 128];
                let mut got = None;
                for _ in 0..5 {
                    socket.send_to(b"who am i", target).await.unwrap();
                    if let Ok(Ok((n, from))) =
                        tokio::time::timeout(Duration::from_millis(400), socket.recv_from(&mut buf))
                            .await
                    {
                        assert_eq!(from, target);
                        got = parse_echo_reply(&buf[..n]);
                        break;
                    }
                }
                seen.push(got.unwrap_or_else(|| panic!("no echo from {target}")));
            }
            seen
        })
        .unwrap()
}

fn targets(hosts: &[&Host]) -> Vec<SocketAddr> {
    hosts
        .iter()
        .map(|h| SocketAddr::new(h.ipv4().into(), ECHO_PORT))
        .collect()
}

#[test]
fn eim_router_shows_one_external_port_to_two_remotes() {
    let Some(mut lab) = Lab::new_or_skip("eim_router_shows_one_external_port_to_two_remotes")
    else {
        return;
    };
    let a = lab.public_host("a").unwrap();
    let b = lab.public_host("b").unwrap();
    let home = lab
        .home("home", HomeSpec::new(Nat::EndpointIndependent))
        .unwrap();
    udp_echo(&a);
    udp_echo(&b);
    let seen = seen_from_one_socket(&home.hosts[0], targets(&[&a, &b]));
    assert_eq!(seen[0].ip(), IpAddr::from(home.router.wan_ipv4()));
    assert_eq!(
        seen[0], seen[1],
        "an EIM router must show the same mapping to both remotes"
    );
}

#[test]
fn edm_router_shows_a_new_port_per_remote() {
    let Some(mut lab) = Lab::new_or_skip("edm_router_shows_a_new_port_per_remote") else {
        return;
    };
    let a = lab.public_host("a").unwrap();
    let b = lab.public_host("b").unwrap();
    let home = lab
        .home("home", HomeSpec::new(Nat::EndpointDependent))
        .unwrap();
    udp_echo(&a);
    udp_echo(&b);
    let seen = seen_from_one_socket(&home.hosts[0], targets(&[&a, &b]));
    assert_eq!(seen[0].ip(), IpAddr::from(home.router.wan_ipv4()));
    assert_eq!(seen[1].ip(), IpAddr::from(home.router.wan_ipv4()));
    assert_ne!(
        seen[0].port(),
        seen[1].port(),
        "an EDM router must map per remote"
    );
}

#[test]
fn routed_home_keeps_the_lan_address() {
    let Some(mut lab) = Lab::new_or_skip("routed_home_keeps_the_lan_address") else {
        return;
    };
    let a = lab.public_host("a").unwrap();
    let home = lab.home("home", HomeSpec::new(Nat::Routed)).unwrap();
    udp_echo(&a);
    let seen = seen_from_one_socket(&home.hosts[0], targets(&[&a]));
    assert_eq!(seen[0].ip(), IpAddr::from(home.hosts[0].ipv4()));
}

#[test]
fn double_nat_shows_the_carrier_address() {
    let Some(mut lab) = Lab::new_or_skip("double_nat_shows_the_carrier_address") else {
        return;
    };
    let a = lab.public_host("a").unwrap();
    let carrier = lab.carrier("cgn", Nat::EndpointIndependent).unwrap();
    let mut spec = HomeSpec::new(Nat::EndpointIndependent);
    spec.upstream = Upstream::Carrier(&carrier);
    let home = lab.home("home", spec).unwrap();
    udp_echo(&a);
    let wan = home.router.wan_ipv4();
    assert_eq!(
        wan.octets()[..2],
        [100, 64],
        "home WAN is in the shared address space"
    );
    let seen = seen_from_one_socket(&home.hosts[0], targets(&[&a]));
    assert_eq!(
        seen[0].ip(),
        IpAddr::from(carrier.router.ipv4()),
        "remotes see the carrier"
    );
}

#[test]
fn ipv6_firewall_blocks_unsolicited_inbound_and_passes_replies() {
    let Some(mut lab) =
        Lab::new_or_skip("ipv6_firewall_blocks_unsolicited_inbound_and_passes_replies")
    else {
        return;
    };
    let a = lab.public_host("a").unwrap();
    let mut spec = HomeSpec::new(Nat::EndpointIndependent);
    spec.ipv6 = true;
    let home = lab.home("home", spec).unwrap();
    let lan = home.hosts[0].clone();
    let lan_v6 = lan.ipv6().unwrap();
    let a_v6 = a.ipv6().unwrap();
    for host in [&a, &lan] {
        host.serve_tcp_echo(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 7001)))
            .unwrap();
    }
    // Outbound from the LAN: the reply passes and the remote sees the LAN's own address.
    let seen = lan
        .block_on(move || async move {
            let mut s = TcpStream::connect((a_v6, 7001)).await.unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(b"ping").await.unwrap();
            let mut echo = [0u8; 4];
            s.read_exact(&mut echo).await.unwrap();
            assert_eq!(&echo, b"ping");
            std::str::from_utf8(&buf[..n])
                .unwrap()
                .trim()
                .parse::<SocketAddr>()
                .unwrap()
        })
        .unwrap();
    assert_eq!(seen.ip(), IpAddr::from(lan_v6));
    // Unsolicited inbound to the LAN host: dropped (times out, no RST).
    let inbound = a
        .block_on(move || async move {
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect((lan_v6, 7001))).await
        })
        .unwrap();
    assert!(
        inbound.is_err(),
        "unsolicited inbound IPv6 must be dropped, got {inbound:?}"
    );
}

#[test]
fn lab_has_no_route_to_the_real_network() {
    let Some(mut lab) = Lab::new_or_skip("lab_has_no_route_to_the_real_network") else {
        return;
    };
    let root_links_before = root_links();
    lab.public_host("a").unwrap();
    let carrier = lab.carrier("cgn", Nat::EndpointDependent).unwrap();
    let mut spec = HomeSpec::new(Nat::EndpointIndependent);
    spec.ipv6 = true;
    lab.home("home", spec).unwrap();
    let mut behind = HomeSpec::new(Nat::EndpointIndependent);
    behind.upstream = Upstream::Carrier(&carrier);
    lab.home("home2", behind).unwrap();
    // No lab interface appeared in the machine's own namespace.
    assert_eq!(root_links(), root_links_before);
    // Every default route in the lab points at a lab address, and an address outside the
    // lab is unreachable from every namespace on the internet segment.
    for ns in lab.namespaces() {
        for family in ["-4", "-6"] {
            let routes = run(&["ip", "-n", ns, family, "route", "show", "default"]);
            for line in routes.lines() {
                let via = line.split_whitespace().nth(2).unwrap_or("");
                assert!(
                    via.starts_with("10.")
                        || via.starts_with("100.64.")
                        || via.starts_with("2001:db8:"),
                    "{ns}: default route leaves the lab: {line}"
                );
            }
        }
        let is_edge = !run(&["ip", "-n", ns, "-4", "route", "show", "default"]).contains("via");
        if is_edge {
            let out = std::process::Command::new("ip")
                .args(["-n", ns, "route", "get", "1.1.1.1"])
                .output()
                .unwrap();
            assert!(!out.status.success(), "{ns} has a route to 1.1.1.1");
        }
    }
}

fn root_links() -> Vec<String> {
    let mut links: Vec<String> = run(&["ip", "-o", "link", "show"])
        .lines()
        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        .collect();
    links.sort();
    links
}

fn run(args: &[&str]) -> String {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends `request` to the gateway's port 5351 from `client`; returns whether anything answered.
fn answers_on_5351(client: &Host, gateway: std::net::Ipv4Addr, request: Vec<u8>) -> bool {
    client
        .block_on(move || async move {
            let socket = UdpSocket::bind("0.0.0.0:0").await.unwrap();
            let mut buf = [0u8; 1100];
            for _ in 0..3 {
                socket.send_to(&request, (gateway, 5351)).await.unwrap();
                if tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf))
                    .await
                    .is_ok()
                {
                    return true;
                }
            }
            false
        })
        .unwrap()
}

#[test]
fn mapping_service_offers_only_the_selected_protocol() {
    use burrow_netlab::MappingProtocols;
    let Some(mut lab) = Lab::new_or_skip("mapping_service_offers_only_the_selected_protocol")
    else {
        return;
    };
    // NAT-PMP "external address" request (RFC 6886 §3.2) and a PCP ANNOUNCE (RFC 6887 §14.1).
    let natpmp = vec![0u8, 0];
    let mut pcp = vec![2u8, 0, 0, 0, 0, 0, 0, 0];
    let mut home = HomeSpec::new(Nat::EndpointIndependent);
    for (name, protocols, expect_pmp, expect_pcp) in [
        ("pmp", MappingProtocols::NATPMP_ONLY, true, false),
        ("pcp", MappingProtocols::PCP_ONLY, false, true),
        ("upnp", MappingProtocols::UPNP_ONLY, false, false),
    ] {
        home.mapping = Some(protocols);
        let h = lab.home(name, home).unwrap();
        let client = &h.hosts[0];
        pcp.truncate(8);
        pcp.extend_from_slice(&client.ipv4().to_ipv6_mapped().octets());
        assert_eq!(pcp.len(), 24);
        let gw = h.router.lan_ipv4();
        assert_eq!(
            answers_on_5351(client, gw, natpmp.clone()),
            expect_pmp,
            "{name}: NAT-PMP"
        );
        assert_eq!(
            answers_on_5351(client, gw, pcp.clone()),
            expect_pcp,
            "{name}: PCP"
        );
    }
}
