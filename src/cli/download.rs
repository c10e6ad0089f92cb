//! `burrow download` and `burrow seed`: join one swarm, show progress, exit when done (or
//! keep seeding until interrupted).

use std::path::PathBuf;

use anyhow::Context;
use burrow_swarm::metainfo::{Magnet, Metainfo};
use burrow_swarm::session::{AddTorrent, Session, TorrentSource};
use burrow_swarm::torrent::status::TorrentState;

use super::progress::Progress;
use super::SwarmArgs;

/// Arguments of `burrow download`.
#[derive(clap::Args, Debug)]
pub struct DownloadArgs {
    /// A magnet link or the path of a .torrent file.
    torrent: String,
    /// Folder to download into.
    #[arg(short, long, default_value = ".")]
    output: PathBuf,
    /// Keep seeding after the download completes, until interrupted.
    #[arg(long)]
    seed: bool,
    #[command(flatten)]
    swarm: SwarmArgs,
}

/// Arguments of `burrow seed`.
#[derive(clap::Args, Debug)]
pub struct SeedArgs {
    /// The .torrent file.
    torrent: PathBuf,
    /// Folder that holds the torrent's data.
    #[arg(short, long)]
    data: PathBuf,
    #[command(flatten)]
    swarm: SwarmArgs,
}

fn load_source(arg: &str) -> anyhow::Result<TorrentSource> {
    if arg.starts_with("magnet:") {
        return Ok(TorrentSource::Magnet(Magnet::parse(arg).context("invalid magnet link")?));
    }
    let bytes = std::fs::read(arg).with_context(|| format!("cannot read {arg}"))?;
    let m = Metainfo::from_bytes(&bytes).with_context(|| format!("{arg} is not a valid .torrent"))?;
    Ok(TorrentSource::Metainfo(Box::new(m)))
}

pub async fn download(a: DownloadArgs) -> anyhow::Result<()> {
    let source = load_source(&a.torrent)?;
    std::fs::create_dir_all(&a.output).with_context(|| format!("cannot create {}", a.output.display()))?;
    run(source, a.output, a.seed, &a.swarm).await
}

pub async fn seed(a: SeedArgs) -> anyhow::Result<()> {
    let source = load_source(a.torrent.to_str().context("torrent path is not UTF-8")?)?;
    anyhow::ensure!(a.data.is_dir(), "{} is not a folder", a.data.display());
    run(source, a.data, true, &a.swarm).await
}

async fn run(source: TorrentSource, dir: PathBuf, seed: bool, swarm: &SwarmArgs) -> anyhow::Result<()> {
    let peers = swarm.resolve_peers().await?;
    let mut session = Session::start(swarm.session_config())
        .await
        .with_context(|| format!("cannot listen on port {}", swarm.port))?;
    tracing::info!(port = session.port(), "listening");
    let handle = session.add(AddTorrent { source, download_dir: dir, peers, seed });
    let mut watch = handle.watch();
    let mut progress = Progress::new();
    let interrupted = loop {
        tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() {
                    break false;
                }
                let st = watch.borrow().clone();
                progress.update(&st);
                match &st.state {
                    TorrentState::Complete => break false,
                    TorrentState::Error(e) => {
                        progress.finish(&st);
                        session.shutdown().await;
                        anyhow::bail!("{e}");
                    }
                    _ => {}
                }
            }
            _ = shutdown_signal() => break true,
        }
    };
    let st = handle.status();
    progress.finish(&st);
    session.shutdown().await;
    if interrupted && !matches!(st.state, TorrentState::Seeding | TorrentState::Complete) {
        anyhow::bail!("interrupted at {:.1}%; run the same command again to resume", st.progress() * 100.0);
    }
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
