//! UDP tracker protocol (BEP 15): a connect exchange for a connection id (valid a minute),
//! then announces, each matched to its reply by a random transaction id and retried with
//! growing time-outs. Packets go through a [`UdpTracker`] transport so the client can send
//! them from its one shared UDP socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{AnnounceRequest, AnnounceResponse, Event, TrackerError, MAX_PEERS_PER_RESPONSE};
use crate::wire::parse_compact;

/// The magic constant opening a connect request.
pub const UDP_PROTOCOL_ID: u64 = 0x0417_2710_1980;
/// Attempts per exchange; the wait doubles from [`FIRST_TIMEOUT`].
pub const UDP_ATTEMPTS: u32 = 3;
/// Wait for the first reply (BEP 15 suggests 15 s; loopback and LAN trackers answer in
/// milliseconds, and a client that waits minutes for a dead tracker helps nobody).
pub const FIRST_TIMEOUT: Duration = Duration::from_secs(4);

/// Builds a request for a transaction id.
pub type BuildPacket<'a> = &'a (dyn Fn(u32) -> Vec<u8> + Sync);

/// Sends one request and waits for the reply to it. The transport chooses the transaction id
/// (so it can route the reply) and builds the packet with it.
pub trait UdpTransport: Send + Sync + 'static {
    /// Sends `build(tid)` to `to` and returns the reply carrying `tid` within `timeout`.
    fn exchange<'a>(
        &'a self,
        to: SocketAddr,
        build: BuildPacket<'a>,
        timeout: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send + 'a>>;
}

/// A UDP tracker client over some transport.
#[derive(Clone)]
pub struct UdpTracker {
    transport: Arc<dyn UdpTransport>,
}

/// A transport with its own ephemeral socket per exchange (for tools and tests; the session
/// uses its shared socket, see [`MuxTransport`]).
pub struct EphemeralUdp;

impl UdpTransport for EphemeralUdp {
    fn exchange<'a>(
        &'a self,
        to: SocketAddr,
        build: BuildPacket<'a>,
        timeout: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send + 'a>> {
        Box::pin(async move {
            let tid: u32 = rand::random();
            let bind: SocketAddr = if to.is_ipv4() {
                "0.0.0.0:0".parse().ok()?
            } else {
                "[::]:0".parse().ok()?
            };
            let sock = tokio::net::UdpSocket::bind(bind).await.ok()?;
            sock.send_to(&build(tid), to).await.ok()?;
            let mut buf = vec![0u8; 2048];
            tokio::time::timeout(timeout, async {
                loop {
                    let (n, from) = sock.recv_from(&mut buf).await.ok()?;
                    if from == to && n >= 8 && buf[4..8] == tid.to_be_bytes() {
                        return Some(buf[..n].to_vec());
                    }
                }
            })
            .await
            .ok()
            .flatten()
        })
    }
}

/// The session's transport: requests leave from the shared UDP socket and replies come back
/// through its demultiplexer by transaction id, so tracker traffic uses the same NAT mapping
/// as the DHT and µTP.
pub struct MuxTransport {
    /// Registers transaction ids with the demultiplexer.
    pub transactions: crate::net::udp::TrackerTransactions,
    /// Sends from the shared socket.
    pub sender: crate::net::UdpSender,
}

impl UdpTransport for MuxTransport {
    fn exchange<'a>(
        &'a self,
        to: SocketAddr,
        build: BuildPacket<'a>,
        timeout: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send + 'a>> {
        Box::pin(async move {
            let mut txn = self.transactions.register(to).ok()?;
            self.sender.send_to(&build(txn.id().0), to).await.ok()?;
            let reply = tokio::time::timeout(timeout, txn.reply())
                .await
                .ok()?
                .ok()?;
            Some(reply.data.to_vec())
        })
    }
}

impl UdpTracker {
    /// A client over `transport`.
    pub fn new(transport: Arc<dyn UdpTransport>) -> Self {
        UdpTracker { transport }
    }

    /// A client with its own sockets.
    pub fn ephemeral() -> Self {
        Self::new(Arc::new(EphemeralUdp))
    }

    async fn exchange(
        &self,
        to: SocketAddr,
        build: impl Fn(u32) -> Vec<u8> + Sync,
    ) -> Result<Vec<u8>, TrackerError> {
        let mut wait = FIRST_TIMEOUT;
        for _ in 0..UDP_ATTEMPTS {
            if let Some(reply) = self.transport.exchange(to, &build, wait).await {
                if reply.len() >= 8 && u32::from_be_bytes(reply[0..4].try_into().expect("4")) == 3 {
                    return Err(TrackerError::Failure(
                        String::from_utf8_lossy(&reply[8..]).into_owned(),
                    ));
                }
                return Ok(reply);
            }
            wait *= 2;
        }
        Err(TrackerError::Timeout)
    }

    /// Announces to the tracker at `url` (`udp://host:port[/...]`).
    pub async fn announce(
        &self,
        url: &str,
        r: &AnnounceRequest,
    ) -> Result<AnnounceResponse, TrackerError> {
        let to = resolve(url).await?;
        let reply = self.exchange(to, connect_request).await?;
        let conn_id = parse_connect(&reply)?;
        let reply = self
            .exchange(to, |tid| announce_request(conn_id, tid, r))
            .await?;
        parse_announce(&reply, to.is_ipv6())
    }
}

async fn resolve(url: &str) -> Result<SocketAddr, TrackerError> {
    let rest = url
        .strip_prefix("udp://")
        .ok_or_else(|| TrackerError::BadUrl(url.to_string()))?;
    let authority = rest.split('/').next().unwrap_or("");
    if let Ok(a) = authority.parse::<SocketAddr>() {
        return Ok(a);
    }
    tokio::net::lookup_host(authority)
        .await?
        .next()
        .ok_or_else(|| TrackerError::BadUrl(format!("{url} does not resolve")))
}

/// A connect request with transaction id `tid`.
pub fn connect_request(tid: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(16);
    p.extend_from_slice(&UDP_PROTOCOL_ID.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&tid.to_be_bytes());
    p
}

fn parse_connect(b: &[u8]) -> Result<u64, TrackerError> {
    if b.len() < 16 || b[0..4] != 0u32.to_be_bytes() {
        return Err(TrackerError::Malformed("bad connect reply".into()));
    }
    Ok(u64::from_be_bytes(b[8..16].try_into().expect("8")))
}

/// An announce request.
pub fn announce_request(conn_id: u64, tid: u32, r: &AnnounceRequest) -> Vec<u8> {
    let mut p = Vec::with_capacity(98);
    p.extend_from_slice(&conn_id.to_be_bytes());
    p.extend_from_slice(&1u32.to_be_bytes());
    p.extend_from_slice(&tid.to_be_bytes());
    p.extend_from_slice(&r.info_hash.0);
    p.extend_from_slice(&r.peer_id.0);
    p.extend_from_slice(&r.downloaded.to_be_bytes());
    p.extend_from_slice(&r.left.to_be_bytes());
    p.extend_from_slice(&r.uploaded.to_be_bytes());
    let event: u32 = match r.event {
        Event::None => 0,
        Event::Completed => 1,
        Event::Started => 2,
        Event::Stopped => 3,
    };
    p.extend_from_slice(&event.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes()); // IP: the sender's
    p.extend_from_slice(&r.key.to_be_bytes());
    p.extend_from_slice(&(r.num_want as i32).to_be_bytes());
    p.extend_from_slice(&r.port.to_be_bytes());
    p
}

fn parse_announce(b: &[u8], v6: bool) -> Result<AnnounceResponse, TrackerError> {
    if b.len() < 20 || b[0..4] != 1u32.to_be_bytes() {
        return Err(TrackerError::Malformed("bad announce reply".into()));
    }
    let word = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4"));
    Ok(AnnounceResponse {
        interval: Duration::from_secs(word(8).max(1) as u64),
        leechers: Some(word(12)),
        seeders: Some(word(16)),
        peers: parse_compact(&b[20..], v6, MAX_PEERS_PER_RESPONSE),
        warning: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{InfoHash, PeerId};

    /// A tracker on loopback speaking BEP 15, to exercise the real exchange.
    async fn fake_tracker(drop_first: bool) -> SocketAddr {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut dropped = !drop_first;
            loop {
                let (n, from) = sock.recv_from(&mut buf).await.unwrap();
                if !dropped {
                    dropped = true;
                    continue;
                }
                let tid = &buf[12..16];
                let mut out = Vec::new();
                if n == 16 {
                    assert_eq!(&buf[..8], &UDP_PROTOCOL_ID.to_be_bytes());
                    out.extend_from_slice(&0u32.to_be_bytes());
                    out.extend_from_slice(tid);
                    out.extend_from_slice(&42u64.to_be_bytes());
                } else {
                    assert_eq!(n, 98);
                    assert_eq!(&buf[..8], &42u64.to_be_bytes());
                    assert_eq!(&buf[16..36], &[7u8; 20]);
                    out.extend_from_slice(&1u32.to_be_bytes());
                    out.extend_from_slice(tid);
                    out.extend_from_slice(&120u32.to_be_bytes());
                    out.extend_from_slice(&3u32.to_be_bytes());
                    out.extend_from_slice(&9u32.to_be_bytes());
                    out.extend_from_slice(&[127, 0, 0, 5, 0x1a, 0xe1]);
                }
                sock.send_to(&out, from).await.unwrap();
            }
        });
        addr
    }

    fn req() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash([7; 20]),
            peer_id: PeerId([1; 20]),
            port: 1,
            uploaded: 0,
            downloaded: 0,
            left: 10,
            event: Event::Started,
            num_want: 50,
            key: 1,
            ipv6: None,
        }
    }

    #[tokio::test]
    async fn announce_over_loopback_with_a_lost_packet() {
        let addr = fake_tracker(true).await;
        let r = UdpTracker::ephemeral()
            .announce(&format!("udp://{addr}/announce"), &req())
            .await
            .unwrap();
        assert_eq!(r.peers, vec!["127.0.0.5:6881".parse().unwrap()]);
        assert_eq!((r.seeders, r.leechers), (Some(9), Some(3)));
        assert_eq!(r.interval, Duration::from_secs(120));
    }

    #[test]
    fn malformed_replies() {
        assert!(parse_connect(&[0; 8]).is_err());
        assert!(parse_announce(&[0, 0, 0, 1], false).is_err());
        let mut ok = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0];
        ok.extend_from_slice(&[1, 2, 3]); // ragged peer list tail is ignored
        assert!(parse_announce(&ok, false).unwrap().peers.is_empty());
    }
}
