//! `burrow create`: make a .torrent from a file or folder.

use std::path::PathBuf;

use anyhow::Context;
use burrow_swarm::metainfo::{create_torrent, CreateOptions, Magnet, Metainfo};

/// Arguments of `burrow create`.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// The file or folder to describe.
    path: PathBuf,
    /// Where to write the .torrent (default: NAME.torrent in the current folder).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Tracker URL (repeatable; each its own tier).
    #[arg(short, long = "tracker")]
    trackers: Vec<String>,
    /// Piece length in bytes (power of two, default: automatic).
    #[arg(long)]
    piece_length: Option<u32>,
    /// Mark the torrent private (no DHT or peer exchange).
    #[arg(long)]
    private: bool,
    /// Comment stored in the torrent.
    #[arg(long)]
    comment: Option<String>,
}

pub fn create(a: CreateArgs) -> anyhow::Result<()> {
    if let Some(pl) = a.piece_length {
        anyhow::ensure!(
            pl >= 16 * 1024 && pl.is_power_of_two(),
            "--piece-length must be a power of two of at least 16384"
        );
    }
    let opts = CreateOptions {
        piece_length: a.piece_length,
        trackers: a.trackers.iter().map(|t| vec![t.clone()]).collect(),
        private: a.private,
        comment: a.comment.clone(),
    };
    let bytes = create_torrent(&a.path, &opts)
        .with_context(|| format!("cannot read {}", a.path.display()))?;
    let m = Metainfo::from_bytes(&bytes).context("the torrent just made does not parse")?;
    let out = a
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.torrent", m.info.name)));
    std::fs::write(&out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
    let magnet = Magnet {
        info_hash: m.info.info_hash,
        name: Some(m.info.name.clone()),
        trackers: a.trackers,
        peers: vec![],
        select_only: None,
    };
    println!(
        "wrote {} ({} pieces of {} bytes, {} bytes in {} files)",
        out.display(),
        m.info.piece_count(),
        m.info.piece_length,
        m.info.total_length,
        m.info.files.len()
    );
    println!("info-hash {}", m.info.info_hash);
    println!("{}", magnet.to_uri());
    Ok(())
}
