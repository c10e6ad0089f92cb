//! Smart ban: when a piece fails its hash, find exactly which peer sent the wrong blocks, so a
//! peer that merely shared a piece with a liar is never blamed. Like libtorrent's optional
//! smart-ban plugin, on by default, plus parole against withholding.
//!
//! While a piece is assembled its sender is remembered per block. When it fails, a hash of
//! each block of the failed copy is kept with its sender, and the piece is downloaded again
//! from one peer alone. Once a copy verifies, each remembered block is compared with the good
//! one: a peer that sent a block that differs is banned, the others are cleared. A piece a
//! single peer sent whole that fails proves that peer wrong at once.
//!
//! A peer involved in [`PAROLE_AFTER_FAILURES`] failures not yet cleared is on parole: its
//! blocks in shared pieces are thrown away, and it only gets pieces it downloads alone, so a
//! peer that withholds the last block of every piece cannot make an honest peer complete
//! (and share the blame for) its bad pieces. A piece given to one peer that sends nothing of
//! it for [`PAROLE_STALL`] goes to another.
//!
//! Memory: a failed copy costs [`BLOCK_RECORD_BYTES`] per 16 KiB block (0.2 % of the piece),
//! at most [`MAX_FAILED_COPIES`] copies per piece (8 KiB for a 2 MiB piece) and
//! [`MAX_SUSPECT_PIECES`] pieces at once (512 KiB in all with 2 MiB pieces, 8 MiB at the
//! largest piece length). Sans-IO: all decisions here take the time from the caller.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use super::{Action, CloseReason, TorrentCore};
use crate::peer::{PeerHas, PeerKey};
use crate::types::{BlockRef, PieceIndex, BLOCK_SIZE};
use crate::wire::Message;

/// Failures a peer may be involved in, not yet cleared, before it is put on parole (N).
pub const PAROLE_AFTER_FAILURES: u32 = 2;
/// Failed copies remembered per piece (the latest ones).
pub const MAX_FAILED_COPIES: usize = 2;
/// Pieces whose failed copies are remembered at once; failures beyond it still count
/// towards parole but cannot clear anyone.
pub const MAX_SUSPECT_PIECES: usize = 64;
/// How long the one peer a piece is given to may send nothing of it before it is given to
/// another.
pub const PAROLE_STALL: Duration = Duration::from_secs(10);
/// Peers remembered per piece as having let it stall (they get it again only when nobody
/// else can).
pub const MAX_TRIED: usize = 4;
/// Addresses whose standing (failures, pieces sent alone) is remembered.
pub const MAX_STANDINGS: usize = 4096;
/// Addresses remembered as banned by one torrent.
pub const MAX_BANNED_IPS: usize = 10_000;
/// Bytes remembered per block of a failed copy: the sender and a 64-bit hash.
pub const BLOCK_RECORD_BYTES: usize = std::mem::size_of::<(Option<IpAddr>, u64)>();

/// Why a peer was banned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanReason {
    /// A block it sent differs from the same block of the copy that verified.
    WrongBlock {
        /// The piece.
        piece: u32,
        /// The block's offset in it.
        offset: u32,
    },
    /// It alone sent every block of a piece that failed the hash.
    FailedAlone {
        /// The piece.
        piece: u32,
    },
}

impl fmt::Display for BanReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanReason::WrongBlock { piece, offset } => write!(
                f,
                "sent a wrong block (piece {piece}, offset {offset}), proved against the verified copy"
            ),
            BanReason::FailedAlone { piece } => {
                write!(f, "sent all of piece {piece}, which failed the hash")
            }
        }
    }
}

/// One failed copy of a piece: per block, who sent it and a hash of what it sent.
struct FailedCopy {
    blocks: Vec<(Option<IpAddr>, u64)>,
}

#[derive(Default, Clone, Copy)]
struct Standing {
    /// Failed pieces it sent blocks of that no verified copy has cleared it of yet.
    unresolved: u32,
    /// Pieces it sent alone that verified.
    clean: u32,
}

/// A piece that only one peer may download.
struct Exclusive {
    owner: Option<PeerKey>,
    /// When the owner last sent a block of it (or got it); `None`: set on the next tick.
    since: Option<Instant>,
    /// Addresses that let it stall.
    tried: Vec<IpAddr>,
}

/// The smart-ban state of one torrent.
pub(super) struct SmartBan {
    salt: [u8; 8],
    copies: HashMap<u32, VecDeque<FailedCopy>>,
    standing: HashMap<IpAddr, Standing>,
    exclusive: HashMap<u32, Exclusive>,
    banned: HashSet<IpAddr>,
}

impl SmartBan {
    pub(super) fn new(salt: u64) -> SmartBan {
        SmartBan {
            salt: salt.to_le_bytes(),
            copies: HashMap::new(),
            standing: HashMap::new(),
            exclusive: HashMap::new(),
            banned: HashSet::new(),
        }
    }

    /// A hash of a block, salted so that a peer cannot aim at a collision offline.
    fn block_hash(&self, data: &[u8]) -> u64 {
        let d = Sha1::new()
            .chain_update(self.salt)
            .chain_update(data)
            .finalize();
        u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
    }

    fn hashes(&self, data: &[u8]) -> Vec<u64> {
        data.chunks(BLOCK_SIZE as usize)
            .map(|b| self.block_hash(b))
            .collect()
    }

    /// Whether `ip` is on parole.
    pub(super) fn on_parole(&self, ip: &IpAddr) -> bool {
        self.standing
            .get(ip)
            .is_some_and(|s| s.unresolved >= PAROLE_AFTER_FAILURES)
    }

    /// Whether `ip` was banned.
    pub(super) fn is_banned(&self, ip: &IpAddr) -> bool {
        self.banned.contains(ip)
    }

    /// Whether connection `key` (at `ip`, `parole` if on parole) may be asked for blocks of
    /// `piece`; `shared`: others sent blocks of it or were asked for some.
    pub(super) fn may_take(
        &self,
        key: PeerKey,
        ip: &IpAddr,
        parole: bool,
        piece: u32,
        shared: bool,
    ) -> bool {
        match self.exclusive.get(&piece) {
            Some(e) => match e.owner {
                Some(o) => o == key,
                None => !e.tried.contains(ip),
            },
            None => !parole || !shared,
        }
    }

    /// Whether a block of `piece` from `key` may be kept.
    pub(super) fn may_store(&self, key: PeerKey, ip: &IpAddr, piece: u32) -> bool {
        match self.exclusive.get(&piece) {
            Some(e) => e.owner == Some(key),
            None => !self.on_parole(ip),
        }
    }

    /// `key` was asked for blocks of `piece`: a piece nobody owns becomes its own, and a piece
    /// a peer on parole starts is its alone.
    /// Its stall clock starts on the next tick.
    pub(super) fn claim(&mut self, piece: u32, key: PeerKey, parole: bool) {
        match self.exclusive.get_mut(&piece) {
            Some(e) if e.owner.is_none() => {
                e.owner = Some(key);
                e.since = None;
            }
            Some(_) => {}
            None if parole => {
                self.exclusive.insert(
                    piece,
                    Exclusive {
                        owner: Some(key),
                        since: None,
                        tried: Vec::new(),
                    },
                );
            }
            None => {}
        }
    }

    /// A block of `piece` arrived from `key`: its owner is making progress.
    pub(super) fn progress(&mut self, piece: u32, key: PeerKey, now: Instant) {
        if let Some(e) = self.exclusive.get_mut(&piece) {
            if e.owner == Some(key) {
                e.since = Some(now);
            }
        }
    }

    /// Counters for the progress line: (peers on parole, pieces given to one peer).
    pub(super) fn counts(&self) -> (usize, usize) {
        let parole = self
            .standing
            .values()
            .filter(|s| s.unresolved >= PAROLE_AFTER_FAILURES)
            .count();
        (parole, self.exclusive.len())
    }

    fn standing_mut(&mut self, ip: IpAddr) -> Option<&mut Standing> {
        if !self.standing.contains_key(&ip) && self.standing.len() >= MAX_STANDINGS {
            return None;
        }
        Some(self.standing.entry(ip).or_default())
    }

    /// Remembers a failed copy's blocks; false when the bound leaves no room.
    fn remember(&mut self, piece: u32, data: &[u8], senders: &[Option<IpAddr>]) -> bool {
        if !self.copies.contains_key(&piece) && self.copies.len() >= MAX_SUSPECT_PIECES {
            return false;
        }
        let blocks = senders.iter().copied().zip(self.hashes(data)).collect();
        let copies = self.copies.entry(piece).or_default();
        if copies.len() >= MAX_FAILED_COPIES {
            copies.pop_front();
        }
        copies.push_back(FailedCopy { blocks });
        true
    }
}

fn distinct(senders: &[Option<IpAddr>]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in senders.iter().flatten() {
        if !out.contains(ip) {
            out.push(*ip);
        }
    }
    out
}

impl TorrentCore {
    /// Piece `piece` failed its hash; `data` is the failed copy and `senders` who sent each
    /// of its blocks.
    pub(super) fn smartban_failed(&mut self, piece: u32, data: &[u8], senders: &[Option<IpAddr>]) {
        if senders.iter().all(Option::is_none) {
            return;
        }
        let ips: Vec<IpAddr> = distinct(senders)
            .into_iter()
            .filter(|ip| !self.ban.is_banned(ip))
            .collect();
        self.make_exclusive(piece);
        let all = distinct(senders);
        if let [ip] = all[..] {
            self.ban_ip(ip, BanReason::FailedAlone { piece });
            self.designate(piece);
            return;
        }
        self.ban.remember(piece, data, senders);
        for ip in ips {
            let Some(s) = self.ban.standing_mut(ip) else {
                continue;
            };
            s.unresolved += 1;
            if s.unresolved == PAROLE_AFTER_FAILURES {
                tracing::debug!(%ip, "on parole after failed pieces");
                self.put_on_parole(ip);
            }
        }
        self.designate(piece);
    }

    /// Piece `piece` verified: clear or convict everyone who sent blocks of its failed copies.
    pub(super) fn smartban_passed(&mut self, piece: u32, data: &[u8], senders: &[Option<IpAddr>]) {
        self.ban.exclusive.remove(&piece);
        let all = distinct(senders);
        if let [ip] = all[..] {
            if let Some(s) = self.ban.standing_mut(ip) {
                s.clean += 1;
            }
        }
        let Some(copies) = self.ban.copies.remove(&piece) else {
            return;
        };
        let good = self.ban.hashes(data);
        for copy in copies {
            let mut wrong: Vec<(IpAddr, u32)> = Vec::new();
            for (b, (ip, h)) in copy.blocks.iter().enumerate() {
                if let Some(ip) = ip {
                    if good.get(b) != Some(h) && !wrong.iter().any(|(w, _)| w == ip) {
                        wrong.push((*ip, b as u32 * BLOCK_SIZE));
                    }
                }
            }
            let senders: Vec<Option<IpAddr>> = copy.blocks.iter().map(|(ip, _)| *ip).collect();
            for ip in distinct(&senders) {
                match wrong.iter().find(|(w, _)| *w == ip) {
                    Some(&(_, offset)) => self.ban_ip(ip, BanReason::WrongBlock { piece, offset }),
                    None => {
                        if let Some(s) = self.ban.standing.get_mut(&ip) {
                            s.unresolved = s.unresolved.saturating_sub(1);
                        }
                    }
                }
            }
        }
    }

    /// Bans `ip`: its connections close, its unverified blocks are thrown away.
    pub(super) fn ban_ip(&mut self, ip: IpAddr, reason: BanReason) {
        if self.ban.is_banned(&ip) {
            return;
        }
        if self.ban.banned.len() < MAX_BANNED_IPS {
            self.ban.banned.insert(ip);
        }
        self.ban.standing.remove(&ip);
        tracing::info!(%ip, %reason, "banned");
        self.actions.push_back(Action::Ban(ip, reason));
        self.discard_blocks(ip, false);
        let keys: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.addr.ip() == ip)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.drop_peer(k, CloseReason::Banned);
        }
    }

    /// Puts `ip` on parole: its requests and blocks in shared pieces are withdrawn.
    fn put_on_parole(&mut self, ip: IpAddr) {
        let keys: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.addr.ip() == ip)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            let p = self.peers.get_mut(&k).expect("present");
            let shared: Vec<BlockRef> = p
                .outstanding
                .iter()
                .filter(|r| {
                    self.ban
                        .exclusive
                        .get(&r.piece.0)
                        .is_none_or(|e| e.owner != Some(k))
                })
                .copied()
                .collect();
            for r in shared {
                p.outstanding.remove(&r);
                if let Some(picker) = &mut self.picker {
                    picker.request_failed(&r);
                }
                self.actions.push_back(Action::Send(k, Message::Cancel(r)));
            }
        }
        self.discard_blocks(ip, true);
    }

    /// Throws away the blocks `ip` sent of pieces not being verified (with `keep_own`, not of
    /// pieces one of its connections downloads alone), to be downloaded again.
    fn discard_blocks(&mut self, ip: IpAddr, keep_own: bool) {
        let (Some(picker), Some(info)) = (&mut self.picker, &self.info) else {
            return;
        };
        for (&piece, a) in self.assembling.iter_mut() {
            let owner = self.ban.exclusive.get(&piece).and_then(|e| e.owner);
            let own = owner.is_some_and(|k| self.peers.get(&k).is_some_and(|p| p.addr.ip() == ip));
            if a.verifying || (keep_own && own) {
                continue;
            }
            let piece_len = info.piece_len(PieceIndex(piece));
            for (b, s) in a.senders.iter_mut().enumerate() {
                if *s != Some(ip) {
                    continue;
                }
                let offset = b as u32 * BLOCK_SIZE;
                let r = BlockRef {
                    piece: PieceIndex(piece),
                    offset,
                    len: (piece_len - offset).min(BLOCK_SIZE),
                };
                if picker.unreceive(&r) {
                    *s = None;
                    self.stats.wasted += r.len as u64;
                }
            }
        }
    }

    /// Gives `piece` to one peer alone from now until it verifies.
    fn make_exclusive(&mut self, piece: u32) {
        let e = self.ban.exclusive.entry(piece).or_insert(Exclusive {
            owner: None,
            since: None,
            tried: Vec::new(),
        });
        e.owner = None;
        e.since = None;
    }

    /// Chooses who downloads an exclusive piece nobody owns: of the peers that have it and let
    /// us download, the one with the fewest failures not cleared, then the most pieces sent
    /// alone that verified. With none, the first that asks gets it.
    fn designate(&mut self, piece: u32) {
        let Some(e) = self.ban.exclusive.get(&piece) else {
            return;
        };
        if e.owner.is_some() {
            return;
        }
        let rank = |tried: &[IpAddr]| {
            self.peers
                .iter()
                .filter(|(_, p)| {
                    let ip = p.addr.ip();
                    let has = match &p.has {
                        PeerHas::All => true,
                        PeerHas::Some(b) => b.get(piece),
                        _ => false,
                    };
                    has && !p.peer_choking && !tried.contains(&ip) && !self.ban.is_banned(&ip)
                })
                .map(|(k, p)| {
                    let s = self.ban.standing.get(&p.addr.ip()).copied();
                    let s = s.unwrap_or_default();
                    ((s.unresolved, std::cmp::Reverse(s.clean), *k), *k)
                })
                .min()
                .map(|(_, k)| k)
        };
        let mut chosen = rank(&e.tried);
        if chosen.is_none() && !e.tried.is_empty() {
            chosen = rank(&[]);
            if chosen.is_some() {
                self.ban
                    .exclusive
                    .get_mut(&piece)
                    .expect("present")
                    .tried
                    .clear();
            }
        }
        let since = self.last_tick;
        let e = self.ban.exclusive.get_mut(&piece).expect("present");
        e.owner = chosen;
        e.since = since;
    }

    /// Takes a piece back from its owner: what it sent is thrown away, its requests cancelled.
    fn abandon(&mut self, piece: u32) {
        if let Some(a) = self.assembling.remove(&piece) {
            let len = self
                .info
                .as_ref()
                .map_or(0, |i| i.piece_len(PieceIndex(piece)) as u64);
            let received = a.senders.iter().flatten().count() as u64;
            self.stats.wasted += (received * BLOCK_SIZE as u64).min(len);
            self.recycle(a.buf);
        }
        if let Some(picker) = &mut self.picker {
            picker.piece_verified(piece, false);
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            let p = self.peers.get_mut(&k).expect("present");
            let gone: Vec<BlockRef> = p
                .outstanding
                .iter()
                .filter(|r| r.piece.0 == piece)
                .copied()
                .collect();
            for r in gone {
                p.outstanding.remove(&r);
                self.actions.push_back(Action::Send(k, Message::Cancel(r)));
            }
        }
    }

    /// Takes `piece` from `owner` (stalled or gone) and gives it to another peer.
    fn reassign(&mut self, piece: u32, owner_ip: Option<IpAddr>) {
        if self.assembling.get(&piece).is_some_and(|a| a.verifying) {
            return;
        }
        self.abandon(piece);
        let e = self.ban.exclusive.get_mut(&piece).expect("present");
        e.owner = None;
        if let Some(ip) = owner_ip {
            if !e.tried.contains(&ip) {
                if e.tried.len() >= MAX_TRIED {
                    e.tried.remove(0);
                }
                e.tried.push(ip);
            }
        }
        self.designate(piece);
    }

    /// Connection `key` at `ip` closed: the pieces it had alone go to others.
    pub(super) fn smartban_peer_gone(&mut self, key: PeerKey, ip: IpAddr) {
        let owned: Vec<u32> = self
            .ban
            .exclusive
            .iter()
            .filter(|(_, e)| e.owner == Some(key))
            .map(|(i, _)| *i)
            .collect();
        for piece in owned {
            self.reassign(piece, Some(ip));
        }
    }

    /// Once a tick: pieces whose one peer sent nothing of them for [`PAROLE_STALL`] go to
    /// another; pieces nobody took for as long are offered again to those that let them stall.
    pub(super) fn smartban_tick(&mut self, now: Instant) {
        let mut stalled: Vec<(u32, Option<IpAddr>)> = Vec::new();
        for (&piece, e) in self.ban.exclusive.iter_mut() {
            let Some(since) = e.since else {
                e.since = Some(now);
                continue;
            };
            if now.saturating_duration_since(since) < PAROLE_STALL {
                continue;
            }
            match e.owner {
                Some(k) => stalled.push((piece, self.peers.get(&k).map(|p| p.addr.ip()))),
                None => {
                    e.tried.clear();
                    e.since = Some(now);
                }
            }
        }
        for (piece, ip) in stalled {
            tracing::debug!(piece, ?ip, "piece given to one peer stalled");
            self.reassign(piece, ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// However many pieces fail, at most [`MAX_SUSPECT_PIECES`] pieces of at most
    /// [`MAX_FAILED_COPIES`] copies are remembered, each [`BLOCK_RECORD_BYTES`] a block.
    #[test]
    fn failed_copies_stay_within_the_bound() {
        let mut b = SmartBan::new(7);
        let data = vec![3u8; 4 * BLOCK_SIZE as usize];
        let senders = vec![Some(IpAddr::from([10, 0, 0, 1])); 4];
        for piece in 0..MAX_SUSPECT_PIECES as u32 + 50 {
            for _ in 0..MAX_FAILED_COPIES + 3 {
                b.remember(piece, &data, &senders);
            }
        }
        assert_eq!(b.copies.len(), MAX_SUSPECT_PIECES);
        assert!(b.copies.values().all(|c| c.len() == MAX_FAILED_COPIES));
        assert!(b.copies.values().flatten().all(|c| c.blocks.len() == 4));
        assert_eq!(BLOCK_RECORD_BYTES, 32);
        // The sender of each block of a piece being assembled.
        assert_eq!(std::mem::size_of::<Option<IpAddr>>(), 17);
        // A salted hash: the same block hashes differently under another salt, and a flipped
        // byte changes it.
        let other = SmartBan::new(8);
        let block = &data[..BLOCK_SIZE as usize];
        assert_ne!(b.block_hash(block), other.block_hash(block));
        let mut flipped = block.to_vec();
        flipped[100] ^= 1;
        assert_ne!(b.block_hash(block), b.block_hash(&flipped));
    }
}
