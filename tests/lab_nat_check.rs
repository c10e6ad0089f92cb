//! `burrow nat-check --json` in the NAT lab: three libtorrent DHT nodes on the lab's internet
//! report the address they see, the home router does (or does not) map ports, and the report
//! must name the situation: no NAT, endpoint-independent or -dependent mapping, double NAT,
//! a router without a mapping service. Needs root; prints `SKIPPED (needs root)` without.

mod common;
mod labkit;

use std::time::Duration;

use burrow_netlab::{Home, HomeSpec, Lab, MappingProtocols, Nat, Upstream};
use labkit::*;
use serde_json::Value;

/// Long enough for the mapper to give up on all three protocols of a silent router
/// (about 3.75 s each for PCP and NAT-PMP, 3 s of SSDP search).
const DURATION_SECS: &str = "13";

/// The kinds of advice `nat-check` gives, by how each sentence starts.
#[derive(Debug, PartialEq, Eq)]
enum Advice {
    Reachable,
    CarrierNat,
    PublicAddress,
    Forwarded,
    Refused,
    EnableMapping,
}

fn advice_kind(s: &str) -> Advice {
    if s.starts_with("TCP and UDP port") {
        Advice::Reachable
    } else if s.starts_with("You are behind carrier-grade NAT") {
        Advice::CarrierNat
    } else if s.starts_with("You have a public address") {
        Advice::PublicAddress
    } else if s.starts_with("Your router forwards port") {
        Advice::Forwarded
    } else if s.starts_with("Your router refused") {
        Advice::Refused
    } else if s.starts_with("Enable UPnP or NAT-PMP") {
        Advice::EnableMapping
    } else {
        panic!("unknown advice: {s}")
    }
}

/// Starts three libtorrent DHT nodes on public hosts and runs `burrow nat-check --json` in
/// the first LAN host of the home `make` builds. Returns the report and the home.
fn nat_check(test: &str, make: impl FnOnce(&mut Lab) -> Home) -> Option<(Value, Home)> {
    let mut lab = Lab::new_or_skip(test)?;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hosts: Vec<_> = (1..=3)
        .map(|i| lab.public_host(&format!("dht{i}")).unwrap())
        .collect();
    let nodes: Vec<String> = hosts
        .iter()
        .map(|h| format!("{}:{PORT}", h.ipv4()))
        .collect();
    let mut running = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let mut args = vec!["--mode", "node", "--timeout", "90"];
        for (j, n) in nodes.iter().enumerate() {
            if i != j {
                args.extend(["--dht-node", n.as_str()]);
            }
        }
        let mut p = start(&format!("dht{i}"), lt_in(h, &args), d);
        p.wait_for_output("\"listening\"", Duration::from_secs(20));
        running.push(p);
    }
    let home = make(&mut lab);
    let lan = &home.hosts[0];
    let mut cmd = burrow_in(
        lan,
        &["nat-check", "--json", "--duration", DURATION_SECS],
        &d.join("state"),
        &nodes,
    );
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nat-check failed:\n{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    eprintln!("{test}:\n{report:#}");
    // Nothing may be left forwarded to the host once nat-check is done.
    if home.router.forwarding_rules().is_ok() {
        assert_eq!(
            forwards_to(&home.router, lan),
            (false, false),
            "{test}: mapping left behind"
        );
    }
    Some((report, home))
}

fn home(lab: &mut Lab, nat: Nat, mapping: Option<MappingProtocols>) -> Home {
    let mut spec = HomeSpec::new(nat);
    spec.mapping = mapping;
    lab.home("home", spec).unwrap()
}

fn advice(r: &Value) -> Advice {
    advice_kind(r["advice"].as_str().unwrap())
}

#[test]
fn lab_nat_check_no_nat() {
    let Some((r, home)) = nat_check("lab_nat_check_no_nat", |lab| home(lab, Nat::Routed, None))
    else {
        return;
    };
    let lan = home.hosts[0].ipv4().to_string();
    assert_eq!(r["nat_behaviour"], "no-nat");
    assert_eq!(r["external_ipv4"], lan.as_str());
    assert_eq!(r["double_nat"], false);
    assert_eq!(r["mappings"], Value::Array(vec![]));
    assert_eq!(advice(&r), Advice::PublicAddress, "{}", r["advice"]);
}

#[test]
fn lab_nat_check_endpoint_independent_with_mapping() {
    let Some((r, home)) = nat_check("lab_nat_check_endpoint_independent_with_mapping", |lab| {
        home(lab, Nat::EndpointIndependent, Some(MappingProtocols::ALL))
    }) else {
        return;
    };
    let wan = home.router.wan_ipv4().to_string();
    assert_eq!(r["nat_behaviour"], "endpoint-independent");
    assert_eq!(r["external_ipv4"], wan.as_str());
    assert_eq!(r["double_nat"], false);
    let mappings = r["mappings"].as_array().unwrap();
    let mut transports: Vec<&str> = mappings
        .iter()
        .map(|m| m["transport"].as_str().unwrap())
        .collect();
    transports.sort();
    assert_eq!(transports, ["tcp", "udp"]);
    for m in mappings {
        assert_eq!(m["protocol"], "pcp", "PCP is tried first");
        assert_eq!(m["external"], format!("{wan}:{PORT}").as_str());
        assert_eq!(
            m["internal"],
            format!("{}:{PORT}", home.hosts[0].ipv4()).as_str()
        );
    }
    assert_eq!(advice(&r), Advice::Forwarded, "{}", r["advice"]);
}

#[test]
fn lab_nat_check_endpoint_dependent() {
    let Some((r, home)) = nat_check("lab_nat_check_endpoint_dependent", |lab| {
        home(lab, Nat::EndpointDependent, None)
    }) else {
        return;
    };
    assert_eq!(r["nat_behaviour"], "endpoint-dependent");
    assert_eq!(
        r["external_ipv4"],
        home.router.wan_ipv4().to_string().as_str()
    );
    assert_eq!(r["double_nat"], false);
    assert_eq!(r["mappings"], Value::Array(vec![]));
    assert_eq!(advice(&r), Advice::EnableMapping, "{}", r["advice"]);
}

#[test]
fn lab_nat_check_double_nat() {
    let Some((r, home)) = nat_check("lab_nat_check_double_nat", |lab| {
        let carrier = lab.carrier("cgn", Nat::EndpointIndependent).unwrap();
        let mut spec = HomeSpec::new(Nat::EndpointIndependent);
        spec.mapping = Some(MappingProtocols::ALL);
        spec.upstream = Upstream::Carrier(&carrier);
        lab.home("home", spec).unwrap()
    }) else {
        return;
    };
    assert_eq!(r["double_nat"], true);
    // The lab's first carrier is 57.66.3.1; the home router's WAN is 100.64.1.2 behind it.
    assert_eq!(r["external_ipv4"], "57.66.3.1", "remotes see the carrier");
    assert_eq!(home.router.wan_ipv4().octets()[..2], [100, 64]);
    assert_eq!(r["nat_behaviour"], "endpoint-independent");
    assert_eq!(r["mappings"], Value::Array(vec![]));
    assert_eq!(advice(&r), Advice::CarrierNat, "{}", r["advice"]);
}

#[test]
fn lab_nat_check_router_without_mapping_service() {
    let Some((r, home)) = nat_check("lab_nat_check_router_without_mapping_service", |lab| {
        home(lab, Nat::EndpointIndependent, None)
    }) else {
        return;
    };
    assert_eq!(r["nat_behaviour"], "endpoint-independent");
    assert_eq!(
        r["external_ipv4"],
        home.router.wan_ipv4().to_string().as_str()
    );
    assert_eq!(r["double_nat"], false);
    assert_eq!(r["mappings"], Value::Array(vec![]));
    let protocols = r["protocols"].as_array().unwrap();
    assert_eq!(
        protocols.len(),
        3,
        "every protocol was tried: {protocols:?}"
    );
    assert!(
        protocols.iter().all(|p| p["answered"] == false),
        "{protocols:?}"
    );
    assert_eq!(advice(&r), Advice::EnableMapping, "{}", r["advice"]);
    assert!(
        r["advice"]
            .as_str()
            .unwrap()
            .ends_with(&format!("to {}.", home.hosts[0].ipv4())),
        "{}",
        r["advice"]
    );
}
