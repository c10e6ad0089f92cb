//! A whole `.torrent` file: the info dictionary plus trackers (BEP 3, tiers from BEP 12).

use librqbit_bencode::{BencodeValue, ByteBuf, ByteBufOwned, WithRawBytes};
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::{Info, MetainfoError, MAX_METAINFO_SIZE};

/// Most trackers kept from one torrent, over all tiers.
pub const MAX_TRACKERS: usize = 200;

/// A parsed `.torrent` file.
#[derive(Debug, Clone)]
pub struct Metainfo {
    /// The validated info dictionary.
    pub info: Info,
    /// Tracker URLs grouped in tiers (BEP 12); a torrent with only `announce` has one tier.
    pub trackers: Vec<Vec<String>>,
    /// Free-text comment, if any.
    pub comment: Option<String>,
}

#[derive(Deserialize)]
struct RawTorrent<'a> {
    #[serde(borrow, default)]
    announce: Option<ByteBuf<'a>>,
    #[serde(rename = "announce-list", default)]
    announce_list: Option<BencodeValue<ByteBufOwned>>,
    #[serde(borrow, default)]
    comment: Option<ByteBuf<'a>>,
    #[serde(borrow)]
    info: WithRawBytes<IgnoredAny, ByteBuf<'a>>,
}

impl Metainfo {
    /// Parses a `.torrent` file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        if bytes.len() > MAX_METAINFO_SIZE {
            return Err(MetainfoError::TooLarge(bytes.len()));
        }
        let raw: RawTorrent<'_> = crate::bencode::decode(bytes)?;
        let info = Info::from_bytes(raw.info.raw_bytes.0)?;
        let mut trackers = tiers_from(raw.announce_list.as_ref());
        if trackers.is_empty() {
            if let Some(url) = raw.announce.and_then(|a| tracker_url(a.0)) {
                trackers.push(vec![url]);
            }
        }
        let comment = raw
            .comment
            .map(|c| String::from_utf8_lossy(c.0).into_owned());
        Ok(Metainfo {
            info,
            trackers,
            comment,
        })
    }
}

/// Reads `announce-list` leniently: torrents in the wild put single strings where lists belong;
/// anything that is not a URL string is skipped rather than failing the whole torrent.
fn tiers_from(v: Option<&BencodeValue<ByteBufOwned>>) -> Vec<Vec<String>> {
    use librqbit_bencode::BencodeValue as B;
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut total = 0;
    let Some(B::List(tiers)) = v else { return out };
    for tier in tiers {
        let urls: Vec<String> = match tier {
            B::List(l) => l
                .iter()
                .filter_map(|u| match u {
                    B::Bytes(b) => tracker_url(&b.0),
                    _ => None,
                })
                .collect(),
            B::Bytes(b) => tracker_url(&b.0).into_iter().collect(),
            _ => continue,
        };
        let room = MAX_TRACKERS - total;
        let urls: Vec<String> = urls.into_iter().take(room).collect();
        total += urls.len();
        if !urls.is_empty() {
            out.push(urls);
        }
        if total >= MAX_TRACKERS {
            break;
        }
    }
    out
}

fn tracker_url(b: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(b).ok()?.trim();
    let lower = s.to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("udp://"))
        .then(|| s.to_string())
}
