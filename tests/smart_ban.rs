//! Smart ban against a lying peer on loopback: a scripted peer (tests/support/bad_peer.py,
//! at 127.0.0.2) corrupts a share of the blocks it serves while an honest libtorrent seed
//! (Debian's python3-libtorrent, at 127.0.0.1) serves the same torrent. burrow must finish
//! with the right bytes and ban the liar alone, 20 downloads in a row, also when the liar
//! withholds the last block of every piece so that the honest seed completes its pieces.
//! The daemon shows the ban in `torrent-get` and `/metrics`.

mod common;
mod daemon_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use daemon_support::Daemon;
use serde_json::{json, Value};

/// Small enough that 20 downloads are cheap, with enough pieces for the liar to poison many.
const LEN: usize = 2 * 1024 * 1024;
const PIECE: &str = "32768";
const RUNS: usize = 20;

fn bad_peer(args: &[&str]) -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/bad_peer.py");
    let mut c = Command::new(PYTHON);
    c.arg(script).args(args);
    c
}

struct Swarm {
    dir: tempfile::TempDir,
    torrent: PathBuf,
    payload: PathBuf,
    data: Vec<u8>,
    _seed: Proc,
    seed_port: u16,
}

/// The torrent and an honest libtorrent seed, capped at 1 MB/s so that the liar, which
/// answers at once, gets a fair share of the requests.
fn swarm() -> Swarm {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("src")).unwrap();
    let data = bytes(LEN, 19);
    let payload = d.join("src/payload.bin");
    std::fs::write(&payload, &data).unwrap();
    let (torrent, _) = create_torrent(&payload, &d.join("p.torrent"), &["--piece-length", PIECE]);
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
            "1000000",
            "--timeout",
            "900",
        ]),
        d,
    );
    let seed_port = lt_port(&mut seed);
    Swarm {
        dir,
        torrent,
        payload,
        data,
        _seed: seed,
        seed_port,
    }
}

/// One download with the liar beside the honest seed; returns how long it took.
fn one_run(s: &Swarm, run: usize, liar: &[&str]) -> Duration {
    let d = s.dir.path();
    let out = d.join(format!("out{run}"));
    let port = free_port();
    let start = Instant::now();
    let mut dl = Proc::spawn(
        &format!("burrow-{run}"),
        &mut burrow(
            &[
                "-v",
                "download",
                s.torrent.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--peer",
                &format!("127.0.0.1:{}", s.seed_port),
                "--no-dht",
                "--no-lsd",
                "--no-port-mapping",
            ],
            port,
            &d.join(format!("state{run}")),
        ),
        d,
    );
    let connect = format!("127.0.0.1:{port}");
    let mut args = vec![
        "--torrent",
        s.torrent.to_str().unwrap(),
        "--data",
        s.payload.to_str().unwrap(),
        "--connect",
        &connect,
    ];
    args.extend_from_slice(liar);
    let bad = Proc::spawn(&format!("liar-{run}"), bad_peer(&args), d);
    dl.wait_success(Duration::from_secs(90));
    let took = start.elapsed();
    let got = std::fs::read(out.join("payload.bin")).unwrap();
    assert!(got == s.data, "run {run}: wrong bytes");
    let log = dl.output();
    let liar_log = bad.output();
    assert!(
        liar_log.contains("\"connected\""),
        "run {run}: the liar never got in:\n{liar_log}"
    );
    assert!(
        log.contains("banned 1: 127.0.0.2 ("),
        "run {run}: the liar was not banned:\n{log}\n{liar_log}"
    );
    assert!(
        !log.contains("127.0.0.1 ("),
        "run {run}: the honest seed was banned:\n{log}"
    );
    let line = |l: &str, needle: &str| {
        l.lines()
            .rfind(|x| x.contains(needle))
            .unwrap_or("")
            .to_string()
    };
    eprintln!(
        "run {run}: {took:.2?}; {}; liar: {}; {}",
        line(&log, "banned 1:")
            .split(" banned ")
            .nth(1)
            .unwrap_or(""),
        line(&liar_log, "\"closed\""),
        line(&log, "pieces failed verification")
    );
    took
}

fn twenty_runs(liar: &[&str]) {
    let s = swarm();
    let mut times = Vec::new();
    for run in 0..RUNS {
        times.push(one_run(&s, run, liar));
    }
    times.sort();
    eprintln!(
        "{RUNS} runs, liar {liar:?}: median {:?}, slowest {:?}",
        times[RUNS / 2],
        times[RUNS - 1]
    );
}

#[test]
fn a_liar_beside_an_honest_libtorrent_seed_is_banned_alone_20_times() {
    twenty_runs(&["--corrupt-every", "4"]);
}

#[test]
fn a_withholding_liar_beside_an_honest_libtorrent_seed_is_banned_alone_20_times() {
    twenty_runs(&["--corrupt-every", "2", "--withhold"]);
}

/// The daemon downloads beside the liar: `torrent-get` lists the liar as banned with the
/// reason (and counts it), the honest seed is not, `/metrics` counts the ban.
#[test]
fn the_daemon_shows_the_banned_liar_in_torrent_get_and_metrics() {
    let s = swarm();
    let d = s.dir.path().join("daemon");
    std::fs::create_dir_all(&d).unwrap();
    let mut daemon = Daemon::fresh(&d, "", "");
    daemon.add_torrent(&s.torrent, json!({}));
    let at = format!("127.0.0.1:{}", daemon.peer_port);
    let src = s.dir.path().join("src");
    let _honest = Proc::spawn(
        "lt-seed-to-daemon",
        libtorrent(&[
            "--mode",
            "seed",
            "--torrent",
            s.torrent.to_str().unwrap(),
            "--save",
            src.to_str().unwrap(),
            "--upload-limit",
            "1000000",
            "--peer",
            &at,
        ]),
        &d,
    );
    let _liar = Proc::spawn(
        "liar-to-daemon",
        bad_peer(&[
            "--torrent",
            s.torrent.to_str().unwrap(),
            "--data",
            s.payload.to_str().unwrap(),
            "--connect",
            &at,
        ]),
        &d,
    );
    let fields = ["percentDone", "peers", "peersBanned"];
    let t = daemon.wait_torrents(&fields, Duration::from_secs(90), |t| {
        t[0]["percentDone"] == 1.0 && t[0]["peersBanned"] == 1
    });
    let peers = t[0]["peers"].as_array().unwrap();
    let banned: Vec<&Value> = peers.iter().filter(|p| p["isBanned"] == true).collect();
    assert_eq!(banned.len(), 1, "{peers:?}");
    assert_eq!(banned[0]["address"], "127.0.0.2");
    let reason = banned[0]["banReason"].as_str().unwrap();
    assert!(reason.starts_with("sent "), "{reason}");
    let got = std::fs::read(d.join("dl/payload.bin")).unwrap();
    assert!(got == s.data, "wrong bytes");
    let metrics = daemon.get("/metrics").text();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("burrow_torrent_peers_banned_total{"))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(line.ends_with(" 1"), "{line}");
}
