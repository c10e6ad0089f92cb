//! `burrow download` and `burrow seed` given something that is not a .torrent file: a
//! device, a FIFO nobody writes to, 100 MB of junk, a folder. Each must end at once with a
//! one-line error, having read next to nothing (peak RSS measured by `wait4`).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Peak resident memory allowed, KiB.
const MAX_RSS_KIB: i64 = 64 * 1024;

/// Runs burrow with `args` to its end; returns (exit status, stderr, time, peak RSS in KiB).
fn run(args: &[&str], dir: &Path) -> (std::process::ExitStatus, String, Duration, i64) {
    let err = dir.join("stderr");
    let start = Instant::now();
    let child = Command::new(burrow_bin())
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    // A regression would read forever: kill it after a while so the test fails, not hangs.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(10));
        if !d.load(std::sync::atomic::Ordering::SeqCst) {
            // SAFETY: our own child, not yet reaped (`done` is set once it is).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet waited for; the pointers are valid.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(r, pid, "wait4 failed");
    let took = start.elapsed();
    std::mem::forget(child);
    (
        std::process::ExitStatus::from_raw(status),
        std::fs::read_to_string(err).unwrap(),
        took,
        usage.ru_maxrss,
    )
}

fn refused(what: &str, path: &Path, dir: &Path, expect: &str) {
    let p = path.to_str().unwrap();
    let out = dir.join("out");
    for args in [
        vec!["download", p, "-o", out.to_str().unwrap(), "--no-dht"],
        vec!["seed", p, "-d", dir.to_str().unwrap(), "--no-dht"],
    ] {
        let (st, stderr, took, rss) = run(&args, dir);
        eprintln!(
            "{what} ({}): {took:.2?}, {rss} KiB: {}",
            args[0],
            stderr.trim()
        );
        assert!(!st.success(), "{what}: accepted");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{what}: not one line:\n{stderr}"
        );
        assert_eq!(
            stderr.trim_end(),
            format!("error: cannot read {p}: {expect}")
        );
        assert!(took < Duration::from_secs(1), "{what}: took {took:?}");
        assert!(rss < MAX_RSS_KIB, "{what}: peak RSS {rss} KiB");
    }
}

#[test]
fn a_device_a_fifo_junk_and_a_folder_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    refused(
        "/dev/zero",
        Path::new("/dev/zero"),
        d,
        "a device, not a regular file",
    );
    let fifo = d.join("fifo.torrent");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    refused("a FIFO", &fifo, d, "a FIFO, not a regular file");
    let junk = d.join("junk.torrent");
    // Written a megabyte at a time: a child's peak RSS counts what it inherited at fork.
    let mut f = std::fs::File::create(&junk).unwrap();
    for i in 0..100 {
        std::io::Write::write_all(&mut f, &bytes(1_000_000, i)).unwrap();
    }
    drop(f);
    refused(
        "100 MB of junk",
        &junk,
        d,
        &format!(
            "larger than the {} byte limit",
            burrow_swarm::metainfo::MAX_METAINFO_SIZE
        ),
    );
    let folder = d.join("folder.torrent");
    std::fs::create_dir(&folder).unwrap();
    refused("a folder", &folder, d, "a directory, not a regular file");
}
