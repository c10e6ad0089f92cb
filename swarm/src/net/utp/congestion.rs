//! Congestion control for µTP: LEDBAT (RFC 6817) as BEP 29 applies it, plus the round-trip
//! estimator that sets the retransmission timeout (BEP 29 "timeouts").
//!
//! LEDBAT steers the window by the one-way queuing delay of our packets: the remote echoes
//! how long our packets took (`timestamp_difference_microseconds`, against its unsynchronised
//! clock); the minimum over the last minutes is the base delay, anything above it is queue.
//! Below [`TARGET_DELAY`] the window grows as RFC 6817 says (at most one packet per round
//! trip, like TCP's additive increase). Above it the window shrinks multiplicatively, in
//! proportion to how far the delay overshoots (LEDBAT++, draft-irtf-iccrg-ledbat-plus-plus
//! §4.2): by (delay/target − 1) of the window per round trip, at most half. RFC 6817's linear
//! decrease of one packet per round trip took minutes to hand a 50 Mbit/s link to a TCP flow
//! in our measurements; this takes seconds. Loss halves the window as in TCP. A slow start
//! (doubling per round trip) runs until the first loss or until queuing delay reaches half the
//! target, so a fast path fills in a few round trips rather than thousands.

use std::time::{Duration, Instant};

/// Queuing delay LEDBAT aims for (BEP 29: 100 ms).
pub const TARGET_DELAY: Duration = Duration::from_millis(100);

/// Slow start ends once queuing delay exceeds this share of the target.
const SLOW_START_EXIT_DELAY: Duration = Duration::from_millis(50);

/// Smallest window, in packets (RFC 6817 MIN_CWND).
pub const MIN_CWND_PACKETS: usize = 2;

/// Initial window, in packets.
const INIT_CWND_PACKETS: usize = 4;

/// Largest share of the window given up per round trip when the delay is above target.
const MAX_DECREASE_PER_RTT: f64 = 0.5;

/// Most the window may grow beyond the bytes actually in flight, in packets (RFC 6817
/// ALLOWED_INCREASE): an application that does not fill the window does not inflate it.
const ALLOWED_INCREASE_PACKETS: usize = 1;

/// Span of one base-delay bucket, and how many buckets the base delay is the minimum of: the
/// base delay forgets a minimum after one to two minutes (BEP 29: "the last two minutes").
const BASE_BUCKET: Duration = Duration::from_secs(60);
const BASE_BUCKETS: usize = 2;

/// Delay samples the current-delay filter takes the minimum of (RFC 6817 NOISE_FILTER).
const CURRENT_FILTER: usize = 8;

/// Retransmission timeout before any round trip was measured (BEP 29: 1000 ms).
pub const INITIAL_RTO: Duration = Duration::from_millis(1000);

/// Lower bound of the retransmission timeout (BEP 29: 500 ms).
pub const MIN_RTO: Duration = Duration::from_millis(500);

/// Upper bound of the retransmission timeout after backing off.
pub const MAX_RTO: Duration = Duration::from_secs(30);

/// Smoothed round-trip time and its variance (BEP 29's formulas, RFC 6298's shape).
#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl Default for RttEstimator {
    fn default() -> Self {
        Self {
            srtt: None,
            rttvar: Duration::ZERO,
        }
    }
}

impl RttEstimator {
    /// Adds a sample from a packet that was sent once and is now acknowledged.
    pub fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// The smoothed round-trip time, if measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The retransmission timeout: srtt + 4·rttvar, at least [`MIN_RTO`].
    pub fn rto(&self) -> Duration {
        match self.srtt {
            None => INITIAL_RTO,
            Some(srtt) => (srtt + self.rttvar * 4).clamp(MIN_RTO, MAX_RTO),
        }
    }
}

/// Wrapping comparison of two delay samples: microsecond differences of two unsynchronised
/// 32-bit clocks, which wrap every 71 minutes but never move that far within the base window.
fn lower(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) > 0
}

/// The LEDBAT window.
#[derive(Debug, Clone)]
pub struct Ledbat {
    mss: usize,
    cwnd: f64,
    slow_start: bool,
    /// Minimum delay sample per bucket, newest last.
    base: [Option<u32>; BASE_BUCKETS],
    bucket_started: Instant,
    current: [u32; CURRENT_FILTER],
    current_len: usize,
    current_next: usize,
    last_cut: Option<Instant>,
}

impl Ledbat {
    /// Packets now carry `mss` payload bytes (the packet-size search raised it).
    pub fn set_mss(&mut self, mss: usize) {
        self.mss = mss;
    }

    /// A controller for packets of `mss` payload bytes.
    pub fn new(mss: usize, now: Instant) -> Self {
        Self {
            mss,
            cwnd: (INIT_CWND_PACKETS * mss) as f64,
            slow_start: true,
            base: [None; BASE_BUCKETS],
            bucket_started: now,
            current: [0; CURRENT_FILTER],
            current_len: 0,
            current_next: 0,
            last_cut: None,
        }
    }

    /// The congestion window, bytes.
    pub fn window(&self) -> usize {
        self.cwnd as usize
    }

    /// Whether slow start is still running.
    pub fn in_slow_start(&self) -> bool {
        self.slow_start
    }

    /// Records a one-way delay sample of our packets (the remote's timestamp difference).
    pub fn on_delay_sample(&mut self, now: Instant, sample: u32) {
        if now.duration_since(self.bucket_started) >= BASE_BUCKET {
            self.base.rotate_left(1);
            self.base[BASE_BUCKETS - 1] = None;
            self.bucket_started = now;
        }
        let newest = &mut self.base[BASE_BUCKETS - 1];
        if newest.is_none_or(|b| lower(sample, b)) {
            *newest = Some(sample);
        }
        self.current[self.current_next] = sample;
        self.current_next = (self.current_next + 1) % CURRENT_FILTER;
        self.current_len = (self.current_len + 1).min(CURRENT_FILTER);
    }

    /// The current queuing delay estimate, once samples exist.
    pub fn queuing_delay(&self) -> Option<Duration> {
        let base = self
            .base
            .iter()
            .flatten()
            .copied()
            .reduce(|a, b| if lower(b, a) { b } else { a })?;
        let current = self.current[..self.current_len]
            .iter()
            .copied()
            .reduce(|a, b| if lower(b, a) { b } else { a })?;
        let queued = current.wrapping_sub(base) as i32;
        Some(Duration::from_micros(queued.max(0) as u64))
    }

    /// Grows or shrinks the window for `acked` newly acknowledged bytes; `in_flight` is what
    /// was outstanding before the acknowledgement.
    pub fn on_ack(&mut self, acked: usize, in_flight: usize) {
        if acked == 0 {
            return;
        }
        let mss = self.mss as f64;
        let delay = self.queuing_delay();
        let grown = if self.slow_start {
            if delay.is_some_and(|d| d > SLOW_START_EXIT_DELAY) {
                self.slow_start = false;
                self.cwnd
            } else {
                self.cwnd + acked as f64
            }
        } else {
            self.cwnd
        };
        let new = if self.slow_start {
            grown
        } else {
            let target = TARGET_DELAY.as_secs_f64();
            let queued = delay.map_or(0.0, |d| d.as_secs_f64());
            if queued <= target {
                let off_target = (target - queued) / target;
                self.cwnd + off_target * acked as f64 * mss / self.cwnd
            } else {
                // A window's worth of ACKs arrives per round trip, so giving up this share of
                // every ACK gives up this share of the window per round trip.
                let share = (queued / target - 1.0).min(MAX_DECREASE_PER_RTT);
                self.cwnd - share * acked as f64
            }
        };
        if new > self.cwnd {
            // Growth only while the window is actually used (RFC 6817 ALLOWED_INCREASE).
            let headroom = if self.slow_start {
                acked as f64
            } else {
                ALLOWED_INCREASE_PACKETS as f64 * mss
            };
            let limit = (in_flight as f64 + headroom).max(self.cwnd);
            self.cwnd = new.min(limit);
        } else {
            self.cwnd = new;
        }
        self.cwnd = self.cwnd.max((MIN_CWND_PACKETS * self.mss) as f64);
    }

    /// Halves the window for a loss, at most once per round trip (`srtt`).
    pub fn on_loss(&mut self, now: Instant, srtt: Duration) {
        self.slow_start = false;
        if self.last_cut.is_some_and(|t| now.duration_since(t) < srtt) {
            return;
        }
        self.last_cut = Some(now);
        self.cwnd = (self.cwnd / 2.0).max((MIN_CWND_PACKETS * self.mss) as f64);
    }

    /// Collapses the window to one packet after a retransmission timeout (RFC 6817 §2.4.2).
    pub fn on_timeout(&mut self) {
        self.slow_start = false;
        self.cwnd = self.mss as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    #[test]
    fn rto_follows_bep29() {
        let mut r = RttEstimator::default();
        assert_eq!(r.rto(), INITIAL_RTO);
        r.sample(Duration::from_millis(100));
        assert_eq!(r.srtt(), Some(Duration::from_millis(100)));
        // 100 + 4·50 = 300, raised to the 500 ms floor.
        assert_eq!(r.rto(), MIN_RTO);
        for _ in 0..50 {
            r.sample(Duration::from_millis(400));
        }
        let srtt = r.srtt().unwrap();
        assert!(srtt > Duration::from_millis(390) && srtt <= Duration::from_millis(400));
        assert!(r.rto() >= srtt);
    }

    fn feed(l: &mut Ledbat, now: Instant, base: u32, queued_ms: u32) {
        for _ in 0..CURRENT_FILTER {
            l.on_delay_sample(now, base.wrapping_add(queued_ms * 1000));
        }
    }

    #[test]
    fn slow_start_doubles_until_delay_builds() {
        let now = Instant::now();
        let mut l = Ledbat::new(MSS, now);
        feed(&mut l, now, 5_000, 0);
        let w0 = l.window();
        l.on_ack(w0, w0);
        assert_eq!(l.window(), 2 * w0);
        // 60 ms of queue: slow start ends, the window stops doubling.
        feed(&mut l, now, 5_000, 60);
        let w1 = l.window();
        l.on_ack(w1, w1);
        assert!(!l.in_slow_start());
        assert!(l.window() <= w1 + MSS);
    }

    #[test]
    fn below_target_grows_one_packet_per_window_and_above_shrinks_in_proportion() {
        let now = Instant::now();
        let mut l = Ledbat::new(MSS, now);
        l.on_loss(now, Duration::from_millis(10)); // leave slow start
        l.cwnd = (20 * MSS) as f64;
        feed(&mut l, now, 1_000, 0);
        l.on_ack(20 * MSS, 20 * MSS);
        assert_eq!(l.window(), 21 * MSS);
        // At the target the window holds.
        feed(&mut l, now + BASE_BUCKET / 2, 1_000, 100);
        l.on_ack(21 * MSS, 21 * MSS);
        assert_eq!(l.window(), 21 * MSS);
        // 10% over the target: a tenth of the window goes per window acknowledged.
        feed(&mut l, now + BASE_BUCKET / 2, 1_000, 110);
        l.on_ack(20 * MSS, 21 * MSS);
        assert_eq!(l.window(), 19 * MSS);
        // Three times the target: at most half goes per window acknowledged.
        feed(&mut l, now + BASE_BUCKET / 2, 1_000, 300);
        l.on_ack(19 * MSS, 19 * MSS);
        assert_eq!(l.window(), 19 * MSS / 2);
    }

    #[test]
    fn an_application_limited_sender_does_not_inflate_the_window() {
        let now = Instant::now();
        let mut l = Ledbat::new(MSS, now);
        l.on_loss(now, Duration::from_millis(10));
        l.cwnd = (50 * MSS) as f64;
        feed(&mut l, now, 0, 0);
        for _ in 0..100 {
            l.on_ack(MSS, 2 * MSS);
        }
        assert_eq!(l.window(), 50 * MSS);
    }

    #[test]
    fn loss_halves_once_per_rtt_and_timeout_collapses() {
        let now = Instant::now();
        let mut l = Ledbat::new(MSS, now);
        l.cwnd = (40 * MSS) as f64;
        let rtt = Duration::from_millis(50);
        l.on_loss(now, rtt);
        assert_eq!(l.window(), 20 * MSS);
        l.on_loss(now + Duration::from_millis(10), rtt);
        assert_eq!(l.window(), 20 * MSS);
        l.on_loss(now + Duration::from_millis(60), rtt);
        assert_eq!(l.window(), 10 * MSS);
        for i in 0..10 {
            l.on_loss(now + Duration::from_secs(1 + i), rtt);
        }
        assert_eq!(l.window(), MIN_CWND_PACKETS * MSS);
        l.on_timeout();
        assert_eq!(l.window(), MSS);
    }

    #[test]
    fn base_delay_handles_wrapping_clocks_and_expires() {
        let now = Instant::now();
        let mut l = Ledbat::new(MSS, now);
        // Samples straddling the 32-bit wrap: the base is the one just below it.
        l.on_delay_sample(now, u32::MAX - 1_000);
        l.on_delay_sample(now, 9_000);
        assert_eq!(l.queuing_delay(), Some(Duration::ZERO));
        for _ in 0..CURRENT_FILTER {
            l.on_delay_sample(now, 9_000);
        }
        assert_eq!(l.queuing_delay(), Some(Duration::from_micros(10_001)));
        // After two buckets without the low sample, the base rises to what is seen now.
        l.on_delay_sample(now + BASE_BUCKET, 9_000);
        l.on_delay_sample(now + 2 * BASE_BUCKET, 9_000);
        assert_eq!(l.queuing_delay(), Some(Duration::ZERO));
    }
}
