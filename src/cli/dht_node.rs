//! `burrow dht-node`: a mainline DHT bootstrap node for heavy traffic. The work is done by
//! `burrow_dht::serve` (sockets, batching) and `burrow_dht::router` (the verified-node cache
//! and the fast path); this file turns options into their settings, keeps the state file,
//! serves `/metrics` and writes the periodic status line.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use burrow_dht::rate_limit::RateLimit;
use burrow_dht::router::{RouterStats, QUERY_KINDS};
use burrow_dht::serve::{ServeConfig, ServeError, Server};
use clap::Args;

/// How often the state file is rewritten while running (and once more on exit).
const SAVE_INTERVAL: Duration = Duration::from_secs(300);

/// Options of `burrow dht-node`.
#[derive(Args, Debug)]
pub struct DhtNodeArgs {
    /// UDP port, the same for every bound address (0: any free port).
    #[arg(long, default_value_t = 6881)]
    port: u16,
    /// Address to bind, one socket each (repeatable). Default: 0.0.0.0 and ::.
    #[arg(long = "bind", value_name = "IP")]
    bind: Vec<IpAddr>,
    /// File that keeps the node ID and known nodes across restarts.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Most IPv4 nodes kept in the verified-node cache (IPv6: a quarter as many); about 32
    /// bytes per IPv4 node and 48 per IPv6 node.
    #[arg(long, default_value_t = burrow_dht::router::DEFAULT_CACHE_SIZE)]
    cache_size: usize,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Join the DHT through this node (repeatable). Default: the public bootstrap routers.
    #[arg(long = "bootstrap", value_name = "HOST:PORT")]
    bootstrap: Vec<String>,
    /// Seconds between status lines in the log (0: none).
    #[arg(long, default_value_t = 60)]
    log_interval: u64,
    /// Queries per second accepted from one IP address or IPv6 /64, with bursts of three
    /// times as many (0: no limit).
    #[arg(long, default_value_t = burrow_dht::rate_limit::DEFAULT_QUERIES_PER_SEC)]
    rate_limit: u32,
    /// Queries per second sent to verify nodes (new ones and re-checks of cached ones).
    #[arg(long, default_value_t = burrow_dht::router::DEFAULT_VERIFY_PER_SEC)]
    verify_rate: u32,
    /// Datagrams per receive/send system call (1: one call per datagram).
    #[arg(long, default_value_t = burrow_dht::serve::DEFAULT_BATCH, hide = true)]
    batch: usize,
    /// Cache nodes that share an IP address with another cached node (loopback test labs).
    #[arg(long, hide = true)]
    allow_shared_ip: bool,
}

/// Runs the node until SIGINT or SIGTERM.
pub async fn dht_node(a: DhtNodeArgs) -> anyhow::Result<()> {
    let mut config = ServeConfig::new(a.port);
    config.bind = a.bind.clone();
    config.batch = a.batch;
    config.router.cache_size = a.cache_size;
    config.router.cache_size_v6 = (a.cache_size / 4).max(1);
    config.router.verify_per_sec = a.verify_rate;
    config.router.rate_limit = (a.rate_limit > 0).then(|| RateLimit {
        per_second: a.rate_limit,
        burst: a.rate_limit.saturating_mul(3),
    });
    config.router.node.one_node_per_ip = !a.allow_shared_ip;
    if let Some(path) = &a.state {
        config.state = read_state(path)?;
    }
    config.bootstrap = resolve_bootstrap(&a.bootstrap).await;
    if config.bootstrap.is_empty() {
        tracing::warn!("no bootstrap node resolved; waiting to be contacted");
    }
    let server = spawn(config, a.state.as_deref())
        .await
        .context("cannot start the DHT node")?;
    let id4 = server.node_id(false).await?;
    tracing::info!(addrs = ?server.local_addrs(), id = %id4, "DHT node listening");

    if let Some(addr) = a.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for metrics"))?;
        tracing::info!(%addr, "metrics at /metrics");
        tokio::spawn(burrow_dht::serve::metrics::serve(listener, server.clone()));
    }

    let log_every = Duration::from_secs(a.log_interval.max(1));
    let mut log_tick = tokio::time::interval(log_every);
    log_tick.tick().await;
    let mut save_tick = tokio::time::interval(SAVE_INTERVAL);
    save_tick.tick().await;
    let mut last = (Instant::now(), server.stats().await?);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = log_tick.tick(), if a.log_interval > 0 => {
                let now = (Instant::now(), server.stats().await?);
                log_status(&last, &now);
                last = now;
            }
            _ = save_tick.tick(), if a.state.is_some() => {
                if let Some(path) = &a.state {
                    save(&server, path).await;
                }
            }
        }
    }
    if let Some(path) = &a.state {
        save(&server, path).await;
    }
    server.shutdown().await;
    tracing::info!("DHT node stopped");
    Ok(())
}

/// The saved state, `None` if there is none yet.
fn read_state(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match burrow_swarm::fsread::read_bounded(path, burrow_dht::MAX_STATE_SIZE) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Starts the server; a state file it cannot use is moved aside (to `FILE.bad`) and the node
/// starts afresh rather than refusing to run.
async fn spawn(mut config: ServeConfig, state_path: Option<&Path>) -> anyhow::Result<Server> {
    match (Server::spawn(config.clone()).await, state_path) {
        (Err(ServeError::State(e)), Some(path)) => {
            let aside = path.with_extension("bad");
            tracing::warn!(file = %path.display(), error = %e, moved_to = %aside.display(), "unusable state file; starting with a new node ID");
            let _ = std::fs::rename(path, &aside);
            config.state = None;
            Ok(Server::spawn(config).await?)
        }
        (r, _) => Ok(r?),
    }
}

/// Writes the state next to `path` and renames it into place, so a crash never leaves half a
/// file.
async fn save(server: &Server, path: &Path) {
    let Ok(state) = server.save_state().await else {
        return;
    };
    let tmp = path.with_extension("tmp");
    let result = std::fs::write(&tmp, &state).and_then(|()| std::fs::rename(&tmp, path));
    match result {
        Ok(()) => tracing::debug!(file = %path.display(), bytes = state.len(), "state saved"),
        Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot save state"),
    }
}

async fn resolve_bootstrap(given: &[String]) -> Vec<SocketAddr> {
    let names: Vec<String> = if given.is_empty() {
        burrow_dht::DEFAULT_BOOTSTRAP
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        given.to_vec()
    };
    let mut out = Vec::new();
    for name in &names {
        match tokio::net::lookup_host(name.as_str()).await {
            Ok(found) => out.extend(found),
            Err(e) => tracing::warn!(host = %name, error = %e, "bootstrap node does not resolve"),
        }
    }
    out
}

/// One status line: rates since the previous line, cache and table sizes, drops by reason.
fn log_status(prev: &(Instant, RouterStats), now: &(Instant, RouterStats)) {
    let secs = now.0.duration_since(prev.0).as_secs_f64().max(1e-3);
    let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / secs;
    let (p, n) = (&prev.1, &now.1);
    let by_kind: Vec<String> = QUERY_KINDS
        .iter()
        .zip(n.queries.iter().zip(p.queries.iter()))
        .map(|(k, (a, b))| format!("{k} {:.0}", rate(*a, *b)))
        .collect();
    let drops: Vec<String> = n
        .drops()
        .iter()
        .zip(p.drops().iter())
        .map(|((reason, a), (_, b))| format!("{reason} {}", a.saturating_sub(*b)))
        .collect();
    tracing::info!(
        "{:.0} queries/s ({}); cache {} v4 + {} v6 of {}, {:.1}% verified; routing table {} v4 + {} v6; dropped: {}",
        rate(n.queries_total(), p.queries_total()),
        by_kind.join(", "),
        n.cache_v4,
        n.cache_v6,
        n.cache_capacity,
        100.0 * n.verified_fraction(),
        n.routing_v4,
        n.routing_v6,
        drops.join(", "),
    );
}
