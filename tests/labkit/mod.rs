//! Running the real `burrow` binary and libtorrent peers inside the NAT lab's namespaces.
//!
//! Every process is started with `ip netns exec <host>`, which execs the program in place, so
//! the pid a test holds (and sends SIGTERM to) is the program's own. Every burrow started here
//! gets `--no-lsd` and either lab-only DHT bootstrap nodes or `--no-dht`: nothing in the lab
//! ever tries a public router.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use burrow_netlab::{Host, Router};

use crate::common::{burrow_bin, make_set, Proc, PYTHON};

/// The session port burrow uses inside the lab (every host has its own address, so one
/// number serves all).
pub const PORT: u16 = 6881;

/// A command run inside `host`'s namespace.
pub fn in_ns(host: &Host, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", host.netns()]).arg(program);
    c
}

/// `burrow <args>` inside `host` on [`PORT`], with its own state directory, no local
/// discovery and debug logs from the swarm crate. `dht` lists lab DHT nodes; empty means
/// `--no-dht`.
pub fn burrow_in(host: &Host, args: &[&str], state: &Path, dht: &[String]) -> Command {
    let mut c = in_ns(host, burrow_bin());
    c.args(args)
        .args(["--port", &PORT.to_string(), "--no-lsd", "--state-dir"])
        .arg(state)
        .env(
            "RUST_LOG",
            std::env::var("BURROW_TEST_LOG").unwrap_or_else(|_| "info,burrow_swarm=debug".into()),
        );
    if dht.is_empty() {
        c.arg("--no-dht");
    }
    for n in dht {
        c.args(["--dht-bootstrap", n]);
    }
    c
}

/// tests/support/lt_peer.py inside `host`, listening on the host's address.
pub fn lt_in(host: &Host, args: &[&str]) -> Command {
    crate::common::require_libtorrent();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/lt_peer.py");
    let mut c = in_ns(host, PYTHON);
    c.arg(script)
        .args(args)
        .args(["--listen", &format!("{}:{PORT}", host.ipv4())]);
    c
}

/// The test's data: a torrent made by `burrow create` over random files.
pub struct Data {
    /// The folder holding the torrent's folder (what `seed --data` takes).
    pub src: PathBuf,
    /// The .torrent file.
    pub torrent: PathBuf,
    /// The torrent's top folder name.
    pub name: &'static str,
    /// The files, for verification.
    pub files: Vec<(String, Vec<u8>)>,
}

impl Data {
    /// `files` under `dir/src/set`, with 64 KiB pieces.
    pub fn new(dir: &Path, files: &[(&str, usize)]) -> Data {
        let src = dir.join("src");
        let files = make_set(&src, "set", files);
        let torrent = dir.join("set.torrent");
        crate::common::create_torrent(&src.join("set"), &torrent, &["--piece-length", "65536"]);
        Data {
            src,
            torrent,
            name: "set",
            files,
        }
    }

    /// The torrent path as a string argument.
    pub fn torrent_arg(&self) -> &str {
        self.torrent.to_str().unwrap()
    }

    /// Asserts that `dir` holds the torrent's files with the right bytes.
    pub fn assert_in(&self, dir: &Path) {
        crate::common::assert_set(dir, self.name, &self.files);
    }
}

/// Polls `cond` every 50 ms until it holds; panics with `what` and `context()` after `limit`.
pub fn wait_until(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> bool,
    context: impl Fn() -> String,
) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// miniupnpd's forwarding rules toward `lan` port [`PORT`], one per transport.
pub fn forwards_to(router: &Router, lan: &Host) -> (bool, bool) {
    let rules = router.forwarding_rules().unwrap_or_default();
    let to = format!("{}:{PORT}", lan.ipv4());
    // miniupnpd matches the IP protocol number: `@nh,72,8 0x6` (TCP), `0x11` (UDP).
    let has = |proto: &str| {
        rules.lines().any(|l| {
            l.contains(&to)
                && (l.contains(&format!("{proto} dport"))
                    || l.contains(if proto == "tcp" {
                        ",8 0x6 "
                    } else {
                        ",8 0x11 "
                    }))
        })
    };
    (has("tcp"), has("udp"))
}

/// From `from`, a TCP connection to `to`: `Ok(())` if it connects, else the error kind
/// (`TimedOut` when the SYN went unanswered, `ConnectionRefused` on a reset).
pub fn tcp_probe(from: &Host, to: std::net::SocketAddr) -> Result<(), std::io::ErrorKind> {
    from.block_on(move || async move {
        match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(to)).await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.kind()),
            Err(_) => Err(std::io::ErrorKind::TimedOut),
        }
    })
    .unwrap()
}

/// The last "this session: downloaded N bytes, uploaded M bytes" a burrow printed on exit.
pub fn session_totals(output: &str) -> Option<(u64, u64)> {
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with("this session: downloaded "))?;
    let mut nums = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().unwrap());
    Some((nums.next()?, nums.next()?))
}

/// Spawns `cmd` as a [`Proc`] named `name` logging into `dir`.
pub fn start(name: &str, cmd: Command, dir: &Path) -> Proc {
    Proc::spawn(name, cmd, dir)
}

/// Whether to print every process's log even when a test passes (`BURROW_LAB_LOGS=1`).
pub fn show_logs() -> bool {
    std::env::var_os("BURROW_LAB_LOGS").is_some()
}

/// `burrow download --seed` of `data` on `host`, told of one peer (`peer`), without port
/// mapping: a peer behind its NAT that stays to seed. Output goes to `dir/{name}-out`, state
/// to `dir/{name}-state`.
pub fn natted_leech(name: &str, host: &Host, data: &Data, peer: &str, dir: &Path) -> Proc {
    let out = dir.join(format!("{name}-out"));
    let args = [
        "download",
        data.torrent_arg(),
        "-o",
        out.to_str().expect("UTF-8 path"),
        "--peer",
        peer,
        "--no-port-mapping",
        "--seed",
    ];
    start(
        name,
        burrow_in(host, &args, &dir.join(format!("{name}-state")), &[]),
        dir,
    )
}
