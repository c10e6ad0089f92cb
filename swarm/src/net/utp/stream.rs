//! The application's end of a µTP connection: a tokio byte stream over the connection state
//! that the socket's driver task also works on.
//!
//! Each connection's state sits behind its own mutex, shared by exactly two parties: this
//! stream and the driver. Passing every read and write through the driver as a message would
//! cost a task switch per call on the hottest path; the lock is held only for a copy.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use super::conn::{ConnError, ConnStats, Connection};
use super::driver::Event;

/// A connection's state, shared by the driver and the stream.
pub(crate) struct ConnShared {
    pub(crate) peer: SocketAddr,
    pub(crate) recv_id: u16,
    state: Mutex<ConnState>,
    /// Set while a `Dirty` event for this connection is queued, so each is queued once.
    queued: AtomicBool,
}

pub(crate) struct ConnState {
    pub(crate) conn: Connection,
    pub(crate) read_waker: Option<Waker>,
    pub(crate) write_waker: Option<Waker>,
}

impl ConnShared {
    pub(crate) fn new(peer: SocketAddr, conn: Connection) -> Arc<Self> {
        Arc::new(Self {
            peer,
            recv_id: conn.recv_id(),
            state: Mutex::new(ConnState {
                conn,
                read_waker: None,
                write_waker: None,
            }),
            queued: AtomicBool::new(false),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the driver to look at this connection (send, wake, re-arm timers).
    pub(crate) fn notify(self: &Arc<Self>, events: &mpsc::UnboundedSender<Event>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            // The driver is gone only when the socket shut down; the stream then reports
            // errors from the connection state instead.
            let _ = events.send(Event::Dirty(Arc::clone(self)));
        }
    }

    /// Called by the driver when it takes the event.
    pub(crate) fn clear_queued(&self) {
        self.queued.store(false, Ordering::Release);
    }
}

impl ConnState {
    /// Wakes the stream's reader and writer if they can make progress.
    pub(crate) fn wake(&mut self) {
        if self.conn.is_readable() {
            if let Some(w) = self.read_waker.take() {
                w.wake();
            }
        }
        if self.conn.is_writable() {
            if let Some(w) = self.write_waker.take() {
                w.wake();
            }
        }
    }
}

fn io_error(e: ConnError) -> io::Error {
    let kind = match e {
        ConnError::Refused => io::ErrorKind::ConnectionRefused,
        ConnError::Reset => io::ErrorKind::ConnectionReset,
        ConnError::TimedOut => io::ErrorKind::TimedOut,
    };
    io::Error::new(kind, e)
}

/// One µTP connection: an ordered, reliable byte stream. Dropping it closes the connection
/// gracefully (FIN after the queued bytes).
pub struct UtpStream {
    shared: Arc<ConnShared>,
    events: mpsc::UnboundedSender<Event>,
    local: SocketAddr,
}

impl UtpStream {
    pub(crate) fn new(
        shared: Arc<ConnShared>,
        events: mpsc::UnboundedSender<Event>,
        local: SocketAddr,
    ) -> Self {
        Self {
            shared,
            events,
            local,
        }
    }

    /// The remote end.
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer
    }

    /// Our end: the shared UDP socket's address of the peer's family.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The connection's congestion state.
    pub fn stats(&self) -> ConnStats {
        self.shared.lock().conn.snapshot()
    }
}

impl std::fmt::Debug for UtpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtpStream")
            .field("peer", &self.shared.peer)
            .field("local", &self.local)
            .field("conn_id", &self.shared.recv_id)
            .finish()
    }
}

impl AsyncRead for UtpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut st = this.shared.lock();
        let n = st.conn.read(buf.initialize_unfilled());
        if n > 0 {
            buf.advance(n);
            let wants_flush = st.conn.wants_transmit();
            drop(st);
            if wants_flush {
                this.shared.notify(&this.events);
            }
            return Poll::Ready(Ok(()));
        }
        if st.conn.is_eof() {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = st.conn.error() {
            return Poll::Ready(Err(io_error(e)));
        }
        st.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for UtpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut st = this.shared.lock();
        if let Some(e) = st.conn.error() {
            return Poll::Ready(Err(io_error(e)));
        }
        if st.conn.is_write_closed() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "µTP stream shut down for writing",
            )));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = st.conn.write(data);
        if n == 0 {
            st.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        drop(st);
        this.shared.notify(&this.events);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written bytes are already the driver's to send, as with a kernel socket buffer.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.shared.lock().conn.shutdown();
        this.shared.notify(&this.events);
        Poll::Ready(Ok(()))
    }
}

impl Drop for UtpStream {
    fn drop(&mut self) {
        self.shared.lock().conn.close(Instant::now());
        self.shared.notify(&self.events);
    }
}
