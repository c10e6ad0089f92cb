//! Transmission RPC arguments about a torrent's files and place: `files-wanted`,
//! `files-unwanted`, `priority-high`, `priority-normal`, `priority-low` (lists of file
//! numbers, an empty list meaning every file), `sequentialDownload`, `labels`, and the new
//! `location` of `torrent-set-location` (with `move`).

use burrow_swarm::torrent::selection::FilePriority;
use serde_json::{Map, Value};

use super::model::{TorrentSettings, TorrentView};

/// Most labels a torrent keeps, and the longest label.
pub const MAX_LABELS: (usize, usize) = (64, 256);

/// File numbers an argument names; an empty list names all `count` files.
fn file_numbers(v: &Value, name: &str, count: usize) -> Result<Vec<usize>, String> {
    let list = v
        .as_array()
        .ok_or_else(|| format!("{name} must be a list of file numbers"))?;
    if list.is_empty() {
        return Ok((0..count).collect());
    }
    list.iter()
        .map(|n| {
            n.as_u64()
                .map(|n| n as usize)
                .filter(|&n| n < count)
                .ok_or_else(|| {
                    format!("{name}: {n} is not a file of this torrent (it has {count} files)")
                })
        })
        .collect()
}

/// Applies the file arguments in `args` to `s`; an error names the argument that does not
/// fit, and nothing is changed then.
pub fn apply(
    t: &TorrentView,
    s: &mut TorrentSettings,
    args: &Map<String, Value>,
) -> Result<(), String> {
    const FILE_ARGS: [&str; 5] = [
        "files-wanted",
        "files-unwanted",
        "priority-high",
        "priority-normal",
        "priority-low",
    ];
    let mut next = s.clone();
    if FILE_ARGS.iter().any(|k| args.contains_key(*k)) {
        let info = t
            .info
            .as_ref()
            .ok_or("the torrent's files are not known yet (metadata still being fetched)")?;
        let count = burrow_swarm::torrent::selection::user_files(info).len();
        let mut wanted = next.wanted.clone().unwrap_or_else(|| vec![true; count]);
        let mut prios = next.priorities.clone().unwrap_or_else(|| vec![0; count]);
        wanted.resize(count, true);
        prios.resize(count, 0);
        for (key, set) in [("files-wanted", true), ("files-unwanted", false)] {
            if let Some(v) = args.get(key) {
                for n in file_numbers(v, key, count)? {
                    wanted[n] = set;
                }
            }
        }
        for (key, p) in [
            ("priority-high", 1),
            ("priority-normal", 0),
            ("priority-low", -1),
        ] {
            if let Some(v) = args.get(key) {
                for n in file_numbers(v, key, count)? {
                    prios[n] = p;
                }
            }
        }
        next.wanted = Some(wanted);
        next.priorities = Some(prios);
    }
    if let Some(v) = args.get("sequentialDownload") {
        next.sequential = v
            .as_bool()
            .ok_or("sequentialDownload must be true or false")?;
    }
    if let Some(v) = args.get("labels") {
        let labels: Vec<String> = v
            .as_array()
            .ok_or("labels must be a list of strings")?
            .iter()
            .map(|l| {
                l.as_str()
                    .map(str::to_string)
                    .ok_or("labels must be strings")
            })
            .collect::<Result<_, _>>()?;
        if labels.len() > MAX_LABELS.0 || labels.iter().any(|l| l.len() > MAX_LABELS.1) {
            return Err(format!(
                "at most {} labels of at most {} bytes",
                MAX_LABELS.0, MAX_LABELS.1
            ));
        }
        next.labels = labels;
    }
    *s = next;
    Ok(())
}

/// `wanted` and `priorities` of each file, as `torrent-get` shows them.
pub fn shown(t: &TorrentView) -> (Vec<bool>, Vec<i8>) {
    t.file_priorities()
        .iter()
        .map(|p| match p {
            FilePriority::Skip => (false, 0),
            FilePriority::Low => (true, -1),
            FilePriority::Normal => (true, 0),
            FilePriority::High => (true, 1),
        })
        .unzip()
}
