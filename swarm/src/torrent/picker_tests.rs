use super::*;

const PL: u32 = 4 * BLOCK_SIZE;

fn picker(pieces: u32, max_partial: usize) -> Picker {
    Picker::new(
        PL,
        pieces as u64 * PL as u64 - 100,
        Bitfield::new(pieces),
        max_partial,
        7,
    )
}

fn bf(len: u32, ones: &[u32]) -> Bitfield {
    let mut b = Bitfield::new(len);
    ones.iter().for_each(|&i| {
        b.set(i, true);
    });
    b
}

fn pieces_of(blocks: &[BlockRef]) -> Vec<u32> {
    let mut v: Vec<u32> = blocks.iter().map(|b| b.piece.0).collect();
    v.dedup();
    v
}

fn complete(p: &mut Picker, blocks: &[BlockRef]) {
    for b in blocks {
        if matches!(p.block_received(b), Received::PieceComplete { .. }) {
            p.piece_verified(b.piece.0, true);
        }
    }
}

#[test]
fn rarest_first_after_random_start() {
    let mut p = picker(10, 100);
    // Pieces 0..4 are had already so random-first is over.
    for i in 0..4 {
        p.mark_have(i);
    }
    let common = bf(10, &[4, 5, 6, 7, 8, 9]);
    for _ in 0..3 {
        p.add_peer(Has::Some(&common));
    }
    p.add_peer(Has::Some(&bf(10, &[4, 5, 6, 8, 9])));
    p.add_peer(Has::Some(&bf(10, &[4, 5, 8, 9])));
    // Piece 7 is on 3 peers, 6 on 4, the rest on 5: a seed gets 7 first, then 6.
    let mut out = vec![];
    p.pick(Has::All, 8, |_| false, &mut out);
    assert_eq!(pieces_of(&out), vec![7, 6]);
}

#[test]
fn blocks_cover_piece_exactly_and_last_block_is_short() {
    let mut p = picker(3, 100);
    let mut out = vec![];
    p.pick(Has::All, 100, |_| false, &mut out);
    assert_eq!(out.len(), 12);
    let last = out
        .iter()
        .filter(|b| b.piece.0 == 2)
        .max_by_key(|b| b.offset)
        .unwrap();
    assert_eq!(last.len, BLOCK_SIZE - 100);
    assert_eq!(
        out.iter().map(|b| b.len as u64).sum::<u64>(),
        3 * PL as u64 - 100
    );
}

#[test]
fn started_pieces_finish_before_new_ones_and_memory_cap_holds() {
    let mut p = picker(20, 2);
    let mut a = vec![];
    p.pick(Has::All, 2, |_| false, &mut a);
    assert_eq!(pieces_of(&a).len(), 1);
    let first = a[0].piece.0;
    let mut b = vec![];
    p.pick(Has::All, 6, |_| false, &mut b);
    // Two more blocks of the started piece, then a second piece: never a third.
    assert_eq!(b[0].piece.0, first);
    assert_eq!(b[1].piece.0, first);
    assert_eq!(p.partial_count(), 2);
    let mut c = vec![];
    assert_eq!(
        p.pick(Has::All, 10, |_| false, &mut c),
        0,
        "both started pieces are fully requested"
    );
    assert_eq!(p.partial_count(), 2);
}

#[test]
fn failed_requests_return_and_bad_pieces_are_redownloaded() {
    let mut p = picker(1, 4);
    let mut out = vec![];
    p.pick(Has::All, 4, |_| false, &mut out);
    p.request_failed(&out[1]);
    let mut again = vec![];
    assert_eq!(
        p.pick(Has::All, 4, |r| out.contains(r) && *r != out[1], &mut again),
        1
    );
    assert_eq!(again[0], out[1]);
    for b in &out {
        p.block_received(b);
    }
    p.piece_verified(0, false);
    assert!(!p.have().get(0));
    let mut retry = vec![];
    assert_eq!(p.pick(Has::All, 10, |_| false, &mut retry), 4);
    complete(&mut p, &retry);
    assert!(p.is_complete());
}

#[test]
fn endgame_duplicates_outstanding_blocks_up_to_the_limit() {
    let mut p = picker(1, 4);
    let mut a = vec![];
    p.pick(Has::All, 10, |_| false, &mut a);
    assert_eq!(a.len(), 4);
    let mut b = vec![];
    p.pick(Has::All, 10, |_| false, &mut b);
    assert_eq!(
        b.len(),
        4,
        "a second peer duplicates every outstanding block"
    );
    let mut c = vec![];
    assert_eq!(
        p.pick(Has::All, 10, |_| false, &mut c),
        0,
        "at most {MAX_DUPLICATE_REQUESTS} peers per block"
    );
    // A block received once is not duplicated further, and a second copy is unwanted.
    assert_eq!(
        p.block_received(&a[0]),
        Received::Stored { duplicated: true }
    );
    assert_eq!(p.block_received(&b[0]), Received::Unwanted);
}

#[test]
fn no_endgame_while_fresh_pieces_remain_for_peer() {
    let mut p = picker(8, 1);
    let mut a = vec![];
    p.pick(Has::All, 100, |_| false, &mut a);
    assert_eq!(a.len(), 4);
    let mut b = vec![];
    // Memory cap reached but unstarted pieces remain: wait rather than duplicate.
    assert_eq!(p.pick(Has::All, 100, |_| false, &mut b), 0);
}

#[test]
fn wrong_blocks_are_unwanted() {
    let mut p = picker(2, 4);
    let mut a = vec![];
    p.pick(Has::All, 4, |_| false, &mut a);
    let mut bad = a[0];
    bad.len = 100;
    assert_eq!(p.block_received(&bad), Received::Unwanted);
    bad = a[0];
    bad.offset = 5;
    assert_eq!(p.block_received(&bad), Received::Unwanted);
    bad = a[0];
    bad.piece = PieceIndex(99);
    assert_eq!(p.block_received(&bad), Received::Unwanted);
}

#[test]
fn unwanted_pieces_are_never_picked_and_completion_counts_wanted_only() {
    let mut p = picker(6, 10);
    p.set_wanted(bf(6, &[1, 4]));
    let mut out = vec![];
    p.pick(Has::All, 100, |_| false, &mut out);
    assert_eq!(
        {
            let mut v = pieces_of(&out);
            v.sort();
            v
        },
        vec![1, 4]
    );
    complete(&mut p, &out);
    assert!(p.is_complete());
}

#[test]
fn peer_without_pieces_gets_nothing_and_departures_update_availability() {
    let mut p = picker(4, 10);
    let b = bf(4, &[2]);
    p.add_peer(Has::Some(&b));
    assert_eq!(p.availability(2), 1);
    let mut out = vec![];
    assert_eq!(
        p.pick(Has::Some(&Bitfield::new(4)), 10, |_| false, &mut out),
        0
    );
    p.pick(Has::Some(&b), 10, |_| false, &mut out);
    assert!(out.iter().all(|r| r.piece.0 == 2));
    p.remove_peer(Has::Some(&b));
    assert_eq!(p.availability(2), 0);
    p.add_peer(Has::All);
    assert_eq!(p.availability(3), 1);
}

#[test]
fn pick_where_skips_refused_pieces_and_unreceived_blocks_come_back() {
    let mut p = Picker::new(64 * 1024, 3 * 64 * 1024, Bitfield::new(3), 8, 1);
    let mut out = Vec::new();
    // Only piece 1 is allowed, and only while fresh.
    p.pick_where(
        Has::All,
        100,
        |_| false,
        |i, started| i == 1 && !started,
        &mut out,
    );
    assert_eq!(out.len(), 4);
    assert!(out.iter().all(|r| r.piece.0 == 1));
    for r in &out[..3] {
        assert!(matches!(p.block_received(r), Received::Stored { .. }));
    }
    // A refused started piece gets no endgame duplicates either.
    let mut none = Vec::new();
    p.pick_where(
        Has::All,
        100,
        |_| false,
        |i, started| i == 1 && !started,
        &mut none,
    );
    assert!(none.is_empty());
    // A discarded block is free again; a block not received cannot be discarded.
    assert!(p.unreceive(&out[0]));
    assert!(!p.unreceive(&out[0]));
    assert!(!p.unreceive(&out[3]));
    let mut again = Vec::new();
    p.pick_where(Has::All, 100, |r| *r == out[3], |i, _| i == 1, &mut again);
    assert_eq!(again, vec![out[0]]);
    assert!(matches!(p.block_received(&out[0]), Received::Stored { .. }));
    assert!(matches!(
        p.block_received(&out[3]),
        Received::PieceComplete { .. }
    ));
    // A complete piece (being verified) keeps its blocks.
    assert!(!p.unreceive(&out[1]));
}

#[test]
fn higher_ranks_first_and_rank_zero_never() {
    let mut p = picker(8, 100);
    // Ranks: 0 skip, 1 low, 2 normal, 3 high.
    p.set_ranks(vec![1, 0, 3, 2, 1, 3, 2, 0]);
    let mut out = Vec::new();
    let mut order = Vec::new();
    for _ in 0..8 {
        out.clear();
        p.pick(Has::All, 4, |_| false, &mut out);
        if out.is_empty() {
            break;
        }
        order.extend(pieces_of(&out));
        complete(&mut p, &out);
    }
    let rank_of = |i: u32| [1, 0, 3, 2, 1, 3, 2, 0][i as usize];
    let ranks: Vec<u8> = order.iter().map(|&i| rank_of(i)).collect();
    assert_eq!(ranks, vec![3, 3, 2, 2, 1, 1], "order {order:?}");
    assert!(p.is_complete());
    assert!(!p.have().get(1) && !p.have().get(7));
}

#[test]
fn sequential_mode_takes_pieces_in_order_within_the_window() {
    // 1 MiB pieces: a window of 32.
    let mut p = Picker::new(1 << 20, 100 << 20, Bitfield::new(100), 8, 3);
    p.set_sequential(true);
    let mut out = Vec::new();
    p.pick(Has::All, 64 * 8, |_| false, &mut out);
    assert_eq!(
        pieces_of(&out),
        (0..8).collect::<Vec<u32>>(),
        "eight in order"
    );
    // A peer that lacks piece 8 gets the next in order it has.
    let mut q = Picker::new(1 << 20, 100 << 20, Bitfield::new(100), 8, 3);
    q.set_sequential(true);
    let lacks: Bitfield = {
        let mut b = Bitfield::full(100);
        b.set(0, false);
        b
    };
    out.clear();
    q.pick(Has::Some(&lacks), 64, |_| false, &mut out);
    assert_eq!(pieces_of(&out), vec![1]);
    // Beyond the window, rarest first: a peer with only far pieces gets the rarest of them.
    let mut r = Picker::new(1 << 20, 100 << 20, Bitfield::new(100), 8, 3);
    r.set_sequential(true);
    r.add_peer(Has::Some(&bf(100, &[60, 70, 80])));
    r.add_peer(Has::Some(&bf(100, &[60, 80])));
    let far = bf(100, &[60, 70, 80]);
    out.clear();
    r.pick(Has::Some(&far), 64, |_| false, &mut out);
    assert_eq!(pieces_of(&out), vec![70], "rarest beyond the window");
    // The reading position moves with what is verified.
    let mut s = Picker::new(1 << 20, 100 << 20, Bitfield::new(100), 100, 3);
    s.set_sequential(true);
    for expect in 0..40u32 {
        out.clear();
        s.pick(Has::All, 64, |_| false, &mut out);
        assert_eq!(pieces_of(&out), vec![expect]);
        complete(&mut s, &out);
    }
}
