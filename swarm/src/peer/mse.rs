//! Runs MSE/PE handshakes (the sans-IO cores in `wire::mse`) over a byte stream, with a time
//! limit per phase, and yields [`MseStream`]: the connection's byte stream from then on,
//! RC4-transformed in both directions or passed through. The listener's [`accept`] also
//! recognises a plain BitTorrent handshake and hands it on untouched.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use crate::types::InfoHash;
use crate::wire::mse::{
    Crypto, EncryptionPolicy, Initiator, LocalParams, MseError, PayloadCipher, Phase, Responder,
};
use crate::wire::PROTOCOL;

/// Time allowed for each phase of the handshake (key exchange, sync, negotiation), and for
/// the first bytes of an incoming connection.
pub const MSE_PHASE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest chunk encrypted per write: bounds the scratch buffer and the work redone when the
/// transport takes less than offered.
pub const MAX_WRITE_CHUNK: usize = 64 * 1024;
/// Bytes read from the transport at a time during the handshake.
const HANDSHAKE_READ: usize = 1024;

/// A peer connection's byte stream after its opening: RC4 both ways when MSE chose RC4,
/// otherwise the transport's own bytes. Bytes read ahead during the handshake come first.
#[derive(Debug)]
pub struct MseStream<S> {
    inner: S,
    cipher: PayloadCipher,
    crypto: Option<Crypto>,
    /// Payload read during the handshake, already decrypted, not yet returned.
    prefix: Vec<u8>,
    prefix_pos: usize,
    scratch: Vec<u8>,
}

impl<S> MseStream<S> {
    /// A pass-through stream (a connection without MSE), so plain and encrypted
    /// connections share one type.
    pub fn plain(inner: S) -> MseStream<S> {
        MseStream::new(inner, PayloadCipher::plaintext(), None, Vec::new())
    }

    fn new(
        inner: S,
        mut cipher: PayloadCipher,
        crypto: Option<Crypto>,
        mut prefix: Vec<u8>,
    ) -> MseStream<S> {
        cipher.decrypt(&mut prefix);
        MseStream {
            inner,
            cipher,
            crypto,
            prefix,
            prefix_pos: 0,
            scratch: Vec::new(),
        }
    }

    /// How the payload travels: `None` for a connection that never used MSE.
    pub fn crypto(&self) -> Option<Crypto> {
        self.crypto
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for MseStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix_pos < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.prefix_pos);
            buf.put_slice(&this.prefix[this.prefix_pos..this.prefix_pos + n]);
            this.prefix_pos += n;
            if this.prefix_pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.prefix_pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.cipher.decrypt(&mut buf.filled_mut()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for MseStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.cipher.encrypts() {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        // Encrypt ahead, then keep the keystream advanced by exactly what the transport took:
        // `Ok(k)` must mean the first k bytes of `data` are sent, and nothing else is held.
        let n = data.len().min(MAX_WRITE_CHUNK);
        let checkpoint = this.cipher.send_checkpoint();
        this.scratch.clear();
        this.scratch.extend_from_slice(&data[..n]);
        this.cipher.encrypt(&mut this.scratch);
        let r = Pin::new(&mut this.inner).poll_write(cx, &this.scratch);
        match r {
            Poll::Ready(Ok(k)) if k == n => {}
            Poll::Ready(Ok(k)) => {
                this.cipher.rewind_send(checkpoint);
                this.scratch.clear();
                this.scratch.extend_from_slice(&data[..k]);
                this.cipher.encrypt(&mut this.scratch);
            }
            _ => this.cipher.rewind_send(checkpoint),
        }
        if this.scratch.capacity() > MAX_WRITE_CHUNK {
            this.scratch = Vec::new();
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// How an incoming connection opened.
#[derive(Debug)]
pub enum Accepted<S> {
    /// With a plain BitTorrent handshake; the stream replays the bytes already read, so the
    /// handshake can be read from its start.
    Plaintext(MseStream<S>),
    /// With MSE, naming a torrent we serve. The stream starts at the peer's initial payload
    /// (usually its BitTorrent handshake).
    Encrypted {
        /// The decrypted stream.
        stream: MseStream<S>,
        /// The torrent the peer asked for.
        info_hash: InfoHash,
    },
}

impl<S> Accepted<S> {
    /// The stream, whichever way the connection opened.
    pub fn into_stream(self) -> MseStream<S> {
        match self {
            Accepted::Plaintext(s) | Accepted::Encrypted { stream: s, .. } => s,
        }
    }

    /// The torrent named in the MSE handshake, if there was one.
    pub fn info_hash(&self) -> Option<InfoHash> {
        match self {
            Accepted::Plaintext(_) => None,
            Accepted::Encrypted { info_hash, .. } => Some(*info_hash),
        }
    }
}

/// Dials with MSE: runs the handshake for `info_hash` and returns the stream on which to send
/// our BitTorrent handshake. A peer that does not speak MSE fails this (usually by closing);
/// unless the policy requires encryption, dial it again in plain.
pub async fn mse_connect<S>(
    stream: S,
    info_hash: InfoHash,
    policy: EncryptionPolicy,
) -> Result<MseStream<S>, MseError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    mse_connect_with_payload(stream, info_hash, policy, &[]).await
}

/// [`mse_connect`] that sends `initial_payload` (normally our 68-byte BitTorrent handshake)
/// inside the handshake, saving a round trip; it must not be sent again on the stream.
pub async fn mse_connect_with_payload<S>(
    mut stream: S,
    info_hash: InfoHash,
    policy: EncryptionPolicy,
    initial_payload: &[u8],
) -> Result<MseStream<S>, MseError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut core = Initiator::new(info_hash, policy, initial_payload, LocalParams::random())?;
    let rest = drive(&mut stream, &mut core, Vec::new()).await?;
    let done = core.into_established().expect("driven to completion");
    Ok(MseStream::new(stream, done.cipher, Some(done.crypto), rest))
}

/// Answers an incoming connection: a plain BitTorrent handshake (first byte 19, then
/// "BitTorrent protocol") passes through if the policy allows it; anything else is taken as
/// MSE. `known` maps `SHA1("req2", info_hash)` ([`crate::wire::mse::req2_hash`]) to a torrent
/// we serve.
pub async fn accept<S, F>(
    mut stream: S,
    known: F,
    policy: EncryptionPolicy,
) -> Result<Accepted<S>, MseError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    F: Fn(&[u8; 20]) -> Option<InfoHash>,
{
    let mut head = [0u8; 20];
    let mut have = 0;
    let deadline = Instant::now() + MSE_PHASE_TIMEOUT;
    // Read only while the bytes still match "\x13BitTorrent protocol": one differing byte is
    // enough to know it is MSE, and nothing beyond 20 bytes is consumed here.
    while have < head.len() {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut head[have..]))
            .await
            .map_err(|_| MseError::Timeout(Phase::KeyExchange))??;
        if n == 0 {
            return Err(MseError::Eof(Phase::KeyExchange));
        }
        have += n;
        if !is_plain_prefix(&head[..have]) {
            break;
        }
    }
    if is_plain_prefix(&head[..have]) {
        if !policy.allows_plain_handshake() {
            return Err(MseError::PlaintextRefused);
        }
        return Ok(Accepted::Plaintext(MseStream::new(
            stream,
            PayloadCipher::plaintext(),
            None,
            head[..have].to_vec(),
        )));
    }
    let mut core = Answering {
        core: Responder::new(policy, LocalParams::random()),
        known,
    };
    let rest = drive(&mut stream, &mut core, head[..have].to_vec()).await?;
    let done = core.core.into_established().expect("driven to completion");
    let info_hash = done.info_hash;
    Ok(Accepted::Encrypted {
        stream: MseStream::new(stream, done.cipher, Some(done.crypto), rest),
        info_hash,
    })
}

fn is_plain_prefix(b: &[u8]) -> bool {
    let mut want = [0u8; 20];
    want[0] = 19;
    want[1..].copy_from_slice(PROTOCOL);
    want.starts_with(b)
}

/// What the driver needs from either role.
trait Core {
    fn feed(&mut self, data: &[u8]) -> Result<usize, MseError>;
    fn take_output(&mut self) -> Vec<u8>;
    fn phase(&self) -> Phase;
    fn is_done(&self) -> bool;
}

impl Core for Initiator {
    fn feed(&mut self, data: &[u8]) -> Result<usize, MseError> {
        Initiator::feed(self, data)
    }
    fn take_output(&mut self) -> Vec<u8> {
        Initiator::take_output(self)
    }
    fn phase(&self) -> Phase {
        Initiator::phase(self)
    }
    fn is_done(&self) -> bool {
        Initiator::is_done(self)
    }
}

struct Answering<F> {
    core: Responder,
    known: F,
}

impl<F: Fn(&[u8; 20]) -> Option<InfoHash>> Core for Answering<F> {
    fn feed(&mut self, data: &[u8]) -> Result<usize, MseError> {
        self.core.feed(data, &self.known)
    }
    fn take_output(&mut self) -> Vec<u8> {
        self.core.take_output()
    }
    fn phase(&self) -> Phase {
        self.core.phase()
    }
    fn is_done(&self) -> bool {
        self.core.is_done()
    }
}

/// Runs `core` to completion over `stream`, starting with bytes already read; returns the
/// bytes read past the handshake (payload, still as received).
async fn drive<S, C>(stream: &mut S, core: &mut C, mut held: Vec<u8>) -> Result<Vec<u8>, MseError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: Core,
{
    let mut phase = core.phase();
    let mut deadline = Instant::now() + MSE_PHASE_TIMEOUT;
    let mut buf = [0u8; HANDSHAKE_READ];
    loop {
        let used = core.feed(&held)?;
        held.drain(..used);
        if core.phase() != phase {
            phase = core.phase();
            deadline = Instant::now() + MSE_PHASE_TIMEOUT;
        }
        let out = core.take_output();
        if !out.is_empty() {
            tokio::time::timeout_at(deadline, async {
                stream.write_all(&out).await?;
                stream.flush().await
            })
            .await
            .map_err(|_| MseError::Timeout(phase))??;
        }
        if core.is_done() {
            return Ok(held);
        }
        // Until it is done, a core takes every byte it is given (or fails); never let bytes
        // pile up should that ever not hold.
        if !held.is_empty() {
            return Err(MseError::Failed);
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .map_err(|_| MseError::Timeout(phase))??;
        if n == 0 {
            return Err(MseError::Eof(phase));
        }
        held.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests;
