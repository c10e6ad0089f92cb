//! Support for the end-to-end tests: running burrow and foreign peers as processes, making
//! test data, and a small HTTP tracker. Everything listens on loopback only.

#![allow(dead_code)]

pub mod leech;
pub mod tracker;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The burrow binary under test.
pub fn burrow_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_burrow"))
}

/// Debian's python with python3-libtorrent (not a pyenv one without it).
pub const PYTHON: &str = "/usr/bin/python3";

/// Fails loudly when python3-libtorrent is missing: interop tests must never pass silently.
pub fn require_libtorrent() {
    let ok = Command::new(PYTHON)
        .args(["-c", "import libtorrent"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "python3-libtorrent is not installed (apt-get install python3-libtorrent); interop tests cannot run");
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    // TCP and UDP both: burrow listens on the same number for both.
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A child process killed when dropped, with its output captured to a log file.
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: impl std::borrow::BorrowMut<Command>, dir: &Path) -> Proc {
        let cmd = cmd.borrow_mut();
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.to_string(),
            log,
        }
    }

    /// Waits for exit; panics with the log on timeout or failure.
    pub fn wait_success(&mut self, timeout: Duration) {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(
                    st.success(),
                    "{} exited with {st}:\n{}",
                    self.name,
                    self.output()
                );
                return;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "{} did not finish within {timeout:?}:\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_output(&mut self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.output().contains(needle) {
                return;
            }
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!(
                    "{} exited ({st}) before printing {needle:?}:\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} did not print {needle:?} within {timeout:?}:\n{}",
            self.name,
            self.output()
        );
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("{} ignored SIGTERM:\n{}", self.name, self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes a multi-file set under `dir/name` and returns the file list (relative path, bytes).
pub fn make_set(dir: &Path, name: &str, files: &[(&str, usize)]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, (rel, len)) in files.iter().enumerate() {
        let p = dir.join(name).join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let data = bytes(*len, i as u64 + 1);
        std::fs::write(&p, &data).unwrap();
        out.push((rel.to_string(), data));
    }
    out
}

/// Asserts that `dir/name/<rel>` holds exactly the expected bytes.
pub fn assert_set(dir: &Path, name: &str, files: &[(String, Vec<u8>)]) {
    for (rel, data) in files {
        let got = std::fs::read(dir.join(name).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(
            got == *data,
            "{rel}: contents differ ({} bytes vs {})",
            got.len(),
            data.len()
        );
    }
}

/// Runs `burrow create` and returns the .torrent path and the magnet link it printed.
pub fn create_torrent(src: &Path, out: &Path, extra: &[&str]) -> (PathBuf, String) {
    let o = Command::new(burrow_bin())
        .arg("create")
        .arg(src)
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "create failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8(o.stdout).unwrap();
    let magnet = stdout
        .lines()
        .find(|l| l.starts_with("magnet:"))
        .unwrap()
        .to_string();
    (out.to_path_buf(), magnet)
}

/// A burrow command with loopback defaults.
pub fn burrow(args: &[&str], port: u16, state: &Path) -> Command {
    let mut c = Command::new(burrow_bin());
    c.args(args)
        .arg("--port")
        .arg(port.to_string())
        .arg("--listen")
        .arg("127.0.0.1")
        .arg("--state-dir")
        .arg(state)
        .env(
            "RUST_LOG",
            std::env::var("BURROW_TEST_LOG").unwrap_or_else(|_| "info".into()),
        );
    c
}

/// A libtorrent peer running tests/support/lt_peer.py.
pub fn libtorrent(args: &[&str]) -> Command {
    require_libtorrent();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/lt_peer.py");
    let mut c = Command::new(PYTHON);
    c.arg(script).args(args);
    c
}

/// Reads the port a libtorrent peer announced on its first line.
pub fn lt_port(p: &mut Proc) -> u16 {
    p.wait_for_output("\"listening\"", Duration::from_secs(20));
    let out = p.output();
    let line = BufReader::new(out.as_bytes())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("\"listening\""))
        .unwrap();
    let port = line
        .split("\"port\": ")
        .nth(1)
        .unwrap()
        .trim_end_matches('}')
        .trim();
    port.parse().unwrap()
}
