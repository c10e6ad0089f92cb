//! The daemon's RPC and HTTP guards and its torrent management: the session-id handshake,
//! credentials, the Host check, body limits, download-folder confinement, queues, seeding
//! limits, the watch folder, moving the listen port, and state kept across restarts.

mod common;
mod daemon_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use daemon_support::*;
use serde_json::{json, Value};

fn header(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

fn wait<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn session_id_handshake_host_check_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::fresh(dir.path(), "", "");
    let body = br#"{"method":"session-get","tag":3}"#;
    let r = http(d.rpc_port, "POST", "/transmission/rpc", &[], body);
    assert_eq!(r.status, 409);
    let sid = r.header("X-Transmission-Session-Id").unwrap().to_string();
    assert!(sid.len() >= 32, "{sid}");
    let wrong = http(
        d.rpc_port,
        "POST",
        "/transmission/rpc",
        &[header("X-Transmission-Session-Id", "nope")],
        body,
    );
    assert_eq!(wrong.status, 409);
    let r = http(
        d.rpc_port,
        "POST",
        "/transmission/rpc/",
        &[header("X-Transmission-Session-Id", &sid)],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["result"], "success");
    assert_eq!(v["tag"], 3);
    assert_eq!(v["arguments"]["rpc-version"], 15);
    assert_eq!(v["arguments"]["peer-port"], d.peer_port);

    assert_eq!(
        d.rpc("no-such-method", json!({}))["result"],
        "method name not recognized"
    );
    let garbage = http(
        d.rpc_port,
        "POST",
        "/transmission/rpc",
        &[header("X-Transmission-Session-Id", &sid)],
        b"{not json",
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&garbage.body).unwrap()["result"],
        "request body is not JSON"
    );

    // A name that resolves to us through someone else's DNS is refused (DNS rebinding).
    let mut s = TcpStream::connect(("127.0.0.1", d.rpc_port)).unwrap();
    s.write_all(b"GET /api/state HTTP/1.1\r\nHost: evil.example:9091\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 421"), "{out}");

    // A body over the limit is refused before it is read.
    let mut s = TcpStream::connect(("127.0.0.1", d.rpc_port)).unwrap();
    let head = format!("POST /transmission/rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Transmission-Session-Id: {sid}\r\nContent-Length: 100000000\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    // Headers beyond the limit end the connection without a crash; the server keeps serving.
    let mut s = TcpStream::connect(("127.0.0.1", d.rpc_port)).unwrap();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let _ = s.write_all(big.as_bytes());
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(!String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 200"));
    assert_eq!(d.get("/").status, 200);

    let m = d.get("/metrics");
    assert_eq!(m.status, 200);
    let text = m.text();
    assert!(
        text.contains("# TYPE burrow_torrents gauge")
            && text.contains(&format!("burrow_listen_port {}", d.peer_port)),
        "{text}"
    );
    let fs = d.call(
        "free-space",
        json!({ "path": dir.path().to_str().unwrap() }),
    );
    assert!(fs["size-bytes"].as_u64().unwrap() > 0, "{fs}");
    assert_eq!(d.call("port-test", json!({}))["port-is-open"], false);
}

#[test]
fn credentials_are_required_off_loopback_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Binding to every interface without credentials is refused at start.
    let config = write_config(d, free_port(), free_port(), "", "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("bind = \"127.0.0.1:", "bind = \"0.0.0.0:");
    std::fs::write(&config, text).unwrap();
    let o = Command::new(burrow_bin())
        .args(["daemon", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("set rpc.username and rpc.password"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let mut daemon = Daemon::fresh(d, "", "username = \"alice\"\npassword = \"s3cret\"");
    let r = http(daemon.rpc_port, "GET", "/api/state", &[], b"");
    assert_eq!(r.status, 401);
    assert!(r.header("WWW-Authenticate").unwrap().starts_with("Basic"));
    let r = http(
        daemon.rpc_port,
        "POST",
        "/transmission/rpc",
        &[header("Authorization", "Basic YWxpY2U6d3Jvbmc=")],
        b"{}",
    );
    assert_eq!(r.status, 401, "wrong password");
    daemon.auth = Some(("alice".into(), "s3cret".into()));
    assert_eq!(daemon.call("session-get", json!({}))["rpc-version"], 15);
    // transmission-remote passes credentials with -n.
    let o = Command::new("transmission-remote")
        .arg(format!("127.0.0.1:{}", daemon.rpc_port))
        .args(["-n", "alice:s3cret", "-l"])
        .output()
        .unwrap();
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Sum:"),
        "{o:?}"
    );
}

#[test]
fn downloads_stay_inside_the_allowed_folders() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let other = d.join("other-allowed");
    let outside = d.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    make_set(&d.join("src"), "set", &[("f", 10_000)]);
    let (torrent, _) = create_torrent(&d.join("src/set"), &d.join("set.torrent"), &[]);
    let mut daemon = Daemon::fresh(d, &format!("allowed_dirs = [\"{}\"]", other.display()), "");
    std::os::unix::fs::symlink(&outside, d.join("dl/escape")).unwrap();
    for bad in [
        outside.clone(),
        d.join("dl/escape/x"),
        d.join("dl/../outside"),
        "relative/dir".into(),
    ] {
        let r = daemon.rpc(
            "torrent-add",
            json!({ "metainfo": base64_of(&torrent), "download-dir": bad.to_str().unwrap() }),
        );
        assert_ne!(r["result"], "success", "{} was accepted", bad.display());
    }
    assert!(daemon.torrents(&["id"]).is_empty());
    let id = daemon.add_torrent(
        &torrent,
        json!({ "download-dir": other.join("sub").to_str().unwrap() }),
    );
    let t = daemon.call(
        "torrent-get",
        json!({ "ids": [id], "fields": ["downloadDir"] }),
    );
    assert!(
        t["torrents"][0]["downloadDir"]
            .as_str()
            .unwrap()
            .ends_with("other-allowed/sub"),
        "{t}"
    );
    // The default folder cannot be moved outside either.
    let r = daemon.rpc(
        "session-set",
        json!({ "download-dir": outside.to_str().unwrap() }),
    );
    assert_ne!(r["result"], "success");
    // Adding the same torrent again reports the existing one.
    let dup = daemon.call("torrent-add", json!({ "metainfo": base64_of(&torrent) }));
    assert_eq!(dup["torrent-duplicate"]["id"], id);
}

fn base64_of(p: &std::path::Path) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(p).unwrap())
}

#[test]
fn queue_seed_ratio_watch_folder_port_move_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let watch = d.join("watch");
    let (rpc, peer) = (free_port(), free_port());
    let config = write_config(
        d,
        rpc,
        peer,
        &format!(
            "watch_dir = \"{}\"\nwatch_interval_secs = 0.2",
            watch.display()
        ),
        "[limits]\nmax_active_downloads = 1",
    );
    let mut daemon = Daemon::start(d, "daemon-1", &config, rpc, peer);

    // Two magnets nobody seeds: only one may be active, the other waits in the queue.
    for h in [
        "1111111111111111111111111111111111111111",
        "2222222222222222222222222222222222222222",
    ] {
        daemon.call(
            "torrent-add",
            json!({ "filename": format!("magnet:?xt=urn:btih:{h}&dn=m{}", &h[..1]) }),
        );
    }
    let status = |t: &[Value], id: i64| {
        t.iter()
            .find(|x| x["id"] == id)
            .map(|x| x["status"].as_i64().unwrap())
    };
    daemon.wait_torrents(&["id", "status"], Duration::from_secs(10), |t| {
        status(t, 1) == Some(4) && status(t, 2) == Some(3)
    });
    daemon.call("torrent-stop", json!({ "ids": [1] }));
    daemon.wait_torrents(&["id", "status"], Duration::from_secs(10), |t| {
        status(t, 1) == Some(0) && status(t, 2) == Some(4)
    });
    // start-now bypasses the queue.
    daemon.call("torrent-start-now", json!({ "ids": [1] }));
    daemon.wait_torrents(&["id", "status"], Duration::from_secs(10), |t| {
        status(t, 1) == Some(4) && status(t, 2) == Some(4)
    });
    daemon.call("torrent-stop", json!({ "ids": [1, 2] }));

    // A torrent dropped into the watch folder is added; a broken one is set aside.
    make_set(&d.join("dl"), "watched", &[("w.bin", 100_000)]);
    create_torrent(&d.join("dl/watched"), &d.join("w.torrent"), &[]);
    std::fs::copy(d.join("w.torrent"), watch.join("w.torrent")).unwrap();
    std::fs::write(watch.join("broken.torrent"), b"not bencode").unwrap();
    wait("watch folder", Duration::from_secs(10), || {
        (watch.join("w.torrent.added").exists() && watch.join("broken.torrent.invalid").exists())
            .then_some(())
    });
    let t = daemon.wait_torrents(
        &["id", "name", "percentDone"],
        Duration::from_secs(10),
        |t| {
            t.iter()
                .any(|x| x["name"] == "watched" && x["percentDone"] == 1.0)
        },
    );
    let watched = t.iter().find(|x| x["name"] == "watched").unwrap()["id"]
        .as_i64()
        .unwrap();

    // Ratio limit 0: a complete torrent is finished as soon as it seeds.
    daemon.call(
        "torrent-set",
        json!({ "ids": [watched], "seedRatioMode": 1, "seedRatioLimit": 0.0 }),
    );
    daemon.wait_torrents(
        &["id", "status", "isFinished"],
        Duration::from_secs(10),
        |t| {
            t.iter()
                .any(|x| x["id"] == watched && x["status"] == 0 && x["isFinished"] == true)
        },
    );

    // Per-torrent and session speed limits are kept.
    daemon.call(
        "torrent-set",
        json!({ "ids": [2], "downloadLimit": 123, "downloadLimited": true }),
    );
    daemon.call(
        "session-set",
        json!({ "speed-limit-up": 77, "speed-limit-up-enabled": true }),
    );

    // Moving the listen port: the new port accepts connections, the old one is closed, and
    // running torrents run on.
    daemon.call("torrent-start", json!({ "ids": [2] }));
    daemon.wait_torrents(&["id", "status"], Duration::from_secs(10), |t| {
        status(t, 2) == Some(4)
    });
    let new_port = free_port();
    daemon.call("session-set", json!({ "peer-port": new_port }));
    assert_eq!(daemon.call("session-get", json!({}))["peer-port"], new_port);
    assert!(TcpStream::connect(("127.0.0.1", new_port)).is_ok());
    assert!(
        TcpStream::connect(("127.0.0.1", peer)).is_err(),
        "old listen port still open"
    );
    daemon.wait_torrents(&["id", "status"], Duration::from_secs(10), |t| {
        status(t, 1) == Some(0) && status(t, 2) == Some(4)
    });

    // Everything survives a restart: torrents, ids, stopped state, settings, totals.
    let st = daemon.proc.terminate(Duration::from_secs(20));
    assert!(st.success(), "{}", daemon.proc.output());
    let mut daemon = Daemon::start(d, "daemon-2", &config, rpc, new_port);
    let t = daemon.wait_torrents(
        &[
            "id",
            "name",
            "status",
            "isFinished",
            "downloadLimit",
            "downloadLimited",
        ],
        Duration::from_secs(10),
        |t| t.len() == 3,
    );
    let by_id = |id: i64| t.iter().find(|x| x["id"] == id).unwrap().clone();
    assert_eq!(by_id(watched)["isFinished"], true);
    assert_eq!(by_id(watched)["status"], 0);
    assert_eq!(
        by_id(1)["status"],
        0,
        "stopped by the user before the restart"
    );
    assert_eq!(by_id(2)["status"], 4, "running before the restart");
    assert_eq!(
        (
            by_id(2)["downloadLimit"].clone(),
            by_id(2)["downloadLimited"].clone()
        ),
        (json!(123), json!(true))
    );
    let s = daemon.call("session-get", json!({}));
    assert_eq!(
        (
            s["speed-limit-up"].clone(),
            s["speed-limit-up-enabled"].clone(),
            s["peer-port"].clone()
        ),
        (json!(77), json!(true), json!(new_port))
    );
    let stats = daemon.call("session-stats", json!({}));
    assert_eq!(stats["cumulative-stats"]["sessionCount"], 2);
    assert_eq!(stats["cumulative-stats"]["filesAdded"], 3);
    assert_eq!(stats["torrentCount"], 3);
}
