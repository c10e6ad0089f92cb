//! Socket creation with the options the session's sockets need (socket2).
//!
//! IPv6 sockets are `IPV6_V6ONLY` so that an IPv4 and an IPv6 socket can hold the same port
//! number side by side, one per family, instead of one dual-stack socket that would see IPv4
//! peers as v4-mapped addresses.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Receive and send buffer size asked of the kernel for the UDP sockets. µTP streams at
/// ~100 MB/s deliver a few thousand datagrams between two reader wake-ups; the kernel caps the
/// request at `net.core.rmem_max`/`wmem_max`.
pub const UDP_SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// Most bytes a peer connection lets wait unsent in the kernel (`TCP_NOTSENT_LOWAT`; accepted
/// sockets inherit it from the listener). The peer writer puts control messages — PEX,
/// holepunch `connect`, choke, have — ahead of the blocks it still holds, but not ahead of
/// what the kernel already took: without this bound the kernel takes hundreds of KiB, and on
/// a slow uplink a holepunch `connect` arrives seconds late. Measured in the NAT lab (relay
/// on a 1 Mbit/s uplink serving two leechers): PEX and `connect` took 4–5 s to arrive
/// without the bound, 2–3 s with 128 KiB, under 1.5 s with 32 KiB. Loopback seeding at
/// ~200 MB/s per connection lost up to a fifth of its rate with 32 KiB.
pub const TCP_NOTSENT_LOWAT_BYTES: u32 = 32 * 1024;

/// Backlog of the TCP listeners.
pub const TCP_LISTEN_BACKLOG: i32 = 1024;

fn domain(addr: &SocketAddr) -> Domain {
    if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    }
}

/// A non-blocking UDP socket bound to `addr`. The don't-fragment policy is left at the
/// kernel's default (don't-fragment set, local fragmentation once a smaller path MTU is
/// learnt), which µTP's packet-size probes rely on: a probe too large for the path is lost
/// rather than fragmented on the way.
pub(crate) fn udp_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(domain(&addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    // Best effort: a smaller buffer only costs throughput under bursts.
    let _ = socket.set_recv_buffer_size(UDP_SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(UDP_SOCKET_BUFFER_BYTES);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A TCP socket with SO_REUSEADDR and SO_REUSEPORT (and V6ONLY for IPv6), not yet bound.
pub(crate) fn tcp_socket(addr: &SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(domain(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    // Best effort (Linux and a few others): without it only control latency suffers.
    let _ = socket.set_tcp_notsent_lowat(TCP_NOTSENT_LOWAT_BYTES);
    Ok(socket)
}

/// A non-blocking TCP listener on `addr` that outgoing sockets may share the port with.
pub(crate) fn tcp_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = tcp_socket(&addr)?;
    socket.bind(&addr.into())?;
    socket.listen(TCP_LISTEN_BACKLOG)?;
    Ok(socket.into())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn peer_sockets_keep_little_unsent_data_in_the_kernel() {
        let listener = tcp_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let dialer = tcp_socket(&addr).unwrap();
        assert_eq!(dialer.tcp_notsent_lowat().unwrap(), TCP_NOTSENT_LOWAT_BYTES);
        let _ = dialer.connect(&addr.into());
        listener.set_nonblocking(false).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let accepted = socket2::SockRef::from(&accepted);
        assert_eq!(
            accepted.tcp_notsent_lowat().unwrap(),
            TCP_NOTSENT_LOWAT_BYTES,
            "inherited from the listener"
        );
    }
}
