//! What to download and in which order, as the user chose it: piece ranks from file
//! priorities (see `torrent::selection`) and sequential picking for streaming. Chosen before
//! storage is checked, they are kept and applied when the picker starts.

use super::{Phase, TorrentCore};

impl TorrentCore {
    /// Sets each piece's rank: 0 not wanted, higher ranks first. Pieces already started keep
    /// going; a complete torrent starts downloading again when more becomes wanted, and one
    /// that has everything now wanted completes.
    pub fn set_ranks(&mut self, ranks: Vec<u8>) {
        match &mut self.picker {
            Some(p) => {
                p.set_ranks(ranks);
                self.after_have_changed();
                self.check_complete();
                self.fill_all_requests();
            }
            None => self.pending_ranks = Some(ranks),
        }
    }

    /// Turns in-order picking on or off.
    pub fn set_sequential(&mut self, on: bool) {
        self.sequential = on;
        if let Some(p) = &mut self.picker {
            p.set_sequential(on);
        }
    }

    /// Whether pieces are picked in order.
    pub fn is_sequential(&self) -> bool {
        self.sequential
    }

    /// Each piece's rank, once the picker runs.
    pub fn ranks(&self) -> Option<&[u8]> {
        self.picker.as_ref().map(|p| p.ranks())
    }

    /// Applies what was chosen before the picker started.
    pub(super) fn apply_selection(&mut self) {
        if let Some(p) = &mut self.picker {
            p.set_sequential(self.sequential);
            if let Some(r) = self.pending_ranks.take() {
                p.set_ranks(r);
            }
        }
        if self.phase == Phase::Complete {
            self.check_complete();
        }
    }
}
