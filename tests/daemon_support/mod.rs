//! Support for the daemon's end-to-end tests: a daemon process with a generated configuration
//! and a small HTTP client for its RPC and web endpoints. Everything stays on loopback.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::common::{burrow_bin, free_port, Proc};

/// A running `burrow daemon`.
pub struct Daemon {
    pub proc: Proc,
    pub rpc_port: u16,
    pub peer_port: u16,
    pub config: PathBuf,
    pub session_id: String,
    pub auth: Option<(String, String)>,
}

/// Writes a configuration for a daemon under `dir` (data in `dir/data`, downloads in
/// `dir/dl`), with `extra` TOML appended to the top-level table.
pub fn write_config(
    dir: &Path,
    rpc_port: u16,
    peer_port: u16,
    extra_top: &str,
    extra_sections: &str,
) -> PathBuf {
    let path = dir.join("daemon.toml");
    let text = format!(
        "data_dir = \"{data}\"\ndownload_dir = \"{dl}\"\n{extra_top}\n[peer]\nport = {peer_port}\nlisten = \"127.0.0.1\"\n[rpc]\nbind = \"127.0.0.1:{rpc_port}\"\n{extra_sections}\n",
        data = dir.join("data").display(),
        dl = dir.join("dl").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

impl Daemon {
    /// Starts a daemon with `config` and waits until its RPC answers.
    pub fn start(dir: &Path, name: &str, config: &Path, rpc_port: u16, peer_port: u16) -> Daemon {
        let mut cmd = Command::new(burrow_bin());
        cmd.arg("daemon").arg("--config").arg(config).env(
            "RUST_LOG",
            std::env::var("BURROW_TEST_LOG").unwrap_or_else(|_| "info".into()),
        );
        let proc = Proc::spawn(name, cmd, dir);
        let mut d = Daemon {
            proc,
            rpc_port,
            peer_port,
            config: config.to_path_buf(),
            session_id: String::new(),
            auth: None,
        };
        d.proc
            .wait_for_output("daemon ready", Duration::from_secs(30));
        d
    }

    /// A fresh daemon in `dir` on free ports.
    pub fn fresh(dir: &Path, extra_top: &str, extra_sections: &str) -> Daemon {
        let (rpc, peer) = (free_port(), free_port());
        let config = write_config(dir, rpc, peer, extra_top, extra_sections);
        Daemon::start(dir, "daemon", &config, rpc, peer)
    }

    /// Sends an RPC request, doing the session-id handshake when needed.
    pub fn rpc(&mut self, method: &str, args: Value) -> Value {
        let body =
            serde_json::to_vec(&json!({ "method": method, "arguments": args, "tag": 7 })).unwrap();
        for _ in 0..2 {
            let mut headers = vec![
                (
                    "X-Transmission-Session-Id".to_string(),
                    self.session_id.clone(),
                ),
                ("Content-Type".into(), "application/json".into()),
            ];
            if let Some((u, p)) = &self.auth {
                headers.push((
                    "Authorization".into(),
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                    ),
                ));
            }
            let r = http(self.rpc_port, "POST", "/transmission/rpc", &headers, &body);
            if r.status == 409 {
                self.session_id = r
                    .header("x-transmission-session-id")
                    .expect("409 carries the session id")
                    .to_string();
                continue;
            }
            assert_eq!(r.status, 200, "{method}: {}", r.text());
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["tag"], 7, "the tag is echoed");
            return v;
        }
        panic!("session-id handshake failed");
    }

    /// An RPC call that must succeed; returns its arguments.
    pub fn call(&mut self, method: &str, args: Value) -> Value {
        let v = self.rpc(method, args);
        assert_eq!(v["result"], "success", "{method}: {v}");
        v["arguments"].clone()
    }

    /// Adds a .torrent file by its bytes; returns the new id.
    pub fn add_torrent(&mut self, torrent: &Path, extra: Value) -> i64 {
        let mut args = json!({ "metainfo": base64::engine::general_purpose::STANDARD.encode(std::fs::read(torrent).unwrap()) });
        if let (Value::Object(a), Value::Object(b)) = (&mut args, extra) {
            a.extend(b);
        }
        let r = self.call("torrent-add", args);
        r["torrent-added"]["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("not added: {r}"))
    }

    /// `torrent-get` of the given fields for all torrents.
    pub fn torrents(&mut self, fields: &[&str]) -> Vec<Value> {
        self.call("torrent-get", json!({ "fields": fields }))["torrents"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// A GET on the daemon's HTTP server.
    pub fn get(&self, path: &str) -> Response {
        http(self.rpc_port, "GET", path, &[], b"")
    }

    /// Waits until `cond` holds on the torrent list, panicking with the last list otherwise.
    pub fn wait_torrents(
        &mut self,
        fields: &[&str],
        timeout: Duration,
        cond: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let t = self.torrents(fields);
            if cond(&t) {
                return t;
            }
            if start.elapsed() > timeout {
                panic!(
                    "condition not met within {timeout:?}: {t:?}\n{}",
                    self.proc.output()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILL, no chance to save anything.
    pub fn kill(&mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
    }
}

/// An HTTP response.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Response {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}
