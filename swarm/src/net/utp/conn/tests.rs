//! Two connections joined by a simulated link with a fake clock: delay, loss and reordering
//! from a seeded generator, so every run is the same.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::net::utp::packet::{encode, Packet};

const MSS: usize = 1000;

fn cfg(capacity: usize) -> ConnConfig {
    ConnConfig {
        mss: MSS,
        ip_overhead: 28,
        max_datagram: 0,
        send_capacity: capacity,
        recv_capacity: capacity,
        idle_timeout: Duration::from_secs(120),
    }
}

/// A lossy, reordering, delaying link between `a` (the initiator) and `b` (the acceptor).
struct Sim {
    now: Instant,
    a: Connection,
    b: Option<Connection>,
    /// (delivery time, tiebreak) → (to b?, datagram)
    wire: BTreeMap<(Instant, u64), (bool, Bytes)>,
    serial: u64,
    rng: u64,
    delay: Duration,
    loss_percent: u64,
    jitter: Duration,
    /// Packets sent a→b and b→a.
    sent: [u64; 2],
    /// The route MTU both ends' kernels report, if any.
    route_mtu: Option<usize>,
    /// The largest datagram the path carries whole; larger ones arrive only when they may be
    /// fragmented, and are otherwise dropped (counted in `too_large`).
    path_limit: usize,
    too_large: u64,
    /// Largest datagram sent a→b and b→a.
    largest: [usize; 2],
}

impl Sim {
    fn new(isn_a: u16, capacity: usize) -> Self {
        Self::with_config(isn_a, cfg(capacity))
    }

    fn with_config(isn_a: u16, config: ConnConfig) -> Self {
        let now = Instant::now();
        Self {
            now,
            a: Connection::connect(now, config, 0xfffe, Seq(isn_a)),
            b: None,
            wire: BTreeMap::new(),
            serial: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
            delay: Duration::from_millis(10),
            loss_percent: 0,
            jitter: Duration::ZERO,
            sent: [0; 2],
            route_mtu: None,
            path_limit: usize::MAX,
            too_large: 0,
            largest: [0; 2],
        }
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn b(&mut self) -> &mut Connection {
        self.b.as_mut().expect("accepted")
    }

    /// Moves every packet either side wants to send onto the wire.
    fn flush(&mut self) {
        let mut out = Outgoing::default();
        for to_b in [true, false] {
            loop {
                let now = self.now;
                for c in [Some(&mut self.a), self.b.as_mut()].into_iter().flatten() {
                    if c.wants_route_mtu() {
                        c.set_route_mtu(self.route_mtu);
                    }
                }
                let produced = if to_b {
                    self.a.poll_transmit(now, &mut out)
                } else {
                    match self.b.as_mut() {
                        Some(b) => b.poll_transmit(now, &mut out),
                        None => None,
                    }
                };
                let Some(transmit) = produced else {
                    break;
                };
                let out = out.to_vec();
                self.sent[usize::from(!to_b)] += 1;
                let largest = &mut self.largest[usize::from(!to_b)];
                *largest = (*largest).max(out.len());
                if out.len() > self.path_limit && transmit == Transmit::Whole {
                    self.too_large += 1;
                    continue;
                }
                if self.random() % 100 < self.loss_percent {
                    continue;
                }
                let jitter = if self.jitter.is_zero() {
                    Duration::ZERO
                } else {
                    Duration::from_micros(self.random() % self.jitter.as_micros() as u64)
                };
                self.serial += 1;
                self.wire.insert(
                    (now + self.delay + jitter, self.serial),
                    (to_b, Bytes::copy_from_slice(&out)),
                );
            }
        }
    }

    /// Advances to the next event (a delivery or a timer) and handles it; false if none.
    fn step(&mut self) -> bool {
        self.flush();
        let next_wire = self.wire.keys().next().map(|k| k.0);
        let timers = [
            self.a.poll_timeout(),
            self.b.as_ref().and_then(Connection::poll_timeout),
        ];
        let next = timers.into_iter().flatten().chain(next_wire).min();
        let Some(next) = next else { return false };
        self.now = self.now.max(next);
        while let Some(entry) = self.wire.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let (to_b, data) = entry.remove();
            let packet = Packet::decode(&data).expect("valid packet");
            if to_b {
                match self.b.as_mut() {
                    Some(b) => b.handle(self.now, &packet, &data),
                    None if packet.header.kind == PacketType::Syn => {
                        self.b = Some(Connection::accept(
                            self.now,
                            self.a.cfg.clone(),
                            &packet,
                            Seq(65530),
                        ));
                    }
                    None => {}
                }
            } else {
                self.a.handle(self.now, &packet, &data);
            }
        }
        let now = self.now;
        self.a.handle_timeout(now);
        if let Some(b) = self.b.as_mut() {
            b.handle_timeout(now);
        }
        true
    }

    fn run_until(&mut self, mut done: impl FnMut(&mut Self) -> bool, limit: Duration) {
        let start = self.now;
        while !done(self) {
            assert!(self.step(), "no more events");
            assert!(self.now - start < limit, "not done after {limit:?}");
        }
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Sends `data` from a to b through the simulation, reading as it arrives.
fn transfer(sim: &mut Sim, data: &[u8], limit: Duration) -> Vec<u8> {
    let mut written = 0;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    sim.run_until(
        |s| {
            written += s.a.write(&data[written..]);
            if let Some(b) = s.b.as_mut() {
                loop {
                    let n = b.read(&mut buf);
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
            }
            got.len() == data.len()
        },
        limit,
    );
    got
}

#[test]
fn handshake_data_both_ways_and_close() {
    let mut sim = Sim::new(100, 1 << 20);
    sim.run_until(
        |s| s.a.is_established() && s.b.is_some(),
        Duration::from_secs(1),
    );
    assert_eq!(sim.a.write(b"hello"), 5);
    sim.run_until(|s| s.b().is_readable(), Duration::from_secs(1));
    let mut buf = [0u8; 16];
    assert_eq!(sim.b().read(&mut buf), 5);
    assert_eq!(&buf[..5], b"hello");
    // The acceptor may also speak first on its own.
    assert_eq!(sim.b().write(b"world"), 5);
    sim.run_until(|s| s.a.is_readable(), Duration::from_secs(1));
    assert_eq!(sim.a.read(&mut buf), 5);
    assert_eq!(&buf[..5], b"world");

    sim.a.shutdown();
    sim.run_until(|s| s.b().is_eof(), Duration::from_secs(1));
    assert_eq!(sim.b().read(&mut buf), 0);
    sim.b().shutdown();
    sim.run_until(
        |s| s.a.is_eof() && s.a.is_finished() && s.b().is_finished(),
        Duration::from_secs(10),
    );
    assert_eq!(sim.a.error(), None);
    assert_eq!(sim.b().error(), None);
}

#[test]
fn bulk_transfer_survives_loss_reordering_and_sequence_wrap() {
    // 3 MB in 1000-byte packets is ~3000 packets: both sides' numbers wrap past 65535.
    let mut sim = Sim::new(64000, 256 * 1024);
    sim.loss_percent = 5;
    sim.jitter = Duration::from_millis(8);
    let data = pattern(3_000_000);
    let got = transfer(&mut sim, &data, Duration::from_secs(600));
    assert!(got == data, "stream corrupted");
    eprintln!(
        "lossy: {:?} packets, {:?} simulated",
        sim.sent,
        sim.now - sim.a.epoch
    );
    assert!(
        sim.sent[0] > 3000,
        "retransmissions expected: {:?}",
        sim.sent
    );
    assert_eq!(sim.a.error(), None);
}

#[test]
fn lossless_transfer_fills_the_pipe() {
    let mut sim = Sim::new(1, 1 << 20);
    let data = pattern(4_000_000);
    let start = sim.now;
    let got = transfer(&mut sim, &data, Duration::from_secs(60));
    assert!(got == data);
    let elapsed = (sim.now - start).as_secs_f64();
    // 20 ms round trip, 1 MiB buffers: the ceiling is ~50 MB/s; slow start gets close.
    let rate = data.len() as f64 / elapsed;
    eprintln!(
        "lossless: {rate:.0} B/s, {} packets out, {} back, cwnd/srtt {:?}",
        sim.sent[0],
        sim.sent[1],
        sim.a.stats()
    );
    assert!(rate > 10e6, "{rate:.0} B/s in {elapsed:.2} s");
    // No loss and no queue: almost nothing is sent twice.
    let packets = sim.sent[0];
    assert!(packets < 4_000_000 / MSS as u64 + 100, "{packets} packets");
}

#[test]
fn a_full_receiver_stalls_the_sender_until_it_reads() {
    let mut sim = Sim::new(7, 16 * 1024);
    let data = pattern(64 * 1024);
    let mut written = 0;
    // Nobody reads at b: the sender stops once b's window is shut.
    sim.run_until(
        |s| {
            written += s.a.write(&data[written..]);
            s.b.is_some() && s.b().recv.window() == 0
        },
        Duration::from_secs(5),
    );
    let stalled_at = written;
    for _ in 0..2000 {
        if !sim.step() {
            break;
        }
        written += sim.a.write(&data[written..]);
        if sim.now - sim.a.epoch > Duration::from_secs(20) {
            break;
        }
    }
    assert!(
        written < data.len(),
        "sender must stall, wrote {written} (stalled at {stalled_at})"
    );
    assert_eq!(sim.a.error(), None, "a closed window is not a failure");
    // Reading reopens the window and the rest flows.
    let mut got = vec![0u8; 0];
    let mut buf = vec![0u8; 4096];
    sim.run_until(
        |s| {
            written += s.a.write(&data[written..]);
            loop {
                let n = s.b().read(&mut buf);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            got.len() == data.len()
        },
        Duration::from_secs(60),
    );
    assert!(got == data);
}

#[test]
fn syn_without_answer_fails_after_retries() {
    let now = Instant::now();
    let mut a = Connection::connect(now, cfg(1 << 16), 5, Seq(1));
    let mut out = Outgoing::default();
    let mut syns = 0;
    let mut t = now;
    while a.error().is_none() {
        while a.poll_transmit(t, &mut out).is_some() {
            assert_eq!(
                Packet::decode(&out.head).unwrap().header.kind,
                PacketType::Syn
            );
            syns += 1;
        }
        t = a.poll_timeout().expect("a timer while connecting");
        a.handle_timeout(t);
    }
    assert_eq!(a.error(), Some(ConnError::TimedOut));
    assert_eq!(syns, MAX_SYN_ATTEMPTS);
    // 1 + 2 + 4 + 8 seconds of back-off.
    assert_eq!(t - now, Duration::from_secs(15));
}

#[test]
fn reset_refuses_a_connection_attempt() {
    let mut sim = Sim::new(9, 1 << 16);
    sim.flush();
    let now = sim.now;
    let reset = Header {
        kind: PacketType::Reset,
        conn_id: sim.a.recv_id(),
        timestamp: 0,
        timestamp_diff: 0,
        wnd_size: 0,
        seq_nr: Seq(1),
        ack_nr: Seq(9),
    };
    let mut buf = Vec::new();
    encode(&reset, None, &[], &mut buf);
    let data = Bytes::from(buf);
    sim.a.handle(now, &Packet::decode(&data).unwrap(), &data);
    assert_eq!(sim.a.error(), Some(ConnError::Refused));
    assert!(sim.a.is_finished());
}

#[test]
fn a_vanished_peer_times_out() {
    let mut sim = Sim::new(3, 1 << 16);
    sim.run_until(
        |s| s.b.is_some() && s.a.is_established(),
        Duration::from_secs(1),
    );
    sim.b = None; // the remote disappears
    sim.a.write(&[1u8; 5000]);
    sim.run_until(|s| s.a.error().is_some(), Duration::from_secs(300));
    assert_eq!(sim.a.error(), Some(ConnError::TimedOut));
}

#[test]
fn a_lost_syn_reply_is_repeated() {
    let mut sim = Sim::new(11, 1 << 16);
    sim.flush(); // SYN on the wire
    sim.step(); // b accepts and queues its STATE
    let now = sim.now;
    sim.b().poll_transmit(now, &mut Outgoing::default()); // ... which is lost
    assert!(!sim.a.is_established());
    sim.run_until(|s| s.a.is_established(), Duration::from_secs(3));
}

#[test]
fn idle_connections_send_keepalives() {
    let mut sim = Sim::new(20, 1 << 16);
    sim.run_until(
        |s| s.a.is_established() && s.b.is_some(),
        Duration::from_secs(1),
    );
    sim.run_until(
        |s| s.wire.is_empty() && !s.a.need_ack,
        Duration::from_secs(1),
    );
    let before = sim.sent;
    let start = sim.now;
    sim.run_until(
        |s| s.now - start > KEEPALIVE_INTERVAL * 3,
        Duration::from_secs(120),
    );
    assert!(
        sim.sent[0] - before[0] >= 2,
        "{:?} → {:?}",
        before,
        sim.sent
    );
    assert_eq!(sim.a.error(), None, "keepalives keep both ends alive");
    assert_eq!(sim.b().error(), None);
}

#[test]
fn an_accepted_connection_whose_initiator_stays_silent_is_dropped() {
    let mut sim = Sim::new(30, 1 << 16);
    sim.flush();
    sim.step(); // b accepts
    let accepted_at = sim.now;
    sim.loss_percent = 100; // the initiator vanishes
    sim.run_until(|s| s.b().error().is_some(), Duration::from_secs(60));
    assert_eq!(sim.b().error(), Some(ConnError::TimedOut));
    assert_eq!(sim.now - accepted_at, ACCEPT_SILENCE_TIMEOUT);
}

#[test]
fn an_initiator_that_spoke_keeps_an_idle_connection_open() {
    let mut sim = Sim::new(31, 1 << 16);
    sim.run_until(
        |s| s.a.is_established() && s.b.is_some(),
        Duration::from_secs(1),
    );
    sim.a.write(b"x");
    let start = sim.now;
    sim.run_until(
        |s| s.now - start > ACCEPT_SILENCE_TIMEOUT * 3,
        Duration::from_secs(200),
    );
    assert_eq!(sim.b().error(), None);
}

#[test]
fn only_the_answer_to_our_syn_opens_a_connection() {
    let now = Instant::now();
    let mut a = Connection::connect(now, cfg(1 << 16), 77, Seq(500));
    a.poll_transmit(now, &mut Outgoing::default());
    let reply = |a: &mut Connection, ack: u16| {
        let h = Header {
            kind: PacketType::State,
            conn_id: 77,
            timestamp: 0,
            timestamp_diff: 0,
            wnd_size: 1 << 16,
            seq_nr: Seq(9000),
            ack_nr: Seq(ack),
        };
        let mut buf = Vec::new();
        encode(&h, None, &[], &mut buf);
        let data = Bytes::from(buf);
        a.handle(now, &Packet::decode(&data).unwrap(), &data);
    };
    reply(&mut a, 499);
    reply(&mut a, 1234);
    assert!(!a.is_established());
    reply(&mut a, 500);
    assert!(a.is_established());
    assert_eq!(a.recv.ack_nr(), Seq(8999));
}

/// Configuration of a burrow endpoint over IPv4: 1400-byte packets to start with, and the
/// largest datagram it receives announced.
fn announcing_cfg() -> ConnConfig {
    ConnConfig {
        mss: 1400 - 28 - HEADER_LEN,
        ip_overhead: 28,
        max_datagram: u16::MAX,
        ..cfg(1 << 20)
    }
}

#[test]
fn packets_grow_to_the_route_mtu_between_peers_that_announce_their_limit() {
    let mut sim = Sim::with_config(7, announcing_cfg());
    sim.route_mtu = Some(65_536); // loopback's
    let data = pattern(8 << 20);
    assert_eq!(transfer(&mut sim, &data, Duration::from_secs(30)), data);
    // IPv4 carries at most 65,535 bytes: 65,507 of UDP payload.
    assert_eq!(sim.largest[0], 65_507);
    let stats = sim.a.snapshot();
    assert_eq!(stats.packet_size, 65_507 - HEADER_LEN);
    assert_eq!((stats.losses, stats.retransmissions), (0, 0));
    assert!(
        sim.sent[0] < 8 * 1024,
        "{} packets for 8 MiB: most packets were large",
        sim.sent[0]
    );
}

#[test]
fn a_path_smaller_than_the_route_is_found_and_the_too_large_probe_still_arrives() {
    let mut sim = Sim::with_config(9, announcing_cfg());
    sim.route_mtu = Some(65_536);
    sim.path_limit = 9_000;
    let data = pattern(8 << 20);
    assert_eq!(transfer(&mut sim, &data, Duration::from_secs(60)), data);
    let stats = sim.a.snapshot();
    let size = stats.packet_size + HEADER_LEN;
    assert!(
        size <= 9_000 && size + STEP > 9_000,
        "settled at {size}-byte datagrams"
    );
    // Each too-large probe was lost once, then fragmented; none ended the connection or
    // counted as congestion.
    assert!(
        sim.too_large >= 1 && sim.too_large <= 12,
        "{}",
        sim.too_large
    );
    assert_eq!(stats.timeouts, 0);
    assert_eq!(stats.losses, 0);
}

#[test]
fn without_the_remotes_announcement_packets_keep_their_starting_size() {
    // b announces nothing, as libtorrent does not: a must not send it large datagrams,
    // whatever the route allows.
    let mut sim = Sim::with_config(11, announcing_cfg());
    sim.route_mtu = Some(65_536);
    sim.run_until(|s| s.b.is_some(), Duration::from_secs(1));
    let mut quiet = sim.b.take().unwrap();
    quiet.cfg.max_datagram = 0;
    sim.b = Some(quiet);
    let data = pattern(4 << 20);
    assert_eq!(transfer(&mut sim, &data, Duration::from_secs(30)), data);
    assert_eq!(sim.largest[0], 1400 - 28);
    assert_eq!(sim.a.snapshot().packet_size, 1400 - 28 - HEADER_LEN);
    // ... while b heard a's limit, and may grow its own packets toward a.
    assert_eq!(sim.b().peer_max_datagram, Some(65_535));
}

#[test]
fn without_a_route_mtu_packets_keep_their_starting_size() {
    let mut sim = Sim::with_config(13, announcing_cfg());
    sim.route_mtu = None;
    let data = pattern(2 << 20);
    assert_eq!(transfer(&mut sim, &data, Duration::from_secs(30)), data);
    assert_eq!(sim.largest[0], 1400 - 28);
}
