//! Transmission's RPC protocol (the JSON request/response body; the HTTP handshake is in
//! `http`): each method is mapped onto the engine. Method and field names, units (speed
//! limits in kB/s of 1000 bytes) and status numbers follow Transmission's `rpc-spec.md` for
//! RPC version 15, the version Transmission 3.00's `transmission-remote` speaks.

use std::path::PathBuf;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::engine::{Act, AddRequest, AddSource, EngineHandle};
use super::model::{Settings, Snapshot, TorrentSettings};
use super::rpc_torrent::torrent_fields;

/// The RPC version we implement.
pub const RPC_VERSION: i64 = 15;
/// Oldest RPC version whose clients we serve.
pub const RPC_VERSION_MIN: i64 = 1;
/// Version string reported to clients.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (burrow)");

type Outcome = Result<Value, String>;

/// Handles one RPC request body and returns the response body.
pub async fn handle(engine: &EngineHandle, session_id: &str, body: &[u8]) -> Value {
    let req: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return json!({ "result": "request body is not JSON" }),
    };
    let tag = req.get("tag").cloned();
    let method = req.get("method").and_then(Value::as_str).unwrap_or("");
    let empty = Map::new();
    let args = req
        .get("arguments")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let outcome = dispatch(engine, session_id, method, args).await;
    let mut resp = match outcome {
        Ok(arguments) => json!({ "result": "success", "arguments": arguments }),
        Err(e) => json!({ "result": e, "arguments": {} }),
    };
    if let Some(tag) = tag {
        resp["tag"] = tag;
    }
    resp
}

async fn dispatch(
    engine: &EngineHandle,
    session_id: &str,
    method: &str,
    args: &Map<String, Value>,
) -> Outcome {
    let snap = engine
        .snapshot()
        .await
        .ok_or("the daemon is shutting down")?;
    match method {
        "torrent-get" => torrent_get(&snap, args).await,
        "torrent-add" => torrent_add(engine, args).await,
        "torrent-start" => act(engine, &snap, args, Act::Start).await,
        "torrent-start-now" => act(engine, &snap, args, Act::StartNow).await,
        "torrent-stop" => act(engine, &snap, args, Act::Stop).await,
        "torrent-verify" => act(engine, &snap, args, Act::Verify).await,
        "torrent-remove" => {
            let delete = args
                .get("delete-local-data")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            act(engine, &snap, args, Act::Remove { delete }).await
        }
        "torrent-set" => torrent_set(engine, &snap, args).await,
        "torrent-set-location" => set_location(engine, &snap, args).await,
        "session-get" => Ok(session_get(&snap, session_id)),
        "session-set" => session_set(engine, &snap, args).await,
        "session-stats" => Ok(session_stats(&snap)),
        "free-space" => free_space(args),
        "port-test" => {
            Ok(json!({ "port-is-open": super::connectivity::port_is_open(&snap.connectivity) }))
        }
        "session-close" => Err("session-close is not supported; stop the service instead".into()),
        _ => Err("method name not recognized".into()),
    }
}

/// The torrents an `ids` argument names: all when absent; a number, a hash string, or a list
/// of those; `recently-active` counts as all.
pub fn select_ids(snap: &Snapshot, args: &Map<String, Value>) -> Vec<i64> {
    let all = || snap.torrents.iter().map(|t| t.id).collect();
    let one = |v: &Value| -> Option<i64> {
        match v {
            Value::Number(n) => n
                .as_i64()
                .filter(|id| snap.torrents.iter().any(|t| t.id == *id)),
            Value::String(s) => snap
                .torrents
                .iter()
                .find(|t| t.info_hash.to_hex().eq_ignore_ascii_case(s))
                .map(|t| t.id),
            _ => None,
        }
    };
    match args.get("ids") {
        None => all(),
        Some(Value::String(s)) if s == "recently-active" => all(),
        Some(Value::Array(list)) => list.iter().filter_map(one).collect(),
        Some(v) => one(v).into_iter().collect(),
    }
}

async fn torrent_get(snap: &Snapshot, args: &Map<String, Value>) -> Outcome {
    let fields: Vec<&str> = args
        .get("fields")
        .and_then(Value::as_array)
        .ok_or("no fields specified")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let ids = select_ids(snap, args);
    let mut out = Vec::with_capacity(ids.len());
    for t in snap.torrents.iter().filter(|t| ids.contains(&t.id)) {
        out.push(torrent_fields(t, snap, &fields).await);
    }
    let mut resp = json!({ "torrents": out });
    if args.get("ids").and_then(Value::as_str) == Some("recently-active") {
        resp["removed"] = json!([]);
    }
    Ok(resp)
}

async fn torrent_add(engine: &EngineHandle, args: &Map<String, Value>) -> Outcome {
    let source = if let Some(m) = args.get("metainfo").and_then(Value::as_str) {
        let clean: String = m.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(clean)
            .map_err(|_| "metainfo is not valid base64")?;
        AddSource::Metainfo(bytes)
    } else if let Some(f) = args.get("filename").and_then(Value::as_str) {
        if f.starts_with("magnet:") {
            AddSource::Magnet(f.to_string())
        } else if f.contains("://") {
            return Err(
                "adding torrents by URL is not supported; send the file as metainfo".into(),
            );
        } else {
            let bytes = read_torrent_file(f)?;
            AddSource::Metainfo(bytes)
        }
    } else {
        return Err("no filename or metainfo specified".into());
    };
    let download_dir = args
        .get("download-dir")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    let paused = args.get("paused").and_then(Value::as_bool).unwrap_or(false);
    let added = engine
        .add(AddRequest {
            source,
            download_dir,
            paused,
        })
        .await?;
    let key = if added.duplicate {
        "torrent-duplicate"
    } else {
        "torrent-added"
    };
    Ok(
        json!({ key: { "id": added.id, "name": added.name, "hashString": added.info_hash.to_hex() } }),
    )
}

fn read_torrent_file(path: &str) -> Result<Vec<u8>, String> {
    burrow_swarm::fsread::read_bounded(
        std::path::Path::new(path),
        burrow_swarm::metainfo::MAX_METAINFO_SIZE,
    )
    .map_err(|e| format!("cannot read {path}: {e}"))
}

async fn act(engine: &EngineHandle, snap: &Snapshot, args: &Map<String, Value>, a: Act) -> Outcome {
    engine.act(a, select_ids(snap, args)).await?;
    Ok(json!({}))
}

fn kbps(v: Option<&Value>) -> Option<u64> {
    v.and_then(Value::as_f64)
        .filter(|x| *x >= 0.0)
        .map(|x| x as u64)
}

async fn torrent_set(engine: &EngineHandle, snap: &Snapshot, args: &Map<String, Value>) -> Outcome {
    for id in select_ids(snap, args) {
        let Some(t) = snap.torrents.iter().find(|t| t.id == id) else {
            continue;
        };
        let mut s: TorrentSettings = t.settings.clone();
        if let Some(v) = kbps(args.get("downloadLimit")) {
            s.down_kbps = v;
        }
        if let Some(v) = args.get("downloadLimited").and_then(Value::as_bool) {
            s.down_enabled = v;
        }
        if let Some(v) = kbps(args.get("uploadLimit")) {
            s.up_kbps = v;
        }
        if let Some(v) = args.get("uploadLimited").and_then(Value::as_bool) {
            s.up_enabled = v;
        }
        if let Some(v) = args
            .get("seedRatioLimit")
            .and_then(Value::as_f64)
            .filter(|r| *r >= 0.0)
        {
            s.ratio = v;
        }
        if let Some(v) = args
            .get("seedRatioMode")
            .and_then(Value::as_u64)
            .filter(|m| *m <= 2)
        {
            s.ratio_mode = v as u8;
        }
        super::rpc_files::apply(t, &mut s, args)?;
        if s != t.settings {
            engine.set_torrent(id, s).await?;
        }
        if let Some(loc) = args.get("location").and_then(Value::as_str) {
            engine.relocate(id, loc.into(), false).await?;
        }
    }
    Ok(json!({}))
}

/// `torrent-set-location`: a new download folder (within the allowed folders), the data moved
/// there when `move` is true.
async fn set_location(
    engine: &EngineHandle,
    snap: &Snapshot,
    args: &Map<String, Value>,
) -> Outcome {
    let loc = args
        .get("location")
        .and_then(Value::as_str)
        .ok_or("location is missing")?;
    let move_data = args.get("move").and_then(Value::as_bool).unwrap_or(false);
    for id in select_ids(snap, args) {
        engine.relocate(id, loc.into(), move_data).await?;
    }
    Ok(json!({}))
}

fn session_get(snap: &Snapshot, session_id: &str) -> Value {
    let s = &snap.settings;
    let mut out = json!({
        "version": VERSION,
        "rpc-version": RPC_VERSION,
        "rpc-version-minimum": RPC_VERSION_MIN,
        "session-id": session_id,
        "download-dir": s.download_dir.to_string_lossy(),
        "peer-port": snap.port,
        "peer-port-random-on-start": false,
        "port-forwarding-enabled": snap.connectivity.nat.is_some(),
        "speed-limit-down": s.down_kbps,
        "speed-limit-down-enabled": s.down_enabled,
        "speed-limit-up": s.up_kbps,
        "speed-limit-up-enabled": s.up_enabled,
        "alt-speed-enabled": false,
        "alt-speed-down": 0,
        "alt-speed-up": 0,
        "alt-speed-time-enabled": false,
        "alt-speed-time-begin": 540,
        "alt-speed-time-end": 1020,
        "alt-speed-time-day": 127,
        "peer-limit-global": snap.peer_limit.0,
        "peer-limit-per-torrent": snap.peer_limit.1,
        "seedRatioLimit": s.seed_ratio,
        "seedRatioLimited": s.seed_ratio_enabled,
        "idle-seeding-limit": 0,
        "idle-seeding-limit-enabled": false,
        "seed-time-limit": s.seed_time_minutes,
        "seed-time-limit-enabled": s.seed_time_enabled,
    });
    let more = json!({
        "download-queue-size": s.download_queue_size,
        "download-queue-enabled": s.download_queue_enabled,
        "seed-queue-size": s.seed_queue_size,
        "seed-queue-enabled": s.seed_queue_enabled,
        "queue-stalled-enabled": false,
        "start-added-torrents": true,
        "encryption": "tolerated",
        "dht-enabled": false,
        "pex-enabled": true,
        "lpd-enabled": false,
        "utp-enabled": false,
        "incomplete-dir-enabled": false,
        "rename-partial-files": false,
        "blocklist-enabled": false,
        "cache-size-mb": 0,
        "config-dir": "",
        "units": {
            "speed-units": ["kB/s", "MB/s", "GB/s", "TB/s"],
            "speed-bytes": 1000,
            "size-units": ["kB", "MB", "GB", "TB"],
            "size-bytes": 1000,
            "memory-units": ["KiB", "MiB", "GiB", "TiB"],
            "memory-bytes": 1024
        }
    });
    if let (Value::Object(a), Value::Object(b)) = (&mut out, more) {
        a.extend(b);
    }
    out
}

async fn session_set(engine: &EngineHandle, snap: &Snapshot, args: &Map<String, Value>) -> Outcome {
    let mut s: Settings = snap.settings.clone();
    let flag = |k: &str, v: &mut bool| {
        if let Some(b) = args.get(k).and_then(Value::as_bool) {
            *v = b;
        }
    };
    let count = |k: &str, v: &mut usize| {
        if let Some(n) = args.get(k).and_then(Value::as_u64) {
            *v = usize::try_from(n).unwrap_or(usize::MAX);
        }
    };
    if let Some(d) = args.get("download-dir").and_then(Value::as_str) {
        s.download_dir = PathBuf::from(d);
    }
    if let Some(p) = args.get("peer-port").and_then(Value::as_u64) {
        s.peer_port = u16::try_from(p).map_err(|_| "peer-port must be below 65536")?;
    }
    if let Some(v) = kbps(args.get("speed-limit-down")) {
        s.down_kbps = v;
    }
    flag("speed-limit-down-enabled", &mut s.down_enabled);
    if let Some(v) = kbps(args.get("speed-limit-up")) {
        s.up_kbps = v;
    }
    flag("speed-limit-up-enabled", &mut s.up_enabled);
    if let Some(v) = args
        .get("seedRatioLimit")
        .and_then(Value::as_f64)
        .filter(|r| *r >= 0.0)
    {
        s.seed_ratio = v;
    }
    flag("seedRatioLimited", &mut s.seed_ratio_enabled);
    if let Some(v) = args.get("seed-time-limit").and_then(Value::as_u64) {
        s.seed_time_minutes = v;
    }
    flag("seed-time-limit-enabled", &mut s.seed_time_enabled);
    count("download-queue-size", &mut s.download_queue_size);
    flag("download-queue-enabled", &mut s.download_queue_enabled);
    count("seed-queue-size", &mut s.seed_queue_size);
    flag("seed-queue-enabled", &mut s.seed_queue_enabled);
    if s != snap.settings {
        engine.set_session(s).await?;
    }
    Ok(json!({}))
}

fn session_stats(snap: &Snapshot) -> Value {
    let (down, up) = snap.rates();
    let active = snap.torrents.iter().filter(|t| t.handle.is_some()).count();
    let block = |b: &super::model::StatsBlock| {
        json!({
            "uploadedBytes": b.uploaded,
            "downloadedBytes": b.downloaded,
            "filesAdded": b.files_added,
            "sessionCount": b.session_count,
            "secondsActive": b.seconds_active,
        })
    };
    json!({
        "activeTorrentCount": active,
        "pausedTorrentCount": snap.torrents.len() - active,
        "torrentCount": snap.torrents.len(),
        "downloadSpeed": down as u64,
        "uploadSpeed": up as u64,
        "cumulative-stats": block(&snap.cumulative),
        "current-stats": block(&snap.current),
    })
}

fn free_space(args: &Map<String, Value>) -> Outcome {
    let path = args
        .get("path")
        .and_then(Value::as_str)
        .ok_or("no path specified")?;
    let (free, total) = statvfs(path).map_err(|e| format!("{path}: {e}"))?;
    Ok(json!({ "path": path, "size-bytes": free, "total_size": total }))
}

/// Bytes available to us and total bytes of the file system holding `path`.
pub fn statvfs(path: &str) -> std::io::Result<(u64, u64)> {
    let c = std::ffi::CString::new(path)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated string and `st` a properly sized out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}
