//! Local Service Discovery (BEP 14): peers on the same LAN — typically behind the same NAT,
//! where they could never find each other through the outside — announce their torrents by
//! multicast and connect directly. The message codec here is pure; [`spawn`] runs the
//! socket (its own, as multicast needs the fixed port 6771).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::types::InfoHash;

/// The IPv4 multicast group and port of BEP 14.
pub const LSD_GROUP_V4: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 192, 152, 143), 6771);
/// How often each torrent is announced.
pub const LSD_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Most info-hashes in one announcement (keeps the datagram well under 1400 bytes).
pub const MAX_HASHES_PER_MESSAGE: usize = 20;
/// Largest announcement read.
pub const MAX_LSD_MESSAGE: usize = 1400;

/// A parsed announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LsdAnnounce {
    /// The announcer's listen port.
    pub port: u16,
    /// The torrents it has.
    pub info_hashes: Vec<InfoHash>,
    /// A random token identifying the announcer (to ignore our own messages).
    pub cookie: Option<String>,
}

/// Builds an announcement.
pub fn encode(port: u16, hashes: &[InfoHash], cookie: &str) -> Vec<u8> {
    let mut s = format!("BT-SEARCH * HTTP/1.1\r\nHost: {LSD_GROUP_V4}\r\nPort: {port}\r\n");
    for h in hashes.iter().take(MAX_HASHES_PER_MESSAGE) {
        s.push_str(&format!("Infohash: {}\r\n", h.to_hex()));
    }
    s.push_str(&format!("cookie: {cookie}\r\n\r\n\r\n"));
    s.into_bytes()
}

/// Parses an announcement; `None` for anything else.
pub fn decode(b: &[u8]) -> Option<LsdAnnounce> {
    if b.len() > MAX_LSD_MESSAGE {
        return None;
    }
    let text = std::str::from_utf8(b).ok()?;
    let mut lines = text.split("\r\n");
    if lines.next()? != "BT-SEARCH * HTTP/1.1" {
        return None;
    }
    let mut a = LsdAnnounce {
        port: 0,
        info_hashes: Vec::new(),
        cookie: None,
    };
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "port" => a.port = v.parse().ok()?,
            "infohash" if a.info_hashes.len() < MAX_HASHES_PER_MESSAGE => {
                a.info_hashes.push(InfoHash::from_hex(v)?);
            }
            "cookie" => a.cookie = Some(v.chars().take(64).collect()),
            _ => {}
        }
    }
    (a.port != 0 && !a.info_hashes.is_empty()).then_some(a)
}

/// Runs LSD for the session: announces the info-hashes `hashes()` returns every
/// [`LSD_INTERVAL`], announces each torrent sent on `added` at once, and sends
/// `(info-hash, peer)` for announcements from others. Returns `None` (with a debug log) when
/// the multicast socket cannot be set up.
pub fn spawn(
    port: u16,
    hashes: impl Fn() -> Vec<InfoHash> + Send + 'static,
    found: mpsc::UnboundedSender<(InfoHash, SocketAddr)>,
    mut added: mpsc::UnboundedReceiver<InfoHash>,
) -> Option<tokio::task::JoinHandle<()>> {
    let sock = match bind() {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "local service discovery unavailable");
            return None;
        }
    };
    let cookie = format!("{:016x}", rand::random::<u64>());
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(LSD_INTERVAL);
        let mut buf = vec![0u8; MAX_LSD_MESSAGE + 1];
        let mut seen: HashMap<(InfoHash, IpAddr, u16), ()> = HashMap::new();
        loop {
            let announce: Vec<InfoHash> = tokio::select! {
                _ = tick.tick() => {
                    seen.clear();
                    hashes()
                }
                Some(first) = added.recv() => {
                    // A torrent just added is announced at once (with any others added
                    // meanwhile), rather than after up to an interval.
                    let mut new = vec![first];
                    while let Ok(h) = added.try_recv() {
                        new.push(h);
                    }
                    new
                }
                r = sock.recv_from(&mut buf) => {
                    if let Ok((n, from)) = r {
                        if let Some(a) = decode(&buf[..n]).filter(|a| a.cookie.as_deref() != Some(cookie.as_str())) {
                            for h in a.info_hashes {
                                // Bounded: cleared every interval, a few entries per LAN host.
                                if seen.len() < 10_000 && seen.insert((h, from.ip(), a.port), ()).is_none() {
                                    let _ = found.send((h, SocketAddr::new(from.ip(), a.port)));
                                }
                            }
                        }
                    }
                    Vec::new()
                }
            };
            if !announce.is_empty() {
                for chunk in announce.chunks(MAX_HASHES_PER_MESSAGE) {
                    let _ = sock
                        .send_to(&encode(port, chunk, &cookie), SocketAddr::V4(LSD_GROUP_V4))
                        .await;
                }
            }
        }
    }))
}

fn bind() -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&SocketAddr::from(([0, 0, 0, 0], LSD_GROUP_V4.port())).into())?;
    s.join_multicast_v4(LSD_GROUP_V4.ip(), &Ipv4Addr::UNSPECIFIED)?;
    // Announcements stay on the local network.
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_loop_v4(true)?;
    s.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let hashes = [InfoHash([1; 20]), InfoHash([0xab; 20])];
        let m = encode(51413, &hashes, "c00k1e");
        assert!(
            m.starts_with(b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 51413\r\n")
        );
        let a = decode(&m).unwrap();
        assert_eq!(
            a,
            LsdAnnounce {
                port: 51413,
                info_hashes: hashes.to_vec(),
                cookie: Some("c00k1e".into())
            }
        );
        assert_eq!(decode(b"NOTIFY * HTTP/1.1\r\nPort: 1\r\n\r\n"), None);
        assert_eq!(decode(b"BT-SEARCH * HTTP/1.1\r\nPort: 0\r\nInfohash: 0101010101010101010101010101010101010101\r\n\r\n"), None);
        assert_eq!(
            decode(b"BT-SEARCH * HTTP/1.1\r\nPort: 5\r\nInfohash: zz\r\n\r\n"),
            None
        );
        assert_eq!(decode(&vec![b'x'; 5000]), None);
    }
}
