//! Magnet links with no tracker: peers found through the DHT alone, on a loopback DHT of
//! libtorrent nodes (an implementation nobody here wrote).

mod common;

use std::time::Duration;

use common::*;

/// Starts `n` libtorrent DHT nodes bootstrapped from the first; returns them and their ports.
fn lt_dht(n: usize, dir: &std::path::Path) -> (Vec<Proc>, Vec<u16>) {
    let mut procs = Vec::new();
    let mut ports = Vec::new();
    for i in 0..n {
        let mut args = vec![
            "--mode".to_string(),
            "node".to_string(),
            "--timeout".to_string(),
            "120".to_string(),
        ];
        if let Some(first) = ports.first() {
            args.push("--dht-node".into());
            args.push(format!("127.0.0.1:{first}"));
        }
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let mut p = Proc::spawn(&format!("lt-dht-{i}"), libtorrent(&args), dir);
        ports.push(lt_port(&mut p));
        procs.push(p);
    }
    (procs, ports)
}

#[test]
fn burrow_downloads_a_magnet_from_a_libtorrent_seed_found_through_the_dht() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_nodes, ports) = lt_dht(4, d);
    let boot = format!("127.0.0.1:{}", ports[0]);
    let set = make_set(
        &d.join("src"),
        "set",
        &[("a.bin", 2_000_000), ("b/c.bin", 300_000)],
    );
    let (torrent, magnet) = create_torrent(&d.join("src/set"), &d.join("set.torrent"), &[]);
    assert!(!magnet.contains("tr="));
    let _seed = Proc::spawn(
        "lt-seed",
        libtorrent(&[
            "--mode",
            "seed",
            "--torrent",
            torrent.to_str().unwrap(),
            "--save",
            d.join("src").to_str().unwrap(),
            "--dht-node",
            &boot,
        ]),
        d,
    );
    let port = free_port();
    let mut dl = Proc::spawn(
        "burrow-dht-magnet",
        burrow(
            &[
                "download",
                &magnet,
                "-o",
                d.join("out").to_str().unwrap(),
                "--dht-bootstrap",
                &boot,
            ],
            port,
            &d.join("state"),
        ),
        d,
    );
    dl.wait_success(Duration::from_secs(90));
    assert_set(&d.join("out"), "set", &set);
    assert!(dl.output().contains("metadata received"), "{}", dl.output());
    assert!(
        d.join("state/dht.state").exists(),
        "the routing table is saved for the next run"
    );
}

#[test]
fn libtorrent_finds_a_burrow_seed_through_burrows_dht_announce() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_nodes, ports) = lt_dht(4, d);
    let boot = format!("127.0.0.1:{}", ports[0]);
    let set = make_set(&d.join("src"), "set", &[("only.bin", 1_500_000)]);
    let (torrent, magnet) = create_torrent(&d.join("src/set"), &d.join("set.torrent"), &[]);
    let port = free_port();
    let mut seed = Proc::spawn(
        "burrow-seed",
        burrow(
            &[
                "seed",
                torrent.to_str().unwrap(),
                "--data",
                d.join("src").to_str().unwrap(),
                "--dht-bootstrap",
                &boot,
            ],
            port,
            &d.join("state"),
        ),
        d,
    );
    seed.wait_for_output("seeding", Duration::from_secs(30));
    let mut lt = Proc::spawn(
        "lt-magnet",
        libtorrent(&[
            "--mode",
            "download",
            "--magnet",
            &magnet,
            "--save",
            d.join("out").to_str().unwrap(),
            "--dht-node",
            &boot,
            "--timeout",
            "90",
        ]),
        d,
    );
    lt.wait_success(Duration::from_secs(100));
    assert_set(&d.join("out"), "set", &set);
}
