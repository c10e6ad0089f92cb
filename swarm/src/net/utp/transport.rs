//! The datagram transport librqbit-utp runs on: receives from the mux's µTP queue, sends
//! through the shared [`UdpSender`].

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::net::udp::{Datagram, UdpSender};

/// Adapter between the shared UDP socket and the µTP engine.
pub(crate) struct SharedTransport {
    sender: UdpSender,
    /// Only the engine's dispatcher task receives; the mutex exists because the engine's
    /// trait hands out `&self`, and is never contended.
    inbox: Mutex<mpsc::Receiver<Datagram>>,
    bind_addr: SocketAddr,
}

impl SharedTransport {
    pub(crate) fn new(sender: UdpSender, inbox: mpsc::Receiver<Datagram>) -> Self {
        let bind_addr = sender
            .local_addrs()
            .first()
            .copied()
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        Self {
            sender,
            inbox: Mutex::new(inbox),
            bind_addr,
        }
    }

    fn poll_recv(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<(usize, SocketAddr)>> {
        let mut inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
        match inbox.poll_recv(cx) {
            Poll::Ready(Some(d)) => {
                // The classifier caps µTP datagrams far below the engine's 16 KiB buffer;
                // a longer one would be cut and then fail the engine's own length checks.
                let len = d.data.len().min(buf.len());
                buf[..len].copy_from_slice(&d.data[..len]);
                Poll::Ready(Ok((len, d.from)))
            }
            Poll::Ready(None) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the UDP socket has shut down",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl librqbit_dualstack_sockets::PollSendToVectored for SharedTransport {
    fn poll_send_to_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.sender.poll_send_to_vectored(cx, bufs, target)
    }
}

impl librqbit_utp::Transport for SharedTransport {
    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send + Sync + 'a {
        poll_fn(move |cx| self.poll_recv(cx, buf))
    }

    fn send_to<'a>(
        &'a self,
        buf: &'a [u8],
        target: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send + Sync + 'a {
        poll_fn(move |cx| self.sender.poll_send_to(cx, buf, target))
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.sender.poll_send_to(cx, buf, target)
    }

    fn bind_addr(&self) -> SocketAddr {
        self.bind_addr
    }
}
