//! The send side of the shared UDP socket: a cheap cloneable handle that picks the socket of
//! the destination's address family.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::net::UdpSocket;

use super::canonical;
use super::counters::CounterCells;
use crate::net::NetError;

/// Sends datagrams from the session's UDP socket(s). Clone freely: it is one `Arc`.
#[derive(Clone)]
pub struct UdpSender {
    inner: Arc<Inner>,
}

struct Inner {
    v4: Option<Arc<UdpSocket>>,
    v6: Option<Arc<UdpSocket>>,
    counters: Arc<CounterCells>,
}

impl UdpSender {
    pub(super) fn new(
        v4: Option<Arc<UdpSocket>>,
        v6: Option<Arc<UdpSocket>>,
        counters: Arc<CounterCells>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner { v4, v6, counters }),
        }
    }

    /// The socket for `to`'s family and `to` in that family's form (v4-mapped IPv6 → IPv4).
    fn socket_for(&self, to: SocketAddr) -> io::Result<(&UdpSocket, SocketAddr)> {
        let to = canonical(to);
        let socket = if to.is_ipv4() {
            self.inner.v4.as_deref()
        } else {
            self.inner.v6.as_deref()
        };
        socket.map(|s| (s, to)).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("no UDP socket of the address family of {to}"),
            )
        })
    }

    fn count<T>(&self, result: &io::Result<T>) {
        let c = &self.inner.counters;
        match result {
            Ok(_) => CounterCells::bump(&c.tx_datagrams),
            Err(_) => CounterCells::bump(&c.tx_errors),
        }
    }

    /// Sends one datagram to `to`.
    pub async fn send_to(&self, data: &[u8], to: SocketAddr) -> Result<usize, NetError> {
        let (socket, to) = self
            .socket_for(to)
            .map_err(|_| NetError::NoSocketForFamily(to))?;
        let result = socket.send_to(data, to).await;
        self.count(&result);
        result.map_err(|source| NetError::Send { to, source })
    }

    /// Sends one datagram if the socket can take it now.
    pub fn try_send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        let (socket, to) = self.socket_for(to)?;
        let result = socket.try_send_to(data, to);
        if !matches!(&result, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.count(&result);
        }
        result
    }

    /// Sends one datagram made of `parts`, letting it be fragmented on the way (IPv4 without
    /// the don't-fragment bit; for IPv6 the kernel fragments it if it knows the path is
    /// smaller), waiting for room in the socket. The socket's policy is restored right after
    /// the send; a datagram another task sends in that instant may go out the same way, which
    /// is harmless.
    pub async fn send_fragmentable(
        &self,
        parts: &[&[u8]],
        to: SocketAddr,
    ) -> Result<usize, NetError> {
        let (socket, to) = self
            .socket_for(to)
            .map_err(|_| NetError::NoSocketForFamily(to))?;
        let (level, name, dont) = if to.is_ipv4() {
            (
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DONT,
            )
        } else {
            (
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_DONT,
            )
        };
        let addr = socket2::SockAddr::from(to);
        let result = socket
            .async_io(tokio::io::Interest::WRITABLE, || {
                let before = int_option(socket, level, name)?;
                set_int_option(socket, level, name, dont)?;
                let sent = send_vectored(socket, parts, &addr);
                set_int_option(socket, level, name, before)?;
                sent
            })
            .await;
        self.count(&result);
        result.map_err(|source| NetError::Send { to, source })
    }

    /// Sends one datagram made of `parts` (gathered by the kernel, not copied here) if the
    /// socket can take it now.
    pub fn try_send_parts(&self, parts: &[&[u8]], to: SocketAddr) -> io::Result<usize> {
        let (socket, to) = self.socket_for(to)?;
        let result = try_send_vectored(socket, parts, to);
        if !matches!(&result, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.count(&result);
        }
        result
    }

    /// Sends one datagram made of `parts`, waiting for room in the socket.
    pub async fn send_parts(&self, parts: &[&[u8]], to: SocketAddr) -> Result<usize, NetError> {
        let (socket, to) = self
            .socket_for(to)
            .map_err(|_| NetError::NoSocketForFamily(to))?;
        let addr = socket2::SockAddr::from(to);
        let result = socket
            .async_io(tokio::io::Interest::WRITABLE, || {
                send_vectored(socket, parts, &addr)
            })
            .await;
        self.count(&result);
        result.map_err(|source| NetError::Send { to, source })
    }

    /// Polls sending one datagram (for poll-based protocol drivers such as µTP).
    pub fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        data: &[u8],
        to: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        let (socket, to) = self.socket_for(to)?;
        let result = ready!(socket.poll_send_to(cx, data, to));
        self.count(&result);
        Poll::Ready(result)
    }

    /// The local address of the socket that would send to `to`.
    pub fn local_addr_for(&self, to: SocketAddr) -> Option<SocketAddr> {
        self.socket_for(to).ok()?.0.local_addr().ok()
    }

    /// The bound local addresses, IPv4 first.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        [&self.inner.v4, &self.inner.v6]
            .into_iter()
            .flatten()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// The port shared by both families.
    pub fn port(&self) -> u16 {
        self.local_addrs().first().map_or(0, SocketAddr::port)
    }
}

impl std::fmt::Debug for UdpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSender")
            .field("local_addrs", &self.local_addrs())
            .finish()
    }
}

fn int_option(socket: &UdpSocket, level: i32, name: i32) -> io::Result<i32> {
    use std::os::fd::AsRawFd;
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the descriptor is open while `socket` is borrowed; `value` and `len` are valid
    // for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_int_option(socket: &UdpSocket, level: i32, name: i32, value: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open while `socket` is borrowed; the value is a c_int of the
    // size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Most parts one datagram is gathered from.
const MAX_PARTS: usize = 4;

fn send_vectored(socket: &UdpSocket, parts: &[&[u8]], to: &socket2::SockAddr) -> io::Result<usize> {
    if parts.len() > MAX_PARTS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a datagram of more than four parts",
        ));
    }
    let mut slices = [std::io::IoSlice::new(&[]); MAX_PARTS];
    for (slice, part) in slices.iter_mut().zip(parts) {
        *slice = std::io::IoSlice::new(part);
    }
    socket2::SockRef::from(socket).send_to_vectored(&slices[..parts.len()], to)
}

fn try_send_vectored(socket: &UdpSocket, parts: &[&[u8]], to: SocketAddr) -> io::Result<usize> {
    let addr = socket2::SockAddr::from(to);
    socket.try_io(tokio::io::Interest::WRITABLE, || {
        send_vectored(socket, parts, &addr)
    })
}
