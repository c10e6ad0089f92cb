//! MSE/PE against Debian's libtorrent (python3-libtorrent 2.0) on loopback: libtorrent dials
//! our `accept` with encryption forced, with its default policy and without encryption, and
//! our `mse_connect` dials libtorrent with encryption forced. Each connection then carries a
//! BitTorrent handshake and libtorrent's first messages, and the raw bytes on the socket show
//! whether the payload really was encrypted.

mod common;

use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use burrow_swarm::metainfo::{create_torrent, CreateOptions, Metainfo};
use burrow_swarm::peer::mse::{accept, mse_connect, mse_connect_with_payload, MseStream};
use burrow_swarm::types::{InfoHash, PeerId};
use burrow_swarm::wire::mse::{req2_hash, Crypto, EncryptionPolicy, MseError};
use burrow_swarm::wire::{Handshake, MessageId, HANDSHAKE_LEN, PROTOCOL};
use common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

const STEP: Duration = Duration::from_secs(30);

/// A transport that keeps a copy of every byte received.
struct Tap {
    inner: TcpStream,
    received: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.received
            .lock()
            .unwrap()
            .extend_from_slice(&buf.filled()[before..]);
        r
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn tap(inner: TcpStream) -> (Tap, Arc<Mutex<Vec<u8>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    (
        Tap {
            inner,
            received: received.clone(),
        },
        received,
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A one-file torrent in `dir`, and its info-hash.
fn torrent(dir: &Path) -> (std::path::PathBuf, InfoHash) {
    make_set(dir, "set", &[("data.bin", 100_000)]);
    let opts = CreateOptions {
        piece_length: Some(16 * 1024),
        ..Default::default()
    };
    let bytes = create_torrent(&dir.join("set"), &opts).unwrap();
    let path = dir.join("set.torrent");
    std::fs::write(&path, &bytes).unwrap();
    (path, Metainfo::from_bytes(&bytes).unwrap().info.info_hash)
}

fn seed(dir: &Path, torrent: &Path, enc: &str, peer: Option<u16>) -> Proc {
    let mut args = vec![
        "--mode",
        "seed",
        "--torrent",
        torrent.to_str().unwrap(),
        "--save",
        dir.to_str().unwrap(),
        "--enc",
        enc,
        "--timeout",
        "60",
    ];
    let peer = peer.map(|p| format!("127.0.0.1:{p}"));
    if let Some(p) = &peer {
        args.extend(["--peer", p]);
    }
    Proc::spawn(&format!("lt-seed-{enc}"), libtorrent(&args), dir)
}

/// Runs the BitTorrent handshake on an opened stream (ours goes first unless it already went
/// inside the MSE handshake) and reads until libtorrent has sent its extension handshake and
/// told what it has. Returns libtorrent's handshake.
async fn bittorrent_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut MseStream<S>,
    ih: InfoHash,
    ours_sent: bool,
) -> Handshake {
    let ours = Handshake::ours(ih, PeerId::generate()).encode();
    if !ours_sent {
        s.write_all(&ours).await.unwrap();
    }
    let mut theirs = [0u8; HANDSHAKE_LEN];
    tokio::time::timeout(STEP, s.read_exact(&mut theirs))
        .await
        .expect("libtorrent's handshake in time")
        .unwrap();
    let h = Handshake::decode(&theirs).expect("a BitTorrent handshake");
    assert_eq!(h.info_hash, ih);
    assert!(h.supports_extensions() && h.supports_fast());
    let (mut ext, mut has) = (false, false);
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + STEP;
    while !(ext && has) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .expect("libtorrent's first messages in time")
            .unwrap();
        assert!(n > 0, "libtorrent closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        // Length-prefixed messages; only their ids and the extension handshake matter here.
        while buf.len() >= 4 {
            let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            assert!(len < 1 << 20, "message of {len} bytes");
            if buf.len() < 4 + len {
                break;
            }
            let msg: Vec<u8> = buf.drain(..4 + len).skip(4).collect();
            match msg.first().copied() {
                Some(id) if id == MessageId::Extended as u8 && msg.get(1) == Some(&0) => {
                    assert!(contains(&msg, b"ut_metadata"), "extension handshake");
                    ext = true;
                }
                Some(id) if id == MessageId::HaveAll as u8 || id == MessageId::Bitfield as u8 => {
                    has = true
                }
                _ => {}
            }
        }
    }
    h
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// libtorrent dials us with `enc`; we answer with `policy`.
fn libtorrent_dials(
    enc: &str,
    policy: EncryptionPolicy,
) -> (Result<Option<Crypto>, MseError>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (t, ih) = torrent(d);
    let rt = runtime();
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let lt = seed(d, &t, enc, Some(port));
    let r = rt.block_on(async {
        let (sock, _) = tokio::time::timeout(STEP, listener.accept())
            .await
            .expect("libtorrent dials in time")
            .unwrap();
        let (sock, received) = tap(sock);
        let known = move |h: &[u8; 20]| (req2_hash(&ih) == *h).then_some(ih);
        let accepted = tokio::time::timeout(STEP, accept(sock, known, policy))
            .await
            .expect("handshake in time");
        let r = match accepted {
            Err(e) => Err(e),
            Ok(a) => {
                if let Some(named) = a.info_hash() {
                    assert_eq!(named, ih);
                }
                let mut s = a.into_stream();
                bittorrent_exchange(&mut s, ih, false).await;
                Ok(s.crypto())
            }
        };
        let raw = received.lock().unwrap().clone();
        (r, raw)
    });
    drop(lt);
    r
}

#[test]
fn libtorrent_forcing_encryption_reaches_accept_with_rc4() {
    let (r, raw) = libtorrent_dials("forced", EncryptionPolicy::Rc4Preferred);
    assert_eq!(r.unwrap(), Some(Crypto::Rc4));
    assert!(
        !contains(&raw, PROTOCOL),
        "BitTorrent handshake visible on the wire"
    );
    assert!(
        !contains(&raw, b"ut_metadata"),
        "extension handshake visible on the wire"
    );
}

#[test]
fn libtorrent_forcing_encryption_accepts_our_plaintext_choice() {
    let (r, raw) = libtorrent_dials("forced", EncryptionPolicy::PlaintextPreferred);
    assert_eq!(r.unwrap(), Some(Crypto::Plaintext));
    // Its handshake travelled as RC4-encrypted initial payload; what follows is plain.
    assert!(!contains(&raw, PROTOCOL));
    assert!(contains(&raw, b"ut_metadata"));
}

#[test]
fn default_libtorrent_opens_with_mse() {
    let (r, _) = libtorrent_dials("enabled", EncryptionPolicy::Rc4Preferred);
    assert_eq!(r.unwrap(), Some(Crypto::Rc4));
}

#[test]
fn plain_libtorrent_is_told_apart_and_refused_when_encryption_is_required() {
    let (r, raw) = libtorrent_dials("disabled", EncryptionPolicy::Rc4Preferred);
    assert_eq!(r.unwrap(), None, "a plain connection");
    assert!(raw.starts_with(b"\x13BitTorrent protocol"));
    let (r, _) = libtorrent_dials("disabled", EncryptionPolicy::Rc4Required);
    assert!(matches!(r, Err(MseError::PlaintextRefused)), "{r:?}");
}

#[test]
fn we_dial_libtorrent_forcing_encryption() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (t, ih) = torrent(d);
    let mut lt = seed(d, &t, "forced", None);
    let port = lt_port(&mut lt);
    let rt = runtime();
    // libtorrent chooses plaintext when offered both (its `prefer_rc4` is off by default), so
    // offering only RC4 is what gets an encrypted payload.
    for (policy, handshake_inside, want) in [
        (EncryptionPolicy::Rc4Required, false, Crypto::Rc4),
        (EncryptionPolicy::Rc4Required, true, Crypto::Rc4),
        (EncryptionPolicy::Rc4Preferred, false, Crypto::Plaintext),
        (EncryptionPolicy::Rc4Preferred, true, Crypto::Plaintext),
    ] {
        rt.block_on(async {
            let sock = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let (sock, received) = tap(sock);
            let ours = Handshake::ours(ih, PeerId::generate()).encode();
            let opened = if handshake_inside {
                mse_connect_with_payload(sock, ih, policy, &ours).await
            } else {
                mse_connect(sock, ih, policy).await
            };
            let mut s = opened.unwrap_or_else(|e| panic!("{policy:?}: {e}\n{}", lt.output()));
            assert_eq!(s.crypto(), Some(want), "{policy:?}");
            bittorrent_exchange(&mut s, ih, handshake_inside).await;
            let raw = received.lock().unwrap().clone();
            assert_eq!(
                contains(&raw, PROTOCOL),
                want == Crypto::Plaintext,
                "{policy:?}"
            );
        });
    }
    // A plain handshake is refused by a libtorrent that forces encryption: proof that the
    // connections above really went through MSE.
    rt.block_on(async {
        let mut sock = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        sock.write_all(&Handshake::ours(ih, PeerId::generate()).encode())
            .await
            .unwrap();
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(STEP, sock.read(&mut b))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0, "libtorrent answered a plain handshake");
    });
}
