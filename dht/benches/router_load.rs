//! Load generator for DHT bootstrap nodes: `burrow dht-node` and, in the same run, a `mainline`
//! crate node in server mode, each pinned to core 0 while the generator runs on core 1.
//!
//!     cargo build --release -p burrow
//!     cargo bench -p burrow-dht --bench router_load
//!     cargo bench -p burrow-dht --bench router_load -- --target 127.0.0.1:6881 --pid 1234
//!
//! The generator sends from many source ports on 127.0.0.1–127.0.0.16, a mix of `ping`,
//! `find_node` and `get_peers` plus malformed datagrams, and answers the node's own queries so
//! that its sockets count as live DHT nodes (both servers then have the same population to
//! hand out). Per server it finds the capacity (a sweep of offered rates, keeping the best
//! answered rate), measures latency at half of it, then floods at up to ten times the capacity
//! (valid queries, then junk alone) while watching the server's resident memory. Latency runs
//! from just before a query's send call to the kernel's receive time stamp of its answer
//! (`SO_TIMESTAMPNS`), so delays in the generator itself do not count. Server CPU time comes
//! from `/proc/PID/task/*/schedstat`; answers per CPU-second is the figure least disturbed by
//! other work on the machine.
//!
//! Options: `--burrow PATH` (default: `burrow` next to this bench's target directory, or
//! `$BURROW_BIN`), `--cache-size N` (passed to burrow), `--batch N` (passed to burrow),
//! `--only burrow|mainline`, `--sockets N`, `--quick` (shorter phases), `--rt` (run both
//! servers with real-time priority, `chrt -f 1`, so that other work on a shared machine does
//! not delay them; the generator stays at normal priority), `--cpu-quota PCT` (cap each server
//! at PCT% of a core with a cgroup CPU quota, so that the flood really reaches ten times its
//! capacity; root).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use burrow_dht::krpc::{write_find_node, write_get_peers, write_ping, Body, Message};
use burrow_dht::NodeId;

/// Sent-time slots; a sequence number's slot is reused after this many queries.
const RING: usize = 1 << 22;

/// Latency histogram: 1 µs buckets up to 100 ms.
const HIST_US: usize = 100_000;

/// Datagrams per send system call.
const SEND_BATCH: usize = 32;

/// Datagrams per receive system call.
const RX_BATCH: usize = 32;

/// Bytes per receive buffer.
const RX_LEN: usize = 2048;

struct Opts {
    burrow: Option<String>,
    target: Option<SocketAddr>,
    pid: Option<u32>,
    only: Option<String>,
    cache_size: String,
    batch: Option<String>,
    sockets: usize,
    quick: bool,
    rt: bool,
    /// Cap each server at this percentage of a core (a cgroup v1 CPU quota; needs root).
    cpu_quota: Option<u32>,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        burrow: std::env::var("BURROW_BIN").ok(),
        target: None,
        pid: None,
        only: None,
        cache_size: "1000000".into(),
        batch: None,
        sockets: 256,
        quick: false,
        rt: false,
        cpu_quota: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--burrow" => o.burrow = args.next(),
            "--target" => o.target = args.next().and_then(|s| s.parse().ok()),
            "--pid" => o.pid = args.next().and_then(|s| s.parse().ok()),
            "--only" => o.only = args.next(),
            "--cache-size" => o.cache_size = args.next().unwrap_or_default(),
            "--batch" => o.batch = args.next(),
            "--sockets" => o.sockets = args.next().and_then(|s| s.parse().ok()).unwrap_or(256),
            "--quick" => o.quick = true,
            "--rt" => o.rt = true,
            "--cpu-quota" => o.cpu_quota = args.next().and_then(|s| s.parse().ok()),
            _ => {}
        }
    }
    o
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("serve-mainline") {
        serve_mainline(argv[2].parse().expect("port"));
        return;
    }
    let o = parse_opts();
    pin_to_cpu(1);
    let mut results = Vec::new();
    if let Some(target) = o.target {
        results.push(("external".to_owned(), measure(&o, target, o.pid)));
    } else {
        if o.only.as_deref() != Some("mainline") {
            let (child, addr) = start_burrow(&o);
            let _quota = o.cpu_quota.map(|pct| CpuQuota::apply(child.id(), pct));
            results.push((
                "burrow dht-node".to_owned(),
                measure(&o, addr, Some(child.id())),
            ));
            stop(child);
        }
        if o.only.as_deref() != Some("burrow") {
            let (child, addr) = start_mainline(&o);
            let _quota = o.cpu_quota.map(|pct| CpuQuota::apply(child.id(), pct));
            results.push((
                "mainline 8 (server mode)".to_owned(),
                measure(&o, addr, Some(child.id())),
            ));
            stop(child);
        }
    }
    println!();
    println!("| node | answered q/s (max) | answers per CPU-second | p50 / p99 at half load | loss at half load | RSS idle → flood max → after | flood sent q/s, answered q/s |");
    println!("|---|---|---|---|---|---|---|");
    for (name, r) in &results {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} µs / {:.0} µs | {:.2} % | {} → {} → {} MiB | {:.0}, {:.0} |",
            r.capacity,
            r.per_cpu,
            r.half.p50_us,
            r.half.p99_us,
            100.0 * r.half.loss(),
            r.rss_idle / 1024,
            r.rss_flood_max / 1024,
            r.rss_after / 1024,
            r.flood.sent_rate(),
            r.flood.answered_rate(),
        );
    }
    if results.len() == 2 {
        println!(
            "\nburrow / mainline: {:.1}x answered queries per second, {:.1}x answers per CPU-second",
            results[0].1.capacity / results[1].1.capacity.max(1.0),
            results[0].1.per_cpu / results[1].1.per_cpu.max(1.0)
        );
    }
}

/// Pins the calling thread to one CPU.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes within it; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("cannot pin the generator to CPU {cpu}; running unpinned");
        }
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn burrow_path(o: &Opts) -> String {
    if let Some(p) = &o.burrow {
        return p.clone();
    }
    // target/release/deps/router_load-… → target/release/burrow
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("burrow");
    assert!(
        p.exists(),
        "{} not found: build it with `cargo build --release -p burrow` or pass --burrow PATH",
        p.display()
    );
    p.to_string_lossy().into_owned()
}

/// `taskset -c 0 [chrt -f 1] program`.
fn pinned(o: &Opts, program: &str) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", "0"]);
    if o.rt {
        c.args(["chrt", "-f", "1"]);
    }
    c.arg(program);
    c
}

fn start_burrow(o: &Opts) -> (Child, SocketAddr) {
    let port = free_udp_port();
    let mut c = pinned(o, &burrow_path(o));
    c.args(["dht-node", "--port", &port.to_string()])
        .args([
            "--bind",
            "127.0.0.1",
            "--bootstrap",
            "127.0.0.1:9",
            "--log-interval",
            "0",
        ])
        // The limiter runs (its cost is measured) but no generator address reaches it.
        .args(["--rate-limit", "10000000", "--allow-shared-ip"])
        .args(["--cache-size", &o.cache_size]);
    if let Some(b) = &o.batch {
        c.args(["--batch", b]);
    }
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let child = c
        .spawn()
        .expect("cannot start burrow (is taskset installed?)");
    (child, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn start_mainline(o: &Opts) -> (Child, SocketAddr) {
    let port = free_udp_port();
    let exe = std::env::current_exe().unwrap();
    let child = pinned(o, &exe.to_string_lossy())
        .args(["serve-mainline", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start the mainline server");
    (child, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A cgroup v1 `cpu` group holding one server, capped at a share of a core; removed on drop
/// (after the server has stopped). With the server this slow, one generator core can offer
/// ten times its capacity.
struct CpuQuota(std::path::PathBuf);

impl CpuQuota {
    fn apply(pid: u32, percent: u32) -> CpuQuota {
        let dir = std::path::PathBuf::from(format!("/sys/fs/cgroup/cpu/burrow-bench-{pid}"));
        std::fs::create_dir_all(&dir).expect(
            "--cpu-quota needs root and the cgroup v1 cpu controller at /sys/fs/cgroup/cpu",
        );
        std::fs::write(dir.join("cpu.cfs_period_us"), "100000").expect("cpu.cfs_period_us");
        std::fs::write(
            dir.join("cpu.cfs_quota_us"),
            (percent.max(1) * 1000).to_string(),
        )
        .expect("cpu.cfs_quota_us");
        std::fs::write(dir.join("cgroup.procs"), pid.to_string()).expect("cgroup.procs");
        CpuQuota(dir)
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A `mainline` node in server mode on 127.0.0.1:`port`, joined to nothing.
fn serve_mainline(port: u16) {
    let _dht = mainline::Dht::builder()
        .server_mode()
        .no_bootstrap()
        .bind_address(Ipv4Addr::LOCALHOST)
        .port(port)
        .build()
        .expect("mainline server");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// CPU time the process has run, all threads, in seconds (`/proc/PID/task/*/schedstat`, whose
/// first field is nanoseconds on a CPU): unlike wall-clock rates this is not skewed when other
/// work shares the machine.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let mut ns = 0u64;
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
            ns += s
                .split_whitespace()
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 / 1e9
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            l.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

#[derive(Debug, Default, Clone, Copy)]
struct Phase {
    secs: f64,
    /// Malformed datagrams sent.
    malformed: u64,
    /// CPU seconds the server used during the phase.
    cpu: f64,
    sent: u64,
    answered: u64,
    p50_us: f64,
    p99_us: f64,
}

impl Phase {
    fn loss(&self) -> f64 {
        1.0 - self.answered as f64 / self.sent.max(1) as f64
    }
    fn malformed_rate(&self) -> f64 {
        self.malformed as f64 / self.secs
    }
    fn sent_rate(&self) -> f64 {
        self.sent as f64 / self.secs
    }
    fn answered_rate(&self) -> f64 {
        self.answered as f64 / self.secs
    }
    /// Answers per second of server CPU time.
    fn per_cpu_sec(&self) -> f64 {
        self.answered as f64 / self.cpu.max(1e-9)
    }
}

struct Report {
    capacity: f64,
    /// Best answers per server CPU-second in any step of the sweep.
    per_cpu: f64,
    half: Phase,
    flood: Phase,
    rss_idle: u64,
    rss_flood_max: u64,
    rss_after: u64,
}

fn measure(o: &Opts, target: SocketAddr, pid: Option<u32>) -> Report {
    let mut g = Generator::new(target, o.sockets);
    g.pid = pid;
    g.wait_until_answering();
    let step = if o.quick { 1.0 } else { 2.0 };
    // Warm-up: the node learns (and verifies) the generator's sockets as nodes.
    g.run(5_000.0, Duration::from_secs_f64(step * 1.5), None);
    let rss = || pid.map(rss_kib).unwrap_or(0);
    let rss_idle = rss();
    println!("{target}: sweeping offered rates");
    let mut capacity: f64 = 0.0;
    let mut per_cpu: f64 = 0.0;
    let mut rate = 5_000.0;
    loop {
        let p = g.run(rate, Duration::from_secs_f64(step), None);
        println!(
            "  offered {:>8.0}/s  sent {:>8.0}/s  answered {:>8.0}/s  loss {:>5.1}%  p50 {:>6.0} µs  p99 {:>7.0} µs  server CPU {:>4.0}%  {:>8.0} answers/CPU-s",
            rate,
            p.sent_rate(),
            p.answered_rate(),
            100.0 * p.loss(),
            p.p50_us,
            p.p99_us,
            100.0 * p.cpu / p.secs,
            p.per_cpu_sec(),
        );
        capacity = capacity.max(p.answered_rate());
        per_cpu = per_cpu.max(p.per_cpu_sec());
        if p.loss() > 0.2 || p.sent_rate() < 0.8 * rate || rate > 4e6 {
            break;
        }
        rate *= 2.0;
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(500));
    let half = g.run(capacity / 2.0, Duration::from_secs_f64(step * 2.0), None);
    println!(
        "  half load {:.0}/s: answered {:.0}/s, loss {:.2}%, p50 {:.0} µs, p99 {:.0} µs",
        capacity / 2.0,
        half.answered_rate(),
        100.0 * half.loss(),
        half.p50_us,
        half.p99_us
    );
    let mut rss_flood_max = 0;
    let flood = g.run(
        capacity * 10.0,
        Duration::from_secs_f64(step * 3.0),
        Some(&mut |_| {
            rss_flood_max = rss_flood_max.max(rss());
        }),
    );
    // A flood of junk alone: nothing to answer, so the generator only sends.
    std::thread::sleep(Duration::from_millis(500));
    g.junk_only = true;
    let junk = g.run(
        capacity * 10.0,
        Duration::from_secs_f64(step * 2.0),
        Some(&mut |_| {
            rss_flood_max = rss_flood_max.max(rss());
        }),
    );
    g.junk_only = false;
    println!(
        "  junk flood: sent {:.0} malformed datagrams/s ({:.1}x capacity), server CPU {:.0}%",
        junk.malformed_rate(),
        junk.malformed_rate() / capacity.max(1.0),
        100.0 * junk.cpu / junk.secs
    );
    std::thread::sleep(Duration::from_millis(500));
    let after = g.run(capacity / 2.0, Duration::from_secs_f64(step), None);
    let rss_after = rss();
    println!(
        "  flood: sent {:.0}/s ({:.1}x capacity), answered {:.0}/s; afterwards answered {:.0}/s at half load, loss {:.2}%; RSS {} → {} → {} KiB",
        flood.sent_rate(),
        flood.sent_rate() / capacity.max(1.0),
        flood.answered_rate(),
        after.answered_rate(),
        100.0 * after.loss(),
        rss_idle,
        rss_flood_max,
        rss_after
    );
    Report {
        capacity,
        per_cpu,
        half,
        flood,
        rss_idle,
        rss_flood_max,
        rss_after,
    }
}

struct Generator {
    /// Send only malformed datagrams.
    junk_only: bool,
    target: SocketAddr,
    socks: Vec<UdpSocket>,
    ids: Vec<NodeId>,
    epoll: i32,
    sent_at: Vec<u32>,
    seq: u32,
    hist: Vec<u32>,
    answered: u64,
    rx_bufs: Vec<u8>,
    rx_meta: Vec<(usize, SocketAddr, Option<u32>)>,
    pid: Option<u32>,
    out: Vec<Vec<u8>>,
}

impl Generator {
    fn new(target: SocketAddr, n: usize) -> Generator {
        // SAFETY: plain system calls on descriptors this function owns.
        let epoll = unsafe { libc::epoll_create1(0) };
        assert!(epoll >= 0, "epoll_create1");
        let mut socks = Vec::new();
        let mut ids = Vec::new();
        for i in 0..n {
            let ip = Ipv4Addr::new(127, 0, 0, 1 + (i % 16) as u8);
            let s = UdpSocket::bind((ip, 0)).unwrap();
            s.set_nonblocking(true).unwrap();
            // Kernel receive time stamps: latency is measured to the moment an answer reached
            // the generator's socket, not to when the (busy) generator got round to reading it.
            let on: libc::c_int = 1;
            // SAFETY: a valid socket and option value.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_TIMESTAMPNS,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: as above.
            let r = unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
            assert_eq!(r, 0, "epoll_ctl");
            socks.push(s);
            let mut id = [0u8; 20];
            for (j, b) in id.iter_mut().enumerate() {
                *b = (i as u32)
                    .wrapping_mul(2654435761)
                    .wrapping_add(j as u32 * 40503)
                    .to_be_bytes()[j % 4];
            }
            id[0] = (i * 251 / n.max(1)) as u8;
            ids.push(NodeId(id));
        }
        Generator {
            junk_only: false,
            target,
            socks,
            ids,
            epoll,
            sent_at: vec![0; RING],
            seq: 0,
            hist: vec![0; HIST_US + 1],
            answered: 0,
            rx_bufs: vec![0u8; RX_BATCH * RX_LEN],
            rx_meta: vec![(0, SocketAddr::from(([0, 0, 0, 0], 0)), None); RX_BATCH],
            pid: None,
            out: (0..SEND_BATCH).map(|_| Vec::with_capacity(128)).collect(),
        }
    }

    /// Microseconds on the real-time clock (the clock of kernel receive time stamps), wrapping.
    fn micros(&self) -> u32 {
        realtime_micros()
    }

    /// Pings until the node answers (it may still be starting).
    fn wait_until_answering(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let p = self.run(1000.0, Duration::from_millis(200), None);
            if p.answered > 0 {
                return;
            }
        }
        panic!("{} does not answer", self.target);
    }

    /// Offers `rate` queries per second for `dur`, then waits briefly for late answers.
    fn run(&mut self, rate: f64, dur: Duration, mut tick: Option<&mut dyn FnMut(f64)>) -> Phase {
        self.hist.iter_mut().for_each(|h| *h = 0);
        self.answered = 0;
        let cpu0 = self.pid.map_or(0.0, cpu_secs);
        let t0 = Instant::now();
        let (mut sent, mut malformed) = (0u64, 0u64);
        let mut next_tick = 0.0;
        loop {
            let el = t0.elapsed().as_secs_f64();
            if el >= dur.as_secs_f64() + 0.2 {
                break;
            }
            if el < dur.as_secs_f64() {
                let due = (rate * el) as u64;
                let mut budget = 8;
                while sent + malformed < due && budget > 0 {
                    let n = ((due - sent - malformed) as usize).min(SEND_BATCH);
                    let (s, m) = self.send_batch(n);
                    sent += s;
                    malformed += m;
                    budget -= 1;
                }
                if let Some(t) = tick.as_mut() {
                    if el >= next_tick {
                        t(el);
                        next_tick = el + 0.25;
                    }
                }
            }
            self.poll();
        }
        let (p50, p99) = self.percentiles();
        Phase {
            secs: dur.as_secs_f64(),
            malformed,
            cpu: self.pid.map_or(0.0, cpu_secs) - cpu0,
            sent,
            answered: self.answered,
            p50_us: p50,
            p99_us: p99,
        }
    }

    /// Builds and sends `n` datagrams from one socket; returns (queries, malformed) sent.
    fn send_batch(&mut self, n: usize) -> (u64, u64) {
        let si = (self.seq as usize / SEND_BATCH) % self.socks.len();
        let id = self.ids[si];
        let now = self.micros();
        let mut kinds = [false; SEND_BATCH];
        for (k, is_bad) in kinds.iter_mut().enumerate().take(n) {
            let seq = self.seq;
            self.seq = self.seq.wrapping_add(1);
            let tid = seq.to_be_bytes();
            let out = &mut self.out[k];
            out.clear();
            let mut target = [0u8; 20];
            target[..4].copy_from_slice(&seq.wrapping_mul(2654435761).to_be_bytes());
            match if self.junk_only { 19 } else { seq % 20 } {
                0..=5 => write_ping(out, &tid, &id, false),
                6..=12 => write_find_node(out, &tid, &id, &target, None, false),
                13..=18 => write_get_peers(out, &tid, &id, &target, None, false),
                _ => {
                    *is_bad = true;
                    out.extend_from_slice(match seq % 3 {
                        0 => &b"d1:ad2:id20:"[..],
                        1 => b"\x00\x01garbage\xff",
                        _ => b"d1:t4:abcd1:y1:q1:q4:pinge",
                    });
                }
            }
            self.sent_at[seq as usize % RING] = now;
        }
        let sock = &self.socks[si];
        // SAFETY: plain C structs, valid when zeroed.
        let mut hdrs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut iov: [libc::iovec; SEND_BATCH] = unsafe { std::mem::zeroed() };
        let dst = sockaddr_in(&self.target);
        for k in 0..n {
            iov[k] = libc::iovec {
                iov_base: self.out[k].as_ptr() as *mut libc::c_void,
                iov_len: self.out[k].len(),
            };
            hdrs[k].msg_hdr.msg_name = &dst as *const libc::sockaddr_in as *mut libc::c_void;
            hdrs[k].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            hdrs[k].msg_hdr.msg_iov = &mut iov[k];
            hdrs[k].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: the headers point at live buffers and address for the duration of the call.
        let r = unsafe { libc::sendmmsg(sock.as_raw_fd(), hdrs.as_mut_ptr(), n as u32, 0) };
        let done = if r < 0 { 0 } else { r as usize };
        let bad = kinds[..done].iter().filter(|b| **b).count() as u64;
        (done as u64 - bad, bad)
    }

    /// Reads whatever has arrived: answers (latency recorded) and the node's own queries
    /// (answered, so the generator's sockets count as live nodes). One `recvmmsg` per batch.
    fn poll(&mut self) {
        // SAFETY: plain C structs, valid when zeroed.
        let mut events: [libc::epoll_event; 64] = unsafe { std::mem::zeroed() };
        // SAFETY: `events` is writable for 64 entries.
        let n = unsafe { libc::epoll_wait(self.epoll, events.as_mut_ptr(), 64, 0) };
        for e in events.iter().take(n.max(0) as usize) {
            let i = e.u64 as usize;
            for _ in 0..16 {
                let got = self.recv_batch(i);
                let now = self.micros();
                for k in 0..got {
                    let (len, from, stamp) = self.rx_meta[k];
                    let data = &self.rx_bufs[k * RX_LEN..k * RX_LEN + len];
                    let Ok(msg) = Message::decode(data) else {
                        continue;
                    };
                    match msg.body {
                        Body::Response(_) | Body::Error { .. } => {
                            let Ok(t) = <[u8; 4]>::try_from(msg.tid) else {
                                continue;
                            };
                            let seq = u32::from_be_bytes(t);
                            let at = self.sent_at[seq as usize % RING];
                            let us = stamp.unwrap_or(now).wrapping_sub(at) as usize;
                            self.hist[us.min(HIST_US)] += 1;
                            self.answered += 1;
                        }
                        Body::Query { .. } => {
                            let mut r = Vec::with_capacity(64);
                            burrow_dht::krpc::write_response(
                                &mut r,
                                msg.tid,
                                &self.ids[i],
                                &Default::default(),
                            );
                            let _ = self.socks[i].send_to(&r, from);
                        }
                    }
                }
                if got < RX_BATCH {
                    break;
                }
            }
        }
    }

    /// Receives up to [`RX_BATCH`] datagrams from socket `i` without waiting.
    fn recv_batch(&mut self, i: usize) -> usize {
        // SAFETY: plain C structs, valid when zeroed.
        let mut hdrs: [libc::mmsghdr; RX_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut iov: [libc::iovec; RX_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut names: [libc::sockaddr_in; RX_BATCH] = unsafe { std::mem::zeroed() };
        let mut control = [[0u64; 8]; RX_BATCH];
        for k in 0..RX_BATCH {
            hdrs[k].msg_hdr.msg_control = control[k].as_mut_ptr().cast();
            hdrs[k].msg_hdr.msg_controllen = std::mem::size_of::<[u64; 8]>() as _;
            iov[k] = libc::iovec {
                iov_base: self.rx_bufs[k * RX_LEN..].as_mut_ptr().cast(),
                iov_len: RX_LEN,
            };
            hdrs[k].msg_hdr.msg_name = (&mut names[k] as *mut libc::sockaddr_in).cast();
            hdrs[k].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            hdrs[k].msg_hdr.msg_iov = &mut iov[k];
            hdrs[k].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: the headers point at live, distinct buffers for the duration of the call.
        let r = unsafe {
            libc::recvmmsg(
                self.socks[i].as_raw_fd(),
                hdrs.as_mut_ptr(),
                RX_BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let got = if r < 0 { 0 } else { r as usize };
        for k in 0..got {
            let a = &names[k];
            let from = SocketAddr::from((
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            ));
            self.rx_meta[k] = (
                (hdrs[k].msg_len as usize).min(RX_LEN),
                from,
                receive_stamp(&hdrs[k].msg_hdr),
            );
        }
        got
    }

    fn percentiles(&self) -> (f64, f64) {
        let total: u64 = self.hist.iter().map(|&c| u64::from(c)).sum();
        let mut acc = 0u64;
        let (mut p50, mut p99) = (f64::NAN, f64::NAN);
        for (us, &c) in self.hist.iter().enumerate() {
            acc += u64::from(c);
            if p50.is_nan() && acc * 2 >= total {
                p50 = us as f64;
            }
            if p99.is_nan() && acc * 100 >= total * 99 {
                p99 = us as f64;
                break;
            }
        }
        (p50, p99)
    }
}

/// The SCM_TIMESTAMPNS time stamp of a received message, in real-time microseconds.
fn receive_stamp(h: &libc::msghdr) -> Option<u32> {
    // SAFETY: `h` was filled in by recvmmsg, its control buffer is live; the CMSG macros stay
    // within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                let us = (ts.tv_sec as u64).wrapping_mul(1_000_000) + ts.tv_nsec as u64 / 1000;
                return Some(us as u32);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

fn realtime_micros() -> u32 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs().wrapping_mul(1_000_000) + u64::from(d.subsec_micros())) as u32
}

fn sockaddr_in(a: &SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(a) = a else {
        panic!("IPv4 targets only")
    };
    // SAFETY: sockaddr_in is plain data.
    let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr = libc::in_addr {
        s_addr: u32::from(*a.ip()).to_be(),
    };
    s
}
