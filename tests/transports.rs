//! Transports end to end: µTP-only transfers with libtorrent in both directions, a transfer
//! over IPv6 loopback, one UDP socket per family shared by the DHT and µTP, and outgoing TCP
//! connections that leave from the listen port.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const FILES: &[(&str, usize)] = &[("data.bin", 3_000_000), ("more/tail.bin", 77_777)];

#[test]
fn burrow_downloads_from_libtorrent_over_utp_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let set = make_set(&d.join("src"), "set", FILES);
    let (torrent, _) = create_torrent(&d.join("src/set"), &d.join("set.torrent"), &[]);
    let mut seed = Proc::spawn(
        "lt-seed-utp",
        libtorrent(&[
            "--mode",
            "seed",
            "--torrent",
            torrent.to_str().unwrap(),
            "--save",
            d.join("src").to_str().unwrap(),
            "--transport",
            "utp",
        ]),
        d,
    );
    let peer = format!("127.0.0.1:{}", lt_port(&mut seed));
    let port = free_port();
    let mut dl = Proc::spawn(
        "burrow-utp",
        burrow(
            &[
                "download",
                torrent.to_str().unwrap(),
                "-o",
                d.join("out").to_str().unwrap(),
                "--peer",
                &peer,
                "--transport",
                "utp",
            ],
            port,
            &d.join("state"),
        ),
        d,
    );
    dl.wait_success(Duration::from_secs(60));
    assert_set(&d.join("out"), "set", &set);
    assert!(
        dl.output().contains("outgoing_utp=1"),
        "connected over µTP:\n{}",
        dl.output()
    );
}

#[test]
fn libtorrent_downloads_from_burrow_over_utp_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let set = make_set(&d.join("src"), "set", FILES);
    let (torrent, _) = create_torrent(&d.join("src/set"), &d.join("set.torrent"), &[]);
    let port = free_port();
    let mut c = burrow(
        &[
            "seed",
            torrent.to_str().unwrap(),
            "--data",
            d.join("src").to_str().unwrap(),
        ],
        port,
        &d.join("state"),
    );
    c.env("RUST_LOG", "debug");
    let mut seed = Proc::spawn("burrow-seed", c, d);
    seed.wait_for_output("seeding", Duration::from_secs(30));
    let peer = format!("127.0.0.1:{port}");
    let mut lt = Proc::spawn(
        "lt-download-utp",
        libtorrent(&[
            "--mode",
            "download",
            "--torrent",
            torrent.to_str().unwrap(),
            "--save",
            d.join("out").to_str().unwrap(),
            "--peer",
            &peer,
            "--transport",
            "utp",
            "--timeout",
            "60",
        ]),
        d,
    );
    lt.wait_success(Duration::from_secs(70));
    assert_set(&d.join("out"), "set", &set);
    seed.wait_for_output("route=\"incoming_utp\"", Duration::from_secs(10));
}

/// burrow to burrow over µTP only: both announce their datagram limit, so packets grow to
/// what loopback carries while the peer wire runs over them; every byte is checked.
#[test]
fn burrow_downloads_from_burrow_over_utp_only_with_large_packets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let set = make_set(&d.join("src"), "set", &[("data.bin", 24_000_000), ("b", 1)]);
    let (torrent, _) = create_torrent(&d.join("src/set"), &d.join("set.torrent"), &[]);
    let seed_port = free_port();
    let mut c = burrow(
        &[
            "seed",
            torrent.to_str().unwrap(),
            "--data",
            d.join("src").to_str().unwrap(),
        ],
        seed_port,
        &d.join("seed-state"),
    );
    c.env("RUST_LOG", "burrow_swarm::net::utp=debug,info");
    let mut seed = Proc::spawn("burrow-seed", c, d);
    seed.wait_for_output("seeding", Duration::from_secs(30));
    let c = burrow(
        &[
            "download",
            torrent.to_str().unwrap(),
            "-o",
            d.join("out").to_str().unwrap(),
            "--peer",
            &format!("127.0.0.1:{seed_port}"),
            "--transport",
            "utp",
        ],
        free_port(),
        &d.join("state"),
    );
    let mut dl = Proc::spawn("burrow-utp", c, d);
    dl.wait_success(Duration::from_secs(60));
    assert_set(&d.join("out"), "set", &set);
    let out = dl.output();
    assert!(out.contains("outgoing_utp=1"), "connected over µTP:\n{out}");
    // The seed's blocks filled 64 KiB datagrams (65,487 bytes of payload over IPv4).
    seed.wait_for_output("µTP packet payload size", Duration::from_secs(5));
    assert!(
        seed.output().contains("bytes=65487"),
        "packets grew to 64 KiB datagrams:\n{}",
        seed.output()
    );
}

#[test]
fn download_over_ipv6_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let set = make_set(&d.join("src"), "set", FILES);
    let (torrent, _) = create_torrent(&d.join("src/set"), &d.join("set.torrent"), &[]);
    let mut seed = Proc::spawn(
        "lt-seed-v6",
        libtorrent(&[
            "--mode",
            "seed",
            "--torrent",
            torrent.to_str().unwrap(),
            "--save",
            d.join("src").to_str().unwrap(),
            "--listen",
            "[::1]:0",
        ]),
        d,
    );
    let peer = format!("[::1]:{}", lt_port(&mut seed));
    let port = free_port();
    let mut c = burrow(
        &[
            "download",
            torrent.to_str().unwrap(),
            "-o",
            d.join("out").to_str().unwrap(),
            "--peer",
            &peer,
        ],
        port,
        &d.join("state"),
    );
    c.env("RUST_LOG", "debug");
    let mut dl = Proc::spawn("burrow-v6", c, d);
    dl.wait_success(Duration::from_secs(60));
    assert_set(&d.join("out"), "set", &set);
    assert!(
        dl.output().contains("addr=[::1]:"),
        "the peer was reached over IPv6:\n{}",
        dl.output()
    );
}

/// Sockets a process holds, as `ss` reports them: (protocol, local address) pairs.
fn sockets_of(pid: u32) -> Vec<(String, String)> {
    let out = Command::new("ss")
        .args(["-Htunap"])
        .output()
        .expect("ss from iproute2");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[4].to_string())
        })
        .collect()
}

#[test]
fn one_udp_socket_per_family_serves_dht_and_utp_and_tcp_dials_from_the_listen_port() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let set = make_set(&d.join("src"), "set", FILES);
    let (torrent, _) = create_torrent(&d.join("src/set"), &d.join("set.torrent"), &[]);
    // A libtorrent seed that also runs a DHT node, so burrow's DHT talks to it.
    let mut node = Proc::spawn("lt-dht", libtorrent(&["--mode", "node"]), d);
    let dht_port = lt_port(&mut node);
    let mut seed = Proc::spawn(
        "lt-seed",
        libtorrent(&[
            "--mode",
            "seed",
            "--torrent",
            torrent.to_str().unwrap(),
            "--save",
            d.join("src").to_str().unwrap(),
            "--upload-limit",
            "300000",
        ]),
        d,
    );
    let seed_port = lt_port(&mut seed);
    let port = free_port();
    let boot = format!("127.0.0.1:{dht_port}");
    let peer = format!("127.0.0.1:{seed_port}");
    let mut dl = Proc::spawn(
        "burrow",
        burrow(
            &[
                "download",
                torrent.to_str().unwrap(),
                "-o",
                d.join("out").to_str().unwrap(),
                "--peer",
                &peer,
                "--dht-bootstrap",
                &boot,
                "--transport",
                "tcp",
            ],
            port,
            &d.join("state"),
        ),
        d,
    );
    // Connected and downloading (slowly): look at the sockets while the transfer runs.
    let start = std::time::Instant::now();
    let socks = loop {
        let s = sockets_of(dl.child.id());
        let connected =
            s.iter().any(|(p, _)| p == "tcp") && s.iter().filter(|(p, _)| p == "tcp").count() >= 3;
        if connected || start.elapsed() > Duration::from_secs(20) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let udp: Vec<&String> = socks
        .iter()
        .filter(|(p, _)| p == "udp")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(udp.len(), 2, "one UDP socket per family: {socks:?}");
    assert!(
        udp.iter().all(|a| a.ends_with(&format!(":{port}"))),
        "both on the session port: {udp:?}"
    );
    // Every TCP socket — the listeners and the outgoing connection to the seed — uses the port.
    let tcp: Vec<&String> = socks
        .iter()
        .filter(|(p, _)| p == "tcp")
        .map(|(_, a)| a)
        .collect();
    assert!(tcp.len() >= 3, "two listeners and a connection: {socks:?}");
    assert!(
        tcp.iter().all(|a| a.ends_with(&format!(":{port}"))),
        "outgoing TCP leaves from the listen port: {tcp:?}"
    );
    dl.wait_success(Duration::from_secs(60));
    assert_set(&d.join("out"), "set", &set);
}
