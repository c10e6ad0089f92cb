//! The driver over in-memory pipes: both roles against each other, plain handshakes on the
//! listening side, transports that take a few bytes at a time, silent and vanishing peers.

use std::sync::{Arc, Mutex};

use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::types::PeerId;
use crate::wire::mse::req2_hash;
use crate::wire::Handshake;

const IH: InfoHash = InfoHash([0x42; 20]);

fn known(h: &[u8; 20]) -> Option<InfoHash> {
    (req2_hash(&IH) == *h).then_some(IH)
}

/// A transport that records what it sends and takes at most `max` bytes per write, refusing
/// every other write (as a full socket buffer would).
struct Tap {
    inner: DuplexStream,
    sent: Arc<Mutex<Vec<u8>>>,
    max: usize,
    refuse: bool,
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.refuse = !self.refuse;
        if self.refuse {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = data.len().min(self.max);
        let r = Pin::new(&mut self.inner).poll_write(cx, &data[..n]);
        if let Poll::Ready(Ok(k)) = r {
            self.sent.lock().unwrap().extend_from_slice(&data[..k]);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn tap(inner: DuplexStream, max: usize) -> (Tap, Arc<Mutex<Vec<u8>>>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    (
        Tap {
            inner,
            sent: sent.clone(),
            max,
            refuse: false,
        },
        sent,
    )
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Connects both ends, then sends `len` bytes each way at once and checks them.
async fn exchange(
    dial: EncryptionPolicy,
    listen: EncryptionPolicy,
    max_write: usize,
    len: usize,
) -> (Crypto, Vec<u8>) {
    let (a, b) = duplex(4096);
    let (a, sent_by_a) = tap(a, max_write);
    let (b, _) = tap(b, max_write);
    let bt = Handshake::ours(IH, PeerId([1; 20])).encode();
    let (ra, rb) = tokio::join!(
        mse_connect_with_payload(a, IH, dial, &bt),
        accept(b, known, listen)
    );
    let a = ra.unwrap();
    let Accepted::Encrypted {
        stream: mut b,
        info_hash,
    } = rb.unwrap()
    else {
        panic!("not MSE")
    };
    assert_eq!(info_hash, IH);
    assert_eq!(a.crypto(), b.crypto());
    let mut got = [0u8; 68];
    b.read_exact(&mut got).await.unwrap();
    assert_eq!(got, bt, "the initial payload comes first");

    let payload = data(len);
    let crypto = a.crypto().unwrap();
    let ta = tokio::spawn(send_and_receive(a, payload.clone()));
    let tb = tokio::spawn(send_and_receive(b, payload));
    ta.await.unwrap();
    tb.await.unwrap();
    let wire = sent_by_a.lock().unwrap().clone();
    (crypto, wire)
}

/// Writes `payload` while reading as many bytes, which must equal it.
async fn send_and_receive(s: MseStream<Tap>, payload: Vec<u8>) {
    let (mut r, mut w) = tokio::io::split(s);
    let mut back = vec![0u8; payload.len()];
    let (wr, rd) = tokio::join!(w.write_all(&payload), r.read_exact(&mut back));
    wr.unwrap();
    rd.unwrap();
    assert!(back == payload, "payload differs");
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn encrypted_both_ways_through_a_stingy_transport() {
    let (crypto, wire) = exchange(
        EncryptionPolicy::Rc4Preferred,
        EncryptionPolicy::Rc4Preferred,
        3,
        20_000,
    )
    .await;
    assert_eq!(crypto, Crypto::Rc4);
    assert!(!contains(&wire, PROTOCOL), "handshake visible on the wire");
    assert!(
        !contains(&wire, &data(20_000)[..64]),
        "payload visible on the wire"
    );
}

#[tokio::test]
async fn plaintext_choice_leaves_the_payload_readable() {
    let (crypto, wire) = exchange(
        EncryptionPolicy::Rc4Preferred,
        EncryptionPolicy::PlaintextPreferred,
        1000,
        300_000,
    )
    .await;
    assert_eq!(crypto, Crypto::Plaintext);
    assert!(
        !contains(&wire, PROTOCOL),
        "the initial payload is still RC4"
    );
    assert!(
        wire.ends_with(&data(300_000)),
        "payload after the handshake in plain"
    );
}

#[tokio::test]
async fn required_encryption_wins_over_a_plaintext_preference() {
    let (crypto, _) = exchange(
        EncryptionPolicy::Rc4Required,
        EncryptionPolicy::PlaintextPreferred,
        64,
        1000,
    )
    .await;
    assert_eq!(crypto, Crypto::Rc4);
}

#[tokio::test]
async fn plain_handshakes_pass_through_accept() {
    let (mut a, b) = duplex(4096);
    let bt = Handshake::ours(IH, PeerId([1; 20])).encode();
    a.write_all(&bt).await.unwrap();
    a.write_all(b"then messages").await.unwrap();
    let Accepted::Plaintext(mut s) = accept(b, known, EncryptionPolicy::Rc4Preferred)
        .await
        .unwrap()
    else {
        panic!("not plain")
    };
    assert_eq!(s.crypto(), None);
    let mut got = vec![0u8; 68 + 13];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(&got[..68], &bt);
    assert_eq!(&got[68..], b"then messages");
    s.write_all(b"answer").await.unwrap();
    let mut back = [0u8; 6];
    a.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"answer");

    let (mut a, b) = duplex(4096);
    a.write_all(&bt).await.unwrap();
    let r = accept(b, known, EncryptionPolicy::Rc4Required).await;
    assert!(matches!(r, Err(MseError::PlaintextRefused)), "{r:?}");
}

#[tokio::test]
async fn a_near_miss_of_the_protocol_string_is_taken_as_mse() {
    // 19 then "BitTorrent protocoX": not plain, so the 20 bytes start a (bad-length) key and
    // the rest never completes; closing gives Eof in the key exchange.
    let (mut a, b) = duplex(4096);
    a.write_all(b"\x13BitTorrent protocoX").await.unwrap();
    drop(a);
    let r = accept(b, known, EncryptionPolicy::Rc4Preferred).await;
    assert!(matches!(r, Err(MseError::Eof(Phase::KeyExchange))), "{r:?}");
}

#[tokio::test]
async fn unknown_torrent_is_refused() {
    let (a, b) = duplex(4096);
    let (ra, rb) = tokio::join!(
        async {
            let r = mse_connect(a, InfoHash([9; 20]), EncryptionPolicy::Rc4Preferred).await;
            r.map(|_| ())
        },
        async {
            let r = accept(b, known, EncryptionPolicy::Rc4Preferred).await;
            r.map(|_| ())
        }
    );
    assert!(matches!(rb, Err(MseError::UnknownInfoHash)), "{rb:?}");
    assert!(matches!(ra, Err(MseError::Eof(Phase::Sync))), "{ra:?}");
}

#[tokio::test(start_paused = true)]
async fn silent_peers_time_out_per_phase() {
    let (_a, b) = duplex(4096);
    let r = accept(b, known, EncryptionPolicy::Rc4Preferred).await;
    assert!(
        matches!(r, Err(MseError::Timeout(Phase::KeyExchange))),
        "{r:?}"
    );

    let (_a, b) = duplex(4096);
    let r = mse_connect(b, IH, EncryptionPolicy::Rc4Preferred).await;
    assert!(
        matches!(r, Err(MseError::Timeout(Phase::KeyExchange))),
        "{r:?}"
    );

    // A peer that sends its key and padding, then stalls before the sync point.
    let (mut a, b) = duplex(4096);
    let key = crate::wire::mse::KeyPair::from_private([3; 20]);
    a.write_all(key.public()).await.unwrap();
    a.write_all(&[0u8; 100]).await.unwrap();
    let start = Instant::now();
    let r = accept(b, known, EncryptionPolicy::Rc4Preferred).await;
    assert!(matches!(r, Err(MseError::Timeout(Phase::Sync))), "{r:?}");
    assert!(start.elapsed() >= MSE_PHASE_TIMEOUT);
}

#[test]
fn futures_and_stream_can_move_between_threads() {
    fn is_send<T: Send>(_: &T) {}
    fn is_peer_io<T: crate::peer::conn::PeerIo>() {}
    is_peer_io::<MseStream<tokio::net::TcpStream>>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (t, _) = l.accept().await.unwrap();
        let table = Arc::new(vec![IH]);
        let f = accept(
            t,
            move |h: &[u8; 20]| table.iter().copied().find(|ih| req2_hash(ih) == *h),
            EncryptionPolicy::default(),
        );
        is_send(&f);
        let g = mse_connect(s, IH, EncryptionPolicy::default());
        is_send(&g);
    });
}
