//! Transfer rates as exponentially weighted averages, updated once per tick.

use std::time::Instant;

/// Bytes per second over the last few seconds.
#[derive(Debug, Default, Clone)]
pub struct RateMeter {
    pending: u64,
    total: u64,
    rate: f64,
    last: Option<Instant>,
}

impl RateMeter {
    /// Counts `n` bytes transferred now.
    pub fn add(&mut self, n: u64) {
        self.pending += n;
        self.total += n;
    }

    /// Folds the bytes since the last tick into the average.
    pub fn tick(&mut self, now: Instant) {
        let Some(last) = self.last.replace(now) else {
            self.pending = 0;
            return;
        };
        let dt = now.duration_since(last).as_secs_f64();
        if dt <= 0.0 {
            return;
        }
        let sample = self.pending as f64 / dt;
        self.pending = 0;
        // Weight of the newest second: reacts within a few seconds, smooth enough for choking.
        self.rate = self.rate * 0.6 + sample * 0.4;
    }

    /// The current rate in bytes per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Bytes counted since creation.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn converges_to_a_steady_rate() {
        let mut m = RateMeter::default();
        let t0 = Instant::now();
        m.tick(t0);
        for s in 1..=20 {
            m.add(1000);
            m.tick(t0 + Duration::from_secs(s));
        }
        assert!((m.rate() - 1000.0).abs() < 1.0, "{}", m.rate());
        assert_eq!(m.total(), 20_000);
        for s in 21..=40 {
            m.tick(t0 + Duration::from_secs(s));
        }
        assert!(m.rate() < 1.0);
    }
}
