//! One µTP connection as a sans-IO state machine (BEP 29): packets in via
//! [`Connection::handle`], packets out via [`Connection::poll_transmit`], time via
//! [`Connection::poll_timeout`]/[`Connection::handle_timeout`], application bytes via
//! [`Connection::write`]/[`Connection::read`]. It owns no socket and reads no clock.
//!
//! Handshake numbering follows what libtorrent and libutp do (BEP 29's diagram differs): the
//! acceptor's ST_STATE reply to a SYN carries the sequence number of its first data packet,
//! and every ST_STATE carries the next number to be sent without consuming it. The initiator
//! therefore starts with `ack_nr = reply.seq_nr - 1`.

mod recv;
mod send;
#[cfg(test)]
mod tests;
mod timers;
mod transmit;

use std::time::{Duration, Instant};

use bytes::Bytes;

use self::recv::{Received, RecvQueue};
use self::send::SendQueue;
use super::congestion::{Ledbat, RttEstimator, INITIAL_RTO, MAX_RTO};
use super::packet::{encode_with_limit, Header, Packet, PacketType, HEADER_LEN, MAX_SACK_BYTES};
use super::pmtu::{MtuSearch, ProbeOutcome, STEP};
use super::seq::Seq;

/// Most packets in flight (and most a receiver buffers ahead of a gap). Keeps sequence
/// comparisons within half the 16-bit space and bounds per-connection bookkeeping.
pub(crate) const MAX_INFLIGHT_PACKETS: usize = 4096;

/// A packet is sent at least this often on an idle connection, so NAT mappings survive (UDP
/// mappings commonly expire after 30 s).
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(29);

/// How long a closed connection still answers retransmitted FINs.
pub(crate) const LINGER: Duration = Duration::from_secs(3);

/// SYNs sent before a connection attempt fails (at 1, 2 and 4 s of back-off).
const MAX_SYN_ATTEMPTS: u32 = 4;

/// Consecutive retransmission timeouts before the connection is declared dead (~60 s with
/// back-off from the 500 ms floor).
const MAX_TIMEOUTS: u32 = 7;

/// How long an accepted connection may stay silent after its SYN. Real initiators send at
/// once (a BitTorrent handshake, or our keepalive); this keeps a flood of SYNs from holding
/// connection slots for the whole idle timeout.
pub(crate) const ACCEPT_SILENCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Duplicate ACKs that mark the oldest packet lost (BEP 29: 3).
const DUP_ACK_THRESHOLD: u32 = 3;

/// Smallest reordering window of the time-based loss rule (RACK's is a quarter round trip).
const MIN_REORDER_WINDOW: Duration = Duration::from_millis(1);

/// Smallest wait before a tail-loss probe (RFC 8985 §7: 2·srtt, and timers are coarse).
const MIN_PROBE_TIMEOUT: Duration = Duration::from_millis(10);

/// Per-connection parameters.
#[derive(Debug, Clone)]
pub(crate) struct ConnConfig {
    /// Payload bytes per packet to start with (see `pmtu`).
    pub mss: usize,
    /// IP and UDP header bytes in front of each packet.
    pub ip_overhead: usize,
    /// The largest datagram we can receive, announced to the remote; 0 announces nothing.
    pub max_datagram: u16,
    /// Unacknowledged bytes the application may queue.
    pub send_capacity: usize,
    /// Bytes buffered for the application (the advertised window).
    pub recv_capacity: usize,
    /// Silence from the remote after which the connection fails.
    pub idle_timeout: Duration,
}

/// One datagram from [`Connection::poll_transmit`]: the packet's header (with extensions)
/// and its payload, kept apart so the payload goes to the socket without being copied.
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    /// Header and extensions.
    pub head: Vec<u8>,
    /// Payload (shared with the send buffer).
    pub payload: Bytes,
}

impl Outgoing {
    /// The whole datagram in one buffer.
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        [&self.head[..], &self.payload[..]].concat()
    }
}

/// How a datagram from [`Connection::poll_transmit`] may cross the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transmit {
    /// Whole: it is no larger than what is known to cross, or it is a first packet-size
    /// probe, which must fail rather than be fragmented.
    Whole,
    /// A packet-size probe sent again: it was probably too large for the path and cannot be
    /// repacketised, so routers may fragment it.
    MayFragment,
}

/// A connection's congestion state, for diagnostics and measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnStats {
    /// Congestion window, bytes.
    pub cwnd: usize,
    /// The remote's advertised receive window, bytes.
    pub peer_window: usize,
    /// Payload bytes sent and not yet acknowledged (nor deemed lost).
    pub bytes_in_flight: usize,
    /// Smoothed round-trip time, once measured.
    pub srtt: Option<Duration>,
    /// LEDBAT's estimate of the queuing delay our packets meet.
    pub queuing_delay: Option<Duration>,
    /// Whether slow start is still running.
    pub slow_start: bool,
    /// Packets sent more than once.
    pub retransmissions: u64,
    /// Loss events (window halvings and timeouts).
    pub losses: u64,
    /// Retransmission timeouts.
    pub timeouts: u64,
    /// Payload bytes per data packet now (grows by the packet-size search).
    pub packet_size: usize,
}

/// Why a connection ended abnormally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConnError {
    /// The remote answered our SYN with ST_RESET.
    #[error("µTP connection refused")]
    Refused,
    /// The remote sent ST_RESET.
    #[error("µTP connection reset by the remote")]
    Reset,
    /// The remote stopped answering.
    #[error("µTP connection timed out")]
    TimedOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    SynSent { attempts: u32, deadline: Instant },
    Connected,
    Closed,
}

/// One µTP connection.
#[derive(Debug)]
pub(crate) struct Connection {
    state: State,
    recv_id: u16,
    send_id: u16,
    syn_seq: Seq,
    epoch: Instant,
    cfg: ConnConfig,
    send: SendQueue,
    recv: RecvQueue,
    rtt: RttEstimator,
    cc: Ledbat,
    peer_wnd: usize,
    reply_micro: u32,
    last_ack: Seq,
    dup_acks: u32,
    timeouts: u32,
    rto_deadline: Option<Instant>,
    /// When to send a tail-loss probe, if packets are out and nothing was acknowledged.
    probe_deadline: Option<Instant>,
    /// Whether a probe may be scheduled (one per stretch without acknowledgements).
    probe_armed: bool,
    /// A probe is due to be sent.
    need_probe: bool,
    /// Whether the remote sent anything besides its SYN; until then an accepted connection
    /// gets only [`ACCEPT_SILENCE_TIMEOUT`].
    heard: bool,
    last_send: Instant,
    last_recv: Instant,
    last_wnd: usize,
    need_syn: bool,
    need_ack: bool,
    app_closed: bool,
    linger_until: Option<Instant>,
    error: Option<ConnError>,
    losses: u64,
    rto_count: u64,
    /// The packet-size search.
    mtu: MtuSearch,
    /// The largest datagram the remote said it can receive.
    peer_max_datagram: Option<usize>,
    /// Whether the route's MTU was asked for (see [`Self::wants_route_mtu`]).
    route_checked: bool,
    /// Largest payload received in one packet, for window updates.
    largest_in: usize,
}

impl Connection {
    fn new(
        now: Instant,
        cfg: ConnConfig,
        recv_id: u16,
        send_id: u16,
        state: State,
        send: SendQueue,
        recv: RecvQueue,
    ) -> Self {
        Self {
            state,
            recv_id,
            send_id,
            syn_seq: send.next_seq().minus(1),
            epoch: now,
            cc: Ledbat::new(cfg.mss, now),
            send,
            recv,
            rtt: RttEstimator::default(),
            peer_wnd: cfg.mss,
            reply_micro: 0,
            last_ack: Seq(0),
            dup_acks: 0,
            timeouts: 0,
            rto_deadline: None,
            probe_deadline: None,
            probe_armed: true,
            need_probe: false,
            heard: false,
            last_send: now,
            last_recv: now,
            last_wnd: cfg.recv_capacity,
            need_syn: false,
            need_ack: false,
            app_closed: false,
            linger_until: None,
            error: None,
            losses: 0,
            rto_count: 0,
            mtu: MtuSearch::new(cfg.mss),
            peer_max_datagram: None,
            route_checked: false,
            largest_in: cfg.mss,
            cfg,
        }
    }

    /// Starts an outgoing connection: `recv_id` is our id, `isn` the SYN's sequence number.
    pub(crate) fn connect(now: Instant, cfg: ConnConfig, recv_id: u16, isn: Seq) -> Self {
        let state = State::SynSent {
            attempts: 1,
            deadline: now + INITIAL_RTO,
        };
        let send = SendQueue::new(isn.next(), cfg.send_capacity);
        let recv = RecvQueue::new(Seq(0), cfg.recv_capacity);
        let mut c = Self::new(
            now,
            cfg,
            recv_id,
            recv_id.wrapping_add(1),
            state,
            send,
            recv,
        );
        c.need_syn = true;
        c
    }

    /// Accepts the connection `syn` opens; our first data packet will be `isn`.
    pub(crate) fn accept(now: Instant, cfg: ConnConfig, syn: &Packet<'_>, isn: Seq) -> Self {
        let peer_max_datagram = syn.max_datagram;
        let syn = &syn.header;
        let send = SendQueue::new(isn, cfg.send_capacity);
        let recv = RecvQueue::new(syn.seq_nr, cfg.recv_capacity);
        let mut c = Self::new(
            now,
            cfg,
            syn.conn_id.wrapping_add(1),
            syn.conn_id,
            State::Connected,
            send,
            recv,
        );
        c.peer_wnd = syn.wnd_size as usize;
        c.peer_max_datagram = peer_max_datagram.map(usize::from);
        c.reply_micro = c.micros(now).wrapping_sub(syn.timestamp);
        c.need_ack = true;
        c
    }

    /// The connection id the remote puts in packets to us.
    pub(crate) fn recv_id(&self) -> u16 {
        self.recv_id
    }

    fn micros(&self, now: Instant) -> u32 {
        now.duration_since(self.epoch).as_micros() as u32
    }

    /// Feeds one packet from the remote; `datagram` is the buffer `packet` was decoded from.
    pub(crate) fn handle(&mut self, now: Instant, packet: &Packet<'_>, datagram: &Bytes) {
        let h = &packet.header;
        if self.error.is_some() {
            return;
        }
        self.last_recv = now;
        if h.kind != PacketType::Syn {
            self.heard = true;
        }
        self.reply_micro = self.micros(now).wrapping_sub(h.timestamp);
        self.peer_wnd = h.wnd_size as usize;
        if let Some(limit) = packet.max_datagram {
            self.peer_max_datagram = Some(usize::from(limit));
        }
        if self.peer_wnd < self.mtu.size() {
            // The remote answers but has no room: probes that time out are not failures.
            self.timeouts = 0;
        }
        match h.kind {
            PacketType::Reset => {
                let err = match self.state {
                    State::SynSent { .. } => ConnError::Refused,
                    _ => ConnError::Reset,
                };
                self.fail(err);
                return;
            }
            // A retransmitted SYN: our reply was lost.
            PacketType::Syn => {
                self.need_ack = true;
                return;
            }
            _ => {}
        }
        if let State::SynSent { .. } = self.state {
            // Only the answer to our SYN opens the connection, not a stray or forged packet.
            if h.ack_nr != self.syn_seq {
                return;
            }
            self.recv.set_ack_nr(h.seq_nr.minus(1));
            self.last_ack = self.syn_seq;
            self.state = State::Connected;
        }
        if h.timestamp_diff != 0 && self.state == State::Connected {
            self.cc.on_delay_sample(now, h.timestamp_diff);
        }
        let payload = datagram.slice(packet.payload_offset.min(datagram.len())..);
        self.process_ack(now, h, packet.sack, payload.is_empty());
        match h.kind {
            PacketType::Data if !payload.is_empty() => {
                self.largest_in = self.largest_in.max(payload.len());
                // Every data packet is answered, duplicates too: the sender may have missed
                // our ACK, and a repeated ACK is how it learns of a gap.
                let _: Received = self.recv.on_data(h.seq_nr, payload);
                self.need_ack = true;
            }
            PacketType::Fin => {
                self.recv.on_fin(h.seq_nr);
                self.need_ack = true;
            }
            _ => {}
        }
        self.check_closed(now);
    }

    fn process_ack(&mut self, now: Instant, h: &Header, sack: Option<&[u8]>, no_payload: bool) {
        if self.state == State::Closed && self.send.all_acked() {
            return;
        }
        let in_flight = self.send.bytes_in_flight();
        let srtt = self.rtt.srtt().unwrap_or(Duration::ZERO);
        let acked = self.send.on_ack(h.ack_nr, now, &mut self.rtt);
        let mut bytes = acked.bytes;
        let mut delivered_sent = acked.latest_sent;
        if let Some(mask) = sack {
            let s = self.send.on_sack(h.ack_nr, mask, now, &mut self.rtt);
            bytes += s.bytes;
            delivered_sent = delivered_sent.max(s.latest_sent);
        }
        let reorder_window =
            (self.rtt.srtt().unwrap_or(MIN_REORDER_WINDOW) / 4).max(MIN_REORDER_WINDOW);
        let mut loss = self
            .send
            .detect_losses(now, delivered_sent, reorder_window, srtt);
        if bytes > 0 {
            // Progress: the tail-loss probe may fire again for whatever is still out.
            self.probe_deadline = None;
            self.probe_armed = true;
        }
        if acked.packets > 0 {
            self.timeouts = 0;
            self.dup_acks = 0;
            self.rto_deadline = self.send.has_unacked().then(|| now + self.rtt.rto());
        } else if h.kind == PacketType::State
            && no_payload
            && h.ack_nr == self.last_ack
            && self.send.has_unacked()
        {
            self.dup_acks += 1;
            if self.dup_acks == DUP_ACK_THRESHOLD && self.send.mark_oldest_lost() {
                loss = true;
            }
        }
        self.last_ack = h.ack_nr;
        self.cc.on_ack(bytes, in_flight);
        // A probe lost for its size says nothing about congestion.
        if self.settle_mtu_probe() == Some(ProbeOutcome::Lost) {
            loss = false;
        }
        if loss {
            self.losses += 1;
            self.cc.on_loss(now, srtt);
        }
    }

    /// Settles the packet-size probe once it is acknowledged or deemed lost.
    fn settle_mtu_probe(&mut self) -> Option<ProbeOutcome> {
        let (seq, _) = self.mtu.probe()?;
        let outcome = match self.send.find(seq) {
            None => ProbeOutcome::Delivered,
            Some(p) if p.sacked => ProbeOutcome::Delivered,
            Some(p) if p.lost || p.transmissions > 1 => ProbeOutcome::Lost,
            Some(_) => return None,
        };
        self.mtu.settle(outcome);
        self.cc.set_mss(self.mtu.size());
        Some(outcome)
    }

    /// Whether the driver should look up the route's MTU to the remote (once, and only when
    /// the remote announced that it can receive datagrams larger than ours).
    pub(crate) fn wants_route_mtu(&self) -> bool {
        !self.route_checked
            && self
                .peer_max_datagram
                .is_some_and(|m| m >= HEADER_LEN + self.mtu.size() + STEP)
    }

    /// The route's MTU to the remote (IP packet bytes), if the kernel knows it: together with
    /// the remote's limit it bounds the packet-size search.
    pub(crate) fn set_route_mtu(&mut self, mtu: Option<usize>) {
        self.route_checked = true;
        let (Some(mtu), Some(peer)) = (mtu, self.peer_max_datagram) else {
            return;
        };
        // Neither IPv4 nor IPv6 (without jumbograms) carries more than 65,535 bytes.
        let route = mtu
            .min(usize::from(u16::MAX))
            .saturating_sub(self.cfg.ip_overhead);
        self.mtu
            .set_ceiling(route.min(peer).saturating_sub(HEADER_LEN));
    }

    fn check_closed(&mut self, now: Instant) {
        if self.state == State::Connected
            && self.send.fin_acked()
            && (self.recv.eof_reached() || self.app_closed)
        {
            self.state = State::Closed;
            self.rto_deadline = None;
            self.linger_until = Some(now + LINGER);
        }
    }

    fn fail(&mut self, err: ConnError) {
        self.error = Some(err);
        self.state = State::Closed;
        self.linger_until = None;
        self.rto_deadline = None;
    }

    /// Queues application bytes; returns how many fit (0: wait for [`Self::is_writable`]).
    pub(crate) fn write(&mut self, data: &[u8]) -> usize {
        self.send.write(data)
    }

    /// Copies received bytes into `buf`; 0 means nothing yet, or end of stream if
    /// [`Self::is_eof`].
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = self.recv.read(buf);
        // Tell a sender stalled on our full buffer that room opened.
        if n > 0
            && self.last_wnd < 2 * self.largest_in
            && self.recv.window() >= self.cfg.recv_capacity / 2
        {
            self.need_ack = true;
        }
        n
    }

    /// Ends our direction after everything queued (FIN).
    pub(crate) fn shutdown(&mut self) {
        self.send.queue_fin();
    }

    /// The application is gone: send FIN after queued data, drop incoming data.
    pub(crate) fn close(&mut self, now: Instant) {
        self.app_closed = true;
        self.send.queue_fin();
        self.recv.discard();
        if let State::SynSent { .. } = self.state {
            self.fail(ConnError::TimedOut);
        }
        self.check_closed(now);
    }

    /// Ends the connection at once (the socket under it is gone).
    pub(crate) fn abort(&mut self) {
        if self.error.is_none() {
            self.fail(ConnError::TimedOut);
        }
    }

    /// Whether the handshake completed.
    pub(crate) fn is_established(&self) -> bool {
        !matches!(self.state, State::SynSent { .. }) && self.error.is_none()
    }

    /// The error that ended the connection, if any.
    pub(crate) fn error(&self) -> Option<ConnError> {
        self.error
    }

    /// Whether a read would make progress (data, end of stream or error).
    pub(crate) fn is_readable(&self) -> bool {
        self.recv.is_readable() || self.error.is_some()
    }

    /// Whether the remote finished and everything was read.
    pub(crate) fn is_eof(&self) -> bool {
        self.recv.eof_reached() && !self.recv.is_readable_data()
    }

    /// Whether our direction was shut down.
    pub(crate) fn is_write_closed(&self) -> bool {
        self.send.fin_queued()
    }

    /// Whether something (an ACK or window update) waits to be sent.
    pub(crate) fn wants_transmit(&self) -> bool {
        self.need_ack || self.need_syn || self.need_probe
    }

    /// Whether a write would make progress (room, or an error to report).
    pub(crate) fn is_writable(&self) -> bool {
        self.send.space() > 0 || self.error.is_some() || self.send.fin_queued()
    }

    /// Whether the connection can be forgotten: closed, lingered, or failed.
    pub(crate) fn is_finished(&self) -> bool {
        self.state == State::Closed && self.linger_until.is_none()
    }

    /// Whether the connection still counts towards the live limit.
    pub(crate) fn is_live(&self) -> bool {
        self.state != State::Closed
    }

    /// Congestion window and round-trip estimate, for tests.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> (usize, Option<Duration>) {
        (self.cc.window(), self.rtt.srtt())
    }

    /// Payload bytes per data packet now.
    pub(crate) fn packet_size(&self) -> usize {
        self.mtu.size()
    }

    /// A snapshot for diagnostics.
    pub(crate) fn snapshot(&self) -> ConnStats {
        ConnStats {
            cwnd: self.cc.window(),
            peer_window: self.peer_wnd,
            bytes_in_flight: self.send.bytes_in_flight(),
            srtt: self.rtt.srtt(),
            queuing_delay: self.cc.queuing_delay(),
            slow_start: self.cc.in_slow_start(),
            retransmissions: self.send.retransmissions(),
            losses: self.losses,
            timeouts: self.rto_count,
            packet_size: self.mtu.size(),
        }
    }
}
