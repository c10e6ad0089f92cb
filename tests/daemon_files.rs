//! Choosing files and moving data in `burrow daemon`, driven by Debian's `transmission-remote`
//! (3.00) against a libtorrent 2.0 seeder on loopback: skip a file and set priorities before
//! starting (`-G`, `-ph`, `-pl`, shown by `-f`), want it again mid-download (`-g`), move a
//! complete torrent's data while it seeds (`--move`), and a magnet link's `so` kept across a
//! restart.

mod common;
mod daemon_support;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use daemon_support::*;
use serde_json::json;

fn remote(d: &Daemon, args: &[&str]) -> String {
    let o = Command::new("transmission-remote")
        .arg(format!("127.0.0.1:{}", d.rpc_port))
        .args(args)
        .output()
        .expect("transmission-remote is installed (apt-get install transmission-cli)");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success() && !out.contains("Error:"),
        "transmission-remote {args:?} failed:\n{out}\n{}",
        d.proc.output()
    );
    out
}

const FILES: &[(&str, usize)] = &[
    ("a.bin", 300_001),
    ("b.bin", 250_000),
    ("c.bin", 310_007),
    ("d.bin", 120_500),
];

fn seeder(
    d: &std::path::Path,
    tracker: &tracker::Tracker,
    limit: &str,
) -> (Proc, std::path::PathBuf, String, Vec<(String, Vec<u8>)>) {
    let set = make_set(&d.join("src"), "set", FILES);
    let (torrent, magnet) = create_torrent(
        &d.join("src/set"),
        &d.join("set.torrent"),
        &["--piece-length", "32768", "--tracker", &tracker.url()],
    );
    let seed = Proc::spawn(
        "lt-seed",
        libtorrent(&[
            "--mode",
            "seed",
            "--torrent",
            torrent.to_str().unwrap(),
            "--save",
            d.join("src").to_str().unwrap(),
            "--upload-limit",
            limit,
        ]),
        d,
    );
    (seed, torrent, magnet, set)
}

/// The `-f` line of file `n`.
fn file_line(list: &str, n: usize) -> String {
    list.lines()
        .find(|l| l.trim_start().starts_with(&format!("{n}:")))
        .unwrap_or_else(|| panic!("no file {n} in\n{list}"))
        .to_string()
}

#[test]
fn skip_prioritise_and_want_again_through_transmission_remote() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tracker = tracker::Tracker::start();
    let (_seed, torrent, _, set) = seeder(d, &tracker, "250000");
    let mut daemon = Daemon::fresh(d, "", "");
    let id = daemon.add_torrent(&torrent, json!({ "paused": true }));
    let t = id.to_string();
    remote(&daemon, &["-t", &t, "-G", "2"]);
    remote(&daemon, &["-t", &t, "-ph", "3", "-pl", "0"]);
    let files = remote(&daemon, &["-t", &t, "-f"]);
    assert!(file_line(&files, 0).contains("Low"), "{files}");
    assert!(file_line(&files, 3).contains("High"), "{files}");
    let skipped = file_line(&files, 2);
    assert!(skipped.contains("No"), "{files}");
    remote(&daemon, &["-t", &t, "-s"]);
    // Mid-download: the skipped file was never created; now it is wanted, and another file
    // is skipped while its pieces are in flight.
    let out = d.join("dl/set");
    daemon.wait_torrents(&["percentDone"], Duration::from_secs(60), |t| {
        t[0]["percentDone"].as_f64() > Some(0.2)
    });
    assert!(!out.join("c.bin").exists(), "a skipped file is not created");
    let t_get = daemon.torrents(&["sizeWhenDone", "wanted", "priorities", "percentDone"]);
    assert!(
        t_get[0]["percentDone"].as_f64() < Some(1.0),
        "still downloading: {t_get:?}"
    );
    let size_when_done: usize = [0, 1, 3].iter().map(|&i| FILES[i].1).sum();
    assert_eq!(t_get[0]["sizeWhenDone"], size_when_done, "{t_get:?}");
    assert_eq!(t_get[0]["wanted"], json!([1, 1, 0, 1]));
    assert_eq!(t_get[0]["priorities"], json!([-1, 0, 0, 1]));
    remote(&daemon, &["-t", &t, "-g", "2", "-G", "1"]);
    let t_get = daemon.torrents(&["sizeWhenDone", "wanted"]);
    assert_eq!(t_get[0]["wanted"], json!([1, 0, 1, 1]));
    let size_when_done: usize = [0, 2, 3].iter().map(|&i| FILES[i].1).sum();
    assert_eq!(t_get[0]["sizeWhenDone"], size_when_done, "{t_get:?}");
    daemon.wait_torrents(&["percentDone", "status"], Duration::from_secs(60), |t| {
        t[0]["percentDone"] == 1.0 && t[0]["status"] == 6
    });
    for i in [0, 2, 3] {
        assert_eq!(
            std::fs::read(out.join(&set[i].0)).unwrap(),
            set[i].1,
            "{}",
            set[i].0
        );
    }
    // Wanted again at the end: the rest of it arrives and every file is whole.
    remote(&daemon, &["-t", &t, "-g", "1"]);
    let start = Instant::now();
    while std::fs::read(out.join("b.bin")).ok().as_ref() != Some(&set[1].1) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "b.bin never complete"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_set(&d.join("dl"), "set", &set);
    // A file number the torrent does not have is refused.
    let o = Command::new("transmission-remote")
        .arg(format!("127.0.0.1:{}", daemon.rpc_port))
        .args(["-t", &t, "-G", "9"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(text.contains("not a file of this torrent"), "{text}");
}

#[test]
fn a_complete_torrent_moves_while_seeding_without_hashing_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let other = d.join("elsewhere");
    std::fs::create_dir_all(&other).unwrap();
    // The data is already in the download folder: the daemon seeds it.
    let set = make_set(&d.join("dl"), "set", FILES);
    let (torrent, _) = create_torrent(
        &d.join("dl/set"),
        &d.join("set.torrent"),
        &["--piece-length", "32768"],
    );
    let mut daemon = Daemon::fresh(d, &format!("allowed_dirs = [\"{}\"]", other.display()), "");
    let id = daemon.add_torrent(&torrent, json!({}));
    daemon.wait_torrents(&["status"], Duration::from_secs(30), |t| {
        t[0]["status"] == 6
    });
    remote(
        &daemon,
        &["-t", &id.to_string(), "--move", other.to_str().unwrap()],
    );
    let t = daemon.wait_torrents(&["status", "downloadDir"], Duration::from_secs(30), |t| {
        t[0]["status"] == 6 && t[0]["downloadDir"] == other.to_str().unwrap()
    });
    assert_eq!(t[0]["downloadDir"], other.to_str().unwrap());
    assert_set(&other, "set", &set);
    assert!(
        !d.join("dl/set").exists(),
        "the old folder is empty and gone"
    );
    let log = daemon.proc.output();
    let checks: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("pieces found on disk"))
        .collect();
    let last = checks
        .last()
        .unwrap_or_else(|| panic!("no start after the move:\n{log}"));
    assert!(
        last.contains("hashed=0"),
        "moved data is trusted, not hashed: {last}"
    );
    // It serves from the new place.
    let mut lt = Proc::spawn(
        "lt-dl",
        libtorrent(&[
            "--mode",
            "download",
            "--torrent",
            torrent.to_str().unwrap(),
            "--save",
            d.join("lt").to_str().unwrap(),
            "--peer",
            &format!("127.0.0.1:{}", daemon.peer_port),
        ]),
        d,
    );
    lt.wait_success(Duration::from_secs(60));
    assert_set(&d.join("lt"), "set", &set);
    // A folder outside the allowed ones is refused.
    let o = Command::new("transmission-remote")
        .arg(format!("127.0.0.1:{}", daemon.rpc_port))
        .args(["-t", &id.to_string(), "--move", "/tmp/not-allowed-here"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(!text.contains("success"), "{text}");
    assert!(!std::path::Path::new("/tmp/not-allowed-here/set").exists());
}

#[test]
fn a_magnet_links_file_selection_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tracker = tracker::Tracker::start();
    let (_seed, _, magnet, set) = seeder(d, &tracker, "0");
    let mut daemon = Daemon::fresh(d, "", "");
    daemon.call(
        "torrent-add",
        json!({ "filename": format!("{magnet}&so=1,3") }),
    );
    let out = d.join("dl/set");
    daemon.wait_torrents(&["percentDone", "status"], Duration::from_secs(60), |t| {
        t[0]["percentDone"] == 1.0 && t[0]["status"] == 6
    });
    for i in [1, 3] {
        assert_eq!(std::fs::read(out.join(&set[i].0)).unwrap(), set[i].1);
    }
    // The daemon keeps the metadata within a second of it arriving.
    let t = daemon.wait_torrents(&["wanted"], Duration::from_secs(5), |t| {
        t[0]["wanted"].as_array().is_some_and(|w| !w.is_empty())
    });
    assert_eq!(t[0]["wanted"], json!([0, 1, 0, 1]));
    daemon.proc.terminate(Duration::from_secs(20));
    let mut again = Daemon::start(
        d,
        "daemon2",
        &daemon.config,
        daemon.rpc_port,
        daemon.peer_port,
    );
    let t = again.wait_torrents(
        &["status", "wanted", "percentDone"],
        Duration::from_secs(30),
        |t| t[0]["status"] == 6,
    );
    assert_eq!(t[0]["percentDone"], 1.0, "{t:?}");
    assert_eq!(t[0]["wanted"], json!([0, 1, 0, 1]), "{t:?}");
    std::thread::sleep(Duration::from_secs(3));
    for i in [0, 2] {
        assert!(
            !out.join(&set[i].0).exists(),
            "{} created after the restart",
            set[i].0
        );
    }
}
