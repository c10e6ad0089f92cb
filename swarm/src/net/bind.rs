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
/// kernel's default (path-MTU discovery with local fragmentation once a smaller path MTU is
/// learnt), since µTP does not probe the path MTU itself.
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
    Ok(socket)
}

/// A non-blocking TCP listener on `addr` that outgoing sockets may share the port with.
pub(crate) fn tcp_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = tcp_socket(&addr)?;
    socket.bind(&addr.into())?;
    socket.listen(TCP_LISTEN_BACKLOG)?;
    Ok(socket.into())
}
