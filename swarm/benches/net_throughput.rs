//! Throughput of burrow's transports, burrow to burrow.
//!
//! `cargo bench -p burrow-swarm --bench net_throughput` — loopback: TCP vs µTP (one and four
//! streams, IPv4 and IPv6), MB/s and CPU seconds per GiB. `BURROW_BENCH_MIB` sets the bytes per
//! run (default 256 MiB).
//!
//! `cargo bench -p burrow-swarm --bench net_throughput -- contention` (root; needs `ip` and
//! `tc`) — does µTP yield to TCP? Builds two network namespaces joined by a veth pair whose
//! sender side is shaped to `BURROW_BENCH_RATE` (default 50mbit) by a token bucket holding up
//! to 200 ms of queue, then measures TCP (CUBIC) alone, µTP alone, and both at once over that
//! bottleneck. The namespaces are removed afterwards.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use burrow_swarm::net::{NetConfig, PeerStream, SessionSockets, Transport, UdpConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
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

async fn send_bytes(mut stream: PeerStream, len: u64) {
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

async fn count_bytes(mut stream: PeerStream, counter: Arc<AtomicU64>) -> u64 {
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

async fn accept(server: &SessionSockets, transport: Transport) -> PeerStream {
    match transport {
        Transport::Tcp => server.tcp.accept().await.unwrap().0.into(),
        Transport::Utp => server.utp.accept().await.unwrap().0.into(),
    }
}

async fn dial(client: &SessionSockets, transport: Transport, to: SocketAddr) -> PeerStream {
    match transport {
        Transport::Tcp => client.dialer.tcp().connect(to).await.unwrap().into(),
        Transport::Utp => client.utp.connect(to).await.unwrap().into(),
    }
}

/// Moves `total` bytes over `streams` parallel connections; returns (MB/s, CPU s per GiB).
async fn run(transport: Transport, v6: bool, streams: u64, total: u64) -> (f64, f64) {
    let server = SessionSockets::bind(bench_config()).await.unwrap();
    let client = SessionSockets::bind(bench_config()).await.unwrap();
    let to = if v6 {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), server.port())
    } else {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), server.port())
    };
    let per_stream = total / streams;
    let counter = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_time();
    let started = Instant::now();
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for _ in 0..streams {
        // µTP answers a SYN only once the application accepts, so both run at once.
        let (out, inc) = tokio::join!(dial(&client, transport, to), accept(&server, transport));
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

/// Loopback configuration; `BURROW_BENCH_UTP_WINDOW_KIB` overrides the µTP buffers.
fn bench_config() -> NetConfig {
    let mut config = NetConfig::loopback(0);
    if let Some(kib) = std::env::var("BURROW_BENCH_UTP_WINDOW_KIB").ok().and_then(|v| v.parse::<usize>().ok()) {
        config.utp.rx_buffer_bytes = kib << 10;
        config.utp.tx_buffer_max_bytes = kib << 10;
    }
    config
}

fn loopback(rt: &Runtime) {
    let mib: u64 = std::env::var("BURROW_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let total = mib << 20;
    println!("loopback, {mib} MiB per run, 2 worker threads, sender and receiver in one process");
    println!("{:<28} {:>10} {:>14}", "transport", "MB/s", "CPU s/GiB");
    let cases = [
        ("TCP   1 stream  IPv4", Transport::Tcp, false, 1),
        ("µTP   1 stream  IPv4", Transport::Utp, false, 1),
        ("µTP   1 stream  IPv6", Transport::Utp, true, 1),
        ("TCP   4 streams IPv4", Transport::Tcp, false, 4),
        ("µTP   4 streams IPv4", Transport::Utp, false, 4),
    ];
    for (name, transport, v6, streams) in cases {
        let (mbps, cpu) = rt.block_on(run(transport, v6, streams, total));
        println!("{name:<28} {mbps:>10.1} {cpu:>14.2}");
    }
    // The same engine on a UDP socket of its own, to show what sharing the socket costs.
    for streams in [1, 4] {
        let (mbps, cpu) = rt.block_on(run_engine_alone(streams, total));
        println!("{:<28} {mbps:>10.1} {cpu:>14.2}", format!("µTP   {streams} stream{} (own socket)", if streams > 1 { "s" } else { "" }));
    }
}

/// librqbit-utp on its own UDP sockets, bypassing the shared socket and demultiplexer.
async fn run_engine_alone(streams: u64, total: u64) -> (f64, f64) {
    use librqbit_utp::UtpSocketUdp;
    let server = UtpSocketUdp::new_udp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = UtpSocketUdp::new_udp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let to = server.bind_addr();
    let per_stream = total / streams;
    let counter = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_time();
    let started = Instant::now();
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for _ in 0..streams {
        let (out, inc) = tokio::join!(client.connect(to), server.accept());
        let (mut out, mut inc) = (out.unwrap(), inc.unwrap());
        senders.push(tokio::spawn(async move {
            let buf = vec![0x5au8; 256 * 1024];
            let mut left = per_stream;
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                out.write_all(&buf[..n]).await.unwrap();
                left -= n as u64;
            }
            out.shutdown().await.unwrap();
            let _ = out.read_to_end(&mut Vec::new()).await;
        }));
        let counter = counter.clone();
        receivers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                match inc.read(&mut buf).await {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => {
                        total += n as u64;
                        counter.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
        }));
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

// ---- contention over a shaped link between two network namespaces ----

struct Lab {
    a: String,
    b: String,
}

const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 2);

fn sh(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(status.success(), "command failed: {args:?}");
}

impl Lab {
    fn new(rate: &str) -> Self {
        let id = std::process::id();
        let lab = Lab {
            a: format!("bnet{id}a"),
            b: format!("bnet{id}b"),
        };
        let (va, vb) = (format!("bv{id}a"), format!("bv{id}b"));
        sh(&["ip", "netns", "add", &lab.a]);
        sh(&["ip", "netns", "add", &lab.b]);
        sh(&["ip", "link", "add", &va, "type", "veth", "peer", "name", &vb]);
        sh(&["ip", "link", "set", &va, "netns", &lab.a]);
        sh(&["ip", "link", "set", &vb, "netns", &lab.b]);
        for (ns, dev, addr) in [(&lab.a, &va, ADDR_A), (&lab.b, &vb, ADDR_B)] {
            let cidr = format!("{addr}/24");
            sh(&["ip", "-n", ns, "addr", "add", &cidr, "dev", dev]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        // The bottleneck: A's egress (the data direction) is rate-limited by a token bucket
        // that queues up to 200 ms of traffic, the standing queue LEDBAT is meant to avoid.
        // (tbf rather than netem: kernels without sch_netem are common in containers.)
        sh(&["tc", "-n", &lab.a, "qdisc", "add", "dev", &va, "root", "tbf", "rate", rate, "burst", "32kb", "latency", "200ms"]);
        lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
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
    assert_eq!(unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
    let out = f();
    assert_eq!(unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
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

/// Streams from A to B over each transport in `flows` for `secs`; returns MB/s per flow over
/// the last `secs - warmup` seconds.
fn contend(rt: &Runtime, lab: &Lab, flows: &[Transport], secs: u64, warmup: u64) -> Vec<f64> {
    let sender = in_netns(&lab.a, || rt.block_on(SessionSockets::bind(lab_config(ADDR_A)))).unwrap();
    let receiver = in_netns(&lab.b, || rt.block_on(SessionSockets::bind(lab_config(ADDR_B)))).unwrap();
    let to = SocketAddr::from((ADDR_B, receiver.port()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut counters = Vec::new();
    for &t in flows {
        // Dial inside A: a TCP dial creates its socket on the polling thread. µTP answers a SYN
        // only once the application accepts, so the accept runs meanwhile.
        let accepting = {
            let utp = receiver.utp.clone();
            rt.spawn(async move { utp.accept().await.unwrap().0 })
        };
        let out = in_netns(&lab.a, || rt.block_on(dial(&sender, t, to)));
        if let PeerStream::Tcp(tcp) = &out {
            // The host default may be BBR; BEP 29's question is how µTP fares against CUBIC.
            socket2::SockRef::from(tcp).set_tcp_congestion(b"cubic").unwrap();
        }
        let inc: PeerStream = match t {
            Transport::Tcp => {
                accepting.abort();
                rt.block_on(accept(&receiver, t))
            }
            Transport::Utp => rt.block_on(accepting).unwrap().into(),
        };
        let counter = Arc::new(AtomicU64::new(0));
        counters.push(counter.clone());
        rt.spawn(count_bytes(inc, counter));
        let stop = stop.clone();
        rt.spawn(async move {
            let mut out = out;
            let buf = vec![0x5au8; 64 * 1024];
            while !stop.load(Ordering::Relaxed) {
                if out.write_all(&buf).await.is_err() {
                    break;
                }
            }
        });
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
            .map(|(t, (n, l))| format!("{t} {:.2} MB/s", (n - l) as f64 / 1e6))
            .collect();
        println!("    t={:>2}s  {}", second + 1, rates.join("   "));
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    let span = (secs - warmup) as f64;
    let result = last.iter().zip(&start).map(|(l, s)| (l - s) as f64 / span / 1e6).collect();
    drop((sender, receiver));
    std::thread::sleep(Duration::from_millis(500));
    result
}

fn contention(rt: &Runtime) {
    let rate = std::env::var("BURROW_BENCH_RATE").unwrap_or_else(|_| "50mbit".into());
    let lab = Lab::new(&rate);
    println!("bottleneck {rate} (tbf, up to 200 ms of queue); TCP is CUBIC");
    let tcp = contend(rt, &lab, &[Transport::Tcp], 12, 2);
    println!("TCP alone: {:.2} MB/s", tcp[0]);
    let utp = contend(rt, &lab, &[Transport::Utp], 12, 2);
    println!("µTP alone: {:.2} MB/s", utp[0]);
    let both = contend(rt, &lab, &[Transport::Tcp, Transport::Utp], 32, 2);
    println!(
        "together:  TCP {:.2} MB/s, µTP {:.2} MB/s (µTP share {:.0}%)",
        both[0],
        both[1],
        100.0 * both[1] / (both[0] + both[1])
    );
}
