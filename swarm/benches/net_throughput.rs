//! Throughput of burrow's transports, burrow to burrow.
//!
//! `cargo bench -p burrow-swarm --bench net_throughput` — loopback: TCP vs burrow's µTP (one
//! and four streams, IPv4 and IPv6), MB/s and CPU seconds per GiB, with librqbit-utp 0.7 on
//! its own UDP socket for comparison. `BURROW_BENCH_MIB` sets the bytes per run (default
//! 256 MiB); `BURROW_BENCH_ONLY=µTP` runs only the cases whose name starts with the text.
//!
//! `cargo bench -p burrow-swarm --bench net_throughput -- contention` (root; needs `ip` and
//! `tc`) — does µTP yield to TCP? Builds three network namespaces, sender → router → receiver,
//! whose router is shaped to `BURROW_BENCH_RATE` (default 50mbit) by a token bucket holding up
//! to 200 ms of queue, then runs TCP (CUBIC) alone, each µTP alone, and TCP together with each
//! µTP over that bottleneck. The namespaces are removed afterwards.
//! `BURROW_BENCH_ONLY=together` skips the single-flow runs.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use burrow_swarm::net::{NetConfig, SessionSockets, UdpConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::runtime::Runtime;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
type BoxStream = Box<dyn Stream>;

/// What carries a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Tcp,
    Utp,
    /// librqbit-utp 0.7 (CUBIC) on its own UDP socket.
    Rqbit,
}

impl std::fmt::Display for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Flow::Tcp => "TCP",
            Flow::Utp => "µTP",
            Flow::Rqbit => "librqbit-µTP",
        })
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if args.first().map(String::as_str) == Some("contention") {
        contention(&rt);
    } else {
        loopback(&rt);
    }
}

/// User + system CPU time of this process.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Both ends of one kind of flow: a receiving endpoint and a sending one.
#[allow(clippy::large_enum_variant)] // two of them per run
enum Endpoints {
    Burrow {
        server: SessionSockets,
        client: SessionSockets,
    },
    Rqbit {
        server: Arc<librqbit_utp::UtpSocketUdp>,
        client: Arc<librqbit_utp::UtpSocketUdp>,
    },
}

impl Endpoints {
    fn server_addr(&self, ip: Ipv4Addr) -> SocketAddr {
        match self {
            Endpoints::Burrow { server, .. } => SocketAddr::from((ip, server.port())),
            Endpoints::Rqbit { server, .. } => SocketAddr::from((ip, server.bind_addr().port())),
        }
    }

    /// Opens one connection of kind `flow`: (sending end, receiving end).
    async fn pair(&self, flow: Flow, to: SocketAddr) -> (BoxStream, BoxStream) {
        match (self, flow) {
            (Endpoints::Burrow { server, client }, Flow::Tcp) => {
                let (out, inc) = tokio::join!(client.dialer.tcp().connect(to), server.tcp.accept());
                let out = out.unwrap();
                // The host default may be BBR; how µTP fares against CUBIC is the question.
                socket2::SockRef::from(&out)
                    .set_tcp_congestion(b"cubic")
                    .unwrap();
                (Box::new(out), Box::new(inc.unwrap().0))
            }
            (Endpoints::Burrow { server, client }, Flow::Utp) => {
                let (out, inc) = tokio::join!(client.utp.connect(to), server.utp.accept());
                (Box::new(out.unwrap()), Box::new(inc.unwrap().0))
            }
            (Endpoints::Rqbit { server, client }, Flow::Rqbit) => {
                // librqbit answers a SYN only once accept runs, so both run at once.
                let (out, inc) = tokio::join!(client.connect(to), server.accept());
                (Box::new(out.unwrap()), Box::new(inc.unwrap()))
            }
            _ => unreachable!("endpoints match the flow"),
        }
    }
}

async fn send_bytes(mut stream: BoxStream, len: u64) {
    let buf = vec![0x5au8; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        stream.write_all(&buf[..n]).await.unwrap();
        left -= n as u64;
    }
    stream.shutdown().await.unwrap();
    // Wait for the receiver to close so nothing is cut short.
    let _ = stream.read_to_end(&mut Vec::new()).await;
}

async fn count_bytes(mut stream: BoxStream, counter: Arc<AtomicU64>) -> u64 {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return total,
            Ok(n) => {
                total += n as u64;
                counter.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
}

/// Loopback endpoints for `flow` on `ip` (IPv4 or IPv6 loopback).
async fn loopback_endpoints(flow: Flow, v6: bool) -> (Endpoints, SocketAddr) {
    match flow {
        Flow::Rqbit => {
            let bind: SocketAddr = if v6 { "[::1]:0" } else { "127.0.0.1:0" }.parse().unwrap();
            let server = librqbit_utp::UtpSocketUdp::new_udp(bind).await.unwrap();
            let client = librqbit_utp::UtpSocketUdp::new_udp(bind).await.unwrap();
            let to = server.bind_addr();
            (Endpoints::Rqbit { server, client }, to)
        }
        _ => {
            let config = || NetConfig::loopback(0);
            let server = SessionSockets::bind(config()).await.unwrap();
            let client = SessionSockets::bind(config()).await.unwrap();
            let to = server.udp.local_addrs()[usize::from(v6)];
            (Endpoints::Burrow { server, client }, to)
        }
    }
}

/// Moves `total` bytes over `streams` parallel connections; returns (MB/s, CPU s per GiB).
async fn run(flow: Flow, v6: bool, streams: u64, total: u64) -> (f64, f64) {
    let (endpoints, to) = loopback_endpoints(flow, v6).await;
    let per_stream = total / streams;
    let counter = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_time();
    let started = Instant::now();
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for _ in 0..streams {
        let (out, inc) = endpoints.pair(flow, to).await;
        senders.push(tokio::spawn(send_bytes(out, per_stream)));
        receivers.push(tokio::spawn(count_bytes(inc, counter.clone())));
    }
    for r in receivers {
        assert_eq!(r.await.unwrap(), per_stream);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (cpu_time() - cpu0).as_secs_f64();
    for s in senders {
        s.await.unwrap();
    }
    let bytes = (per_stream * streams) as f64;
    (bytes / elapsed / 1e6, cpu / (bytes / (1u64 << 30) as f64))
}

fn loopback(rt: &Runtime) {
    let mib: u64 = std::env::var("BURROW_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let total = mib << 20;
    println!("loopback, {mib} MiB per run, 2 worker threads, sender and receiver in one process");
    println!("{:<34} {:>10} {:>12}", "transport", "MB/s", "CPU s/GiB");
    let cases = [
        (Flow::Tcp, false, 1),
        (Flow::Utp, false, 1),
        (Flow::Utp, true, 1),
        (Flow::Rqbit, false, 1),
        (Flow::Tcp, false, 4),
        (Flow::Utp, false, 4),
        (Flow::Rqbit, false, 4),
    ];
    let only = std::env::var("BURROW_BENCH_ONLY").unwrap_or_default();
    for (flow, v6, streams) in cases {
        let name = format!(
            "{flow} {streams} stream{} {}",
            if streams > 1 { "s" } else { "" },
            if v6 { "IPv6" } else { "IPv4" }
        );
        if !name.starts_with(only.as_str()) {
            continue;
        }
        let (mbps, cpu) = rt.block_on(run(flow, v6, streams, total));
        println!("{name:<34} {mbps:>10.1} {cpu:>12.2}");
    }
}

// ---- contention over a shaped link between two network namespaces ----

struct Lab {
    a: String,
    r: String,
    b: String,
}

/// The sender's and the receiver's addresses; the router between them is .254 on each side.
const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 213, 1, 1);
const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 213, 2, 1);

fn sh(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(status.success(), "command failed: {args:?}");
}

impl Lab {
    /// Sender A and receiver B in their own namespaces, joined through router R. The
    /// bottleneck queue sits on R, as it would in a modem: a queue on the sender's own
    /// interface would be throttled by Linux's TCP small-queues logic and tell us nothing
    /// about the congestion controllers.
    fn new(rate: &str) -> Self {
        let id = std::process::id();
        let lab = Lab {
            a: format!("bnet{id}a"),
            r: format!("bnet{id}r"),
            b: format!("bnet{id}b"),
        };
        for ns in [&lab.a, &lab.r, &lab.b] {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        sh(&[
            "ip",
            "netns",
            "exec",
            &lab.r,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        let links = [(&lab.a, ADDR_A, "1"), (&lab.b, ADDR_B, "2")];
        for (ns, addr, net) in links {
            let (end, rtr) = (format!("bv{id}{net}e"), format!("bv{id}{net}r"));
            sh(&[
                "ip", "link", "add", &end, "type", "veth", "peer", "name", &rtr,
            ]);
            sh(&["ip", "link", "set", &end, "netns", ns]);
            sh(&["ip", "link", "set", &rtr, "netns", &lab.r]);
            let end_cidr = format!("{addr}/24");
            let rtr_cidr = format!("10.213.{net}.254/24");
            let gateway = format!("10.213.{net}.254");
            sh(&["ip", "-n", ns, "addr", "add", &end_cidr, "dev", &end]);
            sh(&["ip", "-n", ns, "link", "set", &end, "up"]);
            sh(&["ip", "-n", ns, "route", "add", "default", "via", &gateway]);
            sh(&["ip", "-n", &lab.r, "addr", "add", &rtr_cidr, "dev", &rtr]);
            sh(&["ip", "-n", &lab.r, "link", "set", &rtr, "up"]);
        }
        // The bottleneck: R's egress towards B (the data direction), a token bucket that
        // queues up to 200 ms of traffic, the standing queue LEDBAT is meant to avoid.
        // (tbf rather than netem: kernels without sch_netem are common in containers.)
        let towards_b = format!("bv{id}2r");
        sh(&[
            "tc", "-n", &lab.r, "qdisc", "add", "dev", &towards_b, "root", "tbf", "rate", rate,
            "burst", "32kb", "latency", "200ms",
        ]);
        lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.a, &self.r, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `f` with the calling thread in network namespace `ns`; sockets created inside stay
/// in that namespace.
fn in_netns<T>(ns: &str, f: impl FnOnce() -> T) -> T {
    let own = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
    let target = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
    // SAFETY: setns on file descriptors we hold open; only this thread changes namespace.
    assert_eq!(
        unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) },
        0
    );
    let out = f();
    assert_eq!(
        unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWNET) },
        0
    );
    out
}

fn lab_config(ip: Ipv4Addr) -> NetConfig {
    NetConfig {
        udp: UdpConfig {
            ipv4: Some(ip),
            ipv6: None,
            ..UdpConfig::default()
        },
        ..NetConfig::default()
    }
}

/// Endpoints in the lab: the sender in A, the receiver in B. Every socket, including those a
/// TCP dial creates later, must be made on a thread inside the right namespace.
fn lab_endpoints(rt: &Runtime, lab: &Lab, flow: Flow) -> Endpoints {
    if flow == Flow::Rqbit {
        let client = in_netns(&lab.a, || {
            rt.block_on(librqbit_utp::UtpSocketUdp::new_udp(SocketAddr::from((
                ADDR_A, 0,
            ))))
        })
        .unwrap();
        let server = in_netns(&lab.b, || {
            rt.block_on(librqbit_utp::UtpSocketUdp::new_udp(SocketAddr::from((
                ADDR_B, 0,
            ))))
        })
        .unwrap();
        return Endpoints::Rqbit { server, client };
    }
    let client = in_netns(&lab.a, || {
        rt.block_on(SessionSockets::bind(lab_config(ADDR_A)))
    })
    .unwrap();
    let server = in_netns(&lab.b, || {
        rt.block_on(SessionSockets::bind(lab_config(ADDR_B)))
    })
    .unwrap();
    Endpoints::Burrow { server, client }
}

trait Stats {
    fn stats_line(&self) -> Option<String>;
}
impl Stats for BoxStream {
    fn stats_line(&self) -> Option<String> {
        None
    }
}
impl Stats for burrow_swarm::net::UtpStream {
    fn stats_line(&self) -> Option<String> {
        let s = self.stats();
        Some(format!(
            "cwnd {} KiB, in flight {} KiB, srtt {:?}, queuing {:?}, slow start {}, losses {}, resent {}",
            s.cwnd >> 10,
            s.bytes_in_flight >> 10,
            s.srtt.unwrap_or_default(),
            s.queuing_delay.unwrap_or_default(),
            s.slow_start,
            s.losses,
            s.retransmissions
        ))
    }
}

/// Writes until `stop`; with `verbose`, prints the stream's congestion state every second.
async fn write_until<S: AsyncWrite + Unpin + Stats>(
    mut out: S,
    stop: Arc<AtomicBool>,
    verbose: bool,
) {
    let buf = vec![0x5au8; 64 * 1024];
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if out.write_all(&buf).await.is_err() {
            break;
        }
        if verbose && last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            if let Some(line) = out.stats_line() {
                println!("           µTP {line}");
            }
        }
    }
}

/// Streams from A to B over each flow for `secs`; returns MB/s per flow after `warmup`.
fn contend(rt: &Runtime, lab: &Lab, flows: &[Flow], secs: u64, warmup: u64) -> Vec<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut counters = Vec::new();
    let mut endpoints = Vec::new();
    for &flow in flows {
        let ends = lab_endpoints(rt, lab, flow);
        let to = ends.server_addr(ADDR_B);
        // A TCP dial creates its socket on the polling thread, so dial from inside A.
        let counter = Arc::new(AtomicU64::new(0));
        counters.push(counter.clone());
        let stop = stop.clone();
        if let (Flow::Utp, Endpoints::Burrow { server, client }) = (flow, &ends) {
            // Kept concrete to print the congestion state once a second.
            let (out, inc) =
                rt.block_on(async { tokio::join!(client.utp.connect(to), server.utp.accept()) });
            rt.spawn(count_bytes(Box::new(inc.unwrap().0), counter));
            rt.spawn(write_until(out.unwrap(), stop, true));
        } else {
            let (out, inc) = in_netns(&lab.a, || rt.block_on(ends.pair(flow, to)));
            rt.spawn(count_bytes(inc, counter));
            rt.spawn(write_until(out, stop, false));
        }
        endpoints.push(ends);
    }
    std::thread::sleep(Duration::from_secs(warmup));
    let start: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let mut last = start.clone();
    for second in warmup..secs {
        std::thread::sleep(Duration::from_secs(1));
        let now: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let rates: Vec<String> = flows
            .iter()
            .zip(now.iter().zip(&last))
            .map(|(f, (n, l))| format!("{f} {:.2} MB/s", (n - l) as f64 / 1e6))
            .collect();
        println!("    t={:>2}s  {}", second + 1, rates.join("   "));
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    let span = (secs - warmup) as f64;
    let result = last
        .iter()
        .zip(&start)
        .map(|(l, s)| (l - s) as f64 / span / 1e6)
        .collect();
    drop(endpoints);
    std::thread::sleep(Duration::from_millis(500));
    result
}

fn contention(rt: &Runtime) {
    let rate = std::env::var("BURROW_BENCH_RATE").unwrap_or_else(|_| "50mbit".into());
    let lab = Lab::new(&rate);
    println!("bottleneck {rate} at a router (tbf, up to 200 ms of queue); TCP is CUBIC");
    let mut summary = Vec::new();
    // BURROW_BENCH_ONLY=together skips the single-flow runs.
    let only_together = std::env::var("BURROW_BENCH_ONLY").is_ok_and(|v| v == "together");
    for flow in [Flow::Tcp, Flow::Utp, Flow::Rqbit] {
        if only_together {
            break;
        }
        let alone = contend(rt, &lab, &[flow], 12, 2);
        summary.push(format!("{flow} alone: {:.2} MB/s", alone[0]));
    }
    for flow in [Flow::Utp, Flow::Rqbit] {
        let both = contend(rt, &lab, &[Flow::Tcp, flow], 32, 2);
        summary.push(format!(
            "TCP with {flow}: TCP {:.2} MB/s, {flow} {:.2} MB/s ({flow} share {:.0}%)",
            both[0],
            both[1],
            100.0 * both[1] / (both[0] + both[1])
        ));
    }
    println!();
    for line in summary {
        println!("{line}");
    }
}
