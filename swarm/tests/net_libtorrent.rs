//! µTP interoperability with libtorrent (Debian's python3-libtorrent 2.0) on loopback: both
//! directions of connection set-up on IPv4 and IPv6, and a whole torrent moved each way. The
//! libtorrent peers run with TCP disabled, so every connection here is µTP. The peer-wire
//! messages are written by hand: this tests the transport, not burrow's peer-wire code.
//!
//! Needs `/usr/bin/python3` with the `libtorrent` module (`apt-get install
//! python3-libtorrent`); set `BURROW_SKIP_LIBTORRENT=1` to skip where that is unavailable.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use burrow_swarm::net::{NetConfig, SessionSockets, UdpConfig, UdpMux, UtpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);
const PSTR: &[u8] = b"\x13BitTorrent protocol";
const BLOCK: usize = 16 * 1024;

struct LtPeer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    dir: PathBuf,
    info_hash: [u8; 20],
    port: u16,
    piece_length: usize,
}

impl LtPeer {
    /// Starts a libtorrent seed of `size` random bytes on a port free for UDP on both families.
    async fn start(size: usize) -> Option<Self> {
        if std::env::var_os("BURROW_SKIP_LIBTORRENT").is_some() {
            eprintln!("BURROW_SKIP_LIBTORRENT is set; skipping the libtorrent interop test");
            return None;
        }
        let port = UdpMux::bind(UdpConfig::loopback(0)).await.unwrap().port();
        let dir = std::env::temp_dir().join(format!("burrow-lt-utp-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/lt_utp_peer.py");
        let mut child = Command::new("/usr/bin/python3")
            .args([
                script,
                dir.to_str().unwrap(),
                &port.to_string(),
                &size.to_string(),
            ])
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
            piece_length: 0,
        };
        let ready = peer.line();
        let info_hash = json_str(&ready, "info_hash")
            .unwrap_or_else(|| panic!("libtorrent helper did not start: {ready:?}"));
        peer.info_hash = hex20(&info_hash);
        assert_eq!(json_num(&ready, "port"), Some(port as f64), "{ready}");
        peer.piece_length = json_num(&ready, "piece_length").unwrap() as usize;
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

    fn payload(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("payload.bin")).unwrap()
    }

    fn addrs(&self) -> [SocketAddr; 2] {
        [
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            format!("[::1]:{}", self.port).parse().unwrap(),
        ]
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

fn json_num(line: &str, key: &str) -> Option<f64> {
    let start = line.find(&format!("\"{key}\": "))? + key.len() + 4;
    let num: String = line[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '-')
        .collect();
    num.parse().ok()
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
    timeout(WAIT, stream.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&reply[..20], PSTR, "{reply:?}");
    assert_eq!(&reply[28..48], info_hash, "{reply:?}");
}

fn message(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut m = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    m.push(id);
    m.extend_from_slice(payload);
    m
}

/// The next message (id, payload), skipping keep-alives; `None` at end of stream.
async fn read_message(stream: &mut UtpStream) -> Option<(u8, Vec<u8>)> {
    loop {
        let mut len = [0u8; 4];
        timeout(WAIT, stream.read_exact(&mut len))
            .await
            .unwrap()
            .ok()?;
        let len = u32::from_be_bytes(len) as usize;
        assert!(len <= BLOCK + 9, "message of {len} bytes");
        if len == 0 {
            continue;
        }
        let mut body = vec![0u8; len];
        timeout(WAIT, stream.read_exact(&mut body))
            .await
            .unwrap()
            .ok()?;
        let id = body.remove(0);
        return Some((id, body));
    }
}

fn u32_at(b: &[u8], i: usize) -> usize {
    u32::from_be_bytes(b[i..i + 4].try_into().unwrap()) as usize
}

/// Downloads the whole torrent from a seed over `stream` (handshake already exchanged),
/// keeping 64 block requests outstanding.
async fn download(stream: &mut UtpStream, size: usize, piece_length: usize) -> Vec<u8> {
    stream.write_all(&message(2, &[])).await.unwrap(); // interested
    while read_message(stream)
        .await
        .expect("seed closed before unchoking")
        .0
        != 1
    {}
    let blocks: Vec<(usize, usize, usize)> = (0..size)
        .step_by(BLOCK)
        .map(|off| {
            (
                off / piece_length,
                off % piece_length,
                BLOCK.min(size - off),
            )
        })
        .collect();
    let mut next = 0;
    let mut got = vec![0u8; size];
    let mut received = 0;
    while received < size {
        while next < blocks.len() && next * BLOCK < received + 64 * BLOCK {
            let (index, begin, len) = blocks[next];
            let mut req = Vec::new();
            for v in [index, begin, len] {
                req.extend_from_slice(&(v as u32).to_be_bytes());
            }
            stream.write_all(&message(6, &req)).await.unwrap();
            next += 1;
        }
        let (id, body) = read_message(stream)
            .await
            .expect("seed closed mid-download");
        if id == 7 {
            let off = u32_at(&body, 0) * piece_length + u32_at(&body, 4);
            let block = &body[8..];
            got[off..off + block.len()].copy_from_slice(block);
            received += block.len();
        }
    }
    got
}

/// Serves `data` to a leech over `stream` (handshake already exchanged) until it hangs up.
async fn serve(stream: &mut UtpStream, data: &[u8], piece_length: usize) {
    let pieces = data.len().div_ceil(piece_length);
    let mut bitfield = vec![0u8; pieces.div_ceil(8)];
    for i in 0..pieces {
        bitfield[i / 8] |= 0x80 >> (i % 8);
    }
    stream.write_all(&message(5, &bitfield)).await.unwrap();
    while let Some((id, body)) = read_message(stream).await {
        match id {
            2 => stream.write_all(&message(1, &[])).await.unwrap(), // interested → unchoke
            6 => {
                let (index, begin, len) = (u32_at(&body, 0), u32_at(&body, 4), u32_at(&body, 8));
                let off = index * piece_length + begin;
                let mut piece = body[..8].to_vec();
                piece.extend_from_slice(&data[off..off + len]);
                if stream.write_all(&message(7, &piece)).await.is_err() {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// We dial libtorrent and libtorrent dials us, on IPv4 and IPv6; each side sees the other's
/// handshake and bitfield, and closes cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utp_handshakes_with_libtorrent_both_ways() {
    let Some(mut lt) = LtPeer::start(1 << 20).await else {
        return;
    };
    let ours = SessionSockets::bind(NetConfig::loopback(0)).await.unwrap();
    let pieces = (1 << 20) / lt.piece_length;

    for (n, addr) in (0..).zip(lt.addrs()) {
        let mut stream = timeout(WAIT, ours.utp.connect(addr))
            .await
            .unwrap()
            .unwrap();
        stream
            .write_all(&handshake(&lt.info_hash, n))
            .await
            .unwrap();
        read_handshake(&mut stream, &lt.info_hash).await;
        let (id, bitfield) = read_message(&mut stream).await.unwrap();
        assert_eq!((id, bitfield.len()), (5, pieces.div_ceil(8)));
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

    for (n, (host, addr)) in (2..).zip(["127.0.0.1", "::1"].into_iter().zip(ours.udp.local_addrs()))
    {
        assert_eq!(
            lt.command(&format!("connect {host} {}", addr.port()))
                .trim(),
            "ok"
        );
        let (mut stream, from) = timeout(WAIT, ours.utp.accept()).await.unwrap().unwrap();
        assert_eq!(
            from.port(),
            lt.port,
            "libtorrent dials from its listen port"
        );
        assert_eq!(from.is_ipv4(), addr.is_ipv4());
        read_handshake(&mut stream, &lt.info_hash).await;
        stream
            .write_all(&handshake(&lt.info_hash, n))
            .await
            .unwrap();
        let (id, _) = read_message(&mut stream).await.unwrap();
        assert_eq!(id, 5, "bitfield");
        let peers = lt.command("peers");
        assert!(
            peers.contains(&format!("\"port\": {}, \"utp\": true", addr.port())),
            "libtorrent lists us as a µTP peer: {peers}"
        );
    }
    let c = ours.udp.counters();
    assert!(c.rx_utp > 0 && c.rx_unknown == 0, "{c:?}");
}

/// A whole 16 MiB torrent each way over one µTP connection: we download it from a libtorrent
/// seed, then a libtorrent leech downloads it from us and checks every piece hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utp_moves_a_torrent_each_way_with_libtorrent() {
    // RUST_LOG=burrow_swarm::net::utp=trace shows every µTP packet.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    const SIZE: usize = 16 << 20;
    let Some(mut lt) = LtPeer::start(SIZE).await else {
        return;
    };
    let ours = SessionSockets::bind(NetConfig::loopback(0)).await.unwrap();
    let data = lt.payload();

    let started = Instant::now();
    let mut stream = timeout(WAIT, ours.utp.connect(lt.addrs()[0]))
        .await
        .unwrap()
        .unwrap();
    stream
        .write_all(&handshake(&lt.info_hash, 0))
        .await
        .unwrap();
    read_handshake(&mut stream, &lt.info_hash).await;
    let got = timeout(
        Duration::from_secs(120),
        download(&mut stream, SIZE, lt.piece_length),
    )
    .await
    .expect("download from libtorrent stalled");
    assert!(
        got == data,
        "downloaded bytes differ from libtorrent's file"
    );
    eprintln!(
        "from libtorrent: {:.1} MB/s",
        SIZE as f64 / started.elapsed().as_secs_f64() / 1e6
    );
    drop(stream);
    assert_eq!(
        ours.utp.counters().invalid,
        0,
        "every packet from libtorrent parsed"
    );

    let started = Instant::now();
    let port = ours.port();
    assert_eq!(lt.command(&format!("leech 127.0.0.1 {port}")).trim(), "ok");
    let (mut stream, _) = timeout(WAIT, ours.utp.accept()).await.unwrap().unwrap();
    read_handshake(&mut stream, &lt.info_hash).await;
    stream
        .write_all(&handshake(&lt.info_hash, 1))
        .await
        .unwrap();
    let piece_length = lt.piece_length;
    let server = tokio::spawn(async move { serve(&mut stream, &data, piece_length).await });
    timeout(Duration::from_secs(120), async {
        loop {
            let status = lt.command("leech_status");
            if status.contains("\"seeding\": true") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("libtorrent's download from us stalled");
    eprintln!(
        "to libtorrent: {:.1} MB/s",
        SIZE as f64 / started.elapsed().as_secs_f64() / 1e6
    );
    server.abort();
    assert_eq!(
        ours.utp.counters().invalid,
        0,
        "every packet from libtorrent parsed"
    );
}
