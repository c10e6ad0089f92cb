//! `burrow dht-node` end to end, on loopback only: the node ID survives a restart, IPv4 and IPv6
//! share one port, `/metrics` counts what happened, a flood from one address leaves others
//! answered, and libtorrent nodes that know only the dht-node learn the DHT through it.
//! Every run passes `--bootstrap` with a loopback address; the public routers are never used.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use burrow_dht::krpc::{write_find_node, write_ping, Body, Message};
use burrow_dht::NodeId;
use common::{burrow_bin, Proc};

/// Starts `burrow dht-node` on 127.0.0.1 (plus `extra` options) and returns it with the port
/// it reported.
fn start(name: &str, dir: &Path, extra: &[&str]) -> (Proc, u16) {
    let mut c = Command::new(burrow_bin());
    c.args(["dht-node", "--port", "0", "--log-interval", "1"])
        .args(extra)
        .env("RUST_LOG", "info");
    if !extra.contains(&"--bind") {
        c.args(["--bind", "127.0.0.1"]);
    }
    if !extra.contains(&"--bootstrap") {
        // Nothing listens there: the node starts alone, and never looks for public routers.
        c.args(["--bootstrap", "127.0.0.1:9"]);
    }
    let mut p = Proc::spawn(name, c, dir);
    p.wait_for_output("DHT node listening", Duration::from_secs(20));
    let out = p.output();
    let addrs = out.split("addrs=[").nth(1).unwrap();
    let first = addrs.split([',', ']']).next().unwrap();
    let port = first.parse::<SocketAddr>().unwrap().port();
    (p, port)
}

/// Sends `query` from `sock` to `to` and returns the decoded reply's responder ID.
fn ask(sock: &UdpSocket, to: SocketAddr, query: &[u8]) -> Option<NodeId> {
    sock.set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    sock.send_to(query, to).unwrap();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_millis(1000);
    while Instant::now() < deadline {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            return None;
        };
        if from != to {
            continue;
        }
        let msg = Message::decode(&buf[..n]).ok()?;
        // The router also pings new queriers to verify them; those are not answers.
        match msg.body {
            Body::Response(args) if msg.tid == b"tt" => return args.id,
            _ => continue,
        }
    }
    None
}

fn ping() -> Vec<u8> {
    let mut q = Vec::new();
    write_ping(&mut q, b"tt", &NodeId([0x21; 20]), false);
    q
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn node_id_survives_restart_and_both_families_share_the_port() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("dht.state");
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let state_s = state.to_str().unwrap();
    let metrics_s = metrics.to_string();
    let args = [
        "--bind",
        "127.0.0.1",
        "--bind",
        "::1",
        "--state",
        state_s,
        "--metrics",
        &metrics_s,
    ];
    let (mut node, port) = start("dht-node-1", dir.path(), &args);
    let v4 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let v6 = UdpSocket::bind("[::1]:0").unwrap();
    let id = ask(&v4, SocketAddr::from(([127, 0, 0, 1], port)), &ping()).expect("IPv4 answer");
    let id6 = ask(&v6, format!("[::1]:{port}").parse().unwrap(), &ping()).expect("IPv6 answer");
    assert_eq!(id, id6, "a fresh node starts with one ID for both families");

    let text = http_get(metrics, "/metrics");
    assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
    assert_eq!(
        metric(&text, "burrow_dht_queries_total{method=\"ping\"}"),
        2.0
    );
    assert!(metric(&text, "burrow_dht_process_resident_bytes") > 0.0);
    assert!(http_get(metrics, "/nope").starts_with("HTTP/1.0 404"));

    assert!(
        node.terminate(Duration::from_secs(10)).success(),
        "{}",
        node.output()
    );
    assert!(state.exists(), "state saved on exit");
    let (mut again, port2) = start("dht-node-2", dir.path(), &args);
    let id2 = ask(&v4, SocketAddr::from(([127, 0, 0, 1], port2)), &ping()).expect("answer");
    assert_eq!(id2, id, "the node ID survives a restart");
    assert!(again.terminate(Duration::from_secs(10)).success());

    // A damaged state file is moved aside; the node starts with a new ID instead of failing.
    std::fs::write(&state, b"not bencode").unwrap();
    let (mut third, port3) = start("dht-node-3", dir.path(), &args);
    let id3 = ask(&v4, SocketAddr::from(([127, 0, 0, 1], port3)), &ping()).expect("answer");
    assert_ne!(id3, id);
    assert!(dir.path().join("dht.bad").exists());
    assert!(third.terminate(Duration::from_secs(10)).success());
}

#[test]
fn flood_from_one_address_leaves_others_answered() {
    let dir = tempfile::tempdir().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let metrics_s = metrics.to_string();
    // The default per-IP limit (20 queries/s, bursts of 60).
    let (node, port) = start("dht-node-flood", dir.path(), &["--metrics", &metrics_s]);
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let pid = node.child.id();
    let rss_before = rss_kib(pid);

    let flood = std::thread::spawn(move || {
        let s = UdpSocket::bind("127.0.0.2:0").unwrap();
        let mut q = Vec::new();
        write_find_node(&mut q, b"ff", &NodeId([0x66; 20]), &[1; 20], None, false);
        let junk: [&[u8]; 3] = [b"d1:ad2:id20:", b"\xff\xfe garbage", b"li1ei2ee"];
        let (mut valid, mut bad) = (0u64, 0u64);
        let end = Instant::now() + Duration::from_secs(4);
        while Instant::now() < end {
            // Bursts of 400 datagrams every 5 ms: about 80 000 per second.
            for i in 0..400 {
                if i % 2 == 0 {
                    if s.send_to(&q, to).is_ok() {
                        valid += 1;
                    }
                } else if s.send_to(junk[i % 3], to).is_ok() {
                    bad += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (valid, bad)
    });

    std::thread::sleep(Duration::from_millis(500));
    let other = UdpSocket::bind("127.0.0.3:0").unwrap();
    let mut answered = 0;
    for _ in 0..25 {
        if ask(&other, to, &ping()).is_some() {
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (valid, bad) = flood.join().unwrap();
    assert!(
        answered >= 23,
        "only {answered} of 25 queries from another address answered"
    );

    std::thread::sleep(Duration::from_millis(300));
    let text = http_get(metrics, "/metrics");
    let limited = metric(&text, "burrow_dht_dropped_total{reason=\"rate_limited\"}");
    let malformed = metric(&text, "burrow_dht_dropped_total{reason=\"malformed\"}");
    let received = metric(&text, "burrow_dht_datagrams_received_total");
    println!("flood: {valid} queries and {bad} junk sent; node saw {received}, dropped {limited} rate-limited and {malformed} malformed; {answered}/25 others answered");
    // Whatever reached the node was dropped, except the flooder's first burst and the others.
    let flood_seen = received - 25.0;
    assert!(
        limited + malformed >= flood_seen - (60.0 + 20.0 * 5.0),
        "{text}"
    );
    assert!(
        limited > 0.3 * valid as f64 && malformed > 0.3 * bad as f64,
        "{text}"
    );
    let replies = metric(&text, "burrow_dht_replies_total");
    // The flooder's burst of 60 plus 20 a second, and the other address's 25.
    assert!(replies <= 60.0 + 20.0 * 5.0 + 25.0, "{replies} replies");
    let rss_after = rss_kib(pid);
    assert!(
        rss_after < rss_before + 8 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB"
    );
}

#[test]
fn libtorrent_nodes_learn_the_dht_through_dht_node() {
    common::require_libtorrent();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A few burrow nodes on loopback: something to learn besides the libtorrent sessions.
    let population: Vec<burrow_dht::driver::Dht> = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..8 {
            let node = burrow_dht::Config {
                one_node_per_ip: false,
                rate_limit: None,
                ipv6: false,
                ..Default::default()
            };
            let cfg =
                burrow_dht::driver::DriverConfig::new(node, vec!["127.0.0.1:0".parse().unwrap()]);
            v.push(burrow_dht::driver::Dht::spawn(cfg).await.unwrap());
        }
        v
    });
    // Everything shares 127.0.0.1: no per-IP limits, several nodes per IP.
    let seed = population[0].local_addrs()[0].to_string();
    let (node, port) = start(
        "dht-node-lt",
        dir.path(),
        &[
            "--allow-shared-ip",
            "--rate-limit",
            "0",
            "--cache-size",
            "4096",
            "--bootstrap",
            &seed,
        ],
    );
    let router = SocketAddr::from(([127, 0, 0, 1], port));
    rt.block_on(async {
        for d in &population {
            let _ = d.bootstrap(vec![router]).await.unwrap().finish().await;
        }
    });

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("dht/tests/support/lt_dht.py");
    let mut c = Command::new(common::PYTHON);
    c.arg(script)
        .args([
            "--isolated",
            "--router",
            "--sessions",
            "4",
            "--min-nodes",
            "8",
            "--wait",
            "20",
        ])
        .args(["--bootstrap", &router.to_string()])
        .stdin(std::process::Stdio::piped());
    let mut lt = Proc::spawn("libtorrent", c, dir.path());
    lt.wait_for_output("\"ready\"", Duration::from_secs(40));
    let out = lt.output();
    let ready = out.lines().find(|l| l.contains("\"ready\"")).unwrap();
    let counts: Vec<i64> = ready
        .split("\"routing_nodes\": [")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap()
        .split(',')
        .map(|x| x.trim().parse().unwrap())
        .collect();
    println!("libtorrent routing tables: {counts:?}");
    // Each session knew only the dht-node; eleven other nodes exist besides it.
    let status = node.output();
    let last = status
        .lines()
        .rev()
        .find(|l| l.contains("queries/s"))
        .unwrap_or_default();
    assert!(counts.iter().all(|&n| n >= 8), "{ready}\n{last}");
}
