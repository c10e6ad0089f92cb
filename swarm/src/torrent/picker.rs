//! Which blocks to ask which peer for: rarest-first with a few random first pieces, partial
//! pieces finished before new ones start, a cap on pieces held in memory, and endgame
//! (duplicate requests for the last outstanding blocks). Sans-IO and deterministic given its
//! seed, so the whole policy is unit-tested.

use std::collections::{BTreeSet, HashMap};

use super::bitfield::Bitfield;
use crate::types::{BlockRef, PieceIndex, BLOCK_SIZE};

/// Pieces picked at random (rather than rarest-first) until this many are complete, so a new
/// peer soon has something to trade.
pub const RANDOM_FIRST_PIECES: u32 = 4;
/// In endgame, how many peers may be asked for the same block at once.
pub const MAX_DUPLICATE_REQUESTS: u8 = 2;
/// In sequential mode, how far ahead of the first missing piece pieces are taken in order;
/// beyond it, rarest-first as usual, so rare pieces still spread through the swarm.
pub const SEQUENTIAL_WINDOW_BYTES: u64 = 32 * 1024 * 1024;
/// Fewest and most pieces in the sequential window, whatever the piece size.
pub const SEQUENTIAL_WINDOW_PIECES: (u32, u32) = (4, 1024);
/// The rank of a wanted piece when no priorities are given.
pub const NORMAL_RANK: u8 = 2;

/// Queue order: higher rank first, then rarer, then a random tie-break.
type QueueKey = (u8, u16, u32, u32);

/// What a peer has, for picking.
#[derive(Clone, Copy)]
pub enum Has<'a> {
    /// Every piece.
    All,
    /// Exactly these.
    Some(&'a Bitfield),
}

impl Has<'_> {
    fn get(&self, i: u32) -> bool {
        match self {
            Has::All => true,
            Has::Some(b) => b.get(i),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Block {
    Free,
    Requested(u8),
    Received,
}

#[derive(Debug)]
struct Partial {
    blocks: Vec<Block>,
    free: u32,
    received: u32,
}

/// What [`Picker::block_received`] made of a block.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Received {
    /// Not a block we are waiting for (unknown piece, already have it, or a duplicate).
    Unwanted,
    /// Stored; the piece still misses blocks. `duplicated`: other peers were asked for the
    /// same block (endgame) and should be sent a cancel.
    Stored {
        /// Requested from more than one peer.
        duplicated: bool,
    },
    /// Stored, and it was the piece's last missing block: verify the piece now.
    PieceComplete {
        /// Requested from more than one peer.
        duplicated: bool,
    },
}

/// The piece picker of one torrent.
pub struct Picker {
    piece_length: u32,
    total_length: u64,
    have: Bitfield,
    wanted: Bitfield,
    /// Each piece's rank: 0 not wanted, higher picked first (see `selection`).
    ranks: Vec<u8>,
    /// Pieces within the window ahead of the first missing one go in index order.
    sequential: bool,
    /// No wanted piece before this one is missing (sequential mode's reading position).
    cursor: u32,
    /// Availability among peers that are not seeds (seeds raise all pieces alike, so they
    /// are counted once in `seeds` and do not disturb the order).
    avail: Vec<u16>,
    seeds: u32,
    tiebreak: Vec<u32>,
    /// Pieces wanted, not had and not started, by rank, then rarest first.
    queue: BTreeSet<QueueKey>,
    partial: HashMap<u32, Partial>,
    /// Started pieces that still have free blocks, oldest first.
    open: Vec<u32>,
    max_partial: usize,
    rng: u64,
}

impl Picker {
    /// A picker for a torrent with the given geometry. `have` is what storage already holds;
    /// `max_partial` caps pieces being downloaded at once (their buffers live in memory).
    pub fn new(
        piece_length: u32,
        total_length: u64,
        have: Bitfield,
        max_partial: usize,
        seed: u64,
    ) -> Picker {
        let n = have.len();
        let mut p = Picker {
            piece_length,
            total_length,
            wanted: Bitfield::full(n),
            ranks: vec![NORMAL_RANK; n as usize],
            sequential: false,
            cursor: 0,
            have,
            avail: vec![0; n as usize],
            seeds: 0,
            tiebreak: Vec::with_capacity(n as usize),
            queue: BTreeSet::new(),
            partial: HashMap::new(),
            open: Vec::new(),
            max_partial: max_partial.max(1),
            rng: seed | 1,
        };
        for _ in 0..n {
            let r = p.next_rand() as u32;
            p.tiebreak.push(r);
        }
        p.rebuild_queue();
        p
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: deterministic per seed, which keeps tests reproducible.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn key(&self, i: u32) -> QueueKey {
        (
            u8::MAX - self.ranks[i as usize],
            self.avail[i as usize],
            self.tiebreak[i as usize],
            i,
        )
    }

    fn queued(&self, i: u32) -> bool {
        self.wanted.get(i) && !self.have.get(i) && !self.partial.contains_key(&i)
    }

    fn rebuild_queue(&mut self) {
        self.queue.clear();
        for i in 0..self.have.len() {
            if self.queued(i) {
                self.queue.insert(self.key(i));
            }
        }
    }

    /// Pieces verified so far.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }
    /// Pieces the user wants.
    pub fn wanted(&self) -> &Bitfield {
        &self.wanted
    }

    /// Chooses which pieces to download; pieces not wanted are never picked. Pieces already
    /// started keep going.
    pub fn set_wanted(&mut self, wanted: Bitfield) {
        assert_eq!(
            wanted.len(),
            self.have.len(),
            "wanted set of the wrong size"
        );
        let ranks = (0..wanted.len())
            .map(|i| if wanted.get(i) { NORMAL_RANK } else { 0 })
            .collect();
        self.set_ranks(ranks);
    }

    /// Sets every piece's rank (0: not wanted; higher ranks are picked first). Pieces already
    /// started keep going.
    pub fn set_ranks(&mut self, ranks: Vec<u8>) {
        assert_eq!(
            ranks.len(),
            self.have.len() as usize,
            "ranks of the wrong size"
        );
        let mut wanted = Bitfield::new(self.have.len());
        for (i, &r) in ranks.iter().enumerate() {
            if r > 0 {
                wanted.set(i as u32, true);
            }
        }
        self.wanted = wanted;
        self.ranks = ranks;
        self.cursor = 0;
        self.rebuild_queue();
    }

    /// Each piece's rank.
    pub fn ranks(&self) -> &[u8] {
        &self.ranks
    }

    /// Turns in-order picking (for streaming) on or off.
    pub fn set_sequential(&mut self, on: bool) {
        self.sequential = on;
        self.cursor = 0;
    }

    /// Whether pieces are picked in order.
    pub fn is_sequential(&self) -> bool {
        self.sequential
    }

    /// True when every wanted piece is verified.
    pub fn is_complete(&self) -> bool {
        !self.wanted.any_wanted(&self.wanted, &self.have)
    }

    /// Most pieces downloaded or verified at once.
    pub fn max_partial(&self) -> usize {
        self.max_partial
    }

    /// Pieces being downloaded or verified now.
    pub fn partial_count(&self) -> usize {
        self.partial.len()
    }

    /// Length of piece `i`.
    pub fn piece_len(&self, i: u32) -> u32 {
        let start = i as u64 * self.piece_length as u64;
        (self.total_length - start).min(self.piece_length as u64) as u32
    }

    fn block_count(&self, i: u32) -> usize {
        self.piece_len(i).div_ceil(BLOCK_SIZE) as usize
    }

    fn block_ref(&self, piece: u32, b: usize) -> BlockRef {
        let offset = b as u32 * BLOCK_SIZE;
        BlockRef {
            piece: PieceIndex(piece),
            offset,
            len: (self.piece_len(piece) - offset).min(BLOCK_SIZE),
        }
    }

    fn change_avail(&mut self, i: u32, up: bool) {
        let queued = self.queued(i);
        if queued {
            self.queue.remove(&self.key(i));
        }
        let a = &mut self.avail[i as usize];
        *a = if up {
            a.saturating_add(1)
        } else {
            a.saturating_sub(1)
        };
        if queued {
            self.queue.insert(self.key(i));
        }
    }

    /// A peer joined (or revealed its pieces) with this set.
    pub fn add_peer(&mut self, has: Has<'_>) {
        match has {
            Has::All => self.seeds += 1,
            Has::Some(b) => b.ones().for_each(|i| self.change_avail(i, true)),
        }
    }

    /// A peer left; `has` is what it had.
    pub fn remove_peer(&mut self, has: Has<'_>) {
        match has {
            Has::All => self.seeds = self.seeds.saturating_sub(1),
            Has::Some(b) => b.ones().for_each(|i| self.change_avail(i, false)),
        }
    }

    /// A peer announced one more piece.
    pub fn peer_have(&mut self, i: u32) {
        if i < self.have.len() {
            self.change_avail(i, true);
        }
    }

    /// Availability of piece `i` (seeds included).
    pub fn availability(&self, i: u32) -> u32 {
        self.avail[i as usize] as u32 + self.seeds
    }

    /// Appends up to `max` blocks for a peer with `has` to `out`. `already` tells which blocks
    /// this peer has outstanding (never asked twice of one peer). Returns how many were added.
    pub fn pick(
        &mut self,
        has: Has<'_>,
        max: usize,
        already: impl Fn(&BlockRef) -> bool,
        out: &mut Vec<BlockRef>,
    ) -> usize {
        self.pick_where(has, max, already, |_, _| true, out)
    }

    /// [`pick`](Self::pick) restricted to pieces `allow(piece, started)` accepts (`started`:
    /// the piece already has blocks requested or received). Smart ban uses it to give a
    /// piece to one peer alone.
    pub fn pick_where(
        &mut self,
        has: Has<'_>,
        max: usize,
        already: impl Fn(&BlockRef) -> bool,
        allow: impl Fn(u32, bool) -> bool,
        out: &mut Vec<BlockRef>,
    ) -> usize {
        let start = out.len();
        // 1. Finish what is started.
        let mut k = 0;
        while k < self.open.len() && out.len() - start < max {
            let i = self.open[k];
            if has.get(i) && allow(i, true) {
                self.take_free(i, max - (out.len() - start), out);
            }
            if self.partial.get(&i).is_some_and(|p| p.free == 0) {
                self.open.remove(k);
            } else {
                k += 1;
            }
        }
        // 2. Start new pieces, rarest first (random while we have almost nothing).
        while out.len() - start < max && self.partial.len() < self.max_partial {
            let Some(i) = self.next_new_piece(has, &allow) else {
                break;
            };
            self.queue.remove(&self.key(i));
            let blocks = self.block_count(i);
            self.partial.insert(
                i,
                Partial {
                    blocks: vec![Block::Free; blocks],
                    free: blocks as u32,
                    received: 0,
                },
            );
            self.open.push(i);
            self.take_free(i, max - (out.len() - start), out);
            if self.partial[&i].free == 0 {
                self.open.retain(|&p| p != i);
            }
        }
        // 3. Endgame: nothing new left for this peer, so duplicate the last outstanding blocks.
        if out.len() - start < max && self.endgame_for(has, &allow) {
            let mut pieces: Vec<u32> = self
                .partial
                .keys()
                .copied()
                .filter(|&i| has.get(i) && allow(i, true))
                .collect();
            pieces.sort_unstable();
            'outer: for i in pieces {
                let n = self.partial[&i].blocks.len();
                for b in 0..n {
                    if out.len() - start >= max {
                        break 'outer;
                    }
                    if let Block::Requested(c) = self.partial[&i].blocks[b] {
                        let r = self.block_ref(i, b);
                        if c < MAX_DUPLICATE_REQUESTS && !already(&r) && !out[start..].contains(&r)
                        {
                            self.partial.get_mut(&i).expect("present").blocks[b] =
                                Block::Requested(c + 1);
                            out.push(r);
                        }
                    }
                }
            }
        }
        out.len() - start
    }

    /// Endgame starts when no piece this peer has is left unstarted or has a free block.
    fn endgame_for(&self, has: Has<'_>, allow: impl Fn(u32, bool) -> bool) -> bool {
        !self
            .queue
            .iter()
            .any(|&(_, _, _, i)| has.get(i) && allow(i, false))
            && !self.open.iter().any(|&i| has.get(i) && allow(i, true))
    }

    fn next_new_piece(&mut self, has: Has<'_>, allow: impl Fn(u32, bool) -> bool) -> Option<u32> {
        let ok = |&&(_, _, _, i): &&QueueKey| has.get(i) && allow(i, false);
        // The best rank this peer can serve: pieces of lower rank wait for it.
        let &(top, ..) = self.queue.iter().find(ok)?;
        if self.sequential {
            if let Some(i) = self.next_in_order(u8::MAX - top, has, &allow) {
                return Some(i);
            }
        } else if self.have.count() < RANDOM_FIRST_PIECES {
            // A random candidate of that rank: start at a random place and take the first
            // the peer has.
            let same: Vec<u32> = self
                .queue
                .iter()
                .take_while(|k| k.0 == top)
                .filter(ok)
                .map(|&(_, _, _, i)| i)
                .collect();
            let pick = (self.next_rand() % same.len() as u64) as usize;
            return Some(same[pick]);
        }
        self.queue.iter().find(ok).map(|&(_, _, _, i)| i)
    }

    /// The first piece of rank `rank` in the window ahead of the first missing wanted piece
    /// that is not started and that the peer has.
    fn next_in_order(
        &mut self,
        rank: u8,
        has: Has<'_>,
        allow: impl Fn(u32, bool) -> bool,
    ) -> Option<u32> {
        let n = self.have.len();
        while self.cursor < n && (self.have.get(self.cursor) || !self.wanted.get(self.cursor)) {
            self.cursor += 1;
        }
        let (lo, hi) = SEQUENTIAL_WINDOW_PIECES;
        let window =
            (SEQUENTIAL_WINDOW_BYTES / self.piece_length as u64).clamp(lo as u64, hi as u64) as u32;
        (self.cursor..n.min(self.cursor.saturating_add(window))).find(|&i| {
            self.ranks[i as usize] == rank && self.queued(i) && has.get(i) && allow(i, false)
        })
    }

    fn take_free(&mut self, i: u32, max: usize, out: &mut Vec<BlockRef>) {
        let refs: Vec<usize> = {
            let p = self.partial.get(&i).expect("open pieces are partial");
            p.blocks
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == Block::Free)
                .map(|(b, _)| b)
                .take(max)
                .collect()
        };
        for b in refs {
            let r = self.block_ref(i, b);
            let p = self.partial.get_mut(&i).expect("present");
            p.blocks[b] = Block::Requested(1);
            p.free -= 1;
            out.push(r);
        }
    }

    /// A request for `r` ended without data (cancelled, rejected, peer gone or choked us).
    pub fn request_failed(&mut self, r: &BlockRef) {
        let i = r.piece.0;
        let Some(p) = self.partial.get_mut(&i) else {
            return;
        };
        let b = r.index_in_piece() as usize;
        if let Some(Block::Requested(c)) = p.blocks.get(b).copied() {
            if c > 1 {
                p.blocks[b] = Block::Requested(c - 1);
            } else {
                p.blocks[b] = Block::Free;
                p.free += 1;
                if p.free == 1 && !self.open.contains(&i) {
                    self.open.push(i);
                }
            }
        }
    }

    /// A block's data arrived. Checks it is one we want, with the right length.
    pub fn block_received(&mut self, r: &BlockRef) -> Received {
        let i = r.piece.0;
        if r.offset % BLOCK_SIZE != 0 {
            return Received::Unwanted;
        }
        let expected = if i < self.have.len() {
            self.block_ref(i, r.index_in_piece() as usize)
        } else {
            return Received::Unwanted;
        };
        if expected.len != r.len || r.offset >= self.piece_len(i) {
            return Received::Unwanted;
        }
        let Some(p) = self.partial.get_mut(&i) else {
            return Received::Unwanted;
        };
        let b = r.index_in_piece() as usize;
        let duplicated = match p.blocks[b] {
            Block::Received => return Received::Unwanted,
            Block::Free => {
                p.free -= 1;
                false
            }
            Block::Requested(n) => n > 1,
        };
        p.blocks[b] = Block::Received;
        p.received += 1;
        if p.received as usize == p.blocks.len() {
            Received::PieceComplete { duplicated }
        } else {
            Received::Stored { duplicated }
        }
    }

    /// The data of a received block was thrown away (its sender was banned or put on parole):
    /// the block is to be downloaded again. No effect on a block not received or a piece
    /// that is complete (being verified).
    pub fn unreceive(&mut self, r: &BlockRef) -> bool {
        let i = r.piece.0;
        let Some(p) = self.partial.get_mut(&i) else {
            return false;
        };
        let b = r.index_in_piece() as usize;
        if p.received as usize == p.blocks.len() || p.blocks.get(b) != Some(&Block::Received) {
            return false;
        }
        p.blocks[b] = Block::Free;
        p.received -= 1;
        p.free += 1;
        if !self.open.contains(&i) {
            self.open.push(i);
        }
        true
    }

    /// Verification of piece `i` finished. A failed piece goes back to be downloaded again.
    pub fn piece_verified(&mut self, i: u32, ok: bool) {
        self.partial.remove(&i);
        self.open.retain(|&p| p != i);
        if ok {
            self.have.set(i, true);
        } else if self.queued(i) {
            self.queue.insert(self.key(i));
        }
    }

    /// Marks a piece as had without downloading (found on disk).
    pub fn mark_have(&mut self, i: u32) {
        if self.queued(i) {
            self.queue.remove(&self.key(i));
        }
        self.piece_verified(i, true);
    }
}

#[cfg(test)]
#[path = "picker_tests.rs"]
mod tests;
