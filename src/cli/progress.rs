//! Progress display: a bar on a terminal; a plain line every few seconds otherwise (logs,
//! pipes, CI).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use burrow_swarm::torrent::status::{TorrentState, TorrentStatus};
use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain progress line is printed when stderr is not a terminal.
const PLAIN_INTERVAL: Duration = Duration::from_secs(5);

pub struct Progress {
    bar: Option<ProgressBar>,
    /// List banned peers and why (`-v`).
    verbose: bool,
    /// Bans already noted above the bar.
    bans_noted: u64,
    last_line: Option<Instant>,
    last_state: Option<&'static str>,
}

/// Bytes in binary units.
pub fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_eta(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// The bad-peer part of the line: a count, with `verbose` each address and why.
fn bad_peers(st: &TorrentStatus, verbose: bool) -> String {
    let mut s = String::new();
    if st.banned_total > 0 {
        s += &format!(" banned {}", st.banned_total);
        if verbose {
            let each: Vec<String> = st
                .banned
                .iter()
                .map(|b| format!("{} ({})", b.ip, b.reason))
                .collect();
            s += &format!(": {}", each.join("; "));
        }
    }
    if st.on_parole > 0 {
        s += &format!(" on parole {}", st.on_parole);
    }
    s
}

fn summary(st: &TorrentStatus, verbose: bool) -> String {
    let routes: Vec<String> = st.routes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let eta = st
        .eta_secs()
        .map(|s| format!(" eta {}", human_eta(s)))
        .unwrap_or_default();
    format!(
        "{} {:.1}% {}/{} ↓{}/s ↑{}/s peers {} ({} seeds){}{}{}",
        st.state.label(),
        st.progress() * 100.0,
        human_bytes(st.verified_bytes as f64),
        human_bytes(st.wanted_bytes as f64),
        human_bytes(st.download_rate),
        human_bytes(st.upload_rate),
        st.peers,
        st.seeds,
        bad_peers(st, verbose),
        eta,
        if routes.is_empty() {
            String::new()
        } else {
            format!(" [{}]", routes.join(" "))
        }
    )
}

impl Progress {
    pub fn new(verbose: bool) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {percent:>3}% {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress {
            bar,
            verbose,
            bans_noted: 0,
            last_line: None,
            last_state: None,
        }
    }

    pub fn update(&mut self, st: &TorrentStatus) {
        if let Some(bar) = &self.bar {
            bar.set_prefix(
                st.name
                    .clone()
                    .unwrap_or_else(|| st.info_hash.to_hex()[..8].to_string()),
            );
            bar.set_length(st.wanted_bytes.max(1));
            bar.set_position(st.verified_bytes);
            let msg = match st.state {
                TorrentState::FetchingMetadata => format!(
                    "fetching metadata {:.0}% peers {}",
                    st.metadata_progress * 100.0,
                    st.peers
                ),
                _ => {
                    // The bar's line is short: each ban gets a line of its own above it.
                    if self.verbose && st.banned_total > self.bans_noted {
                        let new = (st.banned_total - self.bans_noted) as usize;
                        for b in &st.banned[st.banned.len().saturating_sub(new)..] {
                            bar.println(format!("banned {}: {}", b.ip, b.reason));
                        }
                        self.bans_noted = st.banned_total;
                    }
                    let s = summary(st, false);
                    s.split_once(' ').map(|x| x.1.to_string()).unwrap_or(s)
                }
            };
            bar.set_message(msg);
            return;
        }
        let label = st.state.label();
        let due = self.last_line.is_none_or(|t| t.elapsed() >= PLAIN_INTERVAL);
        if due || self.last_state != Some(label) || st.banned_total > self.bans_noted {
            self.bans_noted = st.banned_total;
            eprintln!("{}", summary(st, self.verbose));
            self.last_line = Some(Instant::now());
            self.last_state = Some(label);
        }
    }

    /// A line of its own above the bar (or in the log).
    pub fn note(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&mut self, st: &TorrentStatus) {
        let had_bar = self.bar.take().map(|bar| bar.finish_and_clear()).is_some();
        if had_bar || self.last_state != Some(st.state.label()) {
            eprintln!("{}", summary(st, self.verbose));
        }
        eprintln!(
            "this session: downloaded {} bytes, uploaded {} bytes, {} pieces failed verification",
            st.downloaded, st.uploaded, st.hash_failures
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burrow_swarm::types::InfoHash;

    #[test]
    fn bans_are_counted_and_with_verbose_listed_with_the_reason() {
        let mut st = TorrentStatus::new(InfoHash([1; 20]), None);
        assert_eq!(bad_peers(&st, true), "");
        st.record_ban("127.0.0.2".parse().unwrap(), "sent all of piece 3".into());
        st.on_parole = 1;
        assert_eq!(bad_peers(&st, false), " banned 1 on parole 1");
        assert_eq!(
            bad_peers(&st, true),
            " banned 1: 127.0.0.2 (sent all of piece 3) on parole 1"
        );
        assert!(summary(&st, true).contains("banned 1: 127.0.0.2 (sent all of piece 3)"));
    }
}
