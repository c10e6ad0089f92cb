//! `torrent-get` fields: one torrent's view rendered under Transmission's field names and
//! units. Fields that need the running torrent's own state (files, peers, pieces) ask its task
//! for details; for a stopped torrent they come from the stored resume data.

use base64::Engine as _;
use burrow_swarm::metainfo::Info;
use burrow_swarm::torrent::bitfield::Bitfield;
use burrow_swarm::torrent::task::TorrentDetails;
use burrow_swarm::types::PieceIndex;
use serde_json::{json, Map, Value};

use super::model::{Activity, Snapshot, TorrentView};
use super::rpc_files::shown;

/// Transmission's status numbers.
pub fn status_code(a: Activity) -> i64 {
    match a {
        Activity::Stopped | Activity::Error => 0,
        Activity::QueuedVerify => 1,
        Activity::Checking => 2,
        Activity::QueuedDownload => 3,
        Activity::Metadata | Activity::Downloading => 4,
        Activity::QueuedSeed => 5,
        Activity::Seeding => 6,
    }
}

/// Fields that need the torrent's pieces or peers.
const DETAIL_FIELDS: &[&str] = &[
    "files",
    "fileStats",
    "peers",
    "pieces",
    "wanted",
    "priorities",
    "peersFrom",
];

/// Renders `fields` of one torrent.
pub async fn torrent_fields(t: &TorrentView, snap: &Snapshot, fields: &[&str]) -> Value {
    let needs_details = fields.iter().any(|f| DETAIL_FIELDS.contains(f));
    let details = match (&t.handle, needs_details) {
        (Some(h), true) => h.details().await,
        _ => None,
    };
    // A torrent still checking its files has no pieces yet: show what was stored.
    let have: Option<Bitfield> = match &details {
        Some(d) => d.have.clone().or_else(|| t.stored_have.clone()),
        None if needs_details => t.stored_have.clone(),
        None => None,
    };
    let mut out = Map::new();
    for &f in fields {
        if let Some(v) = field(t, snap, f, details.as_ref(), have.as_ref()) {
            out.insert(f.to_string(), v);
        }
    }
    Value::Object(out)
}

/// Bytes of file `f` inside verified pieces.
fn file_done(info: &Info, f: usize, have: Option<&Bitfield>) -> u64 {
    let Some(have) = have else { return 0 };
    let file = &info.files[f];
    let (start, end) = (file.offset, file.offset + file.length);
    info.pieces_of_file(f)
        .filter(|&p| have.get(p))
        .map(|p| {
            let ps = p as u64 * info.piece_length as u64;
            let pe = ps + info.piece_len(PieceIndex(p)) as u64;
            end.min(pe).saturating_sub(start.max(ps))
        })
        .sum()
}

fn ratio(t: &TorrentView) -> f64 {
    if t.downloaded_ever == 0 && t.verified_bytes == 0 {
        return -1.0;
    }
    t.ratio()
}

fn field(
    t: &TorrentView,
    snap: &Snapshot,
    f: &str,
    details: Option<&TorrentDetails>,
    have: Option<&Bitfield>,
) -> Option<Value> {
    let st = t.status.as_ref();
    let running = t.handle.is_some();
    let (down, up) = t.rates();
    let left = t.wanted_bytes.saturating_sub(t.verified_bytes);
    let v = match f {
        "id" => json!(t.id),
        "name" => json!(t.name),
        "hashString" => json!(t.info_hash.to_hex()),
        "status" => json!(status_code(t.activity)),
        "percentDone" | "percentComplete" => json!(t.progress()),
        "metadataPercentComplete" => json!(if t.info.is_some() {
            1.0
        } else {
            st.map_or(0.0, |s| s.metadata_progress)
        }),
        "recheckProgress" => json!(0.0),
        "rateDownload" => json!(down as u64),
        "rateUpload" => json!(up as u64),
        "totalSize" => json!(t.total_size()),
        "sizeWhenDone" => json!(t.wanted_bytes),
        "leftUntilDone" => json!(left),
        "haveValid" => json!(t.verified_bytes),
        "haveUnchecked" | "desiredAvailable" | "corruptEver" => json!(if f == "corruptEver" {
            st.map_or(0, |s| s.wasted)
        } else {
            0
        }),
        "uploadedEver" => json!(t.uploaded_ever),
        "downloadedEver" => json!(t.downloaded_ever),
        "uploadRatio" => json!(ratio(t)),
        "peersConnected" => json!(if running {
            st.map_or(0, |s| s.peers)
        } else {
            0
        }),
        "peersSendingToUs" => json!(if running && down > 0.0 {
            st.map_or(0, |s| s.peers)
        } else {
            0
        }),
        "peersGettingFromUs" => json!(if running && up > 0.0 {
            st.map_or(0, |s| s.peers)
        } else {
            0
        }),
        "peersBanned" => json!(st.map_or(0, |s| s.banned_total)),
        "webseedsSendingToUs" => json!(0),
        "eta" => json!(if !running || left == 0 {
            -1
        } else {
            st.and_then(|s| s.eta_secs()).map_or(-2, |e| e as i64)
        }),
        "error" => json!(if t.error.is_some() { 3 } else { 0 }),
        "errorString" => json!(t.error.clone().unwrap_or_default()),
        "downloadDir" => json!(t.download_dir.to_string_lossy()),
        "addedDate" => json!(t.added_at),
        "doneDate" => json!(t.done_at.unwrap_or(0)),
        "startDate" | "activityDate" => json!(if running { super::db::unix_now() } else { 0 }),
        "secondsSeeding" => json!(t.seeding_secs),
        "isFinished" => json!(t.finished),
        "isStalled" => json!(running && t.activity == Activity::Downloading && down < 1.0),
        "isPrivate" => json!(t.info.as_ref().is_some_and(|i| i.private)),
        "queuePosition" => json!(snap.torrents.iter().position(|x| x.id == t.id).unwrap_or(0)),
        "pieceCount" => json!(t.info.as_ref().map_or(0, |i| i.piece_count())),
        "pieceSize" => json!(t.info.as_ref().map_or(0, |i| i.piece_length)),
        "pieces" => json!(base64::engine::general_purpose::STANDARD
            .encode(have.map(|h| h.to_wire()).unwrap_or_default())),
        "magnetLink" => json!(format!("magnet:?xt=urn:btih:{}", t.info_hash.to_hex())),
        "comment" | "creator" | "torrentFile" => json!(""),
        "downloadLimit" => json!(t.settings.down_kbps),
        "downloadLimited" => json!(t.settings.down_enabled),
        "uploadLimit" => json!(t.settings.up_kbps),
        "uploadLimited" => json!(t.settings.up_enabled),
        "honorsSessionLimits" => json!(true),
        "bandwidthPriority" => json!(0),
        "seedRatioMode" => json!(t.settings.ratio_mode),
        "seedRatioLimit" => json!(if t.settings.ratio_mode == 1 {
            t.settings.ratio
        } else {
            snap.settings.seed_ratio
        }),
        "seedIdleMode" => json!(0),
        "seedIdleLimit" => json!(0),
        "trackers" => json!(trackers(t)),
        "trackerStats" => json!(trackers(t)),
        "files" => json!(t.info.as_ref().map_or_else(Vec::new, |i| files(i, have))),
        "fileStats" => json!(t
            .info
            .as_ref()
            .map_or_else(Vec::new, |i| file_stats(t, i, have))),
        "priorities" => json!(shown(t).1),
        "wanted" => json!(shown(t).0.into_iter().map(u8::from).collect::<Vec<_>>()),
        "sequentialDownload" => json!(t.settings.sequential),
        "labels" => json!(t.settings.labels),
        "peers" => json!(details.map_or_else(Vec::new, peers)),
        "peersFrom" => json!(peers_from(t)),
        _ => return None,
    };
    Some(v)
}

/// Indices of the files users see (pad files hidden).
fn visible(info: &Info) -> impl Iterator<Item = usize> + '_ {
    (0..info.files.len()).filter(|&i| !info.files[i].pad)
}

fn files(info: &Info, have: Option<&Bitfield>) -> Vec<Value> {
    visible(info)
        .map(|i| {
            let f = &info.files[i];
            json!({ "name": f.path.to_string_lossy(), "length": f.length, "bytesCompleted": file_done(info, i, have) })
        })
        .collect()
}

fn file_stats(t: &TorrentView, info: &Info, have: Option<&Bitfield>) -> Vec<Value> {
    let (wanted, prios) = shown(t);
    visible(info)
        .zip(wanted.into_iter().zip(prios))
        .map(|(i, (w, p))| json!({ "bytesCompleted": file_done(info, i, have), "wanted": w, "priority": p }))
        .collect()
}

fn trackers(t: &TorrentView) -> Vec<Value> {
    let mut out = Vec::new();
    for (tier, urls) in t.trackers.iter().enumerate() {
        for url in urls {
            out.push(json!({ "id": out.len(), "tier": tier, "announce": url, "scrape": "", "host": url }));
        }
    }
    out
}

fn peers(d: &TorrentDetails) -> Vec<Value> {
    d.peers
        .iter()
        .map(|p| {
            json!({
                "address": p.addr.ip().to_string(),
                "port": p.addr.port(),
                "clientName": p.client.clone().unwrap_or_default(),
                "rateToClient": p.download_rate as u64,
                "rateToPeer": p.upload_rate as u64,
                "isIncoming": !p.route.is_outgoing(),
                "isUTP": p.route.label().ends_with("utp"),
                "isEncrypted": false,
                "isDownloadingFrom": p.unchoked_us,
                "isUploadingTo": p.we_unchoked,
                "progress": if p.is_seed { 1.0 } else { 0.0 },
                "route": p.route.label(),
                "isBanned": false,
            })
        })
        .chain(d.banned.iter().map(|b| {
            json!({
                "address": b.ip.to_string(),
                "isBanned": true,
                "banReason": b.reason,
            })
        }))
        .collect()
}

fn peers_from(t: &TorrentView) -> Value {
    let routes = t
        .status
        .as_ref()
        .filter(|_| t.handle.is_some())
        .map(|s| s.routes.clone())
        .unwrap_or_default();
    let n = |k: &str| routes.get(k).copied().unwrap_or(0);
    json!({
        "fromIncoming": n("incoming_tcp") + n("incoming_utp"),
        "fromTracker": n("outgoing_tcp") + n("outgoing_utp"),
        "fromHolepunch": n("holepunched"),
        "fromDht": 0, "fromLpd": 0, "fromPex": 0, "fromCache": 0, "fromLtep": 0,
    })
}
