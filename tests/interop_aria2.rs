//! aria2 (Debian's aria2c), an independent BitTorrent client, downloads from `burrow seed`
//! through a tracker on loopback.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn aria2_downloads_from_burrow_seed() {
    let ok = Command::new("aria2c")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "aria2c is not installed (apt-get install aria2); this interop test cannot run"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tracker = tracker::Tracker::start();
    let set = make_set(
        &d.join("src"),
        "set",
        &[("one.bin", 3_000_000), ("two/three.bin", 123_457)],
    );
    let (torrent, _) = create_torrent(
        &d.join("src/set"),
        &d.join("set.torrent"),
        &["--tracker", &tracker.url()],
    );
    let port = free_port();
    let mut seed = Proc::spawn(
        "burrow-seed",
        &mut burrow(
            &[
                "seed",
                torrent.to_str().unwrap(),
                "--data",
                d.join("src").to_str().unwrap(),
            ],
            port,
            &d.join("state"),
        ),
        d,
    );
    seed.wait_for_output("seeding", Duration::from_secs(30));
    let start = std::time::Instant::now();
    while tracker.announces.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "burrow never announced:\n{}",
            seed.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let aria_port = free_port().to_string();
    let mut aria = Proc::spawn(
        "aria2c",
        Command::new("aria2c").args([
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--seed-time=0",
            "--bt-stop-timeout=60",
            "--listen-port",
            &aria_port,
            "--dir",
            d.join("out").to_str().unwrap(),
            "--summary-interval=0",
            torrent.to_str().unwrap(),
        ]),
        d,
    );
    aria.wait_success(Duration::from_secs(90));
    assert_set(&d.join("out"), "set", &set);
}
