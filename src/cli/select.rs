//! Choosing files and order on the command line: `--files`, `--files-glob`, `--high`,
//! `--low`, `--sequential`, and `--list`, which prints the files with the numbers these
//! options use (pad files are not shown and not numbered).

use anyhow::Context;
use burrow_swarm::metainfo::Info;
use burrow_swarm::torrent::selection::{self, parse_file_list};
use burrow_swarm::torrent::task::Selection;

use super::progress::human_bytes;

/// Options choosing what `burrow download` fetches and in which order.
#[derive(clap::Args, Debug, Default)]
pub struct SelectArgs {
    /// Download only these files, by number (see --list): `0,3-5`.
    #[arg(long, value_name = "LIST")]
    files: Option<String>,
    /// Download only files whose name matches (`*.mkv`; a pattern with `/` matches the path
    /// inside the torrent's folder, `season1/*.mkv`); repeatable, and combines with --files.
    #[arg(long, value_name = "PATTERN")]
    files_glob: Vec<String>,
    /// Download these files first (numbers, as for --files).
    #[arg(long, value_name = "LIST")]
    high: Option<String>,
    /// Download these files last.
    #[arg(long, value_name = "LIST")]
    low: Option<String>,
    /// Fetch pieces in order (for playing while downloading); media files' first and last
    /// pieces come first.
    #[arg(long)]
    sequential: bool,
    /// Print the files with their numbers and sizes, then exit (a magnet link's metadata is
    /// fetched first).
    #[arg(long)]
    pub list: bool,
}

fn numbers(s: &Option<String>, what: &str) -> anyhow::Result<Vec<usize>> {
    match s {
        // File counts are checked against the torrent once it is known.
        Some(s) => parse_file_list(s, usize::MAX).with_context(|| format!("--{what}")),
        None => Ok(Vec::new()),
    }
}

impl SelectArgs {
    /// The selection these options make; only the syntax is checked here.
    pub fn selection(&self) -> anyhow::Result<Selection> {
        let only = match &self.files {
            Some(_) => Some(numbers(&self.files, "files")?),
            None => None,
        };
        Ok(Selection {
            files: None,
            only,
            only_globs: self.files_glob.clone(),
            high: numbers(&self.high, "high")?,
            low: numbers(&self.low, "low")?,
            so: None,
            sequential: self.sequential,
        })
    }
}

/// The file list as `--list` prints it.
pub fn file_list(info: &Info) -> String {
    let files = selection::user_files(info);
    let width = files.len().saturating_sub(1).to_string().len();
    let mut out = String::new();
    for (n, &i) in files.iter().enumerate() {
        out.push_str(&format!(
            "{n:>width$}  {:>10}  {}\n",
            human_bytes(info.files[i].length as f64),
            selection::display_path(info, i)
        ));
    }
    out.push_str(&format!(
        "{} files, {} in all\n",
        files.len(),
        human_bytes(info.content_length() as f64)
    ));
    out
}
