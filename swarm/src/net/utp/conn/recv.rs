//! The receive half of a µTP connection: in-order delivery, a bounded reorder buffer, the
//! advertised window and the selective-ACK bitmask (BEP 29 "Selective ACK").

use std::collections::VecDeque;

use bytes::{Buf, Bytes};

use super::MAX_INFLIGHT_PACKETS;
use crate::net::utp::packet::MAX_SACK_BYTES;
use crate::net::utp::seq::Seq;

/// What became of an incoming data packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// The next in sequence; delivered (with any buffered successors).
    InOrder,
    /// Ahead of a gap; buffered.
    OutOfOrder,
    /// Already received.
    Duplicate,
    /// No room (buffer full or too far ahead); the sender will retransmit.
    Dropped,
}

/// Receive state: everything up to `ack_nr` is delivered or readable.
#[derive(Debug)]
pub(crate) struct RecvQueue {
    ack_nr: Seq,
    readable: VecDeque<Bytes>,
    readable_bytes: usize,
    /// Slot `i` holds packet `ack_nr + 2 + i` if it arrived.
    reorder: VecDeque<Option<Bytes>>,
    reorder_bytes: usize,
    capacity: usize,
    eof: Option<Seq>,
    eof_reached: bool,
    /// The application no longer reads: data is acknowledged and discarded.
    discard: bool,
}

impl RecvQueue {
    /// A queue whose last received packet is `ack_nr`, buffering up to `capacity` bytes.
    pub(crate) fn new(ack_nr: Seq, capacity: usize) -> Self {
        Self {
            ack_nr,
            readable: VecDeque::new(),
            readable_bytes: 0,
            reorder: VecDeque::new(),
            reorder_bytes: 0,
            capacity,
            eof: None,
            eof_reached: false,
            discard: false,
        }
    }

    /// The last in-order sequence number received.
    pub(crate) fn ack_nr(&self) -> Seq {
        self.ack_nr
    }

    /// Resets the starting point (when the handshake reply tells us the remote's first number).
    pub(crate) fn set_ack_nr(&mut self, ack_nr: Seq) {
        debug_assert!(self.readable.is_empty() && self.reorder.is_empty());
        self.ack_nr = ack_nr;
    }

    fn buffered(&self) -> usize {
        self.readable_bytes + self.reorder_bytes
    }

    /// Free receive buffer to advertise, bytes.
    pub(crate) fn window(&self) -> usize {
        self.capacity.saturating_sub(self.buffered())
    }

    /// Accepts the data packet `seq`.
    pub(crate) fn on_data(&mut self, seq: Seq, payload: Bytes) -> Received {
        let distance = self.ack_nr.distance_to(seq);
        if distance <= 0 {
            return Received::Duplicate;
        }
        if self.eof.is_some_and(|eof| !seq.is_before(eof)) || self.eof_reached {
            return Received::Dropped;
        }
        // One packet of overshoot is allowed so that a sender probing a closed window
        // makes progress as soon as any room opens.
        if self.buffered() >= self.capacity && !self.discard {
            return Received::Dropped;
        }
        if distance == 1 {
            self.deliver(payload);
            self.ack_nr = seq;
            while let Some(slot) = self.reorder.pop_front() {
                match slot {
                    Some(p) => {
                        self.reorder_bytes -= p.len();
                        self.deliver(p);
                        self.ack_nr = self.ack_nr.next();
                    }
                    None => break,
                }
            }
            self.check_eof();
            return Received::InOrder;
        }
        let index = (distance - 2) as usize;
        if index >= MAX_INFLIGHT_PACKETS {
            return Received::Dropped;
        }
        if self.reorder.len() <= index {
            self.reorder.resize(index + 1, None);
        }
        if self.reorder[index].is_some() {
            return Received::Duplicate;
        }
        self.reorder_bytes += payload.len();
        self.reorder[index] = Some(payload);
        Received::OutOfOrder
    }

    fn deliver(&mut self, payload: Bytes) {
        if self.discard || payload.is_empty() {
            return;
        }
        self.readable_bytes += payload.len();
        self.readable.push_back(payload);
    }

    /// Records the remote's FIN at `seq`: the stream ends after `seq - 1`.
    pub(crate) fn on_fin(&mut self, seq: Seq) {
        if self.eof.is_none() && self.ack_nr.is_before(seq) {
            self.eof = Some(seq);
            // Slot i holds ack_nr + 2 + i; the stream's last packet is seq - 1, so only
            // the first distance - 2 slots can belong to it.
            let keep = (self.ack_nr.distance_to(seq) - 2).max(0) as usize;
            while self.reorder.len() > keep {
                if let Some(Some(p)) = self.reorder.pop_back() {
                    self.reorder_bytes -= p.len();
                }
            }
            self.check_eof();
        }
    }

    fn check_eof(&mut self) {
        if let Some(eof) = self.eof {
            if !self.eof_reached && self.ack_nr.next() == eof {
                self.ack_nr = eof;
                self.eof_reached = true;
                self.reorder.clear();
                self.reorder_bytes = 0;
            }
        }
    }

    /// Whether every packet up to the remote's FIN has arrived.
    pub(crate) fn eof_reached(&self) -> bool {
        self.eof_reached
    }

    /// Whether packets past a gap are buffered (a selective ACK has something to say).
    pub(crate) fn has_gap(&self) -> bool {
        self.reorder_bytes > 0
    }

    /// Whether unread data is buffered.
    pub(crate) fn is_readable_data(&self) -> bool {
        self.readable_bytes > 0
    }

    /// Whether a read would return data or end-of-stream.
    pub(crate) fn is_readable(&self) -> bool {
        self.readable_bytes > 0 || self.eof_reached
    }

    /// Copies readable bytes into `buf`; 0 means nothing is readable yet (or end of stream).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            let Some(front) = self.readable.front_mut() else {
                break;
            };
            let take = front.len().min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&front[..take]);
            front.advance(take);
            n += take;
            if front.is_empty() {
                self.readable.pop_front();
            }
        }
        self.readable_bytes -= n;
        n
    }

    /// Stops delivering: buffered and future data is dropped (the application closed).
    pub(crate) fn discard(&mut self) {
        self.discard = true;
        self.readable.clear();
        self.readable_bytes = 0;
    }

    /// Writes the selective-ACK bitmask into `out` and returns its length, if any packet past a
    /// gap is buffered. Bit `i` (LSB first within each byte) stands for `ack_nr + 2 + i`.
    pub(crate) fn sack(&self, out: &mut [u8; MAX_SACK_BYTES]) -> Option<usize> {
        let last = self.reorder.iter().rposition(Option::is_some)?;
        let bits = (last + 1).min(MAX_SACK_BYTES * 8);
        let len = bits.div_ceil(32) * 4;
        out[..len].fill(0);
        for (i, slot) in self.reorder.iter().take(bits).enumerate() {
            if slot.is_some() {
                out[i / 8] |= 1 << (i % 8);
            }
        }
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn read_all(q: &mut RecvQueue) -> String {
        let mut buf = [0u8; 256];
        let n = q.read(&mut buf);
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn reorders_and_acks_across_the_wrap() {
        let mut q = RecvQueue::new(Seq(65533), 1000);
        assert_eq!(q.on_data(Seq(65535), b("b")), Received::OutOfOrder);
        assert_eq!(q.on_data(Seq(1), b("d")), Received::OutOfOrder);
        let mut mask = [0u8; MAX_SACK_BYTES];
        // Bits: 65535 (= ack+2, bit 0) and 1 (= ack+4, bit 2).
        assert_eq!(q.sack(&mut mask), Some(4));
        assert_eq!(mask[..4], [0b101, 0, 0, 0]);
        assert_eq!(q.on_data(Seq(65534), b("a")), Received::InOrder);
        assert_eq!(q.ack_nr(), Seq(65535));
        assert_eq!(q.on_data(Seq(65535), b("b")), Received::Duplicate);
        assert_eq!(q.on_data(Seq(0), b("c")), Received::InOrder);
        assert_eq!(q.ack_nr(), Seq(1));
        assert_eq!(read_all(&mut q), "abcd");
        assert_eq!(q.sack(&mut mask), None);
    }

    #[test]
    fn window_shrinks_and_full_buffer_drops() {
        let mut q = RecvQueue::new(Seq(0), 10);
        assert_eq!(q.window(), 10);
        assert_eq!(q.on_data(Seq(1), b("123456")), Received::InOrder);
        assert_eq!(q.window(), 4);
        // Overshoot by one packet is accepted, then the buffer is full.
        assert_eq!(q.on_data(Seq(2), b("789012")), Received::InOrder);
        assert_eq!(q.window(), 0);
        assert_eq!(q.on_data(Seq(3), b("x")), Received::Dropped);
        assert_eq!(q.on_data(Seq(5), b("x")), Received::Dropped);
        let mut buf = [0u8; 12];
        assert_eq!(q.read(&mut buf), 12);
        assert_eq!(q.window(), 10);
        assert_eq!(q.on_data(Seq(3), b("x")), Received::InOrder);
    }

    #[test]
    fn too_far_ahead_is_dropped() {
        let mut q = RecvQueue::new(Seq(0), usize::MAX);
        let far = Seq(0).plus(MAX_INFLIGHT_PACKETS as u16 + 2);
        assert_eq!(q.on_data(far, b("x")), Received::Dropped);
        assert_eq!(q.on_data(far.minus(1), b("x")), Received::OutOfOrder);
    }

    #[test]
    fn fin_ends_the_stream_after_the_gap_fills() {
        let mut q = RecvQueue::new(Seq(10), 100);
        assert_eq!(q.on_data(Seq(12), b("b")), Received::OutOfOrder);
        q.on_fin(Seq(13));
        assert!(!q.eof_reached());
        assert_eq!(q.on_data(Seq(14), b("beyond")), Received::Dropped);
        assert_eq!(q.on_data(Seq(11), b("a")), Received::InOrder);
        assert!(q.eof_reached());
        assert_eq!(q.ack_nr(), Seq(13));
        assert_eq!(read_all(&mut q), "ab");
        assert!(q.is_readable(), "end of stream is readable");
    }

    #[test]
    fn fin_drops_buffered_packets_past_the_end() {
        let mut q = RecvQueue::new(Seq(0), 100);
        assert_eq!(q.on_data(Seq(5), b("late")), Received::OutOfOrder);
        q.on_fin(Seq(3));
        assert_eq!(q.on_data(Seq(1), b("a")), Received::InOrder);
        assert_eq!(q.on_data(Seq(2), b("b")), Received::InOrder);
        assert!(q.eof_reached());
        assert_eq!(read_all(&mut q), "ab");
        assert_eq!(q.window(), 100);
    }

    #[test]
    fn sack_is_capped_and_padded_to_32_bits() {
        let mut q = RecvQueue::new(Seq(0), usize::MAX);
        q.on_data(Seq(3), b("x")); // bit 1
        let mut mask = [0u8; MAX_SACK_BYTES];
        assert_eq!(q.sack(&mut mask), Some(4));
        assert_eq!(mask[0], 0b10);
        q.on_data(Seq(2 + 2000), b("x"));
        assert_eq!(q.sack(&mut mask), Some(MAX_SACK_BYTES));
    }

    #[test]
    fn discarding_keeps_acking_without_buffering() {
        let mut q = RecvQueue::new(Seq(0), 4);
        q.discard();
        for i in 1..10 {
            assert_eq!(q.on_data(Seq(i), b("12345")), Received::InOrder);
        }
        assert_eq!(q.ack_nr(), Seq(9));
        assert_eq!(q.window(), 4);
    }
}
