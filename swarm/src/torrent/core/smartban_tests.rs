//! Smart ban driven with a fake clock: whole swarms with a lying peer beside an honest seed
//! (mixed corruption and withholding), and one core fed block by block to check the proof
//! against the verified copy, parole after N failures and the hand-over of a stalled piece.

use std::net::IpAddr;

use super::*;
use crate::types::BLOCK_SIZE;

fn ip(n: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, n + 1])
}

/// A leecher (node 0), an honest seed (1) and a lying seed (2) serving at once.
fn liar_beside_honest_seed(seed: u64, setup: impl Fn(&mut Node)) -> (Vec<Node>, Vec<u8>, Instant) {
    let (info, data) = torrent(1_000_000, 32 * 1024);
    let mut nodes = vec![
        node_seeded(&info, None, 1, false, 2 * seed + 1),
        node_seeded(&info, Some(&data), 2, false, 2 * seed + 101),
        node_seeded(&info, Some(&data), 3, false, 2 * seed + 201),
    ];
    setup(&mut nodes[2]);
    nodes[1].completed = true;
    nodes[2].completed = true;
    let now = Instant::now();
    connect(&mut nodes, 0, 2, now);
    connect(&mut nodes, 0, 1, now);
    let end = run(&mut nodes, 300);
    (nodes, data, end)
}

fn only_the_liar_is_banned(setup: impl Fn(&mut Node) + Copy) {
    let mut failures = 0;
    for seed in 0..20 {
        let start = Instant::now();
        let (nodes, data, end) = liar_beside_honest_seed(seed, setup);
        let us = &nodes[0];
        assert!(us.completed, "seed {seed}: stalled");
        assert!(us.data == data, "seed {seed}: wrong bytes");
        let banned: Vec<IpAddr> = us.bans.iter().map(|b| b.0).collect();
        assert!(!banned.contains(&ip(1)), "seed {seed}: honest seed banned");
        assert_eq!(banned, vec![ip(2)], "seed {seed}: the liar is banned once");
        assert!(
            end.duration_since(start) < Duration::from_secs(60),
            "seed {seed}: took {:?}",
            end.duration_since(start)
        );
        failures += us.core.stats().hash_failures;
    }
    assert!(failures > 0, "the liar's blocks were never used");
}

#[test]
fn a_liar_corrupting_some_blocks_beside_an_honest_seed_is_banned_alone() {
    only_the_liar_is_banned(|n| n.corrupt_every = 3);
}

#[test]
fn a_liar_withholding_the_last_block_of_each_piece_is_banned_alone() {
    only_the_liar_is_banned(|n| {
        n.corrupt_every = 2;
        n.withhold_last = true;
    });
}

/// One core and peers fed by hand.
struct Solo {
    core: TorrentCore,
    info: Arc<Info>,
    data: Vec<u8>,
    now: Instant,
    /// Actions not yet looked at.
    seen: Vec<Action>,
}

const PIECE: u32 = 64 * 1024;

impl Solo {
    fn new(pieces: usize) -> Solo {
        let (info, data) = torrent(pieces * PIECE as usize, PIECE);
        let core = node(&info, None, 1, false).core;
        Solo {
            core,
            info,
            data,
            now: Instant::now(),
            seen: Vec::new(),
        }
    }

    /// Peer `k` (at 10.0.0.k+1) connects, has everything and unchokes us.
    fn peer(&mut self, k: u8) {
        let hs = Handshake::ours(self.info.info_hash, PeerId([k + 40; 20]));
        let st = PeerState::new((ip(k), 6881).into(), hs, Route::OutgoingTcp, self.now);
        self.core.peer_connected(k as u64, st, self.now);
        self.core
            .peer_messages(k as u64, [Message::HaveAll, Message::Unchoke], self.now);
        self.pump();
    }

    /// Carries out verifications (hashing for real) and keeps the other actions.
    fn pump(&mut self) {
        while let Some(a) = self.core.poll_action() {
            match a {
                Action::Verify { piece, data } => {
                    let ok = Sha1::digest(&data).as_slice() == self.info.pieces[piece as usize].0;
                    self.core.piece_checked(piece, ok, data);
                }
                Action::Close(k, _) => {
                    self.core.peer_closed(k);
                    self.seen.push(a);
                }
                a => self.seen.push(a),
            }
        }
    }

    fn take(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.seen)
    }

    /// Peer `k` sends block `b` of `piece`, with a flipped byte if `bad`.
    fn block(&mut self, k: u8, piece: u32, b: u32, bad: bool) {
        let start = (piece * PIECE + b * BLOCK_SIZE) as usize;
        let mut d = self.data[start..start + BLOCK_SIZE as usize].to_vec();
        if bad {
            d[7] ^= 1;
        }
        let m = Message::Piece {
            piece: PieceIndex(piece),
            offset: b * BLOCK_SIZE,
            data: d.into(),
        };
        self.core.peer_messages(k as u64, [m], self.now);
        self.pump();
    }

    /// Peer `k` sends all of `piece`.
    fn piece(&mut self, k: u8, piece: u32) {
        for b in 0..PIECE / BLOCK_SIZE {
            self.block(k, piece, b, false);
        }
    }

    fn tick(&mut self, secs: u64) {
        self.now += Duration::from_secs(secs);
        self.core.tick(self.now);
        self.pump();
    }

    fn outstanding(&self, k: u8) -> Vec<BlockRef> {
        let p = self.core.peers().find(|(key, _)| **key == k as u64);
        p.map(|(_, p)| p.outstanding.iter().copied().collect())
            .unwrap_or_default()
    }

    fn has(&self, piece: u32) -> bool {
        self.core.have().unwrap().get(piece)
    }
}

fn bans(actions: &[Action]) -> Vec<(IpAddr, BanReason)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Ban(ip, r) => Some((*ip, r.clone())),
            _ => None,
        })
        .collect()
}

/// A piece two peers shared fails; it goes to one peer alone (the liar, which looks best);
/// the liar lets it stall, so after [`PAROLE_STALL`] it goes to the other, whose copy
/// verifies and proves which block was wrong: the liar is banned with that reason, its
/// unverified blocks elsewhere are thrown away, the honest peer is not touched.
#[test]
fn a_failed_piece_is_redownloaded_from_one_peer_and_convicts_exactly_the_liar() {
    let mut s = Solo::new(4);
    s.peer(1); // the liar
    s.peer(2); // honest
    s.piece(1, 2); // the liar sends one good piece alone, so it ranks first
    assert!(s.has(2));
    for b in 0..4 {
        s.block(if b == 3 { 2 } else { 1 }, 0, b, b == 1);
    }
    assert!(!s.has(0));
    assert_eq!(s.core.stats().hash_failures, 1);
    assert!(bans(&s.take()).is_empty(), "nobody proven yet");
    s.block(1, 1, 0, false); // an unverified block of another piece
    let wasted = s.core.stats().wasted;
    s.tick(1);
    let liar_has = |s: &Solo| s.outstanding(1).iter().any(|r| r.piece.0 == 0);
    let honest_has = |s: &Solo| s.outstanding(2).iter().any(|r| r.piece.0 == 0);
    assert!(liar_has(&s), "the piece went to the peer that ranks first");
    assert!(!honest_has(&s), "one peer at a time");
    // The honest peer's blocks of the piece are refused while it belongs to the liar.
    s.block(2, 0, 0, false);
    assert_eq!(s.core.stats().wasted, wasted + BLOCK_SIZE as u64);
    s.take();
    s.tick(PAROLE_STALL.as_secs());
    let acts = s.take();
    assert!(acts.iter().any(|a| matches!(a,
        Action::Send(1, Message::Cancel(r)) if r.piece.0 == 0)));
    assert!(!liar_has(&s) && honest_has(&s), "handed to the other peer");
    s.piece(2, 0);
    assert!(s.has(0));
    let acts = s.take();
    assert_eq!(
        bans(&acts),
        vec![(
            ip(1),
            BanReason::WrongBlock {
                piece: 0,
                offset: BLOCK_SIZE
            }
        )]
    );
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Close(1, CloseReason::Banned))));
    // The liar's block of piece 1 was discarded and is asked of the honest peer.
    assert_eq!(s.core.stats().wasted, wasted + 2 * BLOCK_SIZE as u64);
    s.tick(1);
    assert!(s.outstanding(2).contains(&BlockRef {
        piece: PieceIndex(1),
        offset: 0,
        len: BLOCK_SIZE
    }));
    s.piece(2, 1);
    s.piece(2, 3);
    assert_eq!(s.core.phase(), Phase::Complete);
    assert!(
        bans(&s.take()).is_empty(),
        "the honest peer is never banned"
    );
}

/// After [`PAROLE_AFTER_FAILURES`] failures both contributors are on parole: neither gets a
/// request for a piece the other works on, blocks sent into another's piece are refused, and
/// once the failed pieces verify the liar is banned and the honest peer is off parole.
#[test]
fn peers_in_n_failures_are_on_parole_until_cleared() {
    let mut s = Solo::new(8);
    s.peer(1); // the liar
    s.peer(2); // honest
    for piece in 0..PAROLE_AFTER_FAILURES {
        for b in 0..4 {
            s.block(if b == 3 { 2 } else { 1 }, piece, b, b == 0);
        }
    }
    assert_eq!(s.core.stats().hash_failures, PAROLE_AFTER_FAILURES);
    assert_eq!(s.core.stats().on_parole, 2);
    assert!(bans(&s.take()).is_empty());
    s.tick(1);
    let pieces = |k: u8, s: &Solo| -> Vec<u32> {
        let mut v: Vec<u32> = s.outstanding(k).iter().map(|r| r.piece.0).collect();
        v.sort();
        v.dedup();
        v
    };
    let (a, b) = (pieces(1, &s), pieces(2, &s));
    assert!(!a.is_empty() && !b.is_empty());
    assert!(
        a.iter().all(|p| !b.contains(p)),
        "shared pieces: {a:?} {b:?}"
    );
    // The liar's block of a piece the honest peer has alone is refused.
    let wasted = s.core.stats().wasted;
    s.block(1, b[0], 0, false);
    assert_eq!(s.core.stats().wasted, wasted + BLOCK_SIZE as u64);
    // The honest peer finishes everything it was given and the pieces handed over to it.
    for _ in 0..20 {
        for piece in pieces(2, &s) {
            s.piece(2, piece);
        }
        s.tick(PAROLE_STALL.as_secs());
        if s.core.phase() == Phase::Complete {
            break;
        }
    }
    assert_eq!(s.core.phase(), Phase::Complete);
    let acts = s.take();
    let banned: Vec<IpAddr> = bans(&acts).into_iter().map(|b| b.0).collect();
    assert_eq!(banned, vec![ip(1)]);
    assert_eq!(s.core.stats().on_parole, 0, "the honest peer was cleared");
}
