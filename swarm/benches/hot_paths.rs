//! Benchmarks of the download hot path: piece hashing, peer-wire decoding, the picker, the
//! torrent core's handling of arriving blocks, and writing verified pieces to disk. Numbers
//! are recorded in the README.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sha1::{Digest, Sha1};

use burrow_swarm::connectivity::Route;
use burrow_swarm::metainfo::Info;
use burrow_swarm::peer::PeerState;
use burrow_swarm::torrent::bitfield::Bitfield;
use burrow_swarm::torrent::core::{Action, CoreConfig, TorrentCore};
use burrow_swarm::torrent::picker::{Has, Picker, Received};
use burrow_swarm::torrent::piece_buf::PieceBuf;
use burrow_swarm::torrent::storage::Storage;
use burrow_swarm::types::{InfoHash, PeerId, PieceIndex, BLOCK_SIZE};
use burrow_swarm::wire::{Handshake, Message};

const PIECE: u32 = 1 << 20;

fn hashing(c: &mut Criterion) {
    let data = vec![0x5au8; PIECE as usize];
    let mut g = c.benchmark_group("sha1");
    g.throughput(Throughput::Bytes(PIECE as u64));
    g.bench_function("1MiB piece", |b| b.iter(|| Sha1::digest(&data)));
    g.finish();
}

fn decoding(c: &mut Criterion) {
    // 64 piece messages of 16 KiB, as they arrive from a fast seed.
    let mut wire = BytesMut::new();
    let block = Bytes::from(vec![1u8; BLOCK_SIZE as usize]);
    for i in 0..64u32 {
        Message::Piece {
            piece: PieceIndex(i / 64),
            offset: (i % 64) * BLOCK_SIZE,
            data: block.clone(),
        }
        .encode(&mut wire);
    }
    let wire = wire.freeze();
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("decode 64 piece messages", |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut buf| {
                let mut n = 0;
                while let Ok(Some(_)) = Message::decode(&mut buf) {
                    n += 1;
                }
                assert_eq!(n, 64);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn picking(c: &mut Criterion) {
    // A 1 GiB torrent: pick and receive every block once, in batches of 64.
    let pieces = 1024u32;
    let mut g = c.benchmark_group("picker");
    g.throughput(Throughput::Elements(
        pieces as u64 * (PIECE / BLOCK_SIZE) as u64,
    ));
    g.sample_size(10);
    g.bench_function("pick+receive all blocks of 1 GiB", |b| {
        b.iter(|| {
            let mut p = Picker::new(
                PIECE,
                pieces as u64 * PIECE as u64,
                Bitfield::new(pieces),
                32,
                1,
            );
            p.add_peer(Has::All);
            let mut out = Vec::with_capacity(64);
            loop {
                out.clear();
                if p.pick(Has::All, 64, |_| false, &mut out) == 0 {
                    break;
                }
                for r in &out {
                    if let Received::PieceComplete { .. } = p.block_received(r) {
                        p.piece_verified(r.piece.0, true);
                    }
                }
            }
            assert!(p.is_complete());
        })
    });
    g.finish();
}

/// A one-file torrent of `pieces` pieces of [`PIECE`] bytes (their hashes all zero).
fn one_file_info(pieces: u32) -> Info {
    let mut raw = format!(
        "d6:lengthi{}e4:name1:x12:piece lengthi{PIECE}e6:pieces{}:",
        pieces as u64 * PIECE as u64,
        pieces * 20
    )
    .into_bytes();
    raw.extend(std::iter::repeat_n(0u8, pieces as usize * 20));
    raw.push(b'e');
    Info::from_bytes(&raw).unwrap()
}

fn core_blocks(c: &mut Criterion) {
    // The torrent core receiving a 256 MiB torrent from one seed: requests out, blocks in,
    // pieces to verify (verification itself excluded).
    let pieces = 256u32;
    let info = Arc::new(one_file_info(pieces));
    let block = Bytes::from(vec![7u8; BLOCK_SIZE as usize]);
    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Bytes(pieces as u64 * PIECE as u64));
    g.sample_size(10);
    g.bench_function("receive 256 MiB from one seed", |b| {
        b.iter(|| {
            let now = Instant::now();
            let mut core = TorrentCore::new(
                info.info_hash,
                PeerId([1; 20]),
                Some(info.clone()),
                CoreConfig::default(),
                3,
            );
            core.attach(Bitfield::new(pieces));
            let hs = Handshake::ours(InfoHash([0; 20]), PeerId([2; 20]));
            core.peer_connected(
                1,
                PeerState::new(
                    SocketAddr::from(([10, 0, 0, 1], 1)),
                    hs,
                    Route::OutgoingTcp,
                    now,
                ),
                now,
            );
            core.peer_messages(1, [Message::HaveAll, Message::Unchoke], now);
            let mut verified = 0;
            while verified < pieces {
                let mut replies = Vec::new();
                while let Some(a) = core.poll_action() {
                    match a {
                        Action::Send(_, Message::Request(r)) => replies.push(Message::Piece {
                            piece: r.piece,
                            offset: r.offset,
                            data: block.slice(..r.len as usize),
                        }),
                        Action::Verify { piece, data } => {
                            core.piece_checked(piece, true, data);
                            verified += 1;
                        }
                        _ => {}
                    }
                }
                core.peer_messages(1, replies, now);
            }
        })
    });
    g.finish();
}

fn writing(c: &mut Criterion) {
    // 64 MiB of verified 1 MiB pieces into a new file (in the system's temporary folder), as a
    // download writes them: by direct I/O, and through the page cache.
    let pieces = 64u32;
    let info = one_file_info(pieces);
    let piece = PieceBuf::from_slice(&vec![0x5au8; PIECE as usize]);
    let fresh = |direct: bool| {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::new(&info, dir.path()).with_direct_io(direct);
        (dir, s)
    };
    let write_all = |s: &Storage| {
        for p in 0..pieces {
            s.write_piece(PieceIndex(p), &piece).unwrap();
        }
    };
    let name = |direct: bool| {
        if direct {
            "write 64 MiB of pieces, direct I/O"
        } else {
            "write 64 MiB of pieces, page cache"
        }
    };
    // Wall time of the writing thread: the device's speed for direct I/O, memory's for the
    // page cache (whose write-back comes later, elsewhere).
    let mut g = c.benchmark_group("storage");
    g.throughput(Throughput::Bytes(pieces as u64 * PIECE as u64));
    g.sample_size(10);
    for direct in [true, false] {
        g.bench_function(name(direct), |b| {
            b.iter_batched(
                || fresh(direct),
                |(dir, s)| {
                    write_all(&s);
                    (dir, s)
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
    // CPU time of the writing thread (user + system): what a download pays per byte.
    let mut g = c.benchmark_group("storage-cpu");
    g.throughput(Throughput::Bytes(pieces as u64 * PIECE as u64));
    g.sample_size(10);
    for direct in [true, false] {
        g.bench_function(name(direct), |b| {
            b.iter_custom(|iters| {
                let mut cpu = std::time::Duration::ZERO;
                for _ in 0..iters {
                    let (dir, s) = fresh(direct);
                    let t0 = thread_cpu();
                    write_all(&s);
                    cpu += thread_cpu() - t0;
                    drop((s, dir));
                }
                cpu
            })
        });
    }
    g.finish();
}

/// User plus system time of the calling thread.
fn thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

criterion_group!(benches, hashing, decoding, picking, core_blocks, writing);
criterion_main!(benches);
