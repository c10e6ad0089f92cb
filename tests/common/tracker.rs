//! A minimal HTTP tracker (BEP 3 with compact peers) on loopback, for tests whose only peer
//! source must be a tracker.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

type Swarms = Arc<Mutex<HashMap<Vec<u8>, Vec<SocketAddr>>>>;

/// A running tracker; stops when dropped.
pub struct Tracker {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Announces received.
    pub announces: Arc<AtomicUsize>,
    /// Every announce's `event` (empty for none) and `uploaded`, in order.
    pub log: Arc<Mutex<Vec<(String, u64)>>>,
    swarms: Swarms,
}

impl Tracker {
    pub fn start() -> Tracker {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let announces = Arc::new(AtomicUsize::new(0));
        let swarms: Swarms = Arc::default();
        let log: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
        let (s, a, w, lg) = (stop.clone(), announces.clone(), swarms.clone(), log.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (a, w, lg) = (a.clone(), w.clone(), lg.clone());
                std::thread::spawn(move || serve(conn, &a, &w, &lg));
            }
        });
        Tracker {
            addr,
            stop,
            announces,
            log,
            swarms,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/announce", self.addr)
    }

    /// Peers registered for an info-hash.
    pub fn peers(&self, info_hash: &[u8]) -> Vec<SocketAddr> {
        self.swarms
            .lock()
            .unwrap()
            .get(info_hash)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(0));
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    out
}

fn serve(
    mut c: TcpStream,
    announces: &AtomicUsize,
    swarms: &Swarms,
    log: &Mutex<Vec<(String, u64)>>,
) {
    let peer_ip = c.peer_addr().unwrap().ip();
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
        match c.read(&mut buf[n..]) {
            Ok(0) | Err(_) => return,
            Ok(k) => n += k,
        }
    }
    let req = String::from_utf8_lossy(&buf[..n]).to_string();
    let target = req.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map(|x| x.1).unwrap_or("");
    let mut info_hash = Vec::new();
    let mut port = 0u16;
    let mut event = String::new();
    let mut uploaded = 0u64;
    for kv in query.split('&') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "info_hash" => info_hash = decode(v),
            "port" => port = v.parse().unwrap_or(0),
            "event" => event = v.to_string(),
            "uploaded" => uploaded = v.parse().unwrap_or(u64::MAX),
            _ => {}
        }
    }
    let stopped = event == "stopped";
    log.lock().unwrap().push((event, uploaded));
    announces.fetch_add(1, Ordering::SeqCst);
    let me = SocketAddr::new(peer_ip, port);
    let others: Vec<SocketAddr> = {
        let mut m = swarms.lock().unwrap();
        let list = m.entry(info_hash).or_default();
        list.retain(|p| *p != me);
        if !stopped {
            list.push(me);
        }
        list.iter().filter(|p| **p != me).copied().collect()
    };
    let mut compact = Vec::new();
    for p in others.iter().filter(|p| p.is_ipv4()) {
        if let std::net::IpAddr::V4(ip) = p.ip() {
            compact.extend_from_slice(&ip.octets());
            compact.extend_from_slice(&p.port().to_be_bytes());
        }
    }
    let mut body =
        format!("d8:intervali5e12:min intervali1e5:peers{}:", compact.len()).into_bytes();
    body.extend_from_slice(&compact);
    body.push(b'e');
    let head = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = c.write_all(head.as_bytes());
    let _ = c.write_all(&body);
}
