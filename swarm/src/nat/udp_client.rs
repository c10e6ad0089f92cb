//! The request/response loop PCP and NAT-PMP share: send to the gateway's port 5351, wait,
//! resend with a doubled timeout (RFC 6886 §3.1, RFC 6887 §8.1.1), until an acceptable answer.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use super::pcp::MAX_MESSAGE;

/// How persistently to ask the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// First wait for an answer; doubled after each resend.
    pub initial: Duration,
    /// How many times the request is sent in total.
    pub attempts: u32,
}

impl Default for Retry {
    /// 250 ms doubling, 4 sends: about 3.75 s before giving up on a silent gateway. RFC 6886
    /// suggests 9 sends (64 s), too long to wait before trying the next protocol.
    fn default() -> Self {
        Retry {
            initial: Duration::from_millis(250),
            attempts: 4,
        }
    }
}

/// Most datagrams read per exchange that are not the answer (stray or spoofed traffic):
/// past this the exchange gives up instead of reading forever.
pub const MAX_IGNORED_DATAGRAMS: usize = 64;

/// A UDP socket "connected" to the gateway's port 5351 (only its datagrams are received).
pub struct GatewaySocket {
    socket: UdpSocket,
}

impl GatewaySocket {
    /// Opens a socket toward `gateway:port`.
    pub async fn connect(gateway: Ipv4Addr, port: u16) -> std::io::Result<Self> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
        socket.connect(SocketAddr::from((gateway, port))).await?;
        Ok(GatewaySocket { socket })
    }

    /// Our address as the gateway sees it on the link (PCP's client address field).
    pub fn local_ip(&self) -> std::io::Result<Ipv4Addr> {
        match self.socket.local_addr()? {
            SocketAddr::V4(a) => Ok(*a.ip()),
            SocketAddr::V6(_) => Err(std::io::Error::other("IPv6 socket toward IPv4 gateway")),
        }
    }

    /// Sends `request` until `accept` returns `Some` for a received datagram, per `retry`.
    /// Returns `Ok(None)` when the gateway stayed silent.
    pub async fn exchange<T>(
        &self,
        request: &[u8],
        retry: Retry,
        mut accept: impl FnMut(&[u8]) -> Option<T>,
    ) -> std::io::Result<Option<T>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut wait = retry.initial;
        let mut ignored = 0;
        for _ in 0..retry.attempts {
            self.socket.send(request).await?;
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                match tokio::time::timeout_at(deadline, self.socket.recv(&mut buf)).await {
                    Err(_) => break,
                    // ICMP port unreachable surfaces as an error on a connected socket:
                    // nobody listens, same as silence.
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        tokio::time::sleep_until(deadline).await;
                        break;
                    }
                    Ok(Err(e)) => return Err(e),
                    Ok(Ok(n)) => {
                        if let Some(v) = accept(&buf[..n]) {
                            return Ok(Some(v));
                        }
                        ignored += 1;
                        if ignored >= MAX_IGNORED_DATAGRAMS {
                            return Ok(None);
                        }
                    }
                }
            }
            wait *= 2;
        }
        Ok(None)
    }
}
