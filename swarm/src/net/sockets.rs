//! Binding all of a session's sockets on one port number: UDP (DHT, µTP, trackers) and TCP,
//! for IPv4 and IPv6.
//!
//! UDP is bound first and without SO_REUSEADDR, so it doubles as the lock on the port: a second
//! session asking for a port in use fails there instead of silently sharing the TCP port
//! through SO_REUSEPORT.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::udp::{bind_pair, is_addr_in_use, UdpConfig, EPHEMERAL_BIND_ATTEMPTS};
use super::{DialPolicy, Dialer, NetError, TcpDialer, TcpListeners, UdpMux, UtpConfig, UtpSocket};

/// Everything needed to bind a session's sockets.
#[derive(Debug, Clone, Default)]
pub struct NetConfig {
    /// Port, addresses and queue sizes; `udp.port` is the session port for TCP too.
    pub udp: UdpConfig,
    /// µTP tunables.
    pub utp: UtpConfig,
    /// How outgoing connections pick a transport.
    pub dial: DialPolicy,
}

impl NetConfig {
    /// Binds 127.0.0.1 and ::1 on `port` (0 = any); for tests and local tools.
    pub fn loopback(port: u16) -> Self {
        Self {
            udp: UdpConfig::loopback(port),
            ..Self::default()
        }
    }
}

/// A session's bound sockets.
#[derive(Debug)]
pub struct SessionSockets {
    /// The shared UDP socket(s); take the DHT inbox from here.
    pub udp: UdpMux,
    /// µTP on the shared UDP socket; accept incoming µTP connections here.
    pub utp: UtpSocket,
    /// The TCP listeners; accept incoming TCP connections here.
    pub tcp: TcpListeners,
    /// Dials peers over TCP (from the session port) or µTP.
    pub dialer: Dialer,
}

impl SessionSockets {
    /// Binds UDP and TCP on one port number for each configured family and starts µTP.
    pub async fn bind(config: NetConfig) -> Result<Self, NetError> {
        let mut last_err = None;
        for _ in 0..EPHEMERAL_BIND_ATTEMPTS {
            let (v4, v6) = bind_pair(&config.udp)?;
            let port = [&v4, &v6]
                .into_iter()
                .flatten()
                .find_map(|s| s.local_addr().ok())
                .map_or(config.udp.port, |a| a.port());
            // TCP follows the families UDP got: a family without UDP gets no listener either.
            let ipv4 = config.udp.ipv4.filter(|_| v4.is_some());
            let ipv6 = config.udp.ipv6.filter(|_| v6.is_some());
            let tcp = match TcpListeners::bind(port, ipv4, ipv6) {
                Ok(tcp) => tcp,
                Err(e) if config.udp.port == 0 && is_addr_in_use(&e) => {
                    last_err = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut udp = UdpMux::from_sockets(&config.udp, v4, v6);
            let utp = UtpSocket::new(&mut udp, config.utp.clone())?;
            let tcp_dialer = TcpDialer::new(
                port,
                ipv4.unwrap_or(Ipv4Addr::UNSPECIFIED),
                ipv6.unwrap_or(Ipv6Addr::UNSPECIFIED),
            );
            let dialer = Dialer::new(tcp_dialer, Some(utp.clone()), config.dial.clone());
            return Ok(Self {
                udp,
                utp,
                tcp,
                dialer,
            });
        }
        Err(last_err.unwrap_or(NetError::NoFamily("no free port".into())))
    }

    /// The session port.
    pub fn port(&self) -> u16 {
        self.udp.port()
    }
}
