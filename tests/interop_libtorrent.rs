//! burrow against Debian's libtorrent (python3-libtorrent 2.0), a BitTorrent implementation
//! nobody here wrote, on loopback: both directions, from a .torrent and from a magnet link
//! whose only peer source is a tracker.

mod common;

use std::time::Duration;

use common::*;

const FILES: &[(&str, usize)] = &[
    ("big.bin", 9_000_000),
    ("sub/dir/small.txt", 1_234),
    ("sub/empty", 0),
    ("sub/mid.bin", 700_001),
];

#[test]
fn burrow_downloads_from_libtorrent_seed_by_torrent_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let set = make_set(&d.join("src"), "set", FILES);
    let (torrent, _) = create_torrent(
        &d.join("src/set"),
        &d.join("set.torrent"),
        &["--piece-length", "65536"],
    );
    let mut seed = Proc::spawn(
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
    let lt = lt_port(&mut seed);
    let port = free_port();
    let peer = format!("127.0.0.1:{lt}");
    let mut dl = Proc::spawn(
        "burrow-download",
        &mut burrow(
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
        ),
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
    let (torrent, magnet) = create_torrent(
        &d.join("src/set"),
        &d.join("set.torrent"),
        &["--tracker", &tracker.url()],
    );
    let _seed = Proc::spawn(
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
    // The seed must be known to the tracker before burrow asks it.
    let start = std::time::Instant::now();
    while tracker.announces.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "libtorrent never announced"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        magnet.contains("&tr="),
        "magnet carries the tracker: {magnet}"
    );
    let port = free_port();
    let mut dl = Proc::spawn(
        "burrow-magnet",
        &mut burrow(
            &["download", &magnet, "-o", d.join("out").to_str().unwrap()],
            port,
            &d.join("state"),
        ),
        d,
    );
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
    let peer = format!("127.0.0.1:{port}");
    let mut lt = Proc::spawn(
        "lt-download",
        libtorrent(&[
            "--mode",
            "download",
            "--torrent",
            torrent.to_str().unwrap(),
            "--save",
            d.join("out").to_str().unwrap(),
            "--peer",
            &peer,
            "--timeout",
            "60",
        ]),
        d,
    );
    lt.wait_success(Duration::from_secs(70));
    assert_set(&d.join("out"), "set", &set);
    let st = seed.terminate(Duration::from_secs(10));
    assert!(
        st.success(),
        "burrow seed did not exit cleanly on SIGTERM: {st}\n{}",
        seed.output()
    );
}

/// libtorrent as it ships (`out_enc_policy` enabled: its outgoing connections open with an MSE
/// handshake) downloads from burrow.
#[test]
fn default_libtorrent_connects_to_burrow_with_mse() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let set = make_set(&d.join("src"), "set", &[("x.bin", 2_500_000)]);
    let (torrent, _) = create_torrent(&d.join("src/set"), &d.join("set.torrent"), &[]);
    let port = free_port();
    let mut seed = Proc::spawn(
        "burrow-seed",
        burrow(
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
    let peer = format!("127.0.0.1:{port}");
    let mut lt = Proc::spawn(
        "lt-download-enc",
        libtorrent(&[
            "--mode",
            "download",
            "--torrent",
            torrent.to_str().unwrap(),
            "--save",
            d.join("out").to_str().unwrap(),
            "--peer",
            &peer,
            "--enc",
            "enabled",
            "--timeout",
            "60",
        ]),
        d,
    );
    lt.wait_success(Duration::from_secs(70));
    assert_set(&d.join("out"), "set", &set);
}

/// Both directions with a libtorrent that insists on encryption: burrow's plain handshake is
/// refused, so burrow dials again through MSE; and a forced-encryption leech gets in.
#[test]
fn forced_encryption_libtorrent_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let set = make_set(&d.join("src"), "set", &[("y.bin", 2_000_000)]);
    let (torrent, _) = create_torrent(&d.join("src/set"), &d.join("set.torrent"), &[]);
    let mut seed = Proc::spawn(
        "lt-seed-forced",
        libtorrent(&[
            "--mode",
            "seed",
            "--torrent",
            torrent.to_str().unwrap(),
            "--save",
            d.join("src").to_str().unwrap(),
            "--enc",
            "forced",
        ]),
        d,
    );
    let peer = format!("127.0.0.1:{}", lt_port(&mut seed));
    let port = free_port();
    let mut dl = Proc::spawn(
        "burrow-download",
        burrow(
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
        ),
        d,
    );
    dl.wait_success(Duration::from_secs(60));
    assert_set(&d.join("out"), "set", &set);
    // Now burrow seeds what it fetched to a forced-encryption libtorrent leech.
    let port2 = free_port();
    let mut seed2 = Proc::spawn(
        "burrow-seed",
        burrow(
            &[
                "seed",
                torrent.to_str().unwrap(),
                "--data",
                d.join("out").to_str().unwrap(),
                "--encryption",
                "require",
            ],
            port2,
            &d.join("state2"),
        ),
        d,
    );
    seed2.wait_for_output("seeding", Duration::from_secs(30));
    let peer2 = format!("127.0.0.1:{port2}");
    let mut lt = Proc::spawn(
        "lt-leech-forced",
        libtorrent(&[
            "--mode",
            "download",
            "--torrent",
            torrent.to_str().unwrap(),
            "--save",
            d.join("out2").to_str().unwrap(),
            "--peer",
            &peer2,
            "--enc",
            "forced",
            "--timeout",
            "60",
        ]),
        d,
    );
    lt.wait_success(Duration::from_secs(70));
    assert_set(&d.join("out2"), "set", &set);
}
