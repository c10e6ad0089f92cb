//! burrow against Debian's libtorrent (python3-libtorrent 2.0), a BitTorrent implementation
//! nobody here wrote, on loopback: both directions, from a .torrent and from a magnet link
//! whose only peer source is a tracker.

mod common;

use std::path::PathBuf;
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

/// Makes a CA and a certificate for 127.0.0.1 signed by it, with Debian's `openssl`:
/// (CA certificate, server certificate, server key).
fn test_certificates(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs (Debian package openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=burrow test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    )
}

/// A magnet whose only peer source is an HTTPS tracker (a TLS front on the test tracker);
/// burrow trusts the test CA through `SSL_CERT_FILE`, as it would the system's certificates.
#[test]
fn burrow_downloads_magnet_found_through_an_https_tracker() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tracker = tracker::Tracker::start();
    let (ca, cert, key) = test_certificates(d);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tls_front.py");
    let mut front_cmd = std::process::Command::new(PYTHON);
    front_cmd
        .arg(script)
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .arg("--backend")
        .arg(tracker.addr.to_string());
    let mut front = Proc::spawn("tls-front", &mut front_cmd, d);
    let https_url = format!("https://127.0.0.1:{}/announce", lt_port(&mut front));

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
    let start = std::time::Instant::now();
    while tracker.announces.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "libtorrent never announced"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The same magnet, with the HTTPS tracker as its only tracker.
    let xt = magnet.split('&').next().unwrap();
    let encoded: String = https_url
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let https_magnet = format!("{xt}&tr={encoded}");
    let mut c = burrow(
        &[
            "download",
            &https_magnet,
            "-o",
            d.join("out").to_str().unwrap(),
        ],
        free_port(),
        &d.join("state"),
    );
    c.env("SSL_CERT_FILE", &ca);
    let mut dl = Proc::spawn("burrow-https", &mut c, d);
    dl.wait_success(Duration::from_secs(60));
    assert_set(&d.join("out"), "set", &set);
    assert!(
        front.output().contains("tls_connection"),
        "{}",
        front.output()
    );
    assert!(
        !front.output().contains("handshake_failed"),
        "{}",
        front.output()
    );
}

/// Without the test CA trusted, the same tracker is refused: the certificate does not verify,
/// and the announce fails with a TLS error rather than talking to an unverified tracker.
#[test]
fn an_https_tracker_with_an_untrusted_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tracker = tracker::Tracker::start();
    let (_, cert, key) = test_certificates(d);
    // Another CA, which did not sign the tracker's certificate.
    let other = d.join("other");
    std::fs::create_dir(&other).unwrap();
    let (other_ca, _, _) = test_certificates(&other);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tls_front.py");
    let mut front_cmd = std::process::Command::new(PYTHON);
    front_cmd
        .arg(script)
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .arg("--backend")
        .arg(tracker.addr.to_string());
    let mut front = Proc::spawn("tls-front", &mut front_cmd, d);
    let port = lt_port(&mut front);
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&tr=https%3A%2F%2F127.0.0.1%3A{port}%2Fannounce",
        "ab".repeat(20)
    );
    let mut c = burrow(
        &["download", &magnet, "-o", d.join("out").to_str().unwrap()],
        free_port(),
        &d.join("state"),
    );
    c.env("SSL_CERT_FILE", &other_ca);
    c.env("RUST_LOG", "burrow_swarm::tracker=debug,info");
    let mut dl = Proc::spawn("burrow-https-untrusted", &mut c, d);
    dl.wait_for_output("TLS: invalid peer certificate", Duration::from_secs(30));
    assert_eq!(
        tracker.announces.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}
