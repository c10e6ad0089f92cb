//! The task that runs every µTP connection of one [`super::UtpSocket`]: it demultiplexes
//! packets from the shared UDP socket's µTP queue by (address, connection id), answers SYNs,
//! runs the connections' timers and puts their packets on the wire through the shared
//! [`UdpSender`]. The connections themselves are sans-IO ([`super::conn::Connection`]).

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::conn::{ConnConfig, ConnError, Connection, Outgoing, Transmit};
use super::packet::{encode, Header, Packet, PacketType};
use super::seq::Seq;
use super::stream::ConnShared;
use crate::net::udp::{canonical, Datagram, UdpSender, UtpInbox};

/// Datagrams taken from the queue before the driver services the connections they touched;
/// ACKs for a whole batch go out as one.
const RECV_BATCH: usize = 256;

type Key = (SocketAddr, u16);

/// What streams and socket handles tell the driver.
pub(crate) enum Event {
    /// Open a connection.
    Connect {
        addr: SocketAddr,
        reply: oneshot::Sender<Result<Arc<ConnShared>, ConnError>>,
    },
    /// A connection has something to do (written data, read window, shutdown, close).
    Dirty(Arc<ConnShared>),
}

/// Counters shared with the socket handles.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub connects: AtomicU64,
    pub accepts: AtomicU64,
    pub refused_syns: AtomicU64,
    pub invalid: AtomicU64,
    pub resets_sent: AtomicU64,
    pub packets_in: AtomicU64,
    pub packets_out: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Limits and per-family packet sizes.
#[derive(Debug, Clone)]
pub(crate) struct DriverConfig {
    pub conn_v4: ConnConfig,
    pub conn_v6: ConnConfig,
    pub max_connections: usize,
}

struct Entry {
    shared: Arc<ConnShared>,
    timer: Option<Instant>,
    connect_reply: Option<oneshot::Sender<Result<Arc<ConnShared>, ConnError>>>,
    touched: bool,
    /// Payload bytes per packet last logged.
    packet_size: usize,
}

pub(crate) struct Driver {
    sender: UdpSender,
    inbox: UtpInbox,
    events: mpsc::UnboundedReceiver<Event>,
    accepted: mpsc::Sender<Arc<ConnShared>>,
    config: DriverConfig,
    counters: Arc<Counters>,
    conns: HashMap<Key, Entry>,
    timers: BTreeSet<(Instant, Key)>,
    touched: Vec<Key>,
    outbox: Vec<(SocketAddr, Outgoing)>,
    /// Datagrams routers may fragment (see [`Transmit::MayFragment`]); rare.
    fragmentable: Vec<(SocketAddr, Outgoing)>,
    spare: Vec<Outgoing>,
}

impl Driver {
    pub(crate) fn new(
        sender: UdpSender,
        inbox: UtpInbox,
        events: mpsc::UnboundedReceiver<Event>,
        accepted: mpsc::Sender<Arc<ConnShared>>,
        config: DriverConfig,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            sender,
            inbox,
            events,
            accepted,
            config,
            counters,
            conns: HashMap::new(),
            timers: BTreeSet::new(),
            touched: Vec::new(),
            outbox: Vec::new(),
            fragmentable: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// Runs until the UDP socket shuts down, or until every handle and stream is gone and
    /// the last connection has finished closing.
    pub(crate) async fn run(mut self) {
        let mut handles_gone = false;
        loop {
            if handles_gone && self.conns.is_empty() {
                return;
            }
            let next_timer = self.timers.first().map(|(t, _)| *t);
            let sleep = async {
                match next_timer {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                event = self.events.recv(), if !handles_gone => match event {
                    Some(event) => {
                        let now = Instant::now();
                        self.on_event(event, now);
                        // Streams that wrote or read meanwhile are serviced in one round.
                        for _ in 1..RECV_BATCH {
                            match self.events.try_recv() {
                                Ok(event) => self.on_event(event, now),
                                Err(_) => break,
                            }
                        }
                    }
                    None => handles_gone = true,
                },
                datagram = self.inbox.recv() => match datagram {
                    Some(d) => {
                        let now = Instant::now();
                        self.on_datagram(d, now);
                        for _ in 1..RECV_BATCH {
                            match self.inbox.try_recv() {
                                Some(d) => self.on_datagram(d, now),
                                None => break,
                            }
                        }
                    }
                    None => {
                        self.shut_down();
                        return;
                    }
                },
                () = sleep => self.on_timers(Instant::now()),
            }
            // Closing a connection whose caller gave up queues it again; one more round
            // sends its FIN.
            for _ in 0..2 {
                if self.touched.is_empty() {
                    break;
                }
                self.service(Instant::now());
            }
            self.send_outbox().await;
        }
    }

    fn touch(&mut self, key: Key) {
        if let Some(e) = self.conns.get_mut(&key) {
            if !e.touched {
                e.touched = true;
                self.touched.push(key);
            }
        }
    }

    fn on_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Connect { addr, reply } => self.connect(addr, reply, now),
            Event::Dirty(shared) => {
                shared.clear_queued();
                self.touch((shared.peer, shared.recv_id));
            }
        }
    }

    fn live_connections(&self) -> usize {
        self.conns
            .values()
            .filter(|e| e.shared.lock().conn.is_live())
            .count()
    }

    fn conn_config(&self, addr: &SocketAddr) -> ConnConfig {
        if addr.is_ipv4() {
            self.config.conn_v4.clone()
        } else {
            self.config.conn_v6.clone()
        }
    }

    fn connect(
        &mut self,
        addr: SocketAddr,
        reply: oneshot::Sender<Result<Arc<ConnShared>, ConnError>>,
        now: Instant,
    ) {
        let addr = canonical(addr);
        if self.live_connections() >= self.config.max_connections {
            let _ = reply.send(Err(ConnError::Refused));
            return;
        }
        let recv_id = loop {
            let id: u16 = rand::random();
            if !self.conns.contains_key(&(addr, id)) {
                break id;
            }
        };
        let conn = Connection::connect(now, self.conn_config(&addr), recv_id, Seq(rand::random()));
        let shared = ConnShared::new(addr, conn);
        bump(&self.counters.connects);
        self.insert((addr, recv_id), shared, Some(reply));
    }

    fn insert(
        &mut self,
        key: Key,
        shared: Arc<ConnShared>,
        connect_reply: Option<oneshot::Sender<Result<Arc<ConnShared>, ConnError>>>,
    ) {
        self.conns.insert(
            key,
            Entry {
                shared,
                timer: None,
                connect_reply,
                touched: false,
                packet_size: 0,
            },
        );
        self.touch(key);
    }

    fn on_datagram(&mut self, d: Datagram, now: Instant) {
        let packet = match Packet::decode(&d.data) {
            Ok(p) => p,
            Err(_) => {
                bump(&self.counters.invalid);
                return;
            }
        };
        bump(&self.counters.packets_in);
        let from = canonical(d.from);
        let h = packet.header;
        tracing::trace!(%from, kind = ?h.kind, conn_id = h.conn_id, seq = h.seq_nr.0, ack = h.ack_nr.0, wnd = h.wnd_size, sack = ?packet.sack, len = d.data.len() - packet.payload_offset, "µTP in");
        if let Some(key) = self.find(from, &h) {
            self.conns[&key]
                .shared
                .lock()
                .conn
                .handle(now, &packet, &d.data);
            self.touch(key);
            return;
        }
        match h.kind {
            PacketType::Syn => self.on_syn(from, &packet, now),
            PacketType::Reset => {}
            // A packet for a connection we do not have: tell the sender to stop.
            _ => self.send_reset(from, &h),
        }
    }

    /// The connection a packet belongs to. Packets carry the receiver's id; a SYN carries
    /// the id the acceptor will send with, one below its receive id; a RESET may carry
    /// either of our ids, since senders differ.
    fn find(&self, from: SocketAddr, h: &Header) -> Option<Key> {
        let key = match h.kind {
            PacketType::Syn => (from, h.conn_id.wrapping_add(1)),
            _ => (from, h.conn_id),
        };
        if self.conns.contains_key(&key) {
            return Some(key);
        }
        if h.kind == PacketType::Reset {
            for id in [h.conn_id.wrapping_sub(1), h.conn_id.wrapping_add(1)] {
                if self.conns.contains_key(&(from, id)) {
                    return Some((from, id));
                }
            }
        }
        None
    }

    fn on_syn(&mut self, from: SocketAddr, syn: &Packet<'_>, now: Instant) {
        let h = &syn.header;
        if self.live_connections() >= self.config.max_connections {
            bump(&self.counters.refused_syns);
            self.send_reset(from, h);
            return;
        }
        let conn = Connection::accept(now, self.conn_config(&from), syn, Seq(rand::random()));
        let key = (from, conn.recv_id());
        let shared = ConnShared::new(from, conn);
        if self.accepted.try_send(Arc::clone(&shared)).is_err() {
            // Nobody accepts, or the backlog is full.
            bump(&self.counters.refused_syns);
            self.send_reset(from, h);
            return;
        }
        bump(&self.counters.accepts);
        self.insert(key, shared, None);
    }

    fn send_reset(&mut self, to: SocketAddr, h: &Header) {
        let reset = Header {
            kind: PacketType::Reset,
            conn_id: h.conn_id,
            timestamp: 0,
            timestamp_diff: 0,
            wnd_size: 0,
            seq_nr: h.ack_nr,
            ack_nr: h.seq_nr,
        };
        let mut out = self.spare.pop().unwrap_or_default();
        encode(&reset, None, &[], &mut out.head);
        out.payload.clear();
        self.outbox.push((to, out));
        bump(&self.counters.resets_sent);
    }

    fn on_timers(&mut self, now: Instant) {
        while let Some(&(t, key)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            if let Some(e) = self.conns.get_mut(&key) {
                e.timer = None;
                e.shared.lock().conn.handle_timeout(now);
                self.touch(key);
            }
        }
    }

    /// For every touched connection: collect its packets, settle a pending connect, wake the
    /// stream, re-arm its timer, and forget it once finished.
    fn service(&mut self, now: Instant) {
        let touched = std::mem::take(&mut self.touched);
        for key in &touched {
            let Some(entry) = self.conns.get_mut(key) else {
                continue;
            };
            entry.touched = false;
            let mut st = entry.shared.lock();
            if st.conn.wants_route_mtu() {
                st.conn.set_route_mtu(route_mtu(key.0));
            }
            loop {
                let mut out = self.spare.pop().unwrap_or_default();
                match st.conn.poll_transmit(now, &mut out) {
                    None => {
                        self.spare.push(out);
                        break;
                    }
                    Some(Transmit::Whole) => self.outbox.push((key.0, out)),
                    Some(Transmit::MayFragment) => self.fragmentable.push((key.0, out)),
                }
            }
            if let Some(reply) = entry.connect_reply.take() {
                if st.conn.is_established() {
                    if reply.send(Ok(Arc::clone(&entry.shared))).is_err() {
                        // The caller gave up: close politely.
                        st.conn.close(now);
                        self.touched.push(*key);
                        entry.touched = true;
                    }
                } else if let Some(e) = st.conn.error() {
                    let _ = reply.send(Err(e));
                } else if reply.is_closed() {
                    st.conn.close(now);
                } else {
                    entry.connect_reply = Some(reply);
                }
            }
            st.wake();
            let size = st.conn.packet_size();
            if size != entry.packet_size {
                if entry.packet_size != 0 {
                    tracing::debug!(peer = %key.0, bytes = size, "µTP packet payload size");
                }
                entry.packet_size = size;
            }
            let finished = st.conn.is_finished();
            let timer = st.conn.poll_timeout();
            drop(st);
            if entry.timer != timer {
                if let Some(old) = entry.timer {
                    self.timers.remove(&(old, *key));
                }
                if let Some(new) = timer {
                    self.timers.insert((new, *key));
                }
                entry.timer = timer;
            }
            if finished {
                if let Some(t) = entry.timer {
                    self.timers.remove(&(t, *key));
                }
                self.conns.remove(key);
            }
        }
        self.spare_touched(touched);
    }

    fn spare_touched(&mut self, mut touched: Vec<Key>) {
        // Reuse the allocation unless servicing queued more work meanwhile.
        if self.touched.is_empty() {
            touched.clear();
            self.touched = touched;
        }
    }

    async fn send_outbox(&mut self) {
        for (to, mut out) in self.outbox.drain(..) {
            if tracing::enabled!(tracing::Level::TRACE) {
                if let Ok(p) = Packet::decode(&out.head) {
                    let h = p.header;
                    tracing::trace!(%to, kind = ?h.kind, conn_id = h.conn_id, seq = h.seq_nr.0, ack = h.ack_nr.0, wnd = h.wnd_size, sack = ?p.sack, len = out.payload.len(), "µTP out");
                }
            }
            let parts = [&out.head[..], &out.payload[..]];
            let result = match self.sender.try_send_parts(&parts, to) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self
                    .sender
                    .send_parts(&parts, to)
                    .await
                    .map_err(io::Error::other),
                r => r,
            };
            match result {
                Ok(_) => bump(&self.counters.packets_out),
                Err(e) => tracing::debug!(%to, error = %e, "µTP send failed"),
            }
            out.payload.clear();
            self.spare.push(out);
        }
        for (to, mut out) in self.fragmentable.drain(..) {
            match self
                .sender
                .send_fragmentable(&[&out.head[..], &out.payload[..]], to)
                .await
            {
                Ok(_) => bump(&self.counters.packets_out),
                Err(e) => tracing::debug!(%to, error = %e, "µTP send failed"),
            }
            out.payload.clear();
            self.spare.push(out);
        }
        // A burst can leave many spare buffers; keep a few.
        self.spare.truncate(64);
    }

    fn shut_down(&mut self) {
        for (_, e) in self.conns.drain() {
            let mut st = e.shared.lock();
            st.conn.abort();
            st.wake();
            if let Some(reply) = e.connect_reply {
                let _ = reply.send(Err(ConnError::TimedOut));
            }
        }
    }
}

/// The kernel's MTU for the route to `to` (the outgoing interface's, or a smaller path MTU it
/// has learnt), from a throwaway UDP socket connected there; `None` if it cannot tell.
fn route_mtu(to: SocketAddr) -> Option<usize> {
    use std::os::fd::AsRawFd;
    let bind: SocketAddr = if to.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(to).ok()?;
    let (level, name) = if to.is_ipv4() {
        (libc::IPPROTO_IP, libc::IP_MTU)
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU)
    };
    let mut mtu: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the descriptor is open for the call; `mtu` and `len` are valid for writes of
    // the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&mut mtu as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0 && mtu > 0).then_some(mtu as usize)
}
