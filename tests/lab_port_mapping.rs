//! The `burrow` binary behind a home router in the NAT lab: it maps its port with the only
//! protocol the router offers (UPnP-IGD, NAT-PMP or PCP), outsiders download from it through
//! that mapping (libtorrent and burrow), the mapping is gone once it exits, and it maps again
//! after the router restarts and forgets it. Needs root; prints `SKIPPED (needs root)` without.

mod common;
mod labkit;

use std::net::SocketAddr;
use std::time::Duration;

use burrow_netlab::{Home, HomeSpec, Host, Lab, MappingProtocols, Nat};
use common::Proc;
use labkit::*;

const FILES: &[(&str, usize)] = &[("data.bin", 1_500_000), ("notes.txt", 4_321)];

/// A lab with one host on the internet and one home behind an endpoint-independent router
/// that offers only `protocols`, with a torrent's data ready to seed.
struct MappedHome {
    dir: tempfile::TempDir,
    data: Data,
    outside: Host,
    home: Home,
    /// The router's external address with the session port.
    wan: SocketAddr,
    // Dropped last: everything above lives in its namespaces.
    _lab: Lab,
}

impl MappedHome {
    fn new(test: &str, protocols: MappingProtocols) -> Option<MappedHome> {
        let mut lab = Lab::new_or_skip(test)?;
        let dir = tempfile::tempdir().unwrap();
        let data = Data::new(dir.path(), FILES);
        let outside = lab.public_host("out").unwrap();
        let mut spec = HomeSpec::new(Nat::EndpointIndependent);
        spec.mapping = Some(protocols);
        let home = lab.home("home", spec).unwrap();
        let wan = SocketAddr::new(home.router.wan_ipv4().into(), PORT);
        Some(MappedHome {
            dir,
            data,
            outside,
            home,
            wan,
            _lab: lab,
        })
    }

    /// `burrow seed` of the data on the LAN host, with port mapping on, plus `extra` options.
    fn start_seed(&self, extra: &[&str]) -> Proc {
        let d = self.dir.path();
        let mut args = vec![
            "seed",
            self.data.torrent_arg(),
            "--data",
            self.data.src.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        start(
            "seed",
            burrow_in(&self.home.hosts[0], &args, &d.join("seed-state"), &[]),
            d,
        )
    }
}

/// A burrow seeder in the LAN behind a router offering only `protocols`; a libtorrent and
/// then a burrow leecher on the internet download through the mapping; SIGTERM removes it.
fn seeds_through_the_mapping(test: &str, protocols: MappingProtocols) {
    let Some(setup) = MappedHome::new(test, protocols) else {
        return;
    };
    let MappedHome {
        dir,
        data,
        outside,
        home,
        wan,
        ..
    } = &setup;
    let (d, lan, wan) = (dir.path(), &home.hosts[0], *wan);

    let mut seed = setup.start_seed(&[]);
    let mapped_in = wait_until(
        "the seeder's TCP and UDP mappings",
        Duration::from_secs(30),
        || forwards_to(&home.router, lan) == (true, true),
        || {
            format!(
                "{}\n{}\n{}",
                seed.output(),
                home.router.mapping_log(),
                home.router.forwarding_rules().unwrap_or_default()
            )
        },
    );
    eprintln!("{test}: mapped {mapped_in:?} after start");
    // The seeder tells its user what it found, once that has settled.
    seed.wait_for_output(
        "Your router forwards port 6881 for us",
        Duration::from_secs(20),
    );

    // libtorrent on the internet, told the seeder's external address.
    let peer = wan.to_string();
    let mut lt = start(
        "lt-leech",
        lt_in(
            outside,
            &[
                "--mode",
                "download",
                "--torrent",
                data.torrent_arg(),
                "--save",
                d.join("lt-out").to_str().unwrap(),
                "--peer",
                &peer,
                "--timeout",
                "40",
            ],
        ),
        d,
    );
    lt.wait_success(Duration::from_secs(45));
    data.assert_in(&d.join("lt-out"));

    // burrow on the internet.
    let mut leech = start(
        "burrow-leech",
        burrow_in(
            outside,
            &[
                "download",
                data.torrent_arg(),
                "-o",
                d.join("burrow-out").to_str().unwrap(),
                "--peer",
                &peer,
                "--no-port-mapping",
            ],
            &d.join("leech-state"),
            &[],
        ),
        d,
    );
    leech.wait_success(Duration::from_secs(45));
    data.assert_in(&d.join("burrow-out"));
    let seen = seed.output();
    assert!(
        seen.contains("route=\"incoming_tcp\"") || seen.contains("route=\"incoming_utp\""),
        "the seeder was reached from outside:\n{seen}"
    );

    let status = seed.terminate(Duration::from_secs(15));
    assert!(status.success(), "seeder exit {status}:\n{}", seed.output());
    assert_eq!(
        forwards_to(&home.router, lan),
        (false, false),
        "mapping left behind:\n{}",
        home.router.forwarding_rules().unwrap()
    );
    assert_unreachable_after_exit(lan, outside, wan);
}

/// After the seeder exited, something listening on its port in the LAN again is not reachable
/// from outside: no forwarding survived. (A closed port cannot tell: the router itself
/// answers a SYN to an unforwarded port with a reset, like a forwarded one would.)
fn assert_unreachable_after_exit(lan: &Host, outside: &Host, wan: SocketAddr) {
    lan.serve_tcp_echo(SocketAddr::from(([0, 0, 0, 0], PORT)))
        .unwrap();
    let inside = SocketAddr::new(lan.ipv4().into(), PORT);
    assert_eq!(
        tcp_probe(lan, inside),
        Ok(()),
        "the stand-in listener works"
    );
    assert!(
        tcp_probe(outside, wan).is_err(),
        "the seeder's port still reaches the LAN from {wan}"
    );
}

#[test]
fn lab_seed_behind_upnp_only_router() {
    seeds_through_the_mapping(
        "lab_seed_behind_upnp_only_router",
        MappingProtocols::UPNP_ONLY,
    );
}

#[test]
fn lab_seed_behind_natpmp_only_router() {
    seeds_through_the_mapping(
        "lab_seed_behind_natpmp_only_router",
        MappingProtocols::NATPMP_ONLY,
    );
}

#[test]
fn lab_seed_behind_pcp_only_router() {
    seeds_through_the_mapping(
        "lab_seed_behind_pcp_only_router",
        MappingProtocols::PCP_ONLY,
    );
}

/// The router restarts (miniupnpd killed, its rules and leases flushed) while `burrow seed`
/// runs behind it with a short lease: the mapping is back within a lease, and an outsider
/// downloads through it.
fn maps_again_after_router_restart(test: &str, protocols: MappingProtocols) {
    let Some(setup) = MappedHome::new(test, protocols) else {
        return;
    };
    let MappedHome {
        dir,
        data,
        outside,
        home,
        wan,
        ..
    } = &setup;
    let (d, lan, wan) = (dir.path(), &home.hosts[0], *wan);
    let lease = Duration::from_secs(6);

    let mut seed = setup.start_seed(&["--mapping-lease", &lease.as_secs().to_string()]);
    wait_until(
        "the first mappings",
        Duration::from_secs(30),
        || forwards_to(&home.router, lan) == (true, true),
        || format!("{}\n{}", seed.output(), home.router.mapping_log()),
    );
    home.router.restart_mapping().unwrap();
    assert_eq!(
        forwards_to(&home.router, lan),
        (false, false),
        "restart flushed the rules"
    );
    // Renewal at half the lease re-creates them; allow the whole lease plus a probe round.
    let back = wait_until(
        "the mappings after the router restart",
        lease + Duration::from_secs(4),
        || forwards_to(&home.router, lan) == (true, true),
        || format!("{}\n{}", seed.output(), home.router.mapping_log()),
    );
    eprintln!(
        "{test}: mappings back {:?} after the restart (lease {lease:?})",
        back
    );

    let mut leech = start(
        "burrow-leech",
        burrow_in(
            outside,
            &[
                "download",
                data.torrent_arg(),
                "-o",
                d.join("out").to_str().unwrap(),
                "--peer",
                &wan.to_string(),
                "--no-port-mapping",
            ],
            &d.join("leech-state"),
            &[],
        ),
        d,
    );
    leech.wait_success(Duration::from_secs(45));
    data.assert_in(&d.join("out"));
    assert!(seed.terminate(Duration::from_secs(15)).success());
    assert_eq!(forwards_to(&home.router, lan), (false, false));
    assert_unreachable_after_exit(lan, outside, wan);
}

#[test]
fn lab_seed_maps_again_after_pcp_router_restart() {
    maps_again_after_router_restart(
        "lab_seed_maps_again_after_pcp_router_restart",
        MappingProtocols::PCP_ONLY,
    );
}

#[test]
fn lab_seed_maps_again_after_upnp_router_restart() {
    maps_again_after_router_restart(
        "lab_seed_maps_again_after_upnp_router_restart",
        MappingProtocols::UPNP_ONLY,
    );
}
