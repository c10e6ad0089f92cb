//! Transfer-rate caps as token buckets. One bucket is shared by every connection it governs
//! (the whole session, or one torrent); each connection's reader takes tokens for the bytes it
//! read and its writer for the bytes it is about to send, and waits when the bucket is in debt.
//! A reader that waits stops draining its socket, so TCP flow control slows the sender down.
//!
//! The bucket lets a caller take more than it holds and makes the caller wait off the debt:
//! large reads and batched block writes then cost one wait instead of many small ones, and the
//! average rate still equals the cap.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Seconds' worth of the rate that a bucket holds when idle: the largest burst allowed after
/// a quiet spell.
pub const BURST_SECS: f64 = 0.25;
/// Smallest burst, so one block plus its header always fits even at very low rates.
pub const MIN_BURST: f64 = 32.0 * 1024.0;
/// Longest single sleep while waiting for tokens: a waiter looks again this often, so lifting
/// a cap takes effect quickly.
pub const MAX_WAIT_SLICE: Duration = Duration::from_millis(250);
/// Largest read from a socket while a download cap is set; keeps each wait short.
pub const LIMITED_READ_CHUNK: usize = 64 * 1024;

#[derive(Debug)]
struct Bucket {
    /// Bytes per second; 0 means no cap.
    rate: u64,
    /// Tokens available; negative while callers wait off a debt.
    tokens: f64,
    /// When tokens were last counted; `None` for a bucket never used, which starts full.
    last: Option<Instant>,
}

/// A token bucket shared by the connections it caps. Cloning shares the bucket.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    bucket: Arc<Mutex<Bucket>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(0)
    }
}

impl RateLimiter {
    /// A bucket capping at `rate` bytes per second (0: no cap).
    pub fn new(rate: u64) -> RateLimiter {
        RateLimiter {
            bucket: Arc::new(Mutex::new(Bucket {
                rate,
                tokens: 0.0,
                last: None,
            })),
        }
    }

    /// The cap in bytes per second (0: none).
    pub fn rate(&self) -> u64 {
        self.lock().rate
    }

    /// Changes the cap. Debt built up under the old cap is forgiven.
    pub fn set_rate(&self, rate: u64) {
        let mut b = self.lock();
        b.rate = rate;
        b.tokens = b.tokens.max(0.0).min(capacity(rate));
    }

    /// Takes `n` bytes' worth of tokens at `now` and says how long the caller must wait before
    /// using them (zero when the bucket had enough, or when there is no cap).
    pub fn reserve_at(&self, n: usize, now: Instant) -> Duration {
        let mut b = self.lock();
        if b.rate == 0 {
            return Duration::ZERO;
        }
        let rate = b.rate as f64;
        b.tokens = match b.last {
            None => capacity(b.rate),
            Some(l) => (b.tokens + now.saturating_duration_since(l).as_secs_f64() * rate)
                .min(capacity(b.rate)),
        };
        b.last = Some(now);
        b.tokens -= n as f64;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / rate)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        // A panic while holding this lock cannot leave the bucket inconsistent.
        self.bucket.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn capacity(rate: u64) -> f64 {
    (rate as f64 * BURST_SECS).max(MIN_BURST)
}

/// The buckets one direction of a connection draws from (the session's, then the torrent's).
#[derive(Debug, Clone, Default)]
pub struct LimitSet(Vec<RateLimiter>);

impl LimitSet {
    /// A set drawing from each of `limiters`.
    pub fn new(limiters: impl IntoIterator<Item = RateLimiter>) -> LimitSet {
        LimitSet(limiters.into_iter().collect())
    }

    /// Whether any bucket in the set has a cap now.
    pub fn is_limited(&self) -> bool {
        self.0.iter().any(|l| l.rate() > 0)
    }

    /// Takes `n` bytes from every bucket and waits until all of them are out of debt. Waits
    /// in slices so a cap that is lifted meanwhile stops the wait.
    pub async fn acquire(&self, n: usize) {
        if self.0.is_empty() {
            return;
        }
        // The tokio clock, so tests with a paused clock see time move.
        let now = tokio::time::Instant::now().into_std();
        let deadlines: Vec<Instant> = self.0.iter().map(|l| now + l.reserve_at(n, now)).collect();
        loop {
            let now = tokio::time::Instant::now().into_std();
            // Only buckets that still have a cap keep the caller waiting.
            let until = self
                .0
                .iter()
                .zip(&deadlines)
                .filter(|(l, _)| l.rate() > 0)
                .map(|(_, d)| *d)
                .max();
            match until {
                Some(d) if d > now => tokio::time::sleep((d - now).min(MAX_WAIT_SLICE)).await,
                _ => return,
            }
        }
    }
}

/// The buckets a connection is subject to, per direction.
#[derive(Debug, Clone, Default)]
pub struct LinkLimits {
    /// Bytes received.
    pub down: LimitSet,
    /// Bytes sent.
    pub up: LimitSet,
}

/// A pair of buckets, one per direction: the caps of a session or of one torrent.
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    /// Download cap.
    pub down: RateLimiter,
    /// Upload cap.
    pub up: RateLimiter,
}

impl RateLimits {
    /// Sets both caps in bytes per second (0: none).
    pub fn set(&self, down: u64, up: u64) {
        self.down.set_rate(down);
        self.up.set_rate(up);
    }

    /// The limits of a connection governed by `self` and then `inner`.
    pub fn with(&self, inner: &RateLimits) -> LinkLimits {
        LinkLimits {
            down: LimitSet::new([self.down.clone(), inner.down.clone()]),
            up: LimitSet::new([self.up.clone(), inner.up.clone()]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_cap_never_waits() {
        let l = RateLimiter::new(0);
        let t = Instant::now();
        assert_eq!(l.reserve_at(10_000_000, t), Duration::ZERO);
    }

    #[test]
    fn average_rate_matches_the_cap() {
        // 100 kB/s; a caller taking 16 KiB blocks back to back, waiting as told.
        let l = RateLimiter::new(100_000);
        let t0 = Instant::now();
        let mut now = t0;
        let mut sent = 0u64;
        while now.duration_since(t0) < Duration::from_secs(10) {
            now += l.reserve_at(16_384, now);
            sent += 16_384;
        }
        let secs = now.duration_since(t0).as_secs_f64();
        let rate = sent as f64 / secs;
        // The first burst is allowed on top of the rate; over 10 s it is a few percent.
        assert!((95_000.0..=110_000.0).contains(&rate), "rate {rate}");
    }

    #[test]
    fn idle_time_refills_only_up_to_the_burst() {
        let l = RateLimiter::new(1_000_000);
        let t0 = Instant::now();
        assert_eq!(l.reserve_at(0, t0), Duration::ZERO);
        // After a long idle spell only BURST_SECS worth is available.
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(l.reserve_at(250_000, t1), Duration::ZERO);
        let w = l.reserve_at(100_000, t1);
        assert!((w.as_secs_f64() - 0.1).abs() < 0.001, "{w:?}");
    }

    #[test]
    fn lifting_the_cap_forgives_debt() {
        let l = RateLimiter::new(1000);
        let t = Instant::now();
        assert!(l.reserve_at(1_000_000, t) > Duration::from_secs(100));
        l.set_rate(0);
        assert_eq!(l.reserve_at(1_000_000, t), Duration::ZERO);
        l.set_rate(1000);
        assert!(l.reserve_at(1000, t) < Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_set_waits_for_its_slowest_bucket() {
        let fast = RateLimiter::new(1_000_000);
        let slow = RateLimiter::new(10_000);
        let set = LimitSet::new([fast, slow.clone()]);
        let t0 = tokio::time::Instant::now();
        // 32 KiB burst, then 20 kB of debt at 10 kB/s: about 2 s.
        set.acquire(MIN_BURST as usize + 20_000).await;
        let waited = t0.elapsed().as_secs_f64();
        assert!((1.9..2.2).contains(&waited), "{waited}");
        // Lifting the slow cap ends a wait early.
        let s2 = set.clone();
        let h = tokio::spawn(async move { s2.acquire(1_000_000).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        slow.set_rate(0);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(h.is_finished());
    }
}
