//! Receiving and sending datagrams in batches. On Linux one `recvmmsg`/`sendmmsg` system call
//! moves up to a whole batch, which is most of what a busy router spends its time on; elsewhere
//! (or with a batch size of 1) it is one `recv_from`/`send_to` per datagram.
//!
//! The buffers are allocated once; receiving and sending allocate nothing.

use std::io;
use std::net::SocketAddr;

use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::node::MAX_DATAGRAM_LEN;

/// Bytes per receive buffer: one more than the router accepts, so longer datagrams are seen as
/// oversized rather than silently cut.
pub const RECV_BUF_LEN: usize = MAX_DATAGRAM_LEN + 1;

/// Largest batch.
pub const MAX_BATCH: usize = 256;

/// Receive buffers for one batch, and the replies to send back.
pub struct Batch {
    size: usize,
    bufs: Vec<u8>,
    lens: Vec<usize>,
    from: Vec<Option<SocketAddr>>,
    /// Replies, reused between batches (their capacity stays, so writing one allocates
    /// nothing after the first few batches).
    pub replies: Vec<Vec<u8>>,
    /// Where each reply goes.
    pub reply_to: Vec<SocketAddr>,
    /// How many of `replies` are to be sent.
    pub reply_count: usize,
    #[cfg(target_os = "linux")]
    sys: mmsg::Buffers,
}

impl Batch {
    /// Buffers for batches of `size` datagrams (1 to [`MAX_BATCH`]).
    pub fn new(size: usize) -> Batch {
        let size = size.clamp(1, MAX_BATCH);
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        Batch {
            size,
            bufs: vec![0u8; size * RECV_BUF_LEN],
            lens: vec![0; size],
            from: vec![None; size],
            replies: (0..size).map(|_| Vec::with_capacity(1024)).collect(),
            reply_to: vec![unspecified; size],
            reply_count: 0,
            #[cfg(target_os = "linux")]
            sys: mmsg::Buffers::new(size),
        }
    }

    /// Datagrams per batch.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Datagram `i` of the last receive: its source (`None` if the address family was not
    /// understood) and its bytes.
    pub fn datagram(&self, i: usize) -> (Option<SocketAddr>, &[u8]) {
        let start = i * RECV_BUF_LEN;
        (self.from[i], &self.bufs[start..start + self.lens[i]])
    }

    /// Datagram `i` of the last receive, as [`Batch::datagram`], together with reply slot `k`
    /// to answer it in.
    pub fn datagram_and_reply(
        &mut self,
        i: usize,
        k: usize,
    ) -> (Option<SocketAddr>, &[u8], &mut Vec<u8>) {
        let start = i * RECV_BUF_LEN;
        (
            self.from[i],
            &self.bufs[start..start + self.lens[i]],
            &mut self.replies[k],
        )
    }

    /// Receives up to a batch without waiting; returns how many arrived (`WouldBlock` when
    /// none).
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        if self.size > 1 {
            let Batch {
                size,
                bufs,
                lens,
                from,
                sys,
                ..
            } = self;
            return sock.try_io(Interest::READABLE, || {
                sys.recv(sock, &mut bufs[..], *size, lens, from)
            });
        }
        let mut n = 0;
        while n < self.size {
            let buf = &mut self.bufs[n * RECV_BUF_LEN..(n + 1) * RECV_BUF_LEN];
            match sock.try_recv_from(buf) {
                Ok((len, addr)) => {
                    self.lens[n] = len;
                    self.from[n] = Some(addr);
                    n += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && n > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// Sends the first `reply_count` replies; returns how many could not be sent.
    pub fn send(&mut self, sock: &UdpSocket) -> usize {
        let count = std::mem::take(&mut self.reply_count);
        #[cfg(target_os = "linux")]
        if self.size > 1 {
            let Batch {
                replies,
                reply_to,
                sys,
                ..
            } = self;
            return sys.send(sock, &replies[..count], &reply_to[..count]);
        }
        let mut failed = 0;
        for i in 0..count {
            if sock
                .try_send_to(&self.replies[i], self.reply_to[i])
                .is_err()
            {
                failed += 1;
            }
        }
        failed
    }
}

#[cfg(target_os = "linux")]
mod mmsg {
    //! `recvmmsg`/`sendmmsg` through libc. The message headers point into buffers owned by
    //! [`Buffers`] and by the caller; they are filled in right before each call, so the
    //! pointers are always fresh and never outlive the borrow they come from.

    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;

    use tokio::io::Interest;
    use tokio::net::UdpSocket;

    use super::RECV_BUF_LEN;

    pub struct Buffers {
        addrs: Vec<libc::sockaddr_storage>,
        iovecs: Vec<libc::iovec>,
        hdrs: Vec<libc::mmsghdr>,
    }

    // The raw pointers in `iovecs` and `hdrs` are only meaningful during a call, which takes
    // `&mut self`; between calls they are stale values nobody reads.
    unsafe impl Send for Buffers {}

    impl std::fmt::Debug for Buffers {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Buffers")
                .field("len", &self.hdrs.len())
                .finish()
        }
    }

    impl Buffers {
        pub fn new(size: usize) -> Buffers {
            // SAFETY: all three are plain C structs for which all-zero bytes are valid.
            let zero_addr: libc::sockaddr_storage = unsafe { zeroed() };
            let zero_iov: libc::iovec = unsafe { zeroed() };
            let zero_hdr: libc::mmsghdr = unsafe { zeroed() };
            Buffers {
                addrs: vec![zero_addr; size],
                iovecs: vec![zero_iov; size],
                hdrs: vec![zero_hdr; size],
            }
        }

        pub fn recv(
            &mut self,
            sock: &UdpSocket,
            bufs: &mut [u8],
            size: usize,
            lens: &mut [usize],
            from: &mut [Option<SocketAddr>],
        ) -> io::Result<usize> {
            let size = size.min(self.hdrs.len()).min(bufs.len() / RECV_BUF_LEN);
            for i in 0..size {
                self.iovecs[i] = libc::iovec {
                    iov_base: bufs[i * RECV_BUF_LEN..].as_mut_ptr().cast(),
                    iov_len: RECV_BUF_LEN,
                };
                let h = &mut self.hdrs[i];
                h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_hdr.msg_iov = &mut self.iovecs[i];
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = std::ptr::null_mut();
                h.msg_hdr.msg_controllen = 0;
                h.msg_hdr.msg_flags = 0;
                h.msg_len = 0;
            }
            // SAFETY: `hdrs[..size]` point at `size` distinct, live buffers of RECV_BUF_LEN
            // bytes and at address storage of the declared length, all borrowed mutably for
            // the duration of the call.
            let n = unsafe {
                libc::recvmmsg(
                    sock.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    size as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            for i in 0..n {
                let h = &self.hdrs[i];
                lens[i] = (h.msg_len as usize).min(RECV_BUF_LEN);
                from[i] = to_socket_addr(&self.addrs[i], h.msg_hdr.msg_namelen);
            }
            Ok(n)
        }

        /// Sends `replies[i]` to `to[i]`; returns how many could not be sent.
        pub fn send(&mut self, sock: &UdpSocket, replies: &[Vec<u8>], to: &[SocketAddr]) -> usize {
            let count = replies.len().min(to.len()).min(self.hdrs.len());
            let mut lens = [0 as libc::socklen_t; super::MAX_BATCH];
            for i in 0..count {
                lens[i] = from_socket_addr(&to[i], &mut self.addrs[i]);
                self.iovecs[i] = libc::iovec {
                    iov_base: replies[i].as_ptr() as *mut libc::c_void,
                    iov_len: replies[i].len(),
                };
                let h = &mut self.hdrs[i];
                h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = lens[i];
                h.msg_hdr.msg_iov = &mut self.iovecs[i];
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = std::ptr::null_mut();
                h.msg_hdr.msg_controllen = 0;
                h.msg_hdr.msg_flags = 0;
                h.msg_len = 0;
            }
            let mut failed = 0;
            let mut at = 0;
            while at < count {
                let r = sock.try_io(Interest::WRITABLE, || {
                    // SAFETY: `hdrs[at..count]` point at the replies (borrowed for the call,
                    // never written through) and at filled-in address storage.
                    let n = unsafe {
                        libc::sendmmsg(
                            sock.as_raw_fd(),
                            self.hdrs[at..].as_mut_ptr(),
                            (count - at) as libc::c_uint,
                            libc::MSG_DONTWAIT,
                        )
                    };
                    if n < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(n as usize)
                    }
                });
                match r {
                    Ok(0) => {
                        failed += count - at;
                        break;
                    }
                    Ok(n) => at += n,
                    // A full socket buffer: drop the rest rather than stall receiving.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        failed += count - at;
                        break;
                    }
                    // An error concerns the first message only (e.g. an unreachable address).
                    Err(_) => {
                        failed += 1;
                        at += 1;
                    }
                }
            }
            failed
        }
    }

    fn to_socket_addr(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
        match i32::from(s.ss_family) {
            libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says the storage holds a sockaddr_in, which it is large
                // and aligned enough for.
                let a: &libc::sockaddr_in =
                    unsafe { &*(s as *const _ as *const libc::sockaddr_in) };
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, for sockaddr_in6.
                let a: &libc::sockaddr_in6 =
                    unsafe { &*(s as *const _ as *const libc::sockaddr_in6) };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    fn from_socket_addr(addr: &SocketAddr, s: &mut libc::sockaddr_storage) -> libc::socklen_t {
        match addr {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
                let out: &mut libc::sockaddr_in =
                    unsafe { &mut *(s as *mut _ as *mut libc::sockaddr_in) };
                out.sin_family = libc::AF_INET as libc::sa_family_t;
                out.sin_port = a.port().to_be();
                out.sin_addr = libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                };
                out.sin_zero = [0; 8];
                size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                // SAFETY: as above, for sockaddr_in6.
                let out: &mut libc::sockaddr_in6 =
                    unsafe { &mut *(s as *mut _ as *mut libc::sockaddr_in6) };
                out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                out.sin6_port = a.port().to_be();
                out.sin6_flowinfo = a.flowinfo();
                out.sin6_addr = libc::in6_addr {
                    s6_addr: a.ip().octets(),
                };
                out.sin6_scope_id = a.scope_id();
                size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }
}
