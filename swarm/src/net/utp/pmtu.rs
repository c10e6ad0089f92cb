//! Packet-size search for one connection: how much payload a µTP packet may carry.
//!
//! Every connection starts at a size that crosses any real path (the floor). It may grow only
//! when the remote said how large a datagram it can receive (the [`EXT_MAX_DATAGRAM`]
//! extension) and the kernel's route to it allows more than the floor without fragmenting;
//! the smaller of the two is the ceiling. Between them the sender probes: one data packet of
//! the probe size at a time, the ceiling first (on loopback and on a LAN the route is the
//! path, so one round trip settles it), then halving the interval. An acknowledged probe
//! raises the floor, a lost one lowers the ceiling below it; the search ends when they are
//! within [`STEP`] bytes. A lost probe is not a congestion signal.
//!
//! [`EXT_MAX_DATAGRAM`]: super::packet::EXT_MAX_DATAGRAM

use super::seq::Seq;

/// The search stops when floor and ceiling are this close, bytes of payload.
pub(crate) const STEP: usize = 256;

/// The outcome of an MTU probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeOutcome {
    /// Acknowledged: packets of its size cross the path.
    Delivered,
    /// Deemed lost: assume it was too large.
    Lost,
}

/// Floor, ceiling and the probe in flight, in payload bytes.
#[derive(Debug, Clone)]
pub(crate) struct MtuSearch {
    floor: usize,
    ceiling: usize,
    tried_ceiling: bool,
    probe: Option<(Seq, usize)>,
}

impl MtuSearch {
    /// A search that starts (and, until [`Self::set_ceiling`], stays) at `floor`.
    pub(crate) fn new(floor: usize) -> Self {
        Self {
            floor,
            ceiling: floor,
            tried_ceiling: false,
            probe: None,
        }
    }

    /// Payload bytes of an ordinary packet: the largest size known to cross.
    pub(crate) fn size(&self) -> usize {
        self.floor
    }

    /// Sets the largest size the remote and the route allow; never below the floor.
    pub(crate) fn set_ceiling(&mut self, ceiling: usize) {
        self.ceiling = ceiling.max(self.floor);
        self.tried_ceiling = false;
    }

    /// The size to probe with now, if a probe is due: none in flight and room left.
    pub(crate) fn next_probe(&self) -> Option<usize> {
        if self.probe.is_some() || self.ceiling < self.floor + STEP {
            return None;
        }
        Some(if self.tried_ceiling {
            self.floor + (self.ceiling - self.floor).div_ceil(2)
        } else {
            self.ceiling
        })
    }

    /// Records that packet `seq` went out as a probe of `size` payload bytes.
    pub(crate) fn probe_sent(&mut self, seq: Seq, size: usize) {
        self.probe = Some((seq, size));
        if size == self.ceiling {
            self.tried_ceiling = true;
        }
    }

    /// The probe in flight: its sequence number and size.
    pub(crate) fn probe(&self) -> Option<(Seq, usize)> {
        self.probe
    }

    /// Settles the probe in flight.
    pub(crate) fn settle(&mut self, outcome: ProbeOutcome) {
        let Some((_, size)) = self.probe.take() else {
            return;
        };
        match outcome {
            ProbeOutcome::Delivered => self.floor = self.floor.max(size),
            ProbeOutcome::Lost => {
                self.ceiling = self.ceiling.min(size.saturating_sub(1)).max(self.floor);
                self.tried_ceiling = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the search against a path that carries up to `path` bytes; returns the sizes tried.
    fn search(floor: usize, ceiling: usize, path: usize) -> (MtuSearch, Vec<usize>) {
        let mut m = MtuSearch::new(floor);
        m.set_ceiling(ceiling);
        let mut tried = Vec::new();
        let mut seq = Seq(0);
        while let Some(size) = m.next_probe() {
            assert!(tried.len() < 32, "search does not end: {tried:?}");
            m.probe_sent(seq, size);
            assert_eq!(m.next_probe(), None, "one probe at a time");
            tried.push(size);
            m.settle(if size <= path {
                ProbeOutcome::Delivered
            } else {
                ProbeOutcome::Lost
            });
            seq = seq.next();
        }
        (m, tried)
    }

    #[test]
    fn a_path_as_large_as_the_ceiling_takes_one_probe() {
        let (m, tried) = search(1352, 65_487, 65_487);
        assert_eq!(tried, vec![65_487]);
        assert_eq!(m.size(), 65_487);
    }

    #[test]
    fn a_smaller_path_is_found_within_a_step_by_halving() {
        let (m, tried) = search(1352, 65_487, 8_972);
        assert_eq!(tried[0], 65_487);
        assert!(m.size() <= 8_972 && m.size() + STEP > 8_972, "{}", m.size());
        assert!(tried.len() <= 10, "{tried:?}");
        // Every probe lay between what was known to cross and what was known not to.
        assert!(tried.iter().all(|&s| s > 1352 && s <= 65_487));
    }

    #[test]
    fn a_path_no_larger_than_the_floor_keeps_the_floor() {
        let (m, tried) = search(1352, 65_487, 1352);
        assert_eq!(m.size(), 1352);
        assert!(tried.len() <= 10, "{tried:?}");
    }

    #[test]
    fn without_a_ceiling_nothing_is_probed() {
        let m = MtuSearch::new(1352);
        assert_eq!(m.next_probe(), None);
        let mut m = MtuSearch::new(1352);
        m.set_ceiling(1352 + STEP - 1);
        assert_eq!(m.next_probe(), None);
        m.set_ceiling(100);
        assert_eq!(m.size(), 1352);
    }
}
