//! Choosing what to download, against a libtorrent 2.0 seeder on loopback: only the selected
//! files arrive (and no other file is created), `--list` numbers the files for a .torrent
//! and for a magnet link, a choice that does not fit is a clear error, priorities order the
//! download, and `--sequential` fetches pieces in order. The order is read from the
//! pipeline trace (`burrow::pipeline`), which logs every piece written.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// Five files, none aligned to the 32 KiB pieces, so every boundary piece is shared. In the
/// order the torrent lists them (by path), which is how they are numbered.
const FILES: &[(&str, usize)] = &[
    ("a/intro.mkv", 150_001),
    ("a/notes.txt", 7_000),
    ("b/extra.bin", 90_000),
    ("b/main.mkv", 400_003),
    ("c.nfo", 1_234),
];

struct Swarm {
    _dir: tempfile::TempDir,
    d: std::path::PathBuf,
    set: Vec<(String, Vec<u8>)>,
    torrent: std::path::PathBuf,
    magnet: String,
    _seed: Proc,
    peer: String,
}

fn swarm(upload_limit: Option<u32>) -> Swarm {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let set = make_set(&d.join("src"), "set", FILES);
    let (torrent, magnet) = create_torrent(
        &d.join("src/set"),
        &d.join("set.torrent"),
        &["--piece-length", "32768"],
    );
    let limit = upload_limit.map(|l| l.to_string());
    let src = d.join("src");
    let mut args = vec![
        "--mode",
        "seed",
        "--torrent",
        torrent.to_str().unwrap(),
        "--save",
        src.to_str().unwrap(),
    ];
    if let Some(l) = &limit {
        args.extend(["--upload-limit", l]);
    }
    let mut seed = Proc::spawn("lt-seed", libtorrent(&args), &d);
    let peer = format!("127.0.0.1:{}", lt_port(&mut seed));
    Swarm {
        _dir: dir,
        d,
        set,
        torrent,
        magnet,
        _seed: seed,
        peer,
    }
}

fn download(s: &Swarm, name: &str, source: &str, extra: &[&str]) -> Proc {
    let out = s.d.join(format!("out-{name}"));
    let mut args = vec![
        "download",
        source,
        "-o",
        out.to_str().unwrap(),
        "--peer",
        &s.peer,
    ];
    args.extend(extra);
    let mut cmd = burrow(&args, free_port(), &s.d.join(format!("state-{name}")));
    cmd.env("RUST_LOG", "info,burrow::pipeline=trace");
    Proc::spawn(name, cmd, &s.d)
}

/// Files under `root`, as paths relative to it.
fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(
                    e.path()
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

/// Pieces in the order the pipeline trace says they were written.
fn written_order(log: &str) -> Vec<u32> {
    log.lines()
        .filter(|l| l.contains(" written "))
        .filter_map(|l| l.split("piece=").nth(1)?.split(' ').next()?.parse().ok())
        .collect()
}

/// Pieces holding bytes of file `i` of `FILES` (32 KiB pieces).
fn pieces_of(i: usize) -> std::ops::Range<u32> {
    let start: usize = FILES[..i].iter().map(|f| f.1).sum();
    let end = start + FILES[i].1;
    (start / 32768) as u32..end.div_ceil(32768) as u32
}

#[test]
fn only_the_selected_files_arrive_and_no_other_file_is_created() {
    let s = swarm(None);
    for (name, extra) in [
        ("numbers", vec!["--files", "1,3"]),
        (
            "glob",
            vec!["--files-glob", "notes.*", "--files-glob", "b/main*"],
        ),
    ] {
        let mut dl = download(&s, name, s.torrent.to_str().unwrap(), &extra);
        dl.wait_success(Duration::from_secs(60));
        let out = s.d.join(format!("out-{name}"));
        let wanted: Vec<_> = [1, 3].iter().map(|&i| s.set[i].clone()).collect();
        assert_set(&out, "set", &wanted);
        let parts = format!(
            ".{}.parts",
            burrow_swarm::metainfo::Metainfo::from_bytes(&std::fs::read(&s.torrent).unwrap())
                .unwrap()
                .info
                .info_hash
                .to_hex()
        );
        assert_eq!(
            files_under(&out),
            vec![
                parts,
                "set/a/notes.txt".to_string(),
                "set/b/main.mkv".to_string()
            ],
            "only the selected files (and the shared pieces' edges)"
        );
        assert!(dl.output().contains("complete 100.0%"), "{}", dl.output());
        // Written pieces are only those holding selected files' bytes.
        let written = written_order(&dl.output());
        let allowed: Vec<u32> = pieces_of(1).chain(pieces_of(3)).collect();
        assert!(written.iter().all(|p| allowed.contains(p)), "{written:?}");
    }
}

#[test]
fn list_numbers_the_files_for_a_torrent_and_for_a_magnet() {
    let s = swarm(None);
    for (name, source) in [
        ("list-t", s.torrent.to_str().unwrap()),
        ("list-m", &s.magnet),
    ] {
        let mut dl = download(&s, name, source, &["--list"]);
        dl.wait_success(Duration::from_secs(60));
        let out = dl.output();
        for (n, (path, _)) in FILES.iter().enumerate() {
            let line = out
                .lines()
                .find(|l| l.ends_with(&format!("set/{path}")))
                .unwrap_or_else(|| panic!("{path} not listed:\n{out}"));
            assert!(line.trim_start().starts_with(&format!("{n} ")), "{line}");
        }
        assert!(out.contains("5 files"), "{out}");
        assert!(
            !s.d.join(format!("out-{name}/set")).exists(),
            "--list downloads nothing"
        );
    }
}

#[test]
fn a_choice_that_does_not_fit_is_a_clear_error() {
    let s = swarm(None);
    for (name, extra, says) in [
        (
            "range",
            vec!["--files", "0,9"],
            "file 9 does not exist: the torrent has 5 files",
        ),
        (
            "glob",
            vec!["--files-glob", "*.iso"],
            "no file matches \"*.iso\"",
        ),
        ("syntax", vec!["--files", "2-x"], "bad file list"),
    ] {
        let mut dl = download(&s, name, s.torrent.to_str().unwrap(), &extra);
        let st = dl.child.wait().unwrap();
        assert!(!st.success(), "{name}: {}", dl.output());
        assert!(dl.output().contains(says), "{name}: {}", dl.output());
    }
    // From a magnet link the files are known only later: the same error then.
    let mut dl = download(&s, "magnet-range", &s.magnet, &["--files", "7"]);
    let st = dl.child.wait().unwrap();
    assert!(!st.success());
    assert!(
        dl.output().contains("file 7 does not exist"),
        "{}",
        dl.output()
    );
}

#[test]
fn priorities_order_the_download() {
    // 400 kB/s: the download takes a few seconds, long enough for order to show.
    let s = swarm(Some(400_000));
    let mut dl = download(
        &s,
        "prio",
        s.torrent.to_str().unwrap(),
        &["--high", "3", "--low", "0"],
    );
    dl.wait_success(Duration::from_secs(60));
    assert_set(&s.d.join("out-prio"), "set", &s.set);
    let order = written_order(&dl.output());
    let mean_rank = |f: usize| {
        let ps: Vec<u32> = pieces_of(f).collect();
        // Pieces shared with a neighbour take the higher priority; look at the file's own.
        let own: Vec<usize> = order
            .iter()
            .enumerate()
            .filter(|(_, p)| ps[1..ps.len() - 1].contains(p))
            .map(|(k, _)| k)
            .collect();
        own.iter().sum::<usize>() as f64 / own.len() as f64
    };
    let (high, normal, low) = (mean_rank(3), mean_rank(2), mean_rank(0));
    assert!(
        high < normal && normal < low,
        "high {high}, normal {normal}, low {low}: {order:?}"
    );
}

/// Pairs of pieces written in the opposite order of their indices.
fn inversions(order: &[u32]) -> usize {
    (0..order.len())
        .map(|i| order[i + 1..].iter().filter(|&&q| q < order[i]).count())
        .sum()
}

#[test]
fn sequential_fetches_pieces_in_order() {
    let s = swarm(Some(400_000));
    let mut seq = download(&s, "seq", s.torrent.to_str().unwrap(), &["--sequential"]);
    seq.wait_success(Duration::from_secs(60));
    assert_set(&s.d.join("out-seq"), "set", &s.set);
    let order = written_order(&seq.output());
    assert_eq!(order.len(), 20);
    // Media files' first and last pieces are asked for first: they are among the pieces
    // of the first round of requests (eight pieces of two blocks), whatever order the
    // seeder answers them in.
    let edges: Vec<u32> = [0, 3]
        .iter()
        .flat_map(|&f| [pieces_of(f).start, pieces_of(f).end - 1])
        .collect();
    for e in &edges {
        assert!(order[..8].contains(e), "media edges early: {order:?}");
    }
    // Then the rest in order, give or take what the seeder answers out of order.
    let rest: Vec<u32> = order
        .iter()
        .copied()
        .filter(|p| !edges.contains(p))
        .collect();
    // Rarest-first with a random start, for comparison.
    let mut rnd = download(&s, "rnd", s.torrent.to_str().unwrap(), &[]);
    rnd.wait_success(Duration::from_secs(60));
    let random = written_order(&rnd.output());
    let random_rest: Vec<u32> = random
        .iter()
        .copied()
        .filter(|p| !edges.contains(p))
        .collect();
    let (a, b) = (inversions(&rest), inversions(&random_rest));
    // 16 pieces: 120 pairs; a random order has 60 inversions on average.
    assert!(
        a <= 16 && b >= 2 * a + 10,
        "sequential {order:?} ({a} inversions) vs rarest-first {random:?} ({b})"
    );
}
