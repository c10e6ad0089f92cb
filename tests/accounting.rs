//! Upload accounting is exact: a peer that downloads a whole torrent and leaves the moment
//! the last block arrives is counted to the byte, in the seed's own totals, in the `stopped`
//! announce's `uploaded`, and in the daemon's `uploadedEver`, `session-stats` and `/metrics`
//! (also after a restart). The peer is a scripted leecher that asks for every block once, so
//! the payload sent is exactly the torrent's size.

mod common;
mod daemon_support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use burrow_swarm::metainfo::Metainfo;
use common::leech::{leech_all, LeechTorrent};
use common::*;
use daemon_support::*;
use serde_json::json;

/// Not a multiple of the block or piece size, so the last block is short.
const SIZE: usize = 3 * 1024 * 1024 + 12_345;

fn leech_view(torrent: &Path) -> LeechTorrent {
    let m = Metainfo::from_bytes(&std::fs::read(torrent).unwrap()).unwrap();
    LeechTorrent {
        info_hash: m.info.info_hash.0,
        piece_length: m.info.piece_length,
        total_length: m.info.total_length,
        piece_hashes: m.info.pieces.iter().map(|p| p.0).collect(),
    }
}

fn uploaded_line(out: &str) -> u64 {
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with("this session:"))
        .unwrap_or_else(|| panic!("no totals line:\n{out}"));
    line.split("uploaded ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {line:?}"))
}

#[test]
fn seed_counts_every_byte_sent_to_a_peer_that_leaves_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tracker = tracker::Tracker::start();
    let set = make_set(&d.join("src"), "acct", &[("data.bin", SIZE)]);
    let (torrent, _) = create_torrent(
        &d.join("src/acct"),
        &d.join("acct.torrent"),
        &["--piece-length", "262144", "--tracker", &tracker.url()],
    );
    let view = leech_view(&torrent);
    let port = free_port();
    let mut seed = Proc::spawn(
        "seed",
        burrow(
            &[
                "seed",
                torrent.to_str().unwrap(),
                "--data",
                d.join("src").to_str().unwrap(),
                "--no-dht",
            ],
            port,
            &d.join("state"),
        ),
        d,
    );
    seed.wait_for_output("seeding", Duration::from_secs(20));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Twice: one peer closes in order, one resets; each leaves the moment it has it all.
    for reset in [false, true] {
        let got = leech_all(addr, &view, 64, reset);
        assert!(got == set[0].1, "leecher got other bytes");
    }
    let st = seed.terminate(Duration::from_secs(20));
    assert!(st.success(), "seed exited with {st}:\n{}", seed.output());
    let out = seed.output();
    assert_eq!(uploaded_line(&out), 2 * SIZE as u64, "{out}");
    let log = tracker.log.lock().unwrap().clone();
    let stopped = log
        .iter()
        .rfind(|(e, _)| e == "stopped")
        .unwrap_or_else(|| panic!("no stopped announce: {log:?}"));
    assert_eq!(stopped.1, 2 * SIZE as u64, "announces: {log:?}");
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}")) as u64
}

#[test]
fn daemon_counts_every_byte_sent_to_a_peer_that_leaves_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let set = make_set(&d.join("dl"), "acct", &[("data.bin", SIZE)]);
    let (torrent, _) = create_torrent(
        &d.join("dl/acct"),
        &d.join("acct.torrent"),
        &["--piece-length", "262144"],
    );
    let view = leech_view(&torrent);
    let mut daemon = Daemon::fresh(d, "", "");
    daemon.add_torrent(&torrent, json!({}));
    daemon.wait_torrents(&["status"], Duration::from_secs(20), |t| {
        t.len() == 1 && t[0]["status"] == 6
    });
    let addr: SocketAddr = format!("127.0.0.1:{}", daemon.peer_port).parse().unwrap();
    let got = leech_all(addr, &view, 64, true);
    assert!(got == set[0].1, "leecher got other bytes");
    let want = SIZE as u64;
    let t = daemon.wait_torrents(&["uploadedEver"], Duration::from_secs(5), |t| {
        t[0]["uploadedEver"].as_u64() >= Some(want)
    });
    // Give a wrong count the chance to grow further before checking it is exact.
    std::thread::sleep(Duration::from_millis(1500));
    let t2 = daemon.torrents(&["uploadedEver"]);
    assert_eq!(t[0]["uploadedEver"], want, "{t:?}");
    assert_eq!(t2[0]["uploadedEver"], want, "{t2:?}");
    let stats = daemon.call("session-stats", json!({}));
    assert_eq!(stats["current-stats"]["uploadedBytes"], want, "{stats}");
    assert_eq!(stats["cumulative-stats"]["uploadedBytes"], want, "{stats}");
    let metrics = daemon.get("/metrics").text();
    assert_eq!(metric(&metrics, "burrow_uploaded_bytes_total"), want);
    // A clean restart keeps the lifetime total.
    daemon.proc.terminate(Duration::from_secs(20));
    let mut again = Daemon::start(
        d,
        "daemon2",
        &daemon.config,
        daemon.rpc_port,
        daemon.peer_port,
    );
    let start = Instant::now();
    let t = again.torrents(&["uploadedEver"]);
    assert_eq!(
        t[0]["uploadedEver"],
        want,
        "after restart ({:?})",
        start.elapsed()
    );
}
