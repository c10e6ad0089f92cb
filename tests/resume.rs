//! Stopping and restarting a download: verified pieces are neither downloaded nor re-hashed
//! again, and a resumed download completes with the right bytes. Pieces recorded while their
//! bytes were perhaps only in the page cache are hashed again after a reboot.

mod common;

use std::time::Duration;

use common::*;

fn session_downloaded(out: &str) -> u64 {
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with("this session: downloaded"))
        .unwrap_or_else(|| panic!("no session line in:\n{out}"));
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[test]
fn interrupted_download_resumes_without_fetching_verified_pieces_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let total = 8 * 1024 * 1024;
    let set = make_set(
        &d.join("src"),
        "set",
        &[("a.bin", total - 100_000), ("b.bin", 100_000)],
    );
    let (torrent, _) = create_torrent(
        &d.join("src/set"),
        &d.join("set.torrent"),
        &["--piece-length", "65536"],
    );
    // A seed capped at 2 MiB/s so the download is still running when it is stopped.
    let mut seed = Proc::spawn(
        "lt-seed",
        libtorrent(&[
            "--mode",
            "seed",
            "--torrent",
            torrent.to_str().unwrap(),
            "--save",
            d.join("src").to_str().unwrap(),
            "--upload-limit",
            "2000000",
        ]),
        d,
    );
    let peer = format!("127.0.0.1:{}", lt_port(&mut seed));
    let state = d.join("state");
    let out = d.join("out");
    let port = free_port();
    let args = [
        "download",
        torrent.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--peer",
        &peer,
    ];
    let mut first = Proc::spawn("burrow-first", burrow(&args, port, &state), d);
    std::thread::sleep(Duration::from_millis(2500));
    let st = first.terminate(Duration::from_secs(10));
    assert!(
        !st.success(),
        "stopped before completion must exit non-zero:\n{}",
        first.output()
    );
    let first_out = first.output();
    assert!(
        first_out.contains("run the same command again to resume"),
        "{first_out}"
    );
    let got_first = session_downloaded(&first_out);
    assert!(
        got_first > 1_000_000 && got_first < total as u64,
        "first run downloaded {got_first}:\n{first_out}\n{}",
        seed.output()
    );

    let mut second = Proc::spawn("burrow-second", burrow(&args, port, &state), d);
    second.wait_success(Duration::from_secs(60));
    assert_set(&out, "set", &set);
    let got_second = session_downloaded(&second.output());
    // Only what was not verified at the stop comes again: at most the pieces that were in
    // flight (a handful of 64 KiB pieces) on top of the exact remainder.
    let slack = 32 * 65_536;
    assert!(
        got_first + got_second <= total as u64 + slack,
        "first {got_first} + second {got_second} exceeds {total} + {slack}:\n{}",
        second.output()
    );
    // The completion checkpoint and the final save at exit do not trip over each other, and
    // what was saved last says everything is there.
    assert!(
        !second.output().contains("cannot save resume data"),
        "{}",
        second.output()
    );
    let mut third = Proc::spawn("burrow-third", burrow(&args, port, &state), d);
    third.wait_success(Duration::from_secs(30));
    assert_eq!(session_downloaded(&third.output()), 0, "{}", third.output());
    let pieces = total.div_ceil(65_536);
    assert!(
        third.output().contains(&format!(
            "pieces found on disk trusted={pieces} hashed=0 valid={pieces}"
        )),
        "{}",
        third.output()
    );

    // Stopping did not wait for the disk: the resume data lists pieces that may still be only
    // in the page cache, under this boot's id. After a reboot (another boot id) exactly those
    // are hashed again, and, being intact, nothing is downloaded.
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let boot = boot.trim();
    let resume = std::fs::read_dir(state.join("resume"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "resume"))
        .expect("a resume file");
    let bytes = std::fs::read(&resume).unwrap();
    let at = bytes
        .windows(boot.len())
        .position(|w| w == boot.as_bytes())
        .expect("the resume data names this boot");
    let mut other = bytes.clone();
    other[at..at + boot.len()].copy_from_slice(&"0".repeat(boot.len()).into_bytes());
    std::fs::write(&resume, other).unwrap();
    let mut fourth = Proc::spawn("burrow-fourth", burrow(&args, port, &state), d);
    fourth.wait_success(Duration::from_secs(30));
    let out4 = fourth.output();
    assert_eq!(session_downloaded(&out4), 0, "{out4}");
    let line = out4
        .lines()
        .find(|l| l.contains("pieces found on disk"))
        .unwrap_or_else(|| panic!("{out4}"));
    let field = |name: &str| -> usize {
        let v = line.split(&format!("{name}=")).nth(1).unwrap();
        v.split_whitespace().next().unwrap().parse().unwrap()
    };
    assert!(field("hashed") > 0, "{line}");
    assert_eq!(field("trusted") + field("hashed"), pieces, "{line}");
    assert_eq!(field("valid"), pieces, "{line}");
    assert_set(&out, "set", &set);
}
