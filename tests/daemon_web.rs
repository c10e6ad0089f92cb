//! The daemon's web page in headless Chromium (Debian's `chromium`): the page's script runs,
//! fetches the daemon's state and shows the torrents with their progress and the connectivity
//! panel. A screenshot is written next to the test's log for people to look at.

mod common;
mod daemon_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use daemon_support::*;
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs headless Chromium with `args` and returns its stdout.
fn chromium(profile: &Path, args: &[&str]) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "chromium is not installed (apt-get install chromium); the web test cannot run"
    );
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("chromium did not finish");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    out
}

#[test]
fn web_page_shows_torrents_progress_and_connectivity() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_set(
        &d.join("dl"),
        "web-seeded-set",
        &[("a.bin", 400_000), ("b.bin", 100_000)],
    );
    let (torrent, _) = create_torrent(&d.join("dl/web-seeded-set"), &d.join("web.torrent"), &[]);
    let mut daemon = Daemon::fresh(d, "", "");
    daemon.add_torrent(&torrent, json!({}));
    daemon.call("torrent-add", json!({ "filename": "magnet:?xt=urn:btih:aaaabbbbccccddddeeeeffff0000111122223333&dn=waiting-for-peers" }));
    daemon.wait_torrents(&["percentDone"], Duration::from_secs(20), |t| {
        t.len() == 2 && t[0]["percentDone"] == 1.0
    });

    let url = format!("http://127.0.0.1:{}/", daemon.rpc_port);
    let dom = chromium(
        &d.join("profile-dom"),
        &["--virtual-time-budget=5000", "--dump-dom", &url],
    );
    for needle in [
        "web-seeded-set",
        "100.0%",
        "waiting-for-peers",
        "0.0%",
        "seeding",
        "metadata",
        "Connectivity",
        "Peers by how they connected",
    ] {
        assert!(dom.contains(needle), "page lacks {needle:?}:\n{dom}");
    }
    assert!(
        dom.contains(&format!("<dd id=\"c-port\">{}</dd>", daemon.peer_port)),
        "listen port not shown:\n{dom}"
    );
    assert!(dom.contains("2 torrents"), "summary not rendered:\n{dom}");
    // A loopback daemon has no gateway and no votes: NAT facts are shown as unknown, never
    // invented, and the advice says there is not enough to judge.
    assert!(
        dom.contains("<dd id=\"c-nat\" class=\"\">unknown</dd>"),
        "{dom}"
    );
    assert!(dom.contains("Not enough reports yet"), "{dom}");
    assert!(dom.contains("no incoming connection yet"), "{dom}");

    let shot = d.join("page.png");
    chromium(
        &d.join("profile-shot"),
        &[
            "--virtual-time-budget=5000",
            "--window-size=1280,800",
            &format!("--screenshot={}", shot.display()),
            &url,
        ],
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot of {} bytes",
        png.len()
    );
    if let Some(keep) = std::env::var_os("BURROW_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
