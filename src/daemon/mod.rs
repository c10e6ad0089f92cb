//! `burrow daemon`: a headless seedbox. Many torrents run in one session (sharing its sockets);
//! their state lives in an SQLite database so the daemon picks up where it stopped, even after
//! a crash. It is driven through Transmission's RPC, a small web page, a watch folder, and
//! observed through Prometheus metrics.
//!
//! - `config`: the TOML file; `db`: the database and the resume store on top of it.
//! - `engine`: the task that owns the session and every torrent's record (queues, limits).
//! - `http`: the server; `rpc` + `rpc_torrent` + `rpc_files`: Transmission RPC; `web`: the page;
//!   `metrics`: Prometheus; `connectivity`: reachability; `watch`: the watch folder;
//!   `paths`: keeping downloads inside the allowed folders.

pub mod config;
pub mod connectivity;
pub mod db;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod model;
pub mod paths;
pub mod rpc;
pub mod rpc_files;
pub mod rpc_torrent;
pub mod watch;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

pub use config::Config;

/// Runs the daemon until SIGINT or SIGTERM, then stops every torrent (saving resume data).
pub async fn run(config: Config) -> anyhow::Result<()> {
    // Bind the RPC first: a port in use is reported before any torrent starts.
    let listener = tokio::net::TcpListener::bind(config.rpc.bind)
        .await
        .with_context(|| format!("cannot listen for RPC on {}", config.rpc.bind))?;
    let rpc_addr = listener.local_addr()?;
    let engine = engine::Engine::start(config.clone()).await?;
    let state = Arc::new(http::HttpState::new(engine.clone(), &config));
    let server = tokio::spawn(http::serve(listener, state));
    let watcher = config.watch_dir.clone().map(|dir| {
        let _ = std::fs::create_dir_all(&dir);
        tokio::spawn(watch::run(
            dir,
            Duration::from_secs_f64(config.watch_interval_secs),
            engine.clone(),
        ))
    });
    let port = engine.snapshot().await.map_or(0, |s| s.port);
    tracing::info!(rpc = %format!("http://{rpc_addr}/transmission/rpc"), web = %format!("http://{rpc_addr}/"), peer_port = port, "daemon ready");
    shutdown_signal().await;
    tracing::info!("stopping");
    server.abort();
    if let Some(w) = watcher {
        w.abort();
    }
    engine.shutdown().await;
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
