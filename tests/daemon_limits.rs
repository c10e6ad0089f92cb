//! Rate caps of `burrow daemon` against a libtorrent peer that would go much faster: a
//! per-torrent download cap, a lower session cap on top of it, lifting both, and a per-torrent
//! upload cap while libtorrent downloads from the daemon.

mod common;
mod daemon_support;

use std::time::{Duration, Instant};

use common::*;
use daemon_support::*;
use serde_json::json;

/// Bytes/s over `secs` of the field `field` of torrent `id`.
fn measure(d: &mut Daemon, id: i64, field: &str, secs: f64) -> f64 {
    let get = |d: &mut Daemon| {
        d.call("torrent-get", json!({ "ids": [id], "fields": [field] }))["torrents"][0][field]
            .as_f64()
            .unwrap()
    };
    let (a, t0) = (get(d), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(secs));
    let b = get(d);
    (b - a) / t0.elapsed().as_secs_f64()
}

#[test]
fn download_and_upload_caps_hold_and_lift() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tracker = tracker::Tracker::start();
    let set = make_set(&d.join("src"), "capped", &[("data.bin", 12_000_000)]);
    let (torrent, _) = create_torrent(
        &d.join("src/capped"),
        &d.join("capped.torrent"),
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
        ]),
        d,
    );
    let start = Instant::now();
    while tracker.announces.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "libtorrent never announced"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut daemon = Daemon::fresh(d, "", "");
    let id = daemon.add_torrent(&torrent, json!({ "paused": true }));
    daemon.call(
        "torrent-set",
        json!({ "ids": [id], "downloadLimit": 400, "downloadLimited": true }),
    );
    daemon.call("torrent-start", json!({ "ids": [id] }));
    daemon.wait_torrents(&["haveValid"], Duration::from_secs(20), |t| {
        t[0]["haveValid"].as_u64().unwrap() > 200_000
    });

    let capped = measure(&mut daemon, id, "haveValid", 4.0);
    eprintln!("torrent cap 400 kB/s: {capped:.0} B/s");
    assert!(
        (200_000.0..=460_000.0).contains(&capped),
        "{capped} B/s under a 400 kB/s cap"
    );

    // A lower session cap governs.
    daemon.call(
        "session-set",
        json!({ "speed-limit-down": 150, "speed-limit-down-enabled": true }),
    );
    std::thread::sleep(Duration::from_millis(500));
    let session_capped = measure(&mut daemon, id, "haveValid", 4.0);
    eprintln!("session cap 150 kB/s: {session_capped:.0} B/s");
    assert!(
        (60_000.0..=190_000.0).contains(&session_capped),
        "{session_capped} B/s under a 150 kB/s cap"
    );

    // Without caps it completes quickly.
    daemon.call("session-set", json!({ "speed-limit-down-enabled": false }));
    daemon.call(
        "torrent-set",
        json!({ "ids": [id], "downloadLimited": false }),
    );
    let t0 = Instant::now();
    daemon.wait_torrents(&["percentDone"], Duration::from_secs(30), |t| {
        t[0]["percentDone"] == 1.0
    });
    eprintln!("rest without caps in {:.1}s", t0.elapsed().as_secs_f64());
    assert_set(&d.join("dl"), "capped", &set);

    // Upload cap: libtorrent downloads from the daemon, its only source (the seed is gone).
    drop(seed);
    daemon.call(
        "torrent-set",
        json!({ "ids": [id], "uploadLimit": 300, "uploadLimited": true }),
    );
    let peer = format!("127.0.0.1:{}", daemon.peer_port);
    let _leech = Proc::spawn(
        "lt-leech",
        libtorrent(&[
            "--mode",
            "download",
            "--torrent",
            torrent.to_str().unwrap(),
            "--save",
            d.join("leech").to_str().unwrap(),
            "--peer",
            &peer,
            "--timeout",
            "60",
        ]),
        d,
    );
    daemon.wait_torrents(&["uploadedEver"], Duration::from_secs(20), |t| {
        t[0]["uploadedEver"].as_u64().unwrap() > 100_000
    });
    let up = measure(&mut daemon, id, "uploadedEver", 4.0);
    eprintln!("upload cap 300 kB/s: {up:.0} B/s");
    assert!(
        (150_000.0..=345_000.0).contains(&up),
        "{up} B/s under a 300 kB/s upload cap"
    );
}
