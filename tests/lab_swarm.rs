//! A small swarm in the NAT lab: one public burrow seeder on a slow uplink and eight burrow
//! peers, each behind its own home router — four endpoint-independent, four
//! endpoint-dependent, none mapping a port. Every peer must complete with the right bytes,
//! and the endpoint-independent peers must end up connected to each other pairwise (PEX
//! and holepunch rendezvous through the seeder, which peers that finish early keep as an
//! anchor). The test prints how every connection was made. Needs root; prints
//! `SKIPPED (needs root)` without.

mod common;
mod labkit;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use burrow_netlab::{HomeSpec, Lab, Nat};
use labkit::*;

const FILES: &[(&str, usize)] = &[("album/one.bin", 400_000), ("album/two.bin", 650_000)];

/// The seeder's uplink: slow enough that the NATed peers gain by trading among themselves.
const SEED_UPLINK_KBIT: u32 = 2000;

/// Time between two peers joining.
const JOIN_INTERVAL: Duration = Duration::from_secs(1);

#[test]
fn lab_swarm_of_natted_peers_completes() {
    let Some(mut lab) = Lab::new_or_skip("lab_swarm_of_natted_peers_completes") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = Data::new(d, FILES);
    let public = lab.public_host("seed").unwrap();
    public.limit_upload(SEED_UPLINK_KBIT, 50).unwrap();
    let mut seed = start(
        "seed",
        burrow_in(
            &public,
            &[
                "seed",
                data.torrent_arg(),
                "--data",
                data.src.to_str().unwrap(),
                "--no-port-mapping",
            ],
            &d.join("seed-state"),
            &[],
        ),
        d,
    );
    seed.wait_for_output("seeding", Duration::from_secs(20));
    let seed_addr = format!("{}:{PORT}", public.ipv4());

    // Who is who, by the address the others see: the seeder and each home's WAN address.
    let mut names: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    names.insert(public.ipv4(), "seed".into());
    let mut peers = Vec::new();
    let started = Instant::now();
    for i in 0..8 {
        let nat = if i % 2 == 0 {
            Nat::EndpointIndependent
        } else {
            Nat::EndpointDependent
        };
        let name = format!("p{i}-{}", if i % 2 == 0 { "eim" } else { "edm" });
        let home = lab.home(&format!("h{i}"), HomeSpec::new(nat)).unwrap();
        names.insert(home.router.wan_ipv4(), name.clone());
        let proc = natted_leech(&name, &home.hosts[0], &data, &seed_addr, d);
        peers.push((name, proc));
        std::thread::sleep(JOIN_INTERVAL);
    }
    for (name, proc) in peers.iter_mut() {
        proc.wait_for_output("seeding 100.0%", Duration::from_secs(60));
        let done = proc
            .output()
            .lines()
            .find(|l| l.contains("download complete"))
            .and_then(|l| l.split_whitespace().next().map(str::to_string));
        eprintln!("{name} complete at {}", done.unwrap_or_default());
    }
    let mut direct = 0;
    let mut pairs: BTreeSet<(String, String)> = BTreeSet::new();
    eprintln!("\nconnections made (peer: other(route) ...):");
    for (name, proc) in peers.iter_mut() {
        assert!(
            proc.terminate(Duration::from_secs(15)).success(),
            "{name} exit\n{}",
            proc.output()
        );
        data.assert_in(&d.join(format!("{name}-out")));
        let log = proc.output();
        let mut made = Vec::new();
        for line in log.lines().filter(|l| l.contains("peer connected")) {
            let field = |key: &str| {
                line.split(key)
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .map(|v| v.trim_matches('"').to_string())
            };
            let (Some(addr), Some(route)) = (field("addr="), field("route=")) else {
                continue;
            };
            let ip: Option<Ipv4Addr> = addr.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok());
            let other = ip.and_then(|ip| names.get(&ip).cloned()).unwrap_or(addr);
            if other != "seed" {
                direct += 1;
                let (a, b) = if *name < other {
                    (name.clone(), other.clone())
                } else {
                    (other.clone(), name.clone())
                };
                pairs.insert((a, b));
            }
            made.push(format!("{other}({route})"));
        }
        if show_logs() {
            eprintln!("--- {name}\n{log}");
        }
        let totals = session_totals(&log).unwrap_or_default();
        eprintln!(
            "  {name}: {} — downloaded {} B, uploaded {} B",
            made.join(" "),
            totals.0,
            totals.1
        );
    }
    assert!(
        direct > 0,
        "no NATed peer connected to another; only the seeder served"
    );
    let eim: Vec<&String> = peers
        .iter()
        .map(|(n, _)| n)
        .filter(|n| n.ends_with("eim"))
        .collect();
    for (i, a) in eim.iter().enumerate() {
        for b in &eim[i + 1..] {
            assert!(
                pairs.contains(&((*a).clone(), (*b).clone())),
                "{a} and {b} (both endpoint-independent) never connected; pairs: {pairs:?}"
            );
        }
    }
    assert!(seed.terminate(Duration::from_secs(15)).success());
    let (_, seeded) = session_totals(&seed.output()).unwrap();
    let total: u64 = data.files.iter().map(|(_, b)| b.len() as u64).sum();
    eprintln!(
        "seed uploaded {seeded} B for 8 copies of {total} B ({:.1} copies); {:?} in all",
        seeded as f64 / total as f64,
        started.elapsed()
    );
}
