//! `burrow daemon` driven by Debian's `transmission-remote` (transmission-cli 3.00), a client
//! nobody here wrote, over the real RPC on loopback: add, list, stop, start, remove (with and
//! without the data), session stats and info, and the refusals it must show.

mod common;
mod daemon_support;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use daemon_support::*;

/// Runs transmission-remote against the daemon and returns (success, stdout + stderr).
fn remote(d: &Daemon, args: &[&str]) -> (bool, String) {
    let o = Command::new("transmission-remote")
        .arg(format!("127.0.0.1:{}", d.rpc_port))
        .args(args)
        .output()
        .expect("transmission-remote is installed (apt-get install transmission-cli)");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn ok(d: &Daemon, args: &[&str]) -> String {
    let (success, out) = remote(d, args);
    assert!(
        success,
        "transmission-remote {args:?} failed:\n{out}\n{}",
        d.proc.output()
    );
    out
}

/// The `-l` row of torrent `id`.
fn row(list: &str, id: i64) -> Option<String> {
    list.lines()
        .find(|l| l.split_whitespace().next() == Some(&id.to_string()))
        .map(str::to_string)
}

fn wait_row(d: &Daemon, id: i64, what: &str, cond: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let list = ok(d, &["-l"]);
        if let Some(r) = row(&list, id).filter(|r| cond(r)) {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "torrent {id} never {what}:\n{list}\n{}",
            d.proc.output()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn transmission_remote_adds_lists_stops_starts_and_removes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Data already in the download folder: the daemon checks it and seeds.
    make_set(
        &d.join("dl"),
        "seeded-set",
        &[("one.bin", 700_000), ("two/three.bin", 300_001)],
    );
    let (torrent, _) = create_torrent(
        &d.join("dl/seeded-set"),
        &d.join("seeded.torrent"),
        &["--piece-length", "32768"],
    );
    let daemon = Daemon::fresh(d, "", "");

    let out = ok(&daemon, &["-a", torrent.to_str().unwrap()]);
    assert!(out.contains("responded: \"success\""), "{out}");
    let magnet = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=nobody-has-this";
    ok(&daemon, &["-a", magnet]);

    let seeded = wait_row(&daemon, 1, "verified", |r| r.contains("100%"));
    assert!(
        seeded.contains("seeded-set") && (seeded.contains("Idle") || seeded.contains("Seeding")),
        "{seeded}"
    );
    let list = ok(&daemon, &["-l"]);
    let pending = row(&list, 2).unwrap_or_else(|| panic!("magnet not listed:\n{list}"));
    // No metadata yet: its size is unknown, which transmission-remote shows as n/a.
    assert!(
        pending.contains("nobody-has-this") && pending.contains("n/a"),
        "{pending}"
    );
    assert!(list.contains("Sum:"), "{list}");

    // Stop and start.
    ok(&daemon, &["-t", "1", "-S"]);
    wait_row(&daemon, 1, "stopped", |r| r.contains("Stopped"));
    ok(&daemon, &["-t", "1", "-s"]);
    let restarted = wait_row(&daemon, 1, "restarted", |r| {
        !r.contains("Stopped") && r.contains("100%")
    });
    assert!(restarted.contains("seeded-set"), "{restarted}");

    // Session statistics and information.
    let stats = ok(&daemon, &["-st"]);
    assert!(
        stats.contains("CURRENT SESSION") && stats.contains("Started 1 times"),
        "{stats}"
    );
    let info = ok(&daemon, &["-si"]);
    assert!(info.contains("RPC version: 15"), "{info}");
    assert!(
        info.contains(&format!("Listenport: {}", daemon.peer_port)),
        "{info}"
    );
    assert!(
        info.contains(&format!("Download directory: {}", d.join("dl").display())),
        "{info}"
    );

    // Details of one torrent, with its files.
    let files = ok(&daemon, &["-t", "1", "-f"]);
    assert!(
        files.contains("seeded-set/one.bin") && files.contains("seeded-set/two/three.bin"),
        "{files}"
    );
    assert!(
        files.lines().filter(|l| l.contains("100%")).count() == 2,
        "{files}"
    );

    // Verify finds a damaged piece: the torrent is no longer complete.
    let one = d.join("dl/seeded-set/one.bin");
    let mut bytes = std::fs::read(&one).unwrap();
    bytes[40_000] ^= 0xff;
    std::fs::write(&one, &bytes).unwrap();
    ok(&daemon, &["-t", "1", "-v"]);
    // One 32 KiB piece of 1 MB is bad: 96.7% left (shown rounded or truncated).
    let damaged = wait_row(&daemon, 1, "re-verified", |r| {
        r.contains("97%") || r.contains("96%")
    });
    assert!(damaged.contains("seeded-set"), "{damaged}");

    // Remove the magnet (nothing on disk), then the seeded torrent with its data.
    ok(&daemon, &["-t", "2", "-r"]);
    let list = ok(&daemon, &["-l"]);
    assert!(row(&list, 2).is_none() && row(&list, 1).is_some(), "{list}");
    assert!(d.join("dl/seeded-set/one.bin").exists());
    ok(&daemon, &["-t", "1", "--remove-and-delete"]);
    let start = Instant::now();
    while d.join("dl/seeded-set").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "data of a removed torrent not deleted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(d.join("dl").exists(), "the download folder itself stays");
    assert!(row(&ok(&daemon, &["-l"]), 1).is_none());

    // Refusals reach the user as errors.
    let (success, out) = remote(&daemon, &["-a", torrent.to_str().unwrap(), "-w", "/etc"]);
    assert!(
        !success && out.contains("outside the allowed download folders"),
        "{out}"
    );
    let bogus = d.join("bogus.torrent");
    std::fs::write(&bogus, b"d8:announce3:abce").unwrap();
    let (success, out) = remote(&daemon, &["-a", bogus.to_str().unwrap()]);
    assert!(
        !success && out.contains("invalid or corrupt torrent"),
        "{out}"
    );
}
