//! Cores driven against each other in memory with a fake clock: whole downloads, magnet
//! metadata exchange and bans, with no sockets and no sleeps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use super::exchange::PEX_FIRST_DELAY;
use super::*;
use crate::connectivity::Route;
use crate::metainfo::info_of;
use crate::types::PieceIndex;
use crate::wire::{Handshake, PexFlags, PexMessage, PexPeer};

struct Node {
    core: TorrentCore,
    data: Vec<u8>,
    /// Flip a byte in every block this node serves.
    corrupt: bool,
    /// Flip a byte in one block of every `corrupt_every` it serves (0: none).
    corrupt_every: usize,
    /// Never serve the last block of a piece (withholding).
    withhold_last: bool,
    /// Addresses it banned, with the reason.
    bans: Vec<(IpAddr, BanReason)>,
    completed: bool,
}

fn torrent(len: usize, piece_length: u32) -> (Arc<Info>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..len).map(|i| (i * 31 % 253) as u8).collect();
    std::fs::write(dir.path().join("f"), &data).unwrap();
    (Arc::new(info_of(&dir.path().join("f"), piece_length)), data)
}

fn node(info: &Arc<Info>, data: Option<&[u8]>, id: u8, magnet: bool) -> Node {
    node_seeded(info, data, id, magnet, id as u64)
}

fn node_seeded(info: &Arc<Info>, data: Option<&[u8]>, id: u8, magnet: bool, seed: u64) -> Node {
    let core_info = if magnet { None } else { Some(info.clone()) };
    let mut core = TorrentCore::new(
        info.info_hash,
        PeerId([id; 20]),
        core_info,
        CoreConfig::default(),
        seed,
    );
    let have = if data.is_some() {
        Bitfield::full(info.piece_count())
    } else {
        Bitfield::new(info.piece_count())
    };
    if !magnet {
        core.attach(have);
    }
    Node {
        core,
        data: data
            .map(|d| d.to_vec())
            .unwrap_or_else(|| vec![0; info.total_length as usize]),
        corrupt: false,
        corrupt_every: 0,
        withhold_last: false,
        bans: Vec::new(),
        completed: false,
    }
}

fn connect(nodes: &mut [Node], a: usize, b: usize, now: Instant) {
    // Peer key in node x for node y is y.
    let hs = |n: &Node, id: usize| Handshake::ours(n.core.info_hash(), PeerId([id as u8 + 1; 20]));
    let ha = hs(&nodes[a], a);
    let hb = hs(&nodes[b], b);
    let addr = |i: usize| SocketAddr::from(([10, 0, 0, i as u8 + 1], 6881));
    nodes[a].core.peer_connected(
        b as u64,
        PeerState::new(addr(b), hb, Route::OutgoingTcp, now),
        now,
    );
    nodes[b].core.peer_connected(
        a as u64,
        PeerState::new(addr(a), ha, Route::IncomingTcp, now),
        now,
    );
}

/// Runs actions until quiet; returns the number of messages delivered.
fn pump(nodes: &mut [Node], now: Instant) -> usize {
    let mut delivered = 0;
    loop {
        let mut progressed = false;
        for i in 0..nodes.len() {
            while let Some(a) = nodes[i].core.poll_action() {
                progressed = true;
                match a {
                    Action::Send(to, m) => {
                        delivered += 1;
                        nodes[to as usize].core.peer_messages(i as u64, [m], now);
                    }
                    Action::Serve(to, r) => {
                        let info = nodes[i].core.info().unwrap().clone();
                        let start = info.piece_offset(r.piece) as usize + r.offset as usize;
                        let last = r.offset + r.len == info.piece_len(r.piece);
                        if nodes[i].withhold_last && last {
                            continue;
                        }
                        let mut block = nodes[i].data[start..start + r.len as usize].to_vec();
                        let every = nodes[i].corrupt_every;
                        let nth = start / crate::types::BLOCK_SIZE as usize;
                        if nodes[i].corrupt || (every > 0 && nth % every == 0) {
                            block[0] ^= 0xff;
                        }
                        nodes[i].core.record_upload(to, r.len as u64);
                        let m = Message::Piece {
                            piece: r.piece,
                            offset: r.offset,
                            data: block.into(),
                        };
                        nodes[to as usize].core.peer_messages(i as u64, [m], now);
                    }
                    Action::Verify { piece, data } => {
                        let info = nodes[i].core.info().unwrap().clone();
                        let ok = Sha1::digest(&data).as_slice() == info.pieces[piece as usize].0;
                        if ok {
                            let start = info.piece_offset(PieceIndex(piece)) as usize;
                            nodes[i].data[start..start + data.len()].copy_from_slice(&data);
                        }
                        nodes[i].core.piece_checked(piece, ok, data);
                    }
                    Action::MetadataReady(_) => {
                        let n = nodes[i].core.info().unwrap().piece_count();
                        nodes[i].core.attach(Bitfield::new(n));
                    }
                    Action::Completed => nodes[i].completed = true,
                    Action::Ban(ip, reason) => nodes[i].bans.push((ip, reason)),
                    Action::Close(peer, _) => {
                        nodes[i].core.peer_closed(peer);
                        nodes[peer as usize].core.peer_closed(i as u64);
                    }
                    _ => {}
                }
            }
        }
        if !progressed {
            return delivered;
        }
    }
}

fn run(nodes: &mut [Node], secs: u64) -> Instant {
    let mut now = Instant::now();
    for _ in 0..secs {
        pump(nodes, now);
        if nodes.iter().all(|n| n.completed) {
            break;
        }
        now += Duration::from_secs(1);
        for n in nodes.iter_mut() {
            n.core.tick(now);
        }
    }
    pump(nodes, now);
    now
}

#[test]
fn leecher_downloads_everything_from_a_seed() {
    let (info, data) = torrent(1_000_000, 64 * 1024);
    let mut nodes = vec![
        node(&info, Some(&data), 1, false),
        node(&info, None, 2, false),
    ];
    nodes[0].completed = true;
    connect(&mut nodes, 1, 0, Instant::now());
    run(&mut nodes, 30);
    assert!(nodes[1].completed);
    assert_eq!(nodes[1].data, data);
    assert_eq!(nodes[1].core.phase(), Phase::Complete);
    let s = nodes[1].core.stats();
    assert_eq!(s.downloaded, 1_000_000);
    assert_eq!(s.hash_failures, 0);
    // Both are seeds; the leecher dialled the seed and nobody has reached it from outside,
    // so it keeps the link as an anchor for holepunch rendezvous.
    assert_eq!(s.peers, 1);
    // Once somebody reaches it, the link is useless and closes on the next tick.
    nodes[1].core.set_anchors(0);
    let now = Instant::now() + Duration::from_secs(60);
    nodes[1].core.tick(now);
    pump(&mut nodes, now);
    assert_eq!(nodes[1].core.stats().peers, 0);
    assert_eq!(nodes[0].core.stats().peers, 0);
}

/// The seed's upload total is every payload byte its driver reports, including what a
/// connection sent after the peer was already gone from the core.
#[test]
fn upload_sent_after_a_peer_closed_still_counts() {
    let (info, data) = torrent(300_000, 64 * 1024);
    let mut nodes = vec![
        node(&info, Some(&data), 1, false),
        node(&info, None, 2, false),
    ];
    connect(&mut nodes, 1, 0, Instant::now());
    run(&mut nodes, 30);
    assert!(nodes[1].completed);
    let before = nodes[0].core.stats().uploaded;
    assert_eq!(before, 300_000, "the harness reports each block served");
    nodes[0].core.peer_closed(1);
    nodes[0].core.record_upload(1, 16_384);
    assert_eq!(nodes[0].core.stats().uploaded, before + 16_384);
}

/// A complete seed keeps links to seeds only where they are a rendezvous path: up to
/// [`ANCHORS`] it dialled, every one that dialled it (the dialler decides), none that a
/// holepunch made or that cannot relay.
#[test]
fn complete_seed_keeps_anchors_and_closes_other_seed_links() {
    let (info, data) = torrent(100_000, 16 * 1024);
    let now = Instant::now();
    let mut us = node(&info, Some(&data), 1, false).core;
    let ext = |holepunch: bool| {
        let ids = if holepunch {
            LOCAL_EXTENSIONS
        } else {
            crate::wire::ExtensionIds {
                ut_holepunch: None,
                ..LOCAL_EXTENSIONS
            }
        };
        Message::Extended {
            id: 0,
            payload: ExtHandshake {
                ids,
                ..Default::default()
            }
            .encode()
            .into(),
        }
    };
    let peer = |k: u8, route: Route| {
        let hs = Handshake::ours(info.info_hash, PeerId([k + 10; 20]));
        PeerState::new(SocketAddr::from(([10, 0, 1, k], 6881)), hs, route, now)
    };
    // Four seeds we dialled (one cannot relay), one that dialled us, one holepunched.
    let links = [
        (1, Route::OutgoingTcp, true),
        (2, Route::OutgoingUtp, true),
        (3, Route::OutgoingTcp, true),
        (4, Route::OutgoingTcp, false),
        (5, Route::IncomingTcp, true),
        (6, Route::HolepunchedUtp, true),
    ];
    for (k, route, holepunch) in links {
        us.peer_connected(k as u64, peer(k, route), now);
        us.peer_messages(k as u64, [ext(holepunch), Message::HaveAll], now);
    }
    us.tick(now + Duration::from_secs(1));
    let mut closed = Vec::new();
    while let Some(a) = us.poll_action() {
        if let Action::Close(k, CloseReason::Useless) = a {
            us.peer_closed(k);
            closed.push(k);
        }
    }
    closed.sort();
    assert_eq!(
        closed,
        vec![3, 4, 6],
        "kept two dialled anchors and the one that dialled us"
    );
    // Reached from outside: no anchors wanted, only the link the other side keeps stays.
    us.set_anchors(0);
    us.tick(now + Duration::from_secs(2));
    while let Some(a) = us.poll_action() {
        if let Action::Close(k, CloseReason::Useless) = a {
            us.peer_closed(k);
            closed.push(k);
        }
    }
    closed[3..].sort();
    assert_eq!(closed, vec![3, 4, 6, 1, 2]);
    assert_eq!(us.stats().peers, 1);
    // A seed that announced the extension protocol but never sends its handshake is waited
    // for, then closed.
    let later = now + Duration::from_secs(3);
    us.peer_connected(7, peer(7, Route::OutgoingTcp), later);
    us.peer_messages(7, [Message::HaveAll], later);
    us.tick(later + Duration::from_secs(1));
    assert!(
        std::iter::from_fn(|| us.poll_action()).all(|a| !matches!(a, Action::Close(7, _))),
        "closed before its handshake could arrive"
    );
    us.tick(later + EXT_HANDSHAKE_WAIT);
    assert!(std::iter::from_fn(|| us.poll_action())
        .any(|a| matches!(a, Action::Close(7, CloseReason::Useless))));
}

#[test]
fn magnet_leecher_fetches_metadata_then_data() {
    let (info, data) = torrent(300_000, 16 * 1024);
    assert!(
        info.raw.len() > 300,
        "metadata spans more than a trivial message"
    );
    let mut nodes = vec![
        node(&info, Some(&data), 1, false),
        node(&info, None, 2, true),
    ];
    nodes[0].completed = true;
    assert_eq!(nodes[1].core.phase(), Phase::FetchingMetadata);
    connect(&mut nodes, 1, 0, Instant::now());
    run(&mut nodes, 30);
    assert_eq!(nodes[1].core.info().unwrap().info_hash, info.info_hash);
    assert!(nodes[1].completed);
    assert_eq!(nodes[1].data, data);
}

#[test]
fn three_leechers_share_pieces_with_one_seed() {
    let (info, data) = torrent(2_000_000, 32 * 1024);
    let mut nodes = vec![node(&info, Some(&data), 1, false)];
    for id in 2..5 {
        nodes.push(node(&info, None, id, false));
    }
    nodes[0].completed = true;
    let now = Instant::now();
    for a in 0..4 {
        for b in a + 1..4 {
            connect(&mut nodes, a, b, now);
        }
    }
    run(&mut nodes, 60);
    for n in &nodes[1..] {
        assert!(n.completed);
        assert_eq!(n.data, data);
    }
    let traded: u64 = nodes[1..].iter().map(|n| n.core.stats().uploaded).sum();
    assert!(traded > 0, "leechers uploaded to each other");
}

#[test]
fn a_peer_sending_bad_data_is_banned_and_the_good_peer_finishes() {
    let (info, data) = torrent(500_000, 16 * 1024);
    let mut nodes = vec![
        node(&info, Some(&data), 1, false),
        node(&info, None, 2, false),
        node(&info, Some(&data), 3, false),
    ];
    nodes[0].corrupt = true;
    nodes[0].completed = true;
    nodes[2].completed = true;
    let now = Instant::now();
    connect(&mut nodes, 1, 0, now);
    pump(&mut nodes, now);
    let banned_before = nodes[1].core.stats().hash_failures;
    assert!(banned_before >= 1);
    assert!(
        nodes[1].core.peers().all(|(k, _)| *k != 0),
        "the corrupting peer was dropped"
    );
    connect(&mut nodes, 1, 2, now);
    run(&mut nodes, 60);
    assert!(nodes[1].completed);
    assert_eq!(nodes[1].data, data);
}

/// A piece leaving the window (verified and written) lets requests go out at once, not at
/// the next tick: a window full of pieces waiting for the disk must not leave the network
/// idle for up to a second.
#[test]
fn a_piece_leaving_the_window_refills_requests_at_once() {
    let (info, data) = torrent(8 * 16 * 1024, 16 * 1024);
    let config = CoreConfig {
        max_partial_bytes: 2 * 16 * 1024,
        ..CoreConfig::default()
    };
    let mut core = TorrentCore::new(
        info.info_hash,
        PeerId([1; 20]),
        Some(info.clone()),
        config,
        1,
    );
    core.attach(Bitfield::new(info.piece_count()));
    let now = Instant::now();
    let hs = Handshake::ours(info.info_hash, PeerId([9; 20]));
    let addr = SocketAddr::from(([10, 0, 0, 9], 1));
    core.peer_connected(7, PeerState::new(addr, hs, Route::OutgoingTcp, now), now);
    core.peer_messages(7, [Message::HaveAll, Message::Unchoke], now);
    let drain = |core: &mut TorrentCore| {
        let (mut requests, mut verify) = (Vec::new(), Vec::new());
        while let Some(a) = core.poll_action() {
            match a {
                Action::Send(7, Message::Request(r)) => requests.push(r),
                Action::Verify { piece, data } => verify.push((piece, data)),
                _ => {}
            }
        }
        (requests, verify)
    };
    let (first, _) = drain(&mut core);
    assert_eq!(first.len(), 2, "a window of two one-block pieces");
    let blocks: Vec<Message> = first
        .iter()
        .map(|r| {
            let at = info.piece_offset(r.piece) as usize;
            Message::Piece {
                piece: r.piece,
                offset: 0,
                data: data[at..at + r.len as usize].to_vec().into(),
            }
        })
        .collect();
    core.peer_messages(7, blocks, now);
    let (more, mut verify) = drain(&mut core);
    assert!(
        more.is_empty(),
        "the window is full of pieces on their way to the disk"
    );
    assert_eq!(verify.len(), 2);
    let (piece, buf) = verify.remove(0);
    core.piece_checked(piece, true, buf);
    let (refill, _) = drain(&mut core);
    assert_eq!(refill.len(), 1, "the freed place is used at once");
}

#[test]
fn requests_are_validated_and_rejected_when_choked() {
    let (info, data) = torrent(100_000, 16 * 1024);
    let mut seed = node(&info, Some(&data), 1, false);
    let now = Instant::now();
    let hs = Handshake::ours(info.info_hash, PeerId([9; 20]));
    seed.core.peer_connected(
        7,
        PeerState::new(
            SocketAddr::from(([10, 0, 0, 9], 1)),
            hs,
            Route::IncomingTcp,
            now,
        ),
        now,
    );
    while seed.core.poll_action().is_some() {}
    let bad = BlockRef {
        piece: PieceIndex(0),
        offset: 0,
        len: 16384,
    };
    seed.core.peer_messages(7, [Message::Request(bad)], now);
    assert!(
        matches!(
            seed.core.poll_action(),
            Some(Action::Send(7, Message::Reject(_)))
        ),
        "choked: rejected"
    );
    seed.core.peer_messages(7, [Message::Interested], now);
    assert!(matches!(
        seed.core.poll_action(),
        Some(Action::Send(7, Message::Unchoke))
    ));
    let past_end = BlockRef {
        piece: PieceIndex(6),
        offset: 16384,
        len: 16384,
    };
    seed.core
        .peer_messages(7, [Message::Request(past_end)], now);
    assert!(matches!(
        seed.core.poll_action(),
        Some(Action::Send(7, Message::Reject(_)))
    ));
    seed.core.peer_messages(7, [Message::Request(bad)], now);
    assert!(matches!(seed.core.poll_action(), Some(Action::Serve(7, r)) if r == bad));
    // A have for a piece beyond the torrent is a protocol violation.
    seed.core
        .peer_messages(7, [Message::Have(PieceIndex(999))], now);
    assert!(matches!(
        seed.core.poll_action(),
        Some(Action::Close(7, CloseReason::Protocol(_)))
    ));
}

#[test]
fn duplicate_and_self_connections_are_closed() {
    let (info, _) = torrent(10_000, 16 * 1024);
    let mut n = node(&info, None, 1, false);
    let now = Instant::now();
    let addr = SocketAddr::from(([10, 0, 0, 2], 1));
    n.core.peer_connected(
        1,
        PeerState::new(
            addr,
            Handshake::ours(info.info_hash, PeerId([1; 20])),
            Route::IncomingTcp,
            now,
        ),
        now,
    );
    assert!(matches!(
        n.core.poll_action(),
        Some(Action::Close(1, CloseReason::Duplicate))
    ));
    n.core.peer_connected(
        2,
        PeerState::new(
            addr,
            Handshake::ours(info.info_hash, PeerId([5; 20])),
            Route::IncomingTcp,
            now,
        ),
        now,
    );
    while n.core.poll_action().is_some() {}
    n.core.peer_connected(
        3,
        PeerState::new(
            addr,
            Handshake::ours(info.info_hash, PeerId([5; 20])),
            Route::IncomingTcp,
            now,
        ),
        now,
    );
    assert!(matches!(
        n.core.poll_action(),
        Some(Action::Close(3, CloseReason::Duplicate))
    ));
}

fn ext_handshake_from(
    core: &mut TorrentCore,
    key: u64,
    listen_port: Option<u16>,
    holepunch: bool,
    now: Instant,
) {
    let mut ids = crate::wire::LOCAL_EXTENSIONS;
    if !holepunch {
        ids.ut_holepunch = None;
    }
    let hs = crate::wire::ExtHandshake {
        ids,
        listen_port,
        ..Default::default()
    };
    core.peer_messages(
        key,
        [Message::Extended {
            id: 0,
            payload: hs.encode().into(),
        }],
        now,
    );
}

fn holepunch_sent(core: &mut TorrentCore) -> Vec<(u64, crate::wire::HolepunchMsg)> {
    let mut out = vec![];
    while let Some(a) = core.poll_action() {
        if let Action::Send(k, Message::Extended { id: 4, payload }) = a {
            out.push((k, crate::wire::HolepunchMsg::decode(&payload).unwrap()));
        }
    }
    out
}

#[test]
fn relay_introduces_two_peers_and_refuses_bad_rendezvous() {
    use crate::wire::{HolepunchError as E, HolepunchMsg, HolepunchType as T};
    let (info, _) = torrent(100_000, 16 * 1024);
    let mut relay = node(&info, None, 1, false).core;
    let now = Instant::now();
    let a_addr: SocketAddr = "57.66.1.10:40000".parse().unwrap();
    let b_addr: SocketAddr = "57.66.2.20:50000".parse().unwrap();
    let c_addr: SocketAddr = "57.66.3.30:60000".parse().unwrap();
    for (key, addr, id, hp) in [
        (10, a_addr, 10u8, true),
        (20, b_addr, 20, true),
        (30, c_addr, 30, false),
    ] {
        relay.peer_connected(
            key,
            PeerState::new(
                addr,
                Handshake::ours(info.info_hash, PeerId([id; 20])),
                Route::IncomingTcp,
                now,
            ),
            now,
        );
        ext_handshake_from(&mut relay, key, Some(addr.port()), hp, now);
    }
    while relay.poll_action().is_some() {}
    let ask = |target: SocketAddr| Message::Extended {
        id: 4,
        payload: HolepunchMsg {
            kind: T::Rendezvous,
            addr: target,
            error: E::None,
        }
        .encode()
        .into(),
    };

    relay.peer_messages(10, [ask(b_addr)], now);
    let sent = holepunch_sent(&mut relay);
    assert_eq!(sent.len(), 2, "connect goes to both sides: {sent:?}");
    assert!(sent.contains(&(
        10,
        HolepunchMsg {
            kind: T::Connect,
            addr: b_addr,
            error: E::None
        }
    )));
    assert!(sent.contains(&(
        20,
        HolepunchMsg {
            kind: T::Connect,
            addr: a_addr,
            error: E::None
        }
    )));
    assert_eq!(relay.stats().relayed, 1);

    let refusals = [
        ("57.66.9.9:1".parse().unwrap(), E::NotConnected),
        (c_addr, E::NoSupport),
        (a_addr, E::NoSelf),
        ("127.0.0.1:6881".parse().unwrap(), E::NoSuchPeer),
        ("192.168.1.5:6881".parse().unwrap(), E::NoSuchPeer),
        ("57.66.2.20:0".parse().unwrap(), E::NoSuchPeer),
    ];
    for (target, err) in refusals {
        relay.peer_messages(10, [ask(target)], now);
        assert_eq!(
            holepunch_sent(&mut relay),
            vec![(
                10,
                HolepunchMsg {
                    kind: T::Error,
                    addr: target,
                    error: err
                }
            )],
            "target {target}"
        );
    }
    // The rate limit: the requester has used 7 of its rendezvous; the rest of the window
    // allows 3 more, then silence.
    let mut answered = 0;
    for _ in 0..10 {
        relay.peer_messages(10, [ask(b_addr)], now);
        answered += holepunch_sent(&mut relay).len();
    }
    assert_eq!(answered, 3 * 2);
    relay.peer_messages(
        10,
        [ask(b_addr)],
        now + super::exchange::RELAY_WINDOW + Duration::from_secs(1),
    );
    assert_eq!(
        holepunch_sent(&mut relay).len(),
        2,
        "a new window allows rendezvous again"
    );
}

#[test]
fn pex_tells_each_peer_about_the_others_once_a_minute() {
    let (info, _) = torrent(100_000, 16 * 1024);
    let mut c = node(&info, None, 1, false).core;
    let now = Instant::now();
    let a: SocketAddr = "57.66.1.10:40000".parse().unwrap();
    let b: SocketAddr = "57.66.2.20:1234".parse().unwrap();
    c.peer_connected(
        1,
        PeerState::new(
            a,
            Handshake::ours(info.info_hash, PeerId([7; 20])),
            Route::OutgoingTcp,
            now,
        ),
        now,
    );
    c.peer_connected(
        2,
        PeerState::new(
            b,
            Handshake::ours(info.info_hash, PeerId([8; 20])),
            Route::IncomingTcp,
            now,
        ),
        now,
    );
    ext_handshake_from(&mut c, 1, None, true, now);
    ext_handshake_from(&mut c, 2, Some(50000), true, now);
    while c.poll_action().is_some() {}
    let pex_of = |c: &mut TorrentCore| {
        let mut out = vec![];
        while let Some(act) = c.poll_action() {
            if let Action::Send(k, Message::Extended { id: 1, payload }) = act {
                out.push((k, PexMessage::decode(&payload).unwrap()));
            }
        }
        out.sort_by_key(|x| x.0);
        out
    };
    c.tick(now + PEX_FIRST_DELAY / 2);
    assert!(pex_of(&mut c).is_empty(), "not before the first delay");
    c.tick(now + PEX_FIRST_DELAY);
    let sent = pex_of(&mut c);
    assert_eq!(sent.len(), 2);
    // Peer 1 hears of peer 2 at its announced listen port; peer 2 of peer 1, flagged reachable.
    assert_eq!(
        sent[0].1.added.iter().map(|p| p.addr).collect::<Vec<_>>(),
        vec!["57.66.2.20:50000".parse::<SocketAddr>().unwrap()]
    );
    assert!(sent[0].1.added[0].flags.has(PexFlags::HOLEPUNCH));
    assert_eq!(sent[1].1.added[0].addr, a);
    assert!(sent[1].1.added[0]
        .flags
        .has(PexFlags::REACHABLE | PexFlags::HOLEPUNCH));
    c.tick(now + Duration::from_secs(30));
    assert!(
        pex_of(&mut c).is_empty(),
        "at most once a minute, and nothing new"
    );
    c.peer_closed(2);
    c.tick(now + Duration::from_secs(70));
    let sent = pex_of(&mut c);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].1.dropped,
        vec!["57.66.2.20:50000".parse::<SocketAddr>().unwrap()]
    );
    // Received PEX becomes peers to dial, remembered with the peer that told us.
    let msg = PexMessage {
        added: vec![PexPeer {
            addr: "57.66.5.5:7".parse().unwrap(),
            flags: PexFlags(PexFlags::HOLEPUNCH),
        }],
        dropped: vec![],
    };
    c.peer_messages(
        1,
        [Message::Extended {
            id: 1,
            payload: msg.encode().into(),
        }],
        now,
    );
    let got: Vec<_> = std::iter::from_fn(|| c.poll_action())
        .filter_map(|a| match a {
            Action::PexPeers { via, peers, .. } => Some((via, peers)),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![(a, msg.added)]);
}

#[test]
fn pex_listing_ourselves_is_not_a_peer_to_dial() {
    let (info, _) = torrent(50_000, 16 * 1024);
    let mut c = node(&info, None, 1, false).core;
    c.set_listen_port(Some(6881));
    let now = Instant::now();
    let relay: SocketAddr = "57.66.1.1:6881".parse().unwrap();
    c.peer_connected(
        1,
        PeerState::new(
            relay,
            Handshake::ours(info.info_hash, PeerId([7; 20])),
            Route::OutgoingTcp,
            now,
        ),
        now,
    );
    let hs = crate::wire::ExtHandshake {
        ids: crate::wire::LOCAL_EXTENSIONS,
        yourip: Some("57.66.2.1".parse().unwrap()),
        ..Default::default()
    };
    c.peer_messages(
        1,
        [Message::Extended {
            id: 0,
            payload: hs.encode().into(),
        }],
        now,
    );
    while c.poll_action().is_some() {}
    let other = PexPeer {
        addr: "57.66.2.2:6881".parse().unwrap(),
        flags: PexFlags(PexFlags::HOLEPUNCH),
    };
    let us = PexPeer {
        addr: "57.66.2.1:6881".parse().unwrap(),
        flags: PexFlags(PexFlags::HOLEPUNCH),
    };
    let msg = PexMessage {
        added: vec![us, other],
        dropped: vec![],
    };
    c.peer_messages(
        1,
        [Message::Extended {
            id: 1,
            payload: msg.encode().into(),
        }],
        now,
    );
    let got: Vec<_> = std::iter::from_fn(|| c.poll_action())
        .filter_map(|a| match a {
            Action::PexPeers { peers, .. } => Some(peers),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![vec![other]]);
}

#[test]
fn extension_handshake_carries_both_families_and_learns_the_other() {
    let (info, _) = torrent(50_000, 16 * 1024);
    let mut c = node(&info, None, 1, false).core;
    let now = Instant::now();
    c.set_own_addresses(
        Some("57.66.1.1".parse().unwrap()),
        Some("2001:db8:1::5".parse().unwrap()),
    );
    c.set_listen_port(Some(40001));
    let addr: SocketAddr = "57.66.9.9:6881".parse().unwrap();
    c.peer_connected(
        5,
        PeerState::new(
            addr,
            Handshake::ours(info.info_hash, PeerId([3; 20])),
            Route::IncomingTcp,
            now,
        ),
        now,
    );
    let ours = std::iter::from_fn(|| c.poll_action())
        .find_map(|a| match a {
            Action::Send(5, Message::Extended { id: 0, payload }) => {
                Some(crate::wire::ExtHandshake::decode(&payload).unwrap())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(ours.ipv4, Some("57.66.1.1".parse().unwrap()));
    assert_eq!(ours.ipv6, Some("2001:db8:1::5".parse().unwrap()));
    assert_eq!(ours.listen_port, Some(40001));
    assert_eq!(ours.yourip, Some(addr.ip()));
    // The peer, on IPv4, names its IPv6 address: kept as a way back to it.
    let theirs = crate::wire::ExtHandshake {
        ipv6: Some("2001:db8:9::9".parse().unwrap()),
        listen_port: Some(7000),
        ..Default::default()
    };
    c.peer_messages(
        5,
        [Message::Extended {
            id: 0,
            payload: theirs.encode().into(),
        }],
        now,
    );
    let other = std::iter::from_fn(|| c.poll_action()).find_map(|a| match a {
        Action::OtherFamily { key, addr } => Some((key, addr)),
        _ => None,
    });
    assert_eq!(other, Some((5, "[2001:db8:9::9]:7000".parse().unwrap())));
}

#[path = "smartban_tests.rs"]
mod smartban;
