//! Who we upload to (BEP 3 choking): while downloading, tit-for-tat — the peers that give us
//! the most get our regular upload slots; while seeding, the peers we can upload to fastest.
//! One slot rotates every 30 seconds as an optimistic unchoke, so newcomers get a chance to
//! show what they give back. Sans-IO: the caller passes the clock and the candidates.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::peer::PeerKey;

/// How often the regular slots are reconsidered.
pub const CHOKE_INTERVAL: Duration = Duration::from_secs(10);
/// How long an optimistic unchoke lasts.
pub const OPTIMISTIC_INTERVAL: Duration = Duration::from_secs(30);

/// A peer as the choker sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// The peer.
    pub key: PeerKey,
    /// It wants something from us.
    pub interested: bool,
    /// Bytes/s it gives us (downloading) or we manage to send it (seeding).
    pub rate: f64,
    /// Connected within the last optimistic interval (three times as likely to be picked).
    pub new: bool,
}

/// The choking state of one torrent.
pub struct Choker {
    slots: usize,
    optimistic: Option<PeerKey>,
    optimistic_at: Option<Instant>,
    rng: u64,
}

impl Choker {
    /// A choker with `slots` upload slots (one of them optimistic).
    pub fn new(slots: usize, seed: u64) -> Choker {
        Choker {
            slots: slots.max(1),
            optimistic: None,
            optimistic_at: None,
            rng: seed | 1,
        }
    }

    /// Number of upload slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// The set of peers to have unchoked from now on.
    pub fn decide(&mut self, now: Instant, candidates: &[Candidate]) -> HashSet<PeerKey> {
        let mut interested: Vec<&Candidate> = candidates.iter().filter(|c| c.interested).collect();
        interested.sort_by(|a, b| b.rate.total_cmp(&a.rate).then(a.key.cmp(&b.key)));
        let regular = self.slots.saturating_sub(1).max(1).min(interested.len());
        let mut unchoked: HashSet<PeerKey> = interested[..regular].iter().map(|c| c.key).collect();

        let rest: Vec<&Candidate> = interested[regular..].to_vec();
        let keep = self
            .optimistic
            .filter(|k| rest.iter().any(|c| c.key == *k))
            .filter(|_| {
                self.optimistic_at
                    .is_some_and(|t| now.duration_since(t) < OPTIMISTIC_INTERVAL)
            });
        self.optimistic = match keep {
            Some(k) => Some(k),
            None if !rest.is_empty() => {
                // Weighted draw: new peers count three times.
                let total: u64 = rest.iter().map(|c| if c.new { 3 } else { 1 }).sum();
                let mut pick = self.rand() % total;
                let mut chosen = rest[0].key;
                for c in &rest {
                    let w = if c.new { 3 } else { 1 };
                    if pick < w {
                        chosen = c.key;
                        break;
                    }
                    pick -= w;
                }
                self.optimistic_at = Some(now);
                Some(chosen)
            }
            None => None,
        };
        if let Some(k) = self.optimistic {
            if unchoked.len() < self.slots {
                unchoked.insert(k);
            }
        }
        unchoked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(key: PeerKey, rate: f64, interested: bool) -> Candidate {
        Candidate {
            key,
            interested,
            rate,
            new: false,
        }
    }

    #[test]
    fn fastest_get_regular_slots_plus_one_optimistic() {
        let mut ch = Choker::new(3, 1);
        let now = Instant::now();
        let cands = vec![
            c(1, 10.0, true),
            c(2, 50.0, true),
            c(3, 30.0, true),
            c(4, 99.0, false),
            c(5, 1.0, true),
            c(6, 2.0, true),
        ];
        let u = ch.decide(now, &cands);
        assert_eq!(u.len(), 3);
        assert!(
            u.contains(&2) && u.contains(&3),
            "two fastest interested peers: {u:?}"
        );
        assert!(!u.contains(&4), "uninterested peers take no slot");
        let opt: Vec<_> = u.iter().filter(|k| ![2, 3].contains(*k)).collect();
        assert_eq!(opt.len(), 1);
        // The optimistic slot holds until its interval ends, then may move.
        let again = ch.decide(now + Duration::from_secs(10), &cands);
        assert_eq!(again, u);
        let mut seen = HashSet::new();
        for k in 0..20 {
            let later = ch.decide(
                now + OPTIMISTIC_INTERVAL * (k + 1) + Duration::from_secs(1),
                &cands,
            );
            seen.extend(later.into_iter().filter(|k| ![2, 3].contains(k)));
        }
        assert!(seen.len() >= 2, "optimistic slot rotates: {seen:?}");
        assert!(seen.iter().all(|k| [1, 5, 6].contains(k)));
    }

    #[test]
    fn few_peers_all_unchoked() {
        let mut ch = Choker::new(4, 9);
        let u = ch.decide(Instant::now(), &[c(1, 0.0, true), c(2, 0.0, true)]);
        assert_eq!(u, HashSet::from([1, 2]));
    }
}
