//! Detecting a gateway that lost its mappings, from the epoch it reports (RFC 6887 §8.5,
//! which generalises RFC 6886 §3.6).
//!
//! A server's epoch counts seconds since its mapping state began. If it goes backwards, or
//! advances much slower or faster than our own clock did between two responses, the server
//! restarted (or changed) and every mapping we hold there must be made again.

use std::time::{Duration, Instant};

/// Remembers the last epoch a gateway reported and judges the next one.
#[derive(Debug, Default, Clone)]
pub struct EpochTracker {
    last: Option<(u32, Instant)>,
}

impl EpochTracker {
    /// A tracker that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the epoch of a response received at `now`. Returns true when the gateway has
    /// lost its state since the previous response.
    pub fn observe(&mut self, epoch: u32, now: Instant) -> bool {
        let lost = match self.last {
            None => false,
            Some((prev_epoch, prev_at)) => {
                if u64::from(epoch) + 1 < u64::from(prev_epoch) {
                    true
                } else {
                    // Signed: an epoch one second behind (allowed above) must still count as
                    // "the server's clock went backwards while ours went forward".
                    let client = now.saturating_duration_since(prev_at).as_secs() as i64;
                    let server = i64::from(epoch) - i64::from(prev_epoch);
                    // Each side may drift by 1/16 plus two seconds of rounding and delay.
                    client + 2 < server - server / 16 || server + 2 < client - client / 16
                }
            }
        };
        self.last = Some((epoch, now));
        lost
    }

    /// Forgets the gateway (e.g. when the gateway address changes).
    pub fn reset(&mut self) {
        self.last = None;
    }
}

/// How long after `granted` seconds a mapping should be renewed: at half its lifetime
/// (RFC 6886 §3.7 and RFC 6887 §11.2.1 both suggest renewing well before expiry), and never
/// sooner than one second so a tiny grant cannot make the mapper spin.
pub fn renew_after(granted: Duration) -> Duration {
    (granted / 2).max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_epoch_is_fine() {
        let t0 = Instant::now();
        let mut e = EpochTracker::new();
        assert!(!e.observe(100, t0));
        assert!(!e.observe(160, t0 + Duration::from_secs(60)));
        assert!(
            !e.observe(161, t0 + Duration::from_secs(62)),
            "rounding slack"
        );
        assert!(!e.observe(161, t0 + Duration::from_secs(62)));
    }

    #[test]
    fn epoch_going_back_means_restart() {
        let t0 = Instant::now();
        let mut e = EpochTracker::new();
        e.observe(5, t0);
        assert!(e.observe(1, t0 + Duration::from_secs(3)));
        // After the restart the new epoch is the reference.
        assert!(!e.observe(4, t0 + Duration::from_secs(6)));
        // Going back by one second only is tolerated.
        assert!(!e.observe(3, t0 + Duration::from_secs(6)));
    }

    #[test]
    fn restart_just_after_a_renewal_is_seen() {
        // Renewed at epoch 2; the server restarted right after; two seconds later it says 1.
        let t0 = Instant::now();
        let mut e = EpochTracker::new();
        e.observe(2, t0);
        assert!(e.observe(1, t0 + Duration::from_secs(2)));
    }

    #[test]
    fn epoch_advancing_too_slowly_means_restart() {
        let t0 = Instant::now();
        let mut e = EpochTracker::new();
        e.observe(1000, t0);
        // Ten minutes passed for us, only ten seconds for the server: it restarted at 990+.
        assert!(e.observe(1010, t0 + Duration::from_secs(600)));
    }

    #[test]
    fn epoch_advancing_too_fast_is_invalid() {
        let t0 = Instant::now();
        let mut e = EpochTracker::new();
        e.observe(10, t0);
        assert!(e.observe(5000, t0 + Duration::from_secs(10)));
    }

    #[test]
    fn renewal_at_half_lifetime() {
        assert_eq!(
            renew_after(Duration::from_secs(7200)),
            Duration::from_secs(3600)
        );
        assert_eq!(renew_after(Duration::from_secs(1)), Duration::from_secs(1));
        assert_eq!(renew_after(Duration::ZERO), Duration::from_secs(1));
    }
}
