//! What the user wants of a torrent: a priority per file (skip, low, normal, high), the
//! piece priorities that follow from it, and the streaming options (sequential order, the
//! first and last pieces of media files early). File numbers are those users see: pad files
//! (BEP 47) are not counted, as in `burrow download --list` and Transmission's RPC.
//!
//! A piece shared by files of different priorities takes the highest of them, so a wanted
//! file is never held back by its neighbour; the neighbour's part of such a piece is kept
//! outside the download folder's files (see `storage`).

use crate::metainfo::Info;
use crate::types::PieceIndex;

/// How much the user wants a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum FilePriority {
    /// Not downloaded; not created on disk.
    Skip,
    /// Downloaded after normal and high files.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Downloaded first.
    High,
}

impl FilePriority {
    /// The priority a piece takes in the picker: 0 for skip, higher first.
    pub fn rank(self) -> u8 {
        match self {
            FilePriority::Skip => 0,
            FilePriority::Low => 1,
            FilePriority::Normal => 2,
            FilePriority::High => 3,
        }
    }

    /// Short lower-case name.
    pub fn label(self) -> &'static str {
        match self {
            FilePriority::Skip => "skip",
            FilePriority::Low => "low",
            FilePriority::Normal => "normal",
            FilePriority::High => "high",
        }
    }

    /// Parses a name given by [`label`](Self::label).
    pub fn parse(s: &str) -> Option<FilePriority> {
        Some(match s {
            "skip" | "off" => FilePriority::Skip,
            "low" => FilePriority::Low,
            "normal" => FilePriority::Normal,
            "high" => FilePriority::High,
            _ => return None,
        })
    }
}

/// Piece rank for the first and last pieces of media files while streaming: above every
/// file priority, so players find the headers and the index early.
pub const STREAM_EDGE_RANK: u8 = 4;

/// File extensions treated as media, whose first and last pieces go first when streaming.
pub const MEDIA_EXTENSIONS: &[&str] = &[
    "mkv", "mp4", "m4v", "avi", "mov", "webm", "wmv", "flv", "mpg", "mpeg", "ts", "m2ts", "ogv",
    "mp3", "flac", "m4a", "ogg", "opus", "wav", "aac",
];

/// Largest number of files a selection may name, so a hostile list costs nothing.
pub const MAX_SELECTION_ENTRIES: usize = 1_000_000;

/// A selection the user gave that does not fit the torrent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    /// Not a list of numbers and ranges.
    #[error("bad file list {0:?}: expected numbers and ranges such as 0,3-5")]
    BadList(String),
    /// A file number beyond the torrent's files.
    #[error("file {index} does not exist: the torrent has {count} files (0 to {last})", last = count.saturating_sub(1))]
    OutOfRange {
        /// The number given.
        index: usize,
        /// How many files there are.
        count: usize,
    },
    /// A pattern that names no file.
    #[error("no file matches {0:?}")]
    NoMatch(String),
    /// The torrent's files are not known yet (a magnet link still fetching metadata).
    #[error("the torrent's files are not known yet")]
    NotYetKnown,
    /// A priority list of the wrong length.
    #[error("{given} priorities for {count} files")]
    WrongLength {
        /// Entries given.
        given: usize,
        /// Files in the torrent.
        count: usize,
    },
}

/// Indices in `info.files` of the files users see (pad files left out), in torrent order.
pub fn user_files(info: &Info) -> Vec<usize> {
    (0..info.files.len())
        .filter(|&i| !info.files[i].pad)
        .collect()
}

/// Parses `0,3-5` into sorted, distinct file numbers, each below `count`.
pub fn parse_file_list(s: &str, count: usize) -> Result<Vec<usize>, SelectionError> {
    let bad = || SelectionError::BadList(s.to_string());
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<usize>().map_err(|_| bad())?,
                b.trim().parse::<usize>().map_err(|_| bad())?,
            ),
            None => {
                let v = part.parse::<usize>().map_err(|_| bad())?;
                (v, v)
            }
        };
        if a > b || b - a >= MAX_SELECTION_ENTRIES {
            return Err(bad());
        }
        if b >= count {
            return Err(SelectionError::OutOfRange { index: b, count });
        }
        out.extend(a..=b);
        if out.len() > MAX_SELECTION_ENTRIES {
            return Err(bad());
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Whether `path` matches the shell-style `pattern` (`*` any run of characters, `?` one
/// character; everything else literal). A pattern without `/` is matched against the file's
/// name alone, one with `/` against the whole path.
pub fn glob_matches(pattern: &str, path: &str) -> bool {
    let subject = if pattern.contains('/') {
        path
    } else {
        path.rsplit('/').next().unwrap_or(path)
    };
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), subject.chars().collect());
    // Iterative matching with one backtrack point: linear in practice, never exponential.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The user-visible path of file `i` inside the torrent, with `/` separators.
pub fn display_path(info: &Info, i: usize) -> String {
    info.files[i]
        .path
        .iter()
        .map(|c| c.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// File numbers (as users see them) whose paths match any of `patterns`.
pub fn files_matching(info: &Info, patterns: &[String]) -> Result<Vec<usize>, SelectionError> {
    let files = user_files(info);
    let mut out = Vec::new();
    for pat in patterns {
        let before = out.len();
        for (n, &i) in files.iter().enumerate() {
            // Inside the torrent's folder, or with the folder's name: either way matches.
            let path = display_path(info, i);
            let inner = path.split_once('/').map_or(path.as_str(), |(_, rest)| rest);
            if glob_matches(pat, &path) || glob_matches(pat, inner) {
                out.push(n);
            }
        }
        if out.len() == before {
            return Err(SelectionError::NoMatch(pat.clone()));
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Per-file priorities (one per user-visible file) expanded to every entry of `info.files`;
/// pad files get [`FilePriority::Skip`].
pub fn expand(info: &Info, user: &[FilePriority]) -> Result<Vec<FilePriority>, SelectionError> {
    let files = user_files(info);
    if user.len() != files.len() {
        return Err(SelectionError::WrongLength {
            given: user.len(),
            count: files.len(),
        });
    }
    let mut all = vec![FilePriority::Skip; info.files.len()];
    for (n, &i) in files.iter().enumerate() {
        all[i] = user[n];
    }
    Ok(all)
}

/// Priorities that keep only the user-visible files in `only` (the rest skipped).
pub fn only(info: &Info, only: &[usize]) -> Vec<FilePriority> {
    let count = user_files(info).len();
    (0..count)
        .map(|n| {
            if only.binary_search(&n).is_ok() {
                FilePriority::Normal
            } else {
                FilePriority::Skip
            }
        })
        .collect()
}

/// The rank of every piece: the highest priority among the files it holds bytes of (0: not
/// wanted). `files` has one entry per `info.files` entry (see [`expand`]). With `streaming`,
/// the first and last pieces of each wanted media file rank [`STREAM_EDGE_RANK`].
pub fn piece_ranks(info: &Info, files: &[FilePriority], streaming: bool) -> Vec<u8> {
    let mut ranks = vec![0u8; info.piece_count() as usize];
    for (i, f) in info.files.iter().enumerate() {
        let prio = files.get(i).copied().unwrap_or_default();
        if f.pad || f.length == 0 || prio == FilePriority::Skip {
            continue;
        }
        let pieces = info.pieces_of_file(i);
        for p in pieces.clone() {
            let r = &mut ranks[p as usize];
            *r = (*r).max(prio.rank());
        }
        if streaming && is_media(&display_path(info, i)) {
            ranks[pieces.start as usize] = STREAM_EDGE_RANK;
            ranks[pieces.end as usize - 1] = STREAM_EDGE_RANK;
        }
    }
    ranks
}

/// Whether a path names a media file, by its extension.
pub fn is_media(path: &str) -> bool {
    path.rsplit_once('.')
        .is_some_and(|(_, ext)| MEDIA_EXTENSIONS.iter().any(|m| m.eq_ignore_ascii_case(ext)))
}

/// Bytes of `info.files[file]` that lie in piece `piece`.
pub fn overlap(info: &Info, file: usize, piece: u32) -> u64 {
    let f = &info.files[file];
    let start = info.piece_offset(PieceIndex(piece));
    let end = start + info.piece_len(PieceIndex(piece)) as u64;
    let (a, b) = (start.max(f.offset), end.min(f.offset + f.length));
    b.saturating_sub(a)
}

/// Bytes of the files the user wants (pad files and skipped files left out) and, of those,
/// bytes in verified pieces: what progress, `left` and `sizeWhenDone` are made of.
pub fn wanted_and_verified(
    info: &Info,
    have: &crate::torrent::bitfield::Bitfield,
    prios: &[FilePriority],
) -> (u64, u64) {
    let (mut wanted, mut verified) = (0, 0);
    for (i, f) in info.files.iter().enumerate() {
        if f.pad || prios.get(i).is_none_or(|p| *p == FilePriority::Skip) {
            continue;
        }
        wanted += f.length;
        verified += info
            .pieces_of_file(i)
            .filter(|&p| have.get(p))
            .map(|p| overlap(info, i, p))
            .sum::<u64>();
    }
    (wanted, verified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::info_of;

    /// Three files of 40 000, 10 000 and 70 000 bytes with 32 KiB pieces: piece 1 holds the
    /// end of the first, all of the second and the start of the third.
    fn three() -> (tempfile::TempDir, Info) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("set");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("a.mkv"), vec![1u8; 40_000]).unwrap();
        std::fs::write(root.join("b.nfo"), vec![2u8; 10_000]).unwrap();
        std::fs::write(root.join("c.bin"), vec![3u8; 70_000]).unwrap();
        let info = info_of(&root, 32 * 1024);
        (dir, info)
    }

    #[test]
    fn lists_parse_and_refuse_what_does_not_fit() {
        assert_eq!(parse_file_list("0,3-5, 4", 6), Ok(vec![0, 3, 4, 5]));
        assert_eq!(
            parse_file_list("7", 6),
            Err(SelectionError::OutOfRange { index: 7, count: 6 })
        );
        for bad in ["", "a", "3-1", "1-", "-", "0-99999999999999999999"] {
            assert!(
                matches!(parse_file_list(bad, 6), Err(SelectionError::BadList(_))),
                "{bad:?}"
            );
        }
        assert!(parse_file_list("0-4000000000", usize::MAX).is_err());
    }

    #[test]
    fn globs_match_names_or_paths() {
        assert!(glob_matches("*.mkv", "show/s01/e01.mkv"));
        assert!(!glob_matches("*.mkv", "show/s01/e01.mkv.part"));
        assert!(glob_matches("e0?.*", "show/e01.mkv"));
        assert!(glob_matches("show/*/e01.mkv", "show/s01/e01.mkv"));
        assert!(!glob_matches("s01/*", "show/s01/e01.mkv"));
        assert!(glob_matches("*", ""));
        // A pathological pattern stays fast.
        let long = "a".repeat(10_000);
        assert!(!glob_matches(
            &"*a".repeat(50).replace("**", "*"),
            &format!("{long}b")
        ));
    }

    #[test]
    fn pieces_take_the_highest_priority_of_their_files() {
        let (_d, info) = three();
        assert_eq!(info.piece_count(), 4);
        let user = [FilePriority::Skip, FilePriority::Low, FilePriority::High];
        let all = expand(&info, &user).unwrap();
        assert_eq!(piece_ranks(&info, &all, false), vec![0, 3, 3, 3]);
        let user = [FilePriority::Low, FilePriority::Skip, FilePriority::Skip];
        let all = expand(&info, &user).unwrap();
        assert_eq!(piece_ranks(&info, &all, false), vec![1, 1, 0, 0]);
        // Streaming: the media file's first and last pieces go before everything.
        let user = [FilePriority::Normal, FilePriority::Skip, FilePriority::High];
        let all = expand(&info, &user).unwrap();
        assert_eq!(piece_ranks(&info, &all, true), vec![4, 4, 3, 3]);
        assert_eq!(
            expand(&info, &[FilePriority::Normal]),
            Err(SelectionError::WrongLength { given: 1, count: 3 })
        );
    }

    #[test]
    fn files_match_patterns_and_a_pattern_matching_nothing_is_an_error() {
        let (_d, info) = three();
        assert_eq!(
            files_matching(&info, &["*.mkv".into(), "c.*".into()]),
            Ok(vec![0, 2])
        );
        assert_eq!(
            files_matching(&info, &["*.iso".into()]),
            Err(SelectionError::NoMatch("*.iso".into()))
        );
        assert_eq!(
            only(&info, &[1]),
            vec![FilePriority::Skip, FilePriority::Normal, FilePriority::Skip]
        );
        assert_eq!(overlap(&info, 0, 1), 40_000 - 32_768);
        assert_eq!(overlap(&info, 1, 1), 10_000);
        assert_eq!(overlap(&info, 2, 0), 0);
    }
}
