//! `burrow download` and `burrow seed`: join one swarm, show progress, exit when done (or
//! keep seeding until interrupted).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use burrow_swarm::fsread::read_bounded;
use burrow_swarm::metainfo::{Magnet, Metainfo, MAX_METAINFO_SIZE};
use burrow_swarm::session::{AddTorrent, Session, TorrentSource};
use burrow_swarm::torrent::status::TorrentState;
use burrow_swarm::torrent::task::Selection;

use super::progress::Progress;
use super::select::{file_list, SelectArgs};
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
    select: SelectArgs,
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
        return Ok(TorrentSource::Magnet(
            Magnet::parse(arg).context("invalid magnet link")?,
        ));
    }
    let bytes = read_bounded(std::path::Path::new(arg), MAX_METAINFO_SIZE)
        .with_context(|| format!("cannot read {arg}"))?;
    let m =
        Metainfo::from_bytes(&bytes).with_context(|| format!("{arg} is not a valid .torrent"))?;
    Ok(TorrentSource::Metainfo(Box::new(m)))
}

/// `verbose`: the progress line lists banned peers and why.
pub async fn download(a: DownloadArgs, verbose: bool) -> anyhow::Result<()> {
    let source = load_source(&a.torrent)?;
    let selection = a.select.selection()?;
    if let TorrentSource::Metainfo(m) = &source {
        if a.select.list {
            print!("{}", file_list(&m.info));
            return Ok(());
        }
        // Known now: refuse a choice that does not fit before anything starts.
        selection.check(&m.info)?;
    }
    if a.select.list {
        return list_magnet(source, &a.swarm).await;
    }
    std::fs::create_dir_all(&a.output)
        .with_context(|| format!("cannot create {}", a.output.display()))?;
    run(source, a.output, a.seed, selection, &a.swarm, verbose).await
}

/// `--list` for a magnet link: fetches the metadata (wanting no file), prints the files.
async fn list_magnet(source: TorrentSource, swarm: &SwarmArgs) -> anyhow::Result<()> {
    let peers = swarm.resolve_peers().await?;
    let mut session = Session::start(swarm.session_config())
        .await
        .with_context(|| format!("cannot listen on port {}", swarm.port))?;
    let scratch = std::env::temp_dir().join(format!("burrow-list-{}", std::process::id()));
    let handle = session.add(AddTorrent {
        source,
        download_dir: scratch.clone(),
        peers,
        seed: false,
        selection: Selection {
            so: Some(Vec::new()),
            ..Selection::default()
        },
    });
    let mut watch = handle.watch();
    let info = loop {
        tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() {
                    break None;
                }
                if watch.borrow().state != TorrentState::FetchingMetadata {
                    break handle.details().await.and_then(|d| d.info);
                }
            }
            _ = shutdown_signal() => break None,
        }
    };
    session.shutdown().await;
    let _ = std::fs::remove_dir_all(&scratch);
    let info = info.context("interrupted before the metadata arrived")?;
    print!("{}", file_list(&info));
    Ok(())
}

/// As [`download`], for data already on disk.
pub async fn seed(a: SeedArgs, verbose: bool) -> anyhow::Result<()> {
    let source = load_source(a.torrent.to_str().context("torrent path is not UTF-8")?)?;
    anyhow::ensure!(a.data.is_dir(), "{} is not a folder", a.data.display());
    run(
        source,
        a.data,
        true,
        Selection::default(),
        &a.swarm,
        verbose,
    )
    .await
}

async fn run(
    source: TorrentSource,
    dir: PathBuf,
    seed: bool,
    selection: Selection,
    swarm: &SwarmArgs,
    verbose: bool,
) -> anyhow::Result<()> {
    let peers = swarm.resolve_peers().await?;
    let mut session = Session::start(swarm.session_config())
        .await
        .with_context(|| format!("cannot listen on port {}", swarm.port))?;
    tracing::info!(port = session.port(), "listening");
    let handle = session.add(AddTorrent {
        source,
        download_dir: dir,
        peers,
        seed,
        selection,
    });
    let mut watch = handle.watch();
    let mut progress = Progress::new(verbose);
    let reach = session.reachability().clone();
    let mut network = NetworkNotes::default();
    let mut every_second = tokio::time::interval(Duration::from_secs(1));
    let interrupted = loop {
        tokio::select! {
            _ = every_second.tick() => {
                if let Some(line) = network.due(reach.snapshot().report.summary_line(), Instant::now()) {
                    progress.note(&line);
                }
            }
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
    // The final figures once every connection has ended: what a closing connection still
    // sent counts too.
    session.shutdown().await;
    let st = handle.status();
    progress.finish(&st);
    if interrupted && !matches!(st.state, TorrentState::Seeding | TorrentState::Complete) {
        anyhow::bail!(
            "interrupted at {:.1}%; run the same command again to resume",
            st.progress() * 100.0
        );
    }
    Ok(())
}

/// What the session found about the network, told once it has held still for
/// [`NetworkNotes::SETTLE`] and again whenever it changes.
#[derive(Default)]
struct NetworkNotes {
    told: Option<String>,
    pending: Option<(String, Instant)>,
}

impl NetworkNotes {
    const SETTLE: Duration = Duration::from_secs(5);

    /// The line to print now, if any, given the current one.
    fn due(&mut self, line: Option<String>, now: Instant) -> Option<String> {
        let line = line?;
        if self.told.as_ref() == Some(&line) {
            self.pending = None;
            return None;
        }
        match &self.pending {
            Some((p, since)) if *p == line => {
                if now.duration_since(*since) < Self::SETTLE {
                    return None;
                }
                self.pending = None;
                self.told = Some(line.clone());
                Some(line)
            }
            _ => {
                self.pending = Some((line, now));
                None
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_line_waits_until_it_settles_and_repeats_only_changes() {
        let mut n = NetworkNotes::default();
        let t = Instant::now();
        let s = |x: &str| Some(x.to_string());
        assert_eq!(n.due(None, t), None);
        assert_eq!(n.due(s("a"), t), None);
        assert_eq!(
            n.due(s("b"), t + Duration::from_secs(3)),
            None,
            "changed: wait again"
        );
        assert_eq!(n.due(s("b"), t + Duration::from_secs(7)), None);
        assert_eq!(n.due(s("b"), t + Duration::from_secs(8)), s("b"));
        assert_eq!(
            n.due(s("b"), t + Duration::from_secs(20)),
            None,
            "told once"
        );
        assert_eq!(n.due(s("c"), t + Duration::from_secs(21)), None);
        assert_eq!(n.due(s("c"), t + Duration::from_secs(26)), s("c"));
    }
}
