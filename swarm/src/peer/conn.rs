//! Driving one peer connection over any byte stream (TCP or µTP): the handshake, a reader
//! task that decodes messages and hands them to the torrent in batches, and a writer task that
//! sends what the torrent asks and serves requested blocks from storage, reading disk on
//! blocking threads in batches.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::limit::{LinkLimits, LIMITED_READ_CHUNK};
use super::PeerKey;
use crate::torrent::storage::Storage;
use crate::types::{BlockRef, InfoHash, PeerId};
use crate::wire::{Handshake, Message, WireError, HANDSHAKE_LEN};

/// Time allowed for the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with nothing received for this long is dead (peers send keep-alives every
/// two minutes at most).
pub const READ_TIMEOUT: Duration = Duration::from_secs(180);
/// We send a keep-alive after this long without sending anything.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(90);
/// Size of each read buffer allocation.
pub const READ_BUFFER: usize = 256 * 1024;
/// Requests queued for serving per peer; beyond it, requests are rejected or dropped.
pub const MAX_SERVE_QUEUE: usize = 1000;
/// Block bytes read from disk per batch.
pub const SERVE_BATCH_BYTES: usize = 256 * 1024;

/// A byte stream a peer connection can run over.
pub trait PeerIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> PeerIo for T {}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Network error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The peer broke the protocol.
    #[error("{0}")]
    Wire(#[from] WireError),
    /// The peer answered for another torrent.
    #[error("peer is in another swarm")]
    WrongTorrent,
    /// Nothing arrived in time.
    #[error("timed out")]
    Timeout,
    /// The peer closed the connection.
    #[error("closed by peer")]
    Eof,
}

/// Sends our handshake and reads the peer's (we dialled).
pub async fn handshake_outgoing<S: PeerIo>(
    s: &mut S,
    info_hash: InfoHash,
    our_id: PeerId,
) -> Result<Handshake, ConnError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        s.write_all(&Handshake::ours(info_hash, our_id).encode())
            .await?;
        let mut b = [0u8; HANDSHAKE_LEN];
        s.read_exact(&mut b).await?;
        let h = Handshake::decode(&b)?;
        if h.info_hash != info_hash {
            return Err(ConnError::WrongTorrent);
        }
        Ok(h)
    })
    .await
    .map_err(|_| ConnError::Timeout)?
}

/// Reads the first 48 bytes of an incoming handshake: enough to know which torrent it is for.
pub async fn read_handshake_prefix<S: PeerIo>(s: &mut S) -> Result<([u8; 8], InfoHash), ConnError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let mut b = [0u8; 48];
        s.read_exact(&mut b).await?;
        Ok(Handshake::decode_prefix(&b)?)
    })
    .await
    .map_err(|_| ConnError::Timeout)?
}

/// Answers an incoming handshake whose prefix was read, and reads the peer's id.
pub async fn finish_incoming<S: PeerIo>(
    s: &mut S,
    reserved: [u8; 8],
    info_hash: InfoHash,
    our_id: PeerId,
) -> Result<Handshake, ConnError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        s.write_all(&Handshake::ours(info_hash, our_id).encode())
            .await?;
        let mut id = [0u8; 20];
        s.read_exact(&mut id).await?;
        Ok(Handshake {
            reserved,
            info_hash,
            peer_id: PeerId(id),
        })
    })
    .await
    .map_err(|_| ConnError::Timeout)?
}

/// What the reader reports to the torrent.
#[derive(Debug)]
pub enum PeerEvent {
    /// Messages, in order.
    Messages(PeerKey, Vec<Message>),
    /// The connection ended.
    Closed(PeerKey, String),
}

/// What the torrent asks the writer to do.
#[derive(Debug)]
pub enum Outgoing {
    /// Send a message.
    Msg(Message),
    /// Read a block and send it.
    Serve(BlockRef, Arc<Storage>),
    /// Drop a queued block if not yet sent (rejecting it under BEP 6).
    CancelServe(BlockRef),
    /// Drop all queued blocks (we choked the peer).
    ClearServes,
    /// Flush and close.
    Close,
}

/// The torrent's handle on a running connection.
pub struct PeerLink {
    /// Commands to the writer.
    pub tx: mpsc::UnboundedSender<Outgoing>,
    /// Block payload bytes sent so far.
    uploaded: Arc<AtomicU64>,
    /// Payload bytes already reported by [`PeerLink::take_sent`].
    reported: u64,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl PeerLink {
    /// Asks the writer to flush and close, and stops reading.
    pub fn close(&self) {
        let _ = self.tx.send(Outgoing::Close);
        self.reader.abort();
    }

    /// Stops both tasks at once.
    pub fn abort(&self) {
        self.reader.abort();
        self.writer.abort();
    }

    /// Payload bytes sent since the last call.
    pub fn take_sent(&mut self) -> u64 {
        let sent = self.uploaded.load(Ordering::Acquire);
        let new = sent - self.reported;
        self.reported = sent;
        new
    }

    /// Whether the writer has ended (so its count is final).
    pub fn writer_ended(&self) -> bool {
        self.writer.is_finished()
    }

    /// Waits for the writer to end, however it ends.
    pub async fn writer_done(&mut self) {
        // A JoinHandle must not be polled again once it has given its output.
        if !self.writer.is_finished() {
            let _ = (&mut self.writer).await;
        }
    }
}

/// Starts the reader and writer tasks of a connection whose handshake is done.
pub fn spawn<S: PeerIo>(
    key: PeerKey,
    stream: S,
    fast: bool,
    events: mpsc::Sender<PeerEvent>,
) -> PeerLink {
    spawn_limited(key, stream, fast, events, LinkLimits::default())
}

/// Like [`spawn`], with the connection's bytes drawn from the rate caps in `limits`.
pub fn spawn_limited<S: PeerIo>(
    key: PeerKey,
    stream: S,
    fast: bool,
    events: mpsc::Sender<PeerEvent>,
    limits: LinkLimits,
) -> PeerLink {
    let (rd, wr) = tokio::io::split(stream);
    let LinkLimits { down, up: up_limit } = limits;
    let (tx, rx) = mpsc::unbounded_channel();
    let uploaded = Arc::new(AtomicU64::new(0));
    let ev = events.clone();
    let reader = tokio::spawn(async move {
        let reason = match read_loop(key, rd, &ev, &down).await {
            Ok(()) => "closed".to_string(),
            Err(e) => e.to_string(),
        };
        let _ = ev.send(PeerEvent::Closed(key, reason)).await;
    });
    let up = uploaded.clone();
    let writer = tokio::spawn(async move {
        if let Err(e) = write_loop(wr, rx, fast, up, &up_limit).await {
            let _ = events
                .send(PeerEvent::Closed(key, format!("write: {e}")))
                .await;
        }
    });
    PeerLink {
        tx,
        uploaded,
        reported: 0,
        reader,
        writer,
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    key: PeerKey,
    mut rd: R,
    ev: &mpsc::Sender<PeerEvent>,
    limit: &super::limit::LimitSet,
) -> Result<(), ConnError> {
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    loop {
        if buf.capacity() - buf.len() < 32 * 1024 {
            buf.reserve(READ_BUFFER);
        }
        let limited = limit.is_limited();
        let read = async {
            if limited {
                // Small reads under a cap: each wait for tokens stays short.
                (&mut rd)
                    .take(LIMITED_READ_CHUNK as u64)
                    .read_buf(&mut buf)
                    .await
            } else {
                rd.read_buf(&mut buf).await
            }
        };
        let n = tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .map_err(|_| ConnError::Timeout)??;
        if n == 0 {
            return Err(ConnError::Eof);
        }
        if limited {
            limit.acquire(n).await;
        }
        let mut msgs = Vec::new();
        while let Some(m) = Message::decode(&mut buf)? {
            msgs.push(m);
        }
        if !msgs.is_empty() && ev.send(PeerEvent::Messages(key, msgs)).await.is_err() {
            return Ok(());
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    fast: bool,
    uploaded: Arc<AtomicU64>,
    limit: &super::limit::LimitSet,
) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut serves: VecDeque<(BlockRef, Arc<Storage>)> = VecDeque::new();
    let mut closing = false;
    loop {
        if out.is_empty() && serves.is_empty() {
            if closing {
                let _ = wr.shutdown().await;
                return Ok(());
            }
            match tokio::time::timeout(KEEPALIVE_INTERVAL, rx.recv()).await {
                Ok(Some(cmd)) => handle(cmd, &mut out, &mut serves, fast, &mut closing),
                Ok(None) => return Ok(()),
                Err(_) => Message::KeepAlive.encode(&mut out),
            }
        }
        while let Ok(cmd) = rx.try_recv() {
            handle(cmd, &mut out, &mut serves, fast, &mut closing);
        }
        if !serves.is_empty() && out.len() < SERVE_BATCH_BYTES {
            let mut batch = Vec::new();
            let mut bytes = 0;
            // Smaller batches under a cap, so blocks leave steadily rather than in bursts.
            let batch_max = if limit.is_limited() {
                LIMITED_READ_CHUNK
            } else {
                SERVE_BATCH_BYTES
            };
            while let Some((r, _)) = serves.front() {
                if bytes > 0 && bytes + r.len as usize > batch_max {
                    break;
                }
                bytes += r.len as usize;
                batch.push(serves.pop_front().expect("front exists"));
            }
            let lens: Vec<usize> = batch.iter().map(|(r, _)| r.len as usize).collect();
            let data = tokio::task::spawn_blocking(move || read_blocks(&batch))
                .await
                .map_err(std::io::Error::other)??;
            if !out.is_empty() {
                wr.write_all(&out).await?;
                out.clear();
            }
            // Block by block, and what the torrent sent meanwhile goes out in between: on a
            // slow uplink a batch takes seconds, and a holepunch `connect` or a PEX message
            // must not wait behind it.
            let mut at = 0;
            for len in lens {
                let end = at + PIECE_HEADER_LEN + len;
                limit.acquire(end - at).await;
                wr.write_all(&data[at..end]).await?;
                uploaded.fetch_add(len as u64, Ordering::Release);
                at = end;
                while let Ok(cmd) = rx.try_recv() {
                    handle(cmd, &mut out, &mut serves, fast, &mut closing);
                }
                if !out.is_empty() {
                    wr.write_all(&out).await?;
                    out.clear();
                }
            }
        }
        if !out.is_empty() {
            wr.write_all(&out).await?;
            out.clear();
        }
    }
}

fn handle(
    cmd: Outgoing,
    out: &mut BytesMut,
    serves: &mut VecDeque<(BlockRef, Arc<Storage>)>,
    fast: bool,
    closing: &mut bool,
) {
    match cmd {
        Outgoing::Msg(m) => m.encode(out),
        Outgoing::Serve(r, s) => {
            if serves.len() < MAX_SERVE_QUEUE {
                serves.push_back((r, s));
            } else if fast {
                Message::Reject(r).encode(out);
            }
        }
        Outgoing::CancelServe(r) => {
            if let Some(i) = serves.iter().position(|(q, _)| *q == r) {
                serves.remove(i);
                if fast {
                    Message::Reject(r).encode(out);
                }
            }
        }
        Outgoing::ClearServes => {
            for (r, _) in serves.drain(..) {
                if fast {
                    Message::Reject(r).encode(out);
                }
            }
        }
        Outgoing::Close => *closing = true,
    }
}

/// Bytes of a `piece` message before its block: length prefix, id, index and offset.
const PIECE_HEADER_LEN: usize = 13;

/// Reads blocks and lays them out as complete `piece` messages.
fn read_blocks(batch: &[(BlockRef, Arc<Storage>)]) -> std::io::Result<BytesMut> {
    let total: usize = batch
        .iter()
        .map(|(r, _)| PIECE_HEADER_LEN + r.len as usize)
        .sum();
    let mut out = BytesMut::with_capacity(total);
    for (r, storage) in batch {
        Message::encode_piece_header(&mut out, r.piece, r.offset, r.len as usize);
        let start = out.len();
        out.put_bytes(0, r.len as usize);
        let at = storage.piece_offset(r.piece) + r.offset as u64;
        storage.read(at, &mut out[start..])?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::info_of;
    use crate::types::PieceIndex;

    /// A message the torrent sends while a batch of blocks is on its way goes out between two
    /// blocks, not after the whole batch: on a slow link the batch takes seconds.
    #[tokio::test]
    async fn control_messages_overtake_a_batch_being_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![7u8; 512 * 1024]).unwrap();
        let info = info_of(&dir.path().join("f"), SERVE_BATCH_BYTES as u32);
        let storage = Arc::new(Storage::new(&info, dir.path()));
        // A small pipe: the writer blocks after a few KiB until the reader drains it.
        let (ours, mut theirs) = tokio::io::duplex(4096);
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(async move {
            let limit = super::super::limit::LimitSet::default();
            write_loop(ours, rx, true, Arc::new(AtomicU64::new(0)), &limit).await
        });
        let blocks = SERVE_BATCH_BYTES as u32 / 16384;
        for i in 0..blocks {
            tx.send(Outgoing::Serve(
                BlockRef {
                    piece: PieceIndex(0),
                    offset: i * 16384,
                    len: 16384,
                },
                storage.clone(),
            ))
            .unwrap();
        }
        let mut buf = BytesMut::new();
        let mut pieces_before_have = None;
        let mut pieces = 0;
        while pieces_before_have.is_none() {
            assert!(
                theirs.read_buf(&mut buf).await.unwrap() > 0,
                "writer closed"
            );
            while let Some(m) = Message::decode(&mut buf).unwrap() {
                match m {
                    Message::Piece { .. } => {
                        pieces += 1;
                        if pieces == 1 {
                            tx.send(Outgoing::Msg(Message::Have(PieceIndex(1))))
                                .unwrap();
                        }
                    }
                    Message::Have(PieceIndex(1)) => pieces_before_have = Some(pieces),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        let before = pieces_before_have.unwrap();
        assert!(
            before < blocks - 1,
            "`have` waited for {before} of {blocks} blocks"
        );
        writer.abort();
    }
}
