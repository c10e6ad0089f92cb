//! The send half of a µTP connection: bytes waiting to be packetised, packets in flight,
//! acknowledgement (cumulative and selective) and loss marking.
//!
//! A packet is deemed lost by either of two rules: BEP 29's, three packets after it selectively
//! acknowledged; or RACK's (RFC 8985 §6.2), a packet sent later than it by more than a
//! reordering window was delivered. The second catches losses in small windows, where three
//! later packets never exist, and together with the tail-loss probe it keeps a lossy
//! connection out of half-second retransmission timeouts.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::MAX_INFLIGHT_PACKETS;
use crate::net::utp::congestion::RttEstimator;
use crate::net::utp::seq::Seq;

/// Packets SACKed past an unacknowledged one before it counts as lost (BEP 29: 3).
const SACK_LOSS_THRESHOLD: usize = 3;

/// A packet sent and not yet cumulatively acknowledged.
#[derive(Debug)]
pub(crate) struct Sent {
    pub seq: Seq,
    pub payload: Bytes,
    pub fin: bool,
    pub last_sent: Option<Instant>,
    pub transmissions: u32,
    /// Acknowledged by a selective ACK; no longer counts as in flight.
    pub sacked: bool,
    /// Deemed lost; waits for retransmission and no longer counts as in flight.
    pub lost: bool,
}

/// What a cumulative or selective acknowledgement did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Acked {
    /// Payload bytes acknowledged for the first time.
    pub bytes: usize,
    /// Packets removed from the front of the flight.
    pub packets: usize,
    /// Latest transmission time among the packets this acknowledgement delivered.
    pub latest_sent: Option<Instant>,
}

/// Send state.
#[derive(Debug)]
pub(crate) struct SendQueue {
    /// Written, not yet packetised; split off without copying.
    buf: BytesMut,
    inflight: VecDeque<Sent>,
    next_seq: Seq,
    capacity: usize,
    inflight_payload: usize,
    bytes_in_flight: usize,
    lost_count: usize,
    fin_queued: bool,
    fin_seq: Option<Seq>,
    fin_acked: bool,
    retransmissions: u64,
}

impl SendQueue {
    /// A queue whose next packet is `next_seq`, holding up to `capacity` unacknowledged bytes.
    pub(crate) fn new(next_seq: Seq, capacity: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            inflight: VecDeque::new(),
            next_seq,
            capacity,
            inflight_payload: 0,
            bytes_in_flight: 0,
            lost_count: 0,
            fin_queued: false,
            fin_seq: None,
            fin_acked: false,
            retransmissions: 0,
        }
    }

    /// Room for more application bytes.
    pub(crate) fn space(&self) -> usize {
        if self.fin_queued {
            return 0;
        }
        self.capacity
            .saturating_sub(self.buf.len() + self.inflight_payload)
    }

    /// Queues as much of `data` as fits; returns how much.
    pub(crate) fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.space());
        self.buf.extend_from_slice(&data[..n]);
        n
    }

    /// Asks for a FIN once everything queued is sent.
    pub(crate) fn queue_fin(&mut self) {
        self.fin_queued = true;
    }

    /// Whether a FIN was asked for.
    pub(crate) fn fin_queued(&self) -> bool {
        self.fin_queued
    }

    /// The FIN's sequence number, once sent.
    pub(crate) fn fin_seq(&self) -> Option<Seq> {
        self.fin_seq
    }

    /// Whether our FIN was acknowledged.
    pub(crate) fn fin_acked(&self) -> bool {
        self.fin_acked
    }

    /// The sequence number the next new packet gets.
    pub(crate) fn next_seq(&self) -> Seq {
        self.next_seq
    }

    /// Packets sent more than once so far.
    pub(crate) fn retransmissions(&self) -> u64 {
        self.retransmissions
    }

    /// Payload bytes in flight (sent, not acknowledged, not deemed lost).
    pub(crate) fn bytes_in_flight(&self) -> usize {
        self.bytes_in_flight
    }

    /// Whether anything is unacknowledged (in flight or waiting for retransmission).
    pub(crate) fn has_unacked(&self) -> bool {
        !self.inflight.is_empty()
    }

    /// Whether every queued byte (and the FIN, if asked for) is acknowledged.
    pub(crate) fn all_acked(&self) -> bool {
        self.buf.is_empty() && self.inflight.is_empty()
    }

    fn oldest(&self) -> Seq {
        self.inflight.front().map_or(self.next_seq, |p| p.seq)
    }

    /// Picks the next packet to put on the wire within `window` bytes in flight: a lost
    /// packet first, else a new one of at most `mss` bytes, else the FIN. When nothing is in
    /// flight one packet may exceed the window, so a zero or tiny window is still probed.
    pub(crate) fn next_to_send(&mut self, window: usize, mss: usize) -> Option<usize> {
        let fits = |len: usize, in_flight: usize| in_flight == 0 || in_flight + len <= window;
        if self.lost_count > 0 {
            let i = self.inflight.iter().position(|p| p.lost)?;
            return fits(self.inflight[i].payload.len(), self.bytes_in_flight).then_some(i);
        }
        if self.inflight.len() >= MAX_INFLIGHT_PACKETS {
            return None;
        }
        if !self.buf.is_empty() {
            let len = self.buf.len().min(mss);
            if !fits(len, self.bytes_in_flight) {
                return None;
            }
            let payload = self.buf.split_to(len).freeze();
            self.inflight_payload += len;
            return Some(self.push(payload, false));
        }
        if self.fin_queued && self.fin_seq.is_none() {
            self.fin_seq = Some(self.next_seq);
            return Some(self.push(Bytes::new(), true));
        }
        None
    }

    fn push(&mut self, payload: Bytes, fin: bool) -> usize {
        self.inflight.push_back(Sent {
            seq: self.next_seq,
            payload,
            fin,
            last_sent: None,
            transmissions: 0,
            sacked: false,
            lost: false,
        });
        self.next_seq = self.next_seq.next();
        self.inflight.len() - 1
    }

    /// The packet at `index` (from [`Self::next_to_send`]).
    pub(crate) fn packet(&self, index: usize) -> &Sent {
        &self.inflight[index]
    }

    /// Records that the packet at `index` went out at `now`.
    pub(crate) fn mark_sent(&mut self, index: usize, now: Instant) {
        let p = &mut self.inflight[index];
        if p.lost {
            p.lost = false;
            self.lost_count -= 1;
        }
        p.transmissions += 1;
        if p.transmissions > 1 {
            self.retransmissions += 1;
        }
        p.last_sent = Some(now);
        self.bytes_in_flight += p.payload.len();
    }

    /// Removes everything up to and including `ack_nr`; samples round trips of packets sent
    /// once.
    pub(crate) fn on_ack(&mut self, ack_nr: Seq, now: Instant, rtt: &mut RttEstimator) -> Acked {
        let mut acked = Acked::default();
        let count = self.oldest().distance_to(ack_nr) + 1;
        if count <= 0 || count as usize > self.inflight.len() {
            return acked;
        }
        for p in self.inflight.drain(..count as usize) {
            acked.packets += 1;
            self.inflight_payload -= p.payload.len();
            if p.lost {
                self.lost_count -= 1;
            } else if !p.sacked {
                self.bytes_in_flight -= p.payload.len();
            }
            if !p.sacked {
                acked.bytes += p.payload.len();
                if p.transmissions == 1 {
                    if let Some(sent) = p.last_sent {
                        rtt.sample(now.duration_since(sent));
                    }
                }
                acked.latest_sent = acked.latest_sent.max(p.last_sent);
            }
            if p.fin {
                self.fin_acked = true;
            }
        }
        acked
    }

    /// Applies a selective ACK relative to `ack_nr` (bit `i` stands for `ack_nr + 2 + i`).
    pub(crate) fn on_sack(
        &mut self,
        ack_nr: Seq,
        mask: &[u8],
        now: Instant,
        rtt: &mut RttEstimator,
    ) -> Acked {
        let mut acked = Acked::default();
        let base = self.oldest().distance_to(ack_nr.plus(2));
        for (bit, set) in (0..mask.len() * 8).map(|i| (i, mask[i / 8] & (1 << (i % 8)) != 0)) {
            if !set {
                continue;
            }
            let index = base + bit as i32;
            if index < 0 {
                continue;
            }
            let Some(p) = self.inflight.get_mut(index as usize) else {
                break;
            };
            if p.sacked {
                continue;
            }
            p.sacked = true;
            if p.lost {
                p.lost = false;
                self.lost_count -= 1;
            } else {
                self.bytes_in_flight -= p.payload.len();
            }
            acked.bytes += p.payload.len();
            if p.transmissions == 1 {
                if let Some(sent) = p.last_sent {
                    rtt.sample(now.duration_since(sent));
                }
            }
            acked.latest_sent = acked.latest_sent.max(p.last_sent);
        }
        acked
    }

    /// Marks packets lost by the two rules in the module documentation; `delivered_sent` is
    /// the latest transmission time of anything just delivered. A packet resent less than a
    /// round trip (`srtt`) ago is left alone, so repeated ACKs do not resend it in a burst.
    /// Returns whether anything was newly marked.
    pub(crate) fn detect_losses(
        &mut self,
        now: Instant,
        delivered_sent: Option<Instant>,
        reorder_window: Duration,
        srtt: Duration,
    ) -> bool {
        let mut loss = false;
        let mut sacked_after = 0;
        for p in self.inflight.iter_mut().rev() {
            if p.sacked {
                sacked_after += 1;
                continue;
            }
            let Some(sent) = p.last_sent else { continue };
            if p.lost || (p.transmissions > 1 && now.duration_since(sent) < srtt) {
                continue;
            }
            let by_count = sacked_after >= SACK_LOSS_THRESHOLD;
            let by_time = delivered_sent.is_some_and(|d| d > sent + reorder_window);
            if by_count || by_time {
                p.lost = true;
                self.lost_count += 1;
                self.bytes_in_flight -= p.payload.len();
                loss = true;
            }
        }
        loss
    }

    /// The newest unacknowledged packet, to resend as a tail-loss probe.
    pub(crate) fn probe_candidate(&self) -> Option<usize> {
        self.inflight
            .iter()
            .rposition(|p| !p.sacked && !p.lost && p.transmissions > 0)
    }

    /// Records that the packet at `index` went out again as a probe: it was still counted in
    /// flight, so only its timestamps change.
    pub(crate) fn mark_probe_sent(&mut self, index: usize, now: Instant) {
        let p = &mut self.inflight[index];
        p.transmissions += 1;
        p.last_sent = Some(now);
        self.retransmissions += 1;
    }

    /// Marks the oldest unacknowledged packet lost (three duplicate ACKs); false if none.
    pub(crate) fn mark_oldest_lost(&mut self) -> bool {
        match self.inflight.iter_mut().find(|p| !p.sacked) {
            Some(p) if !p.lost && p.transmissions > 0 => {
                p.lost = true;
                self.lost_count += 1;
                self.bytes_in_flight -= p.payload.len();
                true
            }
            _ => false,
        }
    }

    /// Bytes written and not yet put into a packet.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether a packet deemed lost waits to be sent again.
    pub(crate) fn has_lost(&self) -> bool {
        self.lost_count > 0
    }

    /// The unacknowledged packet `seq`; `None` once it is cumulatively acknowledged.
    pub(crate) fn find(&self, seq: Seq) -> Option<&Sent> {
        let index = self.oldest().distance_to(seq);
        usize::try_from(index)
            .ok()
            .and_then(|i| self.inflight.get(i))
    }

    /// Marks every unacknowledged packet lost (a retransmission timeout).
    pub(crate) fn mark_all_lost(&mut self) {
        for p in self.inflight.iter_mut() {
            if !p.sacked && !p.lost && p.transmissions > 0 {
                p.lost = true;
                self.lost_count += 1;
            }
        }
        self.bytes_in_flight = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_all(q: &mut SendQueue, now: Instant, mss: usize) -> Vec<Seq> {
        let mut seqs = Vec::new();
        while let Some(i) = q.next_to_send(usize::MAX, mss) {
            q.mark_sent(i, now);
            seqs.push(q.packet(i).seq);
        }
        seqs
    }

    #[test]
    fn packetises_within_capacity_and_window() {
        let mut q = SendQueue::new(Seq(65534), 10);
        assert_eq!(q.write(b"0123456789abc"), 10);
        assert_eq!(q.space(), 0);
        let now = Instant::now();
        // Window of 4 bytes with mss 4: one packet, then nothing until it is acknowledged.
        let i = q.next_to_send(4, 4).unwrap();
        q.mark_sent(i, now);
        assert_eq!(q.next_to_send(4, 4), None);
        assert_eq!(q.bytes_in_flight(), 4);
        let mut rtt = RttEstimator::default();
        let acked = q.on_ack(Seq(65534), now, &mut rtt);
        assert_eq!((acked.bytes, acked.packets), (4, 1));
        assert_eq!(q.space(), 4);
        assert_eq!(send_all(&mut q, now, 4), vec![Seq(65535), Seq(0)]);
        q.queue_fin();
        assert_eq!(q.write(b"x"), 0);
        assert_eq!(send_all(&mut q, now, 4), vec![Seq(1)]);
        assert_eq!(q.fin_seq(), Some(Seq(1)));
        q.on_ack(Seq(1), now, &mut rtt);
        assert!(q.fin_acked() && q.all_acked());
    }

    #[test]
    fn sack_marks_packets_with_three_sacked_successors_lost() {
        let mut q = SendQueue::new(Seq(100), 1000);
        q.write(&[7u8; 60]);
        let now = Instant::now();
        assert_eq!(send_all(&mut q, now, 10).len(), 6); // 100..=105
        let mut rtt = RttEstimator::default();
        // ack_nr 100; SACK 102 (bit 0), 103, 105 → 101 has three SACKed after it; 104 has one.
        let later = now + Duration::from_millis(5);
        let window = Duration::from_millis(1);
        q.on_ack(Seq(100), later, &mut rtt);
        let acked = q.on_sack(Seq(100), &[0b1011, 0, 0, 0], later, &mut rtt);
        assert_eq!(acked.bytes, 30);
        // All six went out together, so the time rule says nothing; the count rule finds 101.
        assert!(q.detect_losses(later, acked.latest_sent, window, Duration::from_millis(5)));
        assert_eq!(q.bytes_in_flight(), 10); // 104 only
        let i = q.next_to_send(usize::MAX, 10).unwrap();
        assert_eq!(q.packet(i).seq, Seq(101));
        q.mark_sent(i, later);
        // The same SACK again within a round trip does not mark the resent packet again.
        let again = q.on_sack(Seq(100), &[0b1011, 0, 0, 0], later, &mut rtt);
        assert_eq!(again.bytes, 0);
        assert!(!q.detect_losses(later, again.latest_sent, window, Duration::from_millis(5)));
        // Cumulative ACK of everything through 105.
        let acked = q.on_ack(Seq(105), later, &mut rtt);
        assert_eq!(acked.packets, 5);
        assert_eq!(acked.bytes, 20); // 101 and 104; the SACKed ones were counted before
        assert!(q.all_acked());
        assert_eq!(q.bytes_in_flight(), 0);
    }

    #[test]
    fn timeout_marks_all_lost_and_resends_in_order() {
        let mut q = SendQueue::new(Seq(0), 1000);
        q.write(&[1u8; 30]);
        let now = Instant::now();
        send_all(&mut q, now, 10);
        q.mark_all_lost();
        assert_eq!(q.bytes_in_flight(), 0);
        // Window of one packet: the oldest goes first, then the next waits.
        let i = q.next_to_send(10, 10).unwrap();
        assert_eq!(q.packet(i).seq, Seq(0));
        q.mark_sent(i, now);
        assert_eq!(q.next_to_send(10, 10), None);
        // Three duplicate ACKs later the resent packet is deemed lost again.
        assert!(q.mark_oldest_lost());
        assert_eq!(q.bytes_in_flight(), 0);
        assert!(!q.mark_oldest_lost(), "already lost");
    }

    #[test]
    fn a_later_packet_delivered_marks_earlier_ones_lost_by_time() {
        let mut q = SendQueue::new(Seq(0), 1000);
        q.write(&[1u8; 20]);
        let t0 = Instant::now();
        let i = q.next_to_send(usize::MAX, 10).unwrap();
        q.mark_sent(i, t0);
        let t1 = t0 + Duration::from_millis(20);
        let i = q.next_to_send(usize::MAX, 10).unwrap();
        q.mark_sent(i, t1);
        let mut rtt = RttEstimator::default();
        // Only the second (sent 20 ms later) is SACKed: one SACK is far from three, but the
        // first was sent more than the reordering window before it.
        let acked = q.on_sack(Seq(65535), &[0b1, 0, 0, 0], t1, &mut rtt);
        assert_eq!(acked.latest_sent, Some(t1));
        assert!(!q.detect_losses(
            t1,
            acked.latest_sent,
            Duration::from_millis(30),
            Duration::ZERO
        ));
        assert!(q.detect_losses(
            t1,
            acked.latest_sent,
            Duration::from_millis(5),
            Duration::ZERO
        ));
        assert_eq!(q.bytes_in_flight(), 0);
        let i = q.next_to_send(10, 10).unwrap();
        assert_eq!(q.packet(i).seq, Seq(0));
    }

    #[test]
    fn a_probe_resends_the_newest_packet_without_double_counting() {
        let mut q = SendQueue::new(Seq(0), 1000);
        q.write(&[1u8; 30]);
        let now = Instant::now();
        send_all(&mut q, now, 10);
        let i = q.probe_candidate().unwrap();
        assert_eq!(q.packet(i).seq, Seq(2));
        q.mark_probe_sent(i, now);
        assert_eq!(q.bytes_in_flight(), 30);
        assert_eq!(q.retransmissions(), 1);
    }

    #[test]
    fn stale_and_future_acks_are_ignored() {
        let mut q = SendQueue::new(Seq(10), 1000);
        q.write(&[1u8; 20]);
        let now = Instant::now();
        send_all(&mut q, now, 10); // 10, 11
        let mut rtt = RttEstimator::default();
        assert_eq!(q.on_ack(Seq(9), now, &mut rtt), Acked::default());
        assert_eq!(q.on_ack(Seq(12), now, &mut rtt), Acked::default());
        assert_eq!(q.on_ack(Seq(40000), now, &mut rtt), Acked::default());
        assert_eq!(q.on_ack(Seq(11), now, &mut rtt).packets, 2);
    }
}
