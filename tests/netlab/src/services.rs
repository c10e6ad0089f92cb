//! Small services for lab hosts: echo servers that tell a client which address they saw.
//!
//! Reply format: the text `ip:port` of the sender as seen by the server (`[v6]:port` for IPv6),
//! which is exactly what a NAT classifier needs from a remote.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// Parses an echo server's reply into the address it saw.
pub fn parse_echo_reply(reply: &[u8]) -> Option<SocketAddr> {
    std::str::from_utf8(reply).ok()?.trim().parse().ok()
}

/// Serves UDP on `socket` forever: every datagram is answered with the sender's address.
pub async fn udp_echo_reply(socket: UdpSocket) {
    let mut buf = [0u8; 1500];
    loop {
        let Ok((_, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let _ = socket.send_to(from.to_string().as_bytes(), from).await;
    }
}

/// Serves TCP on `listener` forever: each connection gets the peer's address, then whatever it
/// sends is echoed back until it closes.
pub async fn tcp_echo_reply(listener: TcpListener) {
    loop {
        let Ok((mut stream, from)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = stream.write_all(format!("{from}\n").as_bytes()).await;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
    }
}

impl crate::Host {
    /// Starts a TCP echo server ([`tcp_echo_reply`]) on `addr` for the lab's lifetime. The
    /// socket is bound before this returns, so a client may connect at once.
    pub fn serve_tcp_echo(&self, addr: SocketAddr) -> Result<(), crate::LabError> {
        let listener = self
            .run(move || std::net::TcpListener::bind(addr))?
            .map_err(|source| crate::LabError::Io {
                what: format!("binding TCP {addr} in {}", self.name()),
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| crate::LabError::Io {
                what: "nonblocking".into(),
                source,
            })?;
        self.background_for_lab(move || async move {
            match TcpListener::from_std(listener) {
                Ok(l) => tcp_echo_reply(l).await,
                Err(e) => panic!("registering the echo listener: {e}"),
            }
        })
    }

    /// Starts a UDP echo server ([`udp_echo_reply`]) on `addr` for the lab's lifetime. The
    /// socket is bound before this returns.
    pub fn serve_udp_echo(&self, addr: SocketAddr) -> Result<(), crate::LabError> {
        let socket = self
            .run(move || std::net::UdpSocket::bind(addr))?
            .map_err(|source| crate::LabError::Io {
                what: format!("binding UDP {addr} in {}", self.name()),
                source,
            })?;
        socket
            .set_nonblocking(true)
            .map_err(|source| crate::LabError::Io {
                what: "nonblocking".into(),
                source,
            })?;
        self.background_for_lab(move || async move {
            match UdpSocket::from_std(socket) {
                Ok(s) => udp_echo_reply(s).await,
                Err(e) => panic!("registering the echo socket: {e}"),
            }
        })
    }
}
