//! What a connection puts on the wire, in priority order: SYN, tail-loss probe, retransmission
//! or new data within the window, FIN, then a bare ACK (ST_STATE, carrying any selective ACK).

use std::time::Instant;

use super::*;

impl Connection {
    /// Writes the next datagram to send into `out`; `None` when there is nothing to send.
    pub(crate) fn poll_transmit(&mut self, now: Instant, out: &mut Outgoing) -> Option<Transmit> {
        match self.state {
            State::SynSent { .. } if self.need_syn => {
                self.need_syn = false;
                self.emit(now, PacketType::Syn, self.syn_seq, Bytes::new(), out);
                Some(Transmit::Whole)
            }
            State::SynSent { .. } => None,
            State::Closed if self.need_ack && self.error.is_none() => {
                self.need_ack = false;
                self.emit(now, PacketType::State, self.state_seq(), Bytes::new(), out);
                Some(Transmit::Whole)
            }
            State::Closed => None,
            State::Connected => {
                if self.need_probe {
                    self.need_probe = false;
                    if let Some(i) = self.send.probe_candidate() {
                        self.send.mark_probe_sent(i, now);
                        return Some(self.emit_buffered(i, now, out));
                    }
                }
                let window = self.cc.window().min(self.peer_wnd);
                let probe = self.mtu_probe_size(window);
                let size = probe.unwrap_or(self.mtu.size());
                if let Some(i) = self.send.next_to_send(window, size) {
                    let p = self.send.packet(i);
                    if probe == Some(p.payload.len()) && p.transmissions == 0 {
                        self.mtu.probe_sent(p.seq, p.payload.len());
                    }
                    self.send.mark_sent(i, now);
                    let transmit = self.emit_buffered(i, now, out);
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
                    return Some(transmit);
                }
                if self.need_ack {
                    self.emit(now, PacketType::State, self.state_seq(), Bytes::new(), out);
                    return Some(Transmit::Whole);
                }
                None
            }
        }
    }

    /// The size of a packet-size probe to send now: one is due, nothing waits for
    /// retransmission, and enough bytes are queued to fill it. A window too small for the
    /// size the search wants gets a smaller probe that fits, so a small window (a lossy path)
    /// still lets packets grow step by step.
    fn mtu_probe_size(&self, window: usize) -> Option<usize> {
        let room = window.saturating_sub(self.send.bytes_in_flight());
        let size = self.mtu.next_probe()?.min(room);
        (size >= self.mtu.size() + STEP && !self.send.has_lost() && self.send.buffered() >= size)
            .then_some(size)
    }

    /// Sequence number for ST_STATE: the next one to be sent, but never past our FIN —
    /// libtorrent ignores packets numbered beyond the end of the stream.
    fn state_seq(&self) -> Seq {
        self.send.fin_seq().unwrap_or(self.send.next_seq())
    }

    /// Emits the send buffer's packet `i` (data, or the FIN) as it stands.
    fn emit_buffered(&mut self, i: usize, now: Instant, out: &mut Outgoing) -> Transmit {
        let p = self.send.packet(i);
        let kind = if p.fin {
            PacketType::Fin
        } else {
            PacketType::Data
        };
        let (seq, payload, resent) = (p.seq, p.payload.clone(), p.transmissions > 1);
        // A packet-size probe that has to go again counts as lost, however it was found
        // missing (loss rules, tail-loss probe, timeout): an acknowledgement of the second copy
        // could not tell whether the first crossed whole.
        if resent && self.mtu.probe().is_some_and(|(probe, _)| probe == seq) {
            self.mtu.settle(ProbeOutcome::Lost);
        }
        // Only a packet-size probe exceeds the size known to cross; sent again, it was
        // probably too large, and cannot be cut into smaller packets.
        let transmit = if payload.len() > self.mtu.size() && resent {
            Transmit::MayFragment
        } else {
            Transmit::Whole
        };
        self.emit(now, kind, seq, payload, out);
        transmit
    }

    fn emit(
        &mut self,
        now: Instant,
        kind: PacketType,
        seq: Seq,
        payload: Bytes,
        out: &mut Outgoing,
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
        // The datagram limit goes out until the remote has shown it heard us: on the SYN,
        // and on the acceptor's answers to it.
        let limit = (self.cfg.max_datagram > 0
            && (kind == PacketType::Syn || (kind == PacketType::State && !self.heard)))
            .then_some(self.cfg.max_datagram);
        encode_with_limit(&header, sack, limit, &[], &mut out.head);
        out.payload = payload;
        self.last_wnd = wnd;
        self.last_send = now;
        self.need_ack = false;
    }
}
