//! µTP interoperability with libtorrent (Debian's python3-libtorrent 2.0) on loopback, both
//! directions and both address families. libtorrent runs with TCP disabled, so every
//! connection here is µTP.
//!
//! The test needs `/usr/bin/python3` with the `libtorrent` module (`apt-get install
//! python3-libtorrent`); set `BURROW_SKIP_LIBTORRENT=1` to skip it where that is unavailable.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use burrow_swarm::net::{NetConfig, SessionSockets, UdpConfig, UdpMux, UtpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);
const PSTR: &[u8] = b"\x13BitTorrent protocol";
/// The helper's torrent: 1 MiB in 16 KiB pieces.
const PIECES: usize = 64;

struct LtPeer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    dir: PathBuf,
    info_hash: [u8; 20],
    port: u16,
}

impl LtPeer {
    /// Starts the libtorrent seed on a port free for UDP on both families.
    async fn start() -> Option<Self> {
        if std::env::var_os("BURROW_SKIP_LIBTORRENT").is_some() {
            eprintln!("BURROW_SKIP_LIBTORRENT is set; skipping the libtorrent interop test");
            return None;
        }
        let port = {
            let probe = UdpMux::bind(UdpConfig::loopback(0)).await.unwrap();
            probe.port()
        };
        let dir = std::env::temp_dir().join(format!("burrow-lt-utp-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/lt_utp_peer.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(&dir)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run /usr/bin/python3 (python3-libtorrent is required; see the module docs)");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut peer = LtPeer {
            child,
            stdin,
            stdout,
            dir,
            info_hash: [0; 20],
            port,
        };
        let ready = peer.line();
        let info_hash = json_str(&ready, "info_hash")
            .unwrap_or_else(|| panic!("libtorrent helper did not start: {ready:?}"));
        peer.info_hash = hex20(&info_hash);
        assert_eq!(json_num(&ready, "port"), Some(port as u64), "{ready}");
        Some(peer)
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::task::block_in_place(|| self.stdout.read_line(&mut line)).unwrap();
        line
    }

    fn command(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        self.line()
    }
}

impl Drop for LtPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn json_str(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\": \""))? + key.len() + 5;
    let end = start + line[start..].find('"')?;
    Some(line[start..end].to_string())
}

fn json_num(line: &str, key: &str) -> Option<u64> {
    let start = line.find(&format!("\"{key}\": "))? + key.len() + 4;
    let digits: String = line[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn hex20(s: &str) -> [u8; 20] {
    let mut out = [0u8; 20];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// A plain BitTorrent handshake; `n` varies the peer id, since libtorrent drops a second
/// connection that repeats the id of one still open.
fn handshake(info_hash: &[u8; 20], n: u8) -> Vec<u8> {
    let mut h = PSTR.to_vec();
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(info_hash);
    h.extend_from_slice(b"-BU0001-netinteropt");
    h.push(b'a' + n);
    assert_eq!(h.len(), 68);
    h
}

async fn read_handshake(stream: &mut UtpStream, info_hash: &[u8; 20]) {
    let mut reply = [0u8; 68];
    timeout(WAIT, stream.read_exact(&mut reply)).await.unwrap().unwrap();
    assert_eq!(&reply[..20], PSTR, "{reply:?}");
    assert_eq!(&reply[28..48], info_hash, "{reply:?}");
}

/// After the handshake a seed sends its bitfield: length 1 + 8, id 5, all pieces set.
async fn read_full_bitfield(stream: &mut UtpStream) {
    let mut msg = [0u8; 4 + 1 + PIECES / 8];
    timeout(WAIT, stream.read_exact(&mut msg)).await.unwrap().unwrap();
    assert_eq!(&msg[..5], &[0, 0, 0, 9, 5]);
    assert!(msg[5..].iter().all(|&b| b == 0xff), "{msg:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utp_interoperates_with_libtorrent() {
    let Some(mut lt) = LtPeer::start().await else { return };
    let ours = SessionSockets::bind(NetConfig::loopback(0)).await.unwrap();
    let lt_addrs: [SocketAddr; 2] = [
        SocketAddr::from(([127, 0, 0, 1], lt.port)),
        format!("[::1]:{}", lt.port).parse().unwrap(),
    ];

    // We dial libtorrent over µTP and get its handshake and bitfield back.
    for (n, addr) in (0..).zip(lt_addrs) {
        let mut stream = timeout(WAIT, ours.utp.connect(addr)).await.unwrap().unwrap();
        stream.write_all(&handshake(&lt.info_hash, n)).await.unwrap();
        read_handshake(&mut stream, &lt.info_hash).await;
        read_full_bitfield(&mut stream).await;
        // A clean close: our FIN makes libtorrent drop the peer, and it closes its side too.
        stream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = timeout(WAIT, stream.read_to_end(&mut rest)).await.unwrap();
    }
    timeout(WAIT, async {
        while lt.command("peers").trim() != "[]" {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("libtorrent did not see our connections close");

    // libtorrent dials us over µTP after being told our address.
    for (n, (host, addr)) in (2..).zip(["127.0.0.1", "::1"].into_iter().zip(ours.udp.local_addrs())) {
        assert_eq!(lt.command(&format!("connect {host} {}", addr.port())).trim(), "ok");
        let (mut stream, from) = timeout(WAIT, ours.utp.accept()).await.unwrap().unwrap();
        assert_eq!(from.port(), lt.port, "libtorrent dials from its listen port");
        assert_eq!(from.is_ipv4(), addr.is_ipv4());
        read_handshake(&mut stream, &lt.info_hash).await;
        stream.write_all(&handshake(&lt.info_hash, n)).await.unwrap();
        read_full_bitfield(&mut stream).await;
        let peers = lt.command("peers");
        assert!(
            peers.contains(&format!("\"port\": {}, \"utp\": true", addr.port())),
            "libtorrent lists us as a µTP peer: {peers}"
        );
        drop(stream);
    }
    let c = ours.udp.counters();
    assert!(c.rx_utp > 0 && c.rx_unknown == 0, "{c:?}");
}
