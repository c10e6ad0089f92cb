//! Interoperation with libtorrent (Debian's python3-libtorrent): a handful of libtorrent
//! sessions on 127.0.0.1 form a DHT with a burrow node; each side finds what the other announced.
//! Without python3-libtorrent this test fails: CI installs it.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use burrow_dht::driver::{Dht, DriverConfig};
use burrow_dht::{Config, InfoHash};
use serde_json::{json, Value};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/lt_dht.py");

struct Libtorrent {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Libtorrent {
    fn start(bootstrap: SocketAddr, sessions: usize) -> Libtorrent {
        // Debian's interpreter, where python3-libtorrent lives (not a pyenv shim on PATH).
        let mut child = Command::new("/usr/bin/python3")
            .arg(SCRIPT)
            .args([
                "--sessions",
                &sessions.to_string(),
                "--bootstrap",
                &bootstrap.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot run /usr/bin/python3");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Libtorrent {
            child,
            stdin,
            stdout,
        }
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        if line.is_empty() {
            let status = self.child.wait().unwrap();
            panic!("libtorrent script exited ({status}); exit status 2 means python3-libtorrent is not installed");
        }
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_ne!(v["event"], "error", "{v}");
        v
    }

    fn send(&mut self, cmd: Value) -> Value {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        self.read()
    }
}

impl Drop for Libtorrent {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"cmd": "quit"}));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burrow_and_libtorrent_find_each_others_peers() {
    let node = Config {
        one_node_per_ip: false,
        rate_limit: None,
        ipv6: false,
        ..Config::default()
    };
    let burrow = Dht::spawn(DriverConfig::new(
        node,
        vec!["127.0.0.1:0".parse().unwrap()],
    ))
    .await
    .unwrap();
    let addr = burrow.local_addrs()[0];

    let mut lt = tokio::task::spawn_blocking(move || {
        let mut lt = Libtorrent::start(addr, 6);
        let ready = lt.read();
        assert_eq!(ready["event"], "ready", "{ready}");
        lt
    })
    .await
    .unwrap();
    let stats = burrow.stats().await.unwrap();
    assert!(
        stats.queries_answered > 0,
        "libtorrent never queried burrow: {stats:?}"
    );
    let (_, done) = burrow.bootstrap(Vec::new()).await.unwrap().finish().await;
    assert!(
        done.unwrap().responded >= 3,
        "burrow did not join the libtorrent DHT"
    );

    // libtorrent announces a torrent; burrow finds it. The announce runs in the background, so
    // search until it shows up.
    let ih_a = InfoHash([0xc1; 20]);
    let v = tokio::task::block_in_place(|| {
        lt.send(json!({"cmd": "announce", "session": 0, "info_hash": hex(&ih_a.0)}))
    });
    assert_eq!(v["event"], "announced", "{v}");
    let want = SocketAddr::from(([127, 0, 0, 1], v["port"].as_u64().unwrap() as u16));
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut last = Vec::new();
    while Instant::now() < deadline && !last.contains(&want) {
        last = burrow.get_peers(ih_a).await.unwrap().finish().await.0;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        last.contains(&want),
        "burrow did not find libtorrent's peer {want}: {last:?}"
    );

    // burrow announces (port 46002); libtorrent finds it.
    let (_, done) = burrow
        .announce(InfoHash([0xd2; 20]), Some(46002))
        .await
        .unwrap()
        .finish()
        .await;
    let done = done.unwrap();
    assert!(done.announced >= 3, "{done:?}");
    let found = tokio::task::block_in_place(|| {
        lt.send(json!({"cmd": "find", "session": 3, "info_hash": hex(&[0xd2; 20]), "peer": "127.0.0.1:46002", "timeout": 30}))
    });
    assert_eq!(
        found["event"], "found",
        "libtorrent did not find burrow's peer: {found}"
    );
    let stats = burrow.stats().await.unwrap();
    assert_eq!(stats.dropped_malformed, 0, "{stats:?}");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
