//! burrow against Debian's libtorrent (python3-libtorrent 2.0), a BitTorrent implementation
//! nobody here wrote, on loopback: both directions, from a .torrent and from a magnet link
//! whose only peer source is a tracker.

mod common;

use std::time::Duration;

use common::*;

const FILES: &[(&str, usize)] = &[("big.bin", 9_000_000), ("sub/dir/small.txt", 1_234), ("sub/empty", 0), ("sub/mid.bin", 700_001)];

#[test]
fn burrow_downloads_from_libtorrent_seed_by_torrent_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let set = make_set(&d.join("src"), "set", FILES);
    let (torrent, _) = create_torrent(&d.join("src/set"), &d.join("set.torrent"), &["--piece-length", "65536"]);
    let mut seed = Proc::spawn("lt-seed", libtorrent(&["--mode", "seed", "--torrent", torrent.to_str().unwrap(), "--save", d.join("src").to_str().unwrap()]), d);
    let lt = lt_port(&mut seed);
    let port = free_port();
    let peer = format!("127.0.0.1:{lt}");
    let mut dl = Proc::spawn(
        "burrow-download",
        &mut burrow(&["download", torrent.to_str().unwrap(), "-o", d.join("out").to_str().unwrap(), "--peer", &peer], port, &d.join("state")),
        d,
    );
    dl.wait_success(Duration::from_secs(60));
    assert_set(&d.join("out"), "set", &set);
    assert!(dl.output().contains("complete 100.0%"), "{}", dl.output());
}

#[test]
fn burrow_downloads_magnet_found_through_a_tracker_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tracker = tracker::Tracker::start();
    let set = make_set(&d.join("src"), "set", FILES);
    let (torrent, magnet) = create_torrent(&d.join("src/set"), &d.join("set.torrent"), &["--tracker", &tracker.url()]);
    let _seed = Proc::spawn("lt-seed", libtorrent(&["--mode", "seed", "--torrent", torrent.to_str().unwrap(), "--save", d.join("src").to_str().unwrap()]), d);
    // The seed must be known to the tracker before burrow asks it.
    let start = std::time::Instant::now();
    while tracker.announces.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(start.elapsed() < Duration::from_secs(20), "libtorrent never announced");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(magnet.contains("&tr="), "magnet carries the tracker: {magnet}");
    let port = free_port();
    let mut dl = Proc::spawn("burrow-magnet", &mut burrow(&["download", &magnet, "-o", d.join("out").to_str().unwrap()], port, &d.join("state")), d);
    dl.wait_success(Duration::from_secs(60));
    assert_set(&d.join("out"), "set", &set);
    assert!(dl.output().contains("metadata received"), "{}", dl.output());
}

#[test]
fn libtorrent_downloads_from_burrow_seed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let set = make_set(&d.join("src"), "set", FILES);
    let (torrent, _) = create_torrent(&d.join("src/set"), &d.join("set.torrent"), &[]);
    let port = free_port();
    let mut seed = Proc::spawn("burrow-seed", &mut burrow(&["seed", torrent.to_str().unwrap(), "--data", d.join("src").to_str().unwrap()], port, &d.join("state")), d);
    seed.wait_for_output("seeding", Duration::from_secs(30));
    let peer = format!("127.0.0.1:{port}");
    let mut lt = Proc::spawn(
        "lt-download",
        libtorrent(&["--mode", "download", "--torrent", torrent.to_str().unwrap(), "--save", d.join("out").to_str().unwrap(), "--peer", &peer, "--timeout", "60"]),
        d,
    );
    lt.wait_success(Duration::from_secs(70));
    assert_set(&d.join("out"), "set", &set);
    let st = seed.terminate(Duration::from_secs(10));
    assert!(st.success(), "burrow seed did not exit cleanly on SIGTERM: {st}\n{}", seed.output());
}
