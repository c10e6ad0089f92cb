//! Crash safety of `burrow daemon`: it is killed with SIGKILL at random moments while two
//! torrents (one added as a .torrent, one as a magnet link) download from libtorrent seeders,
//! and restarted each time. After every kill the
//! database may only claim pieces whose bytes on disk verify, and never fewer than it claimed
//! before; in the end every file is right, and what the seeders sent beyond the torrents'
//! size stays within what the pieces in flight at each kill can account for.

mod common;
mod daemon_support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use burrow_swarm::metainfo::{Info, Metainfo};
use burrow_swarm::torrent::bitfield::Bitfield;
use burrow_swarm::torrent::resume::ResumeData;
use burrow_swarm::torrent::storage::Storage;
use burrow_swarm::types::{InfoHash, PieceIndex};
use common::*;
use daemon_support::*;
use serde_json::json;

const PIECE: u32 = 65_536;
/// Each seeder's upload cap, bytes/s: slow enough that a download spans many kills.
const SEED_RATE: u64 = 400_000;
const CHECKPOINT_SECS: f64 = 0.25;

/// Checks the database of a dead daemon: every piece it claims verifies on disk. Returns the
/// claimed pieces per torrent.
fn check_claims(
    db: &Path,
    infos: &HashMap<InfoHash, Info>,
    dl: &Path,
) -> HashMap<InfoHash, Bitfield> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare("SELECT data FROM resume").unwrap();
    let blobs: Vec<Vec<u8>> = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = HashMap::new();
    for blob in blobs {
        let r = ResumeData::decode(&blob).expect("stored resume data decodes");
        let info = &infos[&r.info_hash];
        let storage = Storage::new(info, dl);
        let mut buf = Vec::new();
        for p in r.have.ones() {
            assert!(
                storage.check_piece(
                    PieceIndex(p),
                    info.piece_len(PieceIndex(p)),
                    &info.pieces[p as usize],
                    &mut buf
                ),
                "piece {p} of {} is marked verified but its bytes on disk do not match",
                info.name
            );
        }
        out.insert(r.info_hash, r.have);
    }
    out
}

/// The seeder's total payload upload, from its last status line.
fn seeder_uploaded(p: &Proc) -> u64 {
    let out = p.output();
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("\"total_upload\""))
        .unwrap_or_else(|| panic!("no status from {}:\n{out}", p.name));
    line.split("\"total_upload\": ")
        .nth(1)
        .unwrap()
        .trim_end_matches('}')
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn sigkill_at_random_moments_never_loses_or_invents_verified_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tracker = tracker::Tracker::start();
    let multi = make_set(
        &d.join("src"),
        "multi",
        &[
            ("a.bin", 5_000_000),
            ("sub/b.bin", 2_000_000),
            ("sub/c.txt", 70_001),
        ],
    );
    let single = make_set(&d.join("src"), "single", &[("single.bin", 5_000_000)]);
    let args = ["--piece-length", "65536", "--tracker", &tracker.url()];
    let (t_multi, _) = create_torrent(&d.join("src/multi"), &d.join("multi.torrent"), &args);
    let (t_single, single_magnet) = create_torrent(
        &d.join("src/single/single.bin"),
        &d.join("single.torrent"),
        &args,
    );
    let mut infos = HashMap::new();
    let mut total = 0u64;
    for t in [&t_multi, &t_single] {
        let info = Metainfo::from_bytes(&std::fs::read(t).unwrap())
            .unwrap()
            .info;
        total += info.total_length;
        infos.insert(info.info_hash, info);
    }
    let rate = SEED_RATE.to_string();
    let seeders = [
        Proc::spawn(
            "lt-multi",
            libtorrent(&[
                "--mode",
                "seed",
                "--torrent",
                t_multi.to_str().unwrap(),
                "--save",
                d.join("src").to_str().unwrap(),
                "--upload-limit",
                &rate,
                "--timeout",
                "300",
            ]),
            d,
        ),
        Proc::spawn(
            "lt-single",
            libtorrent(&[
                "--mode",
                "seed",
                "--torrent",
                t_single.to_str().unwrap(),
                "--save",
                d.join("src/single").to_str().unwrap(),
                "--upload-limit",
                &rate,
                "--timeout",
                "300",
            ]),
            d,
        ),
    ];
    let start = Instant::now();
    while tracker.announces.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the seeders never announced"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let (rpc, peer) = (free_port(), free_port());
    let config = write_config(
        d,
        rpc,
        peer,
        &format!("checkpoint_interval_secs = {CHECKPOINT_SECS}"),
        "",
    );
    let mut daemon = Daemon::start(d, "daemon-0", &config, rpc, peer);
    daemon.add_torrent(&t_multi, json!({}));
    // The other by magnet link: its metadata comes from the seeder and must be kept too.
    daemon.call("torrent-add", json!({ "filename": single_magnet }));

    let db = d.join("data/daemon.sqlite");
    let dl = d.join("dl");
    let mut claimed: HashMap<InfoHash, Bitfield> = HashMap::new();
    let mut rng = 0x5eed_c0ff_ee15_u64;
    let mut kills = 0;
    let started = Instant::now();
    loop {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(300 + rng % 2200));
        let t = daemon.torrents(&["percentDone"]);
        if t.len() == 2 && t.iter().all(|t| t["percentDone"] == 1.0) {
            break;
        }
        daemon.kill();
        kills += 1;
        let now = check_claims(&db, &infos, &dl);
        for (ih, before) in &claimed {
            let after = now.get(ih).expect("resume data never disappears");
            assert!(
                before.ones().all(|p| after.get(p)),
                "pieces claimed before kill {kills} are no longer claimed"
            );
        }
        let pieces: u32 = now.values().map(|h| h.count()).sum();
        eprintln!(
            "kill {kills} at {:.1}s: {pieces} pieces recorded",
            started.elapsed().as_secs_f64()
        );
        claimed = now;
        assert!(
            kills < 80,
            "the downloads do not advance between kills:\n{}",
            daemon.proc.output()
        );
        daemon = Daemon::start(d, &format!("daemon-{kills}"), &config, rpc, peer);
    }
    assert!(
        kills >= 10,
        "only {kills} kills before the downloads finished; slow the seeders down"
    );
    assert_set(&dl, "multi", &multi);
    assert_set(&dl, "", &single);

    // A clean stop records everything.
    let st = daemon.proc.terminate(Duration::from_secs(20));
    assert!(st.success(), "{}", daemon.proc.output());
    let last = check_claims(&db, &infos, &dl);
    assert!(
        last.values().all(|h| h.is_full()),
        "every piece is recorded after a clean stop"
    );

    // Everything sent beyond the torrents' size was in flight at a kill: at most the pieces
    // verified within one checkpoint interval (pieces written but not yet recorded are found
    // by re-hashing) plus a couple of pieces per peer being assembled and what sat in socket
    // buffers.
    std::thread::sleep(Duration::from_millis(1500));
    let sent: u64 = seeders.iter().map(seeder_uploaded).sum();
    let per_kill =
        (2 * SEED_RATE) as f64 * CHECKPOINT_SECS + (2 * PIECE as u64 * 2) as f64 + 128.0 * 1024.0;
    let extra = sent.saturating_sub(total);
    eprintln!("{kills} kills; seeders sent {sent} for {total} bytes: {extra} again ({:.0} per kill, bound {per_kill:.0})", extra as f64 / kills as f64);
    assert!(
        (extra as f64) <= kills as f64 * per_kill,
        "{extra} bytes downloaded again over {kills} kills"
    );
}
