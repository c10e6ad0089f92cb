//! Magnet links (BEP 9): the info-hash (hex or base32 `urn:btih`), display name `dn`, trackers
//! `tr`, direct peers `x.pe`, and BEP 53's `so` file selection.

use super::MetainfoError;
use crate::types::InfoHash;

/// Most trackers and peers taken from one link.
pub const MAX_MAGNET_ENTRIES: usize = 200;
/// Largest file index range `so` may name, so a hostile `so=0-4000000000` costs nothing.
pub const MAX_SELECTED_FILES: usize = 1_000_000;

/// A parsed magnet link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    /// The v1 info-hash from `xt=urn:btih:`.
    pub info_hash: InfoHash,
    /// Display name, if given.
    pub name: Option<String>,
    /// Tracker URLs, each its own tier.
    pub trackers: Vec<String>,
    /// Peers given directly with `x.pe` as `host:port` strings (resolved by the caller).
    pub peers: Vec<String>,
    /// File indices to download (BEP 53 `so`); `None` means all.
    pub select_only: Option<Vec<usize>>,
}

impl Magnet {
    /// Parses a `magnet:?` URI.
    pub fn parse(uri: &str) -> Result<Magnet, MetainfoError> {
        let bad = |m: &str| MetainfoError::Magnet(m.to_string());
        let query = uri
            .strip_prefix("magnet:?")
            .or_else(|| uri.strip_prefix("MAGNET:?"))
            .ok_or_else(|| bad("does not start with magnet:?"))?;
        let mut info_hash = None;
        let mut m = Magnet {
            info_hash: InfoHash::default(),
            name: None,
            trackers: vec![],
            peers: vec![],
            select_only: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value).ok_or_else(|| bad("bad percent-encoding"))?;
            match key {
                "xt" => {
                    if let Some(h) = strip_prefix_ci(&value, "urn:btih:") {
                        info_hash = Some(parse_btih(h).ok_or_else(|| {
                            bad("btih is neither 40 hex nor 32 base32 characters")
                        })?);
                    }
                }
                "dn" => m.name = Some(value),
                "tr" if m.trackers.len() < MAX_MAGNET_ENTRIES => m.trackers.push(value),
                "x.pe" if m.peers.len() < MAX_MAGNET_ENTRIES => m.peers.push(value),
                "so" => {
                    m.select_only =
                        Some(parse_select_only(&value).ok_or_else(|| bad("bad `so` list"))?)
                }
                _ => {}
            }
        }
        m.info_hash = info_hash
            .ok_or_else(|| bad("no urn:btih info-hash (v2-only links are not supported)"))?;
        Ok(m)
    }

    /// Renders the link back to a `magnet:?` URI.
    pub fn to_uri(&self) -> String {
        let mut s = format!("magnet:?xt=urn:btih:{}", self.info_hash.to_hex());
        if let Some(n) = &self.name {
            s.push_str("&dn=");
            s.push_str(&percent_encode(n));
        }
        for t in &self.trackers {
            s.push_str("&tr=");
            s.push_str(&percent_encode(t));
        }
        for p in &self.peers {
            s.push_str("&x.pe=");
            s.push_str(&percent_encode(p));
        }
        s
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.get(..prefix.len())
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .map(|_| &s[prefix.len()..])
}

fn parse_btih(s: &str) -> Option<InfoHash> {
    match s.len() {
        40 => InfoHash::from_hex(s),
        32 => base32_decode(s).map(InfoHash),
        _ => None,
    }
}

/// RFC 4648 base32 without padding: 32 characters → 20 bytes.
fn base32_decode(s: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let mut acc: u64 = 0;
    let mut bits = 0;
    let mut i = 0;
    for c in s.bytes() {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | v as u64;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out[i] = (acc >> bits) as u8;
            i += 1;
        }
    }
    (i == 20).then_some(out)
}

/// `so=0,2,4-6`: indices and inclusive ranges.
fn parse_select_only(s: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<usize>().ok()?,
                b.trim().parse::<usize>().ok()?,
            ),
            None => {
                let v = part.trim().parse::<usize>().ok()?;
                (v, v)
            }
        };
        if a > b || b - a >= MAX_SELECTED_FILES || out.len() + (b - a) >= MAX_SELECTED_FILES {
            return None;
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(s: &str) -> String {
    percent_encode_bytes(s.as_bytes())
}

/// Percent-encodes bytes, leaving RFC 3986 unreserved characters as they are.
pub(crate) fn percent_encode_bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() * 3);
    for &c in b {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    #[test]
    fn hex_and_base32_agree() {
        let a = Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}")).unwrap();
        let b = Magnet::parse("magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK").unwrap();
        assert_eq!(a.info_hash.to_hex(), HEX);
        assert_eq!(a.info_hash, b.info_hash);
    }

    #[test]
    fn all_fields() {
        let uri = format!(
            "magnet:?xt=urn:btih:{HEX}&dn=My+File%20x&tr=http%3A%2F%2Ft.example%2Fannounce&tr=udp%3A%2F%2Fu%3A80&x.pe=10.0.0.1:6881&x.pe=[::1]:7000&so=0,2,4-6"
        );
        let m = Magnet::parse(&uri).unwrap();
        assert_eq!(m.name.as_deref(), Some("My File x"));
        assert_eq!(m.trackers, vec!["http://t.example/announce", "udp://u:80"]);
        assert_eq!(m.peers, vec!["10.0.0.1:6881", "[::1]:7000"]);
        assert_eq!(m.select_only, Some(vec![0, 2, 4, 5, 6]));
        let again = Magnet::parse(&m.to_uri()).unwrap();
        assert_eq!(again.trackers, m.trackers);
        assert_eq!(again.name, m.name);
    }

    #[test]
    fn rejects_bad_links() {
        for bad in [
            "http://x",
            "magnet:?dn=x",
            "magnet:?xt=urn:btih:1234",
            "magnet:?xt=urn:btih:%zz",
            &format!("magnet:?xt=urn:btih:{HEX}&so=5-1"),
            &format!("magnet:?xt=urn:btih:{HEX}&so=0-99999999999"),
        ] {
            assert!(
                matches!(Magnet::parse(bad), Err(MetainfoError::Magnet(_))),
                "{bad}"
            );
        }
    }
}
