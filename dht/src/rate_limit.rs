//! Per-source rate limiting of incoming queries: a token bucket per IPv4 address or IPv6 /64.
//!
//! Buckets live in a fixed array indexed by a keyed hash of the source, so memory is constant no
//! matter how many sources (or spoofed sources) send to us. Sources that collide share a bucket,
//! which only ever makes the limit stricter; the random key keeps an attacker from aiming
//! collisions at a chosen victim.

use std::net::IpAddr;
use std::time::Instant;

use rand::RngCore;

/// Number of token buckets.
pub const RATE_LIMIT_SLOTS: usize = 4096;

/// Default sustained queries per second accepted from one source.
pub const DEFAULT_QUERIES_PER_SEC: u32 = 20;

/// Default burst of queries accepted from one source.
pub const DEFAULT_QUERY_BURST: u32 = 60;

/// A token-bucket limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained rate, per second.
    pub per_second: u32,
    /// Bucket size: how many queries may arrive at once.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: DEFAULT_QUERIES_PER_SEC,
            burst: DEFAULT_QUERY_BURST,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    tokens: f32,
    last_ms: u64,
}

/// Token buckets for all sources.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    slots: Box<[Slot]>,
    key: [u64; 2],
    limit: RateLimit,
    epoch: Instant,
}

impl RateLimiter {
    /// Empty buckets (every source starts with a full burst).
    pub fn new(limit: RateLimit, rng: &mut impl RngCore, now: Instant) -> RateLimiter {
        RateLimiter::with_slots(limit, RATE_LIMIT_SLOTS, rng, now)
    }

    /// Like [`RateLimiter::new`] with `slots` token buckets (at least one) instead of
    /// [`RATE_LIMIT_SLOTS`]: a busy router hears from so many sources that a few thousand
    /// buckets would be shared by unrelated ones. Each bucket takes 16 bytes.
    pub fn with_slots(
        limit: RateLimit,
        slots: usize,
        rng: &mut impl RngCore,
        now: Instant,
    ) -> RateLimiter {
        let full = Slot {
            tokens: limit.burst as f32,
            last_ms: 0,
        };
        RateLimiter {
            slots: vec![full; slots.max(1)].into_boxed_slice(),
            key: [rng.next_u64(), rng.next_u64()],
            limit,
            epoch: now,
        }
    }

    fn slot(&self, ip: IpAddr) -> usize {
        let x = match ip {
            IpAddr::V4(v4) => u64::from(u32::from(v4)),
            IpAddr::V6(v6) => (u128::from(v6) >> 64) as u64 ^ (1 << 63),
        };
        let mut h = (x ^ self.key[0]).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
        h = (h ^ self.key[1]).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 32;
        (h as usize) % self.slots.len()
    }

    /// Takes one token for `ip`; false if its bucket is empty.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        let i = self.slot(ip);
        let s = &mut self.slots[i];
        let elapsed = now_ms.saturating_sub(s.last_ms) as f32 / 1000.0;
        s.tokens = (s.tokens + elapsed * self.limit.per_second as f32).min(self.limit.burst as f32);
        s.last_ms = now_ms;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::time::Duration;

    #[test]
    fn burst_then_sustained_rate() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let t0 = Instant::now();
        let limit = RateLimit {
            per_second: 10,
            burst: 30,
        };
        let mut rl = RateLimiter::new(limit, &mut rng, t0);
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let allowed = (0..100).filter(|_| rl.allow(ip, t0)).count();
        assert_eq!(allowed, 30);
        // Over the next ten seconds roughly ten per second get through.
        let mut ok = 0;
        for ms in (0..10_000).step_by(10) {
            if rl.allow(ip, t0 + Duration::from_millis(ms + 10)) {
                ok += 1;
            }
        }
        assert!((99..=101).contains(&ok), "{ok}");
    }

    #[test]
    fn sources_are_independent_and_v6_limited_per_64() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(
            RateLimit {
                per_second: 1,
                burst: 2,
            },
            &mut rng,
            t0,
        );
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let mut b: IpAddr = "198.51.100.2".parse().unwrap();
        // Pick a second source that does not share a slot with the first.
        let mut n = 2;
        while rl.slot(a) == rl.slot(b) {
            n += 1;
            b = format!("198.51.100.{n}").parse().unwrap();
        }
        assert!(rl.allow(a, t0) && rl.allow(a, t0) && !rl.allow(a, t0));
        assert!(rl.allow(b, t0));
        let x: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let y: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        assert!(rl.allow(x, t0) && rl.allow(y, t0));
        assert!(!rl.allow(x, t0), "one bucket per /64");
    }
}
