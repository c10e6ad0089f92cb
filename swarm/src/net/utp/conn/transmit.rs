//! What a connection puts on the wire, in priority order: SYN, tail-loss probe, retransmission
//! or new data within the window, FIN, then a bare ACK (ST_STATE, carrying any selective ACK).

use std::time::Instant;

use super::*;

impl Connection {
    /// Writes the next datagram to send into `out`; false when there is nothing to send.
    pub(crate) fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        match self.state {
            State::SynSent { .. } if self.need_syn => {
                self.need_syn = false;
                self.emit(now, PacketType::Syn, self.syn_seq, &[], out);
                true
            }
            State::SynSent { .. } => false,
            State::Closed if self.need_ack && self.error.is_none() => {
                self.need_ack = false;
                self.emit(now, PacketType::State, self.state_seq(), &[], out);
                true
            }
            State::Closed => false,
            State::Connected => {
                if self.need_probe {
                    self.need_probe = false;
                    if let Some(i) = self.send.probe_candidate() {
                        self.send.mark_probe_sent(i, now);
                        self.emit_buffered(i, now, out);
                        return true;
                    }
                }
                let window = self.cc.window().min(self.peer_wnd);
                if let Some(i) = self.send.next_to_send(window, self.cfg.mss) {
                    self.send.mark_sent(i, now);
                    self.emit_buffered(i, now, out);
                    // Selective ACKs ride only on ST_STATE, so data packets stay within the
                    // MTU; while a gap exists, a STATE follows each data packet.
                    self.need_ack = self.recv.has_gap();
                    if self.rto_deadline.is_none() {
                        self.rto_deadline = Some(now + self.rtt.rto());
                    }
                    // A tail-loss probe a couple of round trips after the last packet sent,
                    // once per stretch without acknowledgements (RFC 8985 §7).
                    if self.probe_armed {
                        if let Some(srtt) = self.rtt.srtt() {
                            self.probe_deadline = Some(now + (2 * srtt).max(MIN_PROBE_TIMEOUT));
                        }
                    }
                    return true;
                }
                if self.need_ack {
                    self.emit(now, PacketType::State, self.state_seq(), &[], out);
                    return true;
                }
                false
            }
        }
    }

    /// Sequence number for ST_STATE: the next one to be sent, but never past our FIN —
    /// libtorrent ignores packets numbered beyond the end of the stream.
    fn state_seq(&self) -> Seq {
        self.send.fin_seq().unwrap_or(self.send.next_seq())
    }

    /// Emits the send buffer's packet `i` (data, or the FIN) as it stands.
    fn emit_buffered(&mut self, i: usize, now: Instant, out: &mut Vec<u8>) {
        let p = self.send.packet(i);
        let kind = if p.fin { PacketType::Fin } else { PacketType::Data };
        let (seq, payload) = (p.seq, p.payload.clone());
        self.emit(now, kind, seq, &payload, out);
    }

    fn emit(
        &mut self,
        now: Instant,
        kind: PacketType,
        seq: Seq,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) {
        let wnd = self.recv.window();
        let header = Header {
            kind,
            conn_id: if kind == PacketType::Syn {
                self.recv_id
            } else {
                self.send_id
            },
            timestamp: self.micros(now),
            timestamp_diff: self.reply_micro,
            wnd_size: wnd.min(u32::MAX as usize) as u32,
            seq_nr: seq,
            ack_nr: if kind == PacketType::Syn {
                Seq(0)
            } else {
                self.recv.ack_nr()
            },
        };
        let mut mask = [0u8; MAX_SACK_BYTES];
        let sack = if kind == PacketType::State {
            self.recv.sack(&mut mask).map(|len| &mask[..len])
        } else {
            None
        };
        encode(&header, sack, payload, out);
        self.last_wnd = wnd;
        self.last_send = now;
        self.need_ack = false;
    }
}
