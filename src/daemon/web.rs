//! The web page: plain HTML, CSS and JavaScript compiled into the binary, plus the JSON it
//! polls. The page adds torrents and starts/stops them through the Transmission RPC (so it
//! passes the same session-id check as any client); it reads state from `/api/state`.

use hyper::StatusCode;
use serde_json::{json, Value};

use super::http::{respond, HttpState};
use super::model::{Snapshot, TorrentView};

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const STYLE_CSS: &str = include_str!("web/style.css");

/// Serves a GET for the page, its assets or its JSON.
pub async fn get(
    state: &HttpState,
    path: &str,
) -> hyper::Response<http_body_util::Full<hyper::body::Bytes>> {
    let page = |ct: &'static str, body: &'static str| {
        let mut r = respond(StatusCode::OK, ct, body);
        let h = r.headers_mut();
        h.insert(
            "Content-Security-Policy",
            hyper::header::HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
        );
        h.insert(
            "X-Frame-Options",
            hyper::header::HeaderValue::from_static("DENY"),
        );
        r
    };
    match path {
        "/" | "/index.html" => page("text/html; charset=utf-8", INDEX_HTML),
        "/app.js" => page("text/javascript; charset=utf-8", APP_JS),
        "/style.css" => page("text/css; charset=utf-8", STYLE_CSS),
        "/api/state" | "/api/connectivity" => {
            let Some(snap) = state.engine.snapshot().await else {
                return respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    "shutting down\n",
                );
            };
            let body = if path == "/api/state" {
                state_json(&snap)
            } else {
                connectivity_json(&snap)
            };
            let mut r = respond(
                StatusCode::OK,
                "application/json; charset=utf-8",
                serde_json::to_vec(&body).unwrap_or_default(),
            );
            r.headers_mut().insert(
                "Cache-Control",
                hyper::header::HeaderValue::from_static("no-store"),
            );
            r
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "404: not found\n",
        ),
    }
}

fn torrent_json(t: &TorrentView) -> Value {
    let (down, up) = t.rates();
    let st = t.status.as_ref().filter(|_| t.handle.is_some());
    json!({
        "id": t.id,
        "name": t.name,
        "hash": t.info_hash.to_hex(),
        "state": t.activity.label(),
        "progress": t.progress(),
        "size": t.wanted_bytes,
        "verified": t.verified_bytes,
        "down_rate": down,
        "up_rate": up,
        "peers": st.map_or(0, |s| s.peers),
        "seeds": st.map_or(0, |s| s.seeds),
        "eta": st.and_then(|s| s.eta_secs()),
        "uploaded": t.uploaded_ever,
        "downloaded": t.downloaded_ever,
        "ratio": t.ratio(),
        "error": t.error,
        "routes": st.map(|s| s.routes.clone()).unwrap_or_default(),
    })
}

/// Reachability for the panel: what the daemon observed, and the NAT report (null fields until
/// the session reports them).
pub fn connectivity_json(snap: &Snapshot) -> Value {
    let c = &snap.connectivity;
    let nat = c.nat.as_ref();
    json!({
        "listen_port": c.listen_port,
        "port_open": super::connectivity::port_is_open(c),
        "inbound_tcp_seen": c.inbound_tcp_seen,
        "inbound_utp_seen": c.inbound_utp_seen,
        "routes": c.routes,
        "route_totals": c.route_totals,
        "nat_reported": nat.is_some(),
        "nat_behaviour": nat.map(|n| n.nat_behaviour.to_string()),
        "external_ipv4": nat.and_then(|n| n.external_ipv4),
        "external_ipv6": nat.and_then(|n| n.external_ipv6),
        "gateway": nat.and_then(|n| n.gateway),
        "double_nat": nat.map(|n| n.double_nat),
        "inbound_tcp": nat.and_then(|n| n.inbound_tcp),
        "inbound_udp": nat.and_then(|n| n.inbound_udp),
        "mappings": nat.map(|n| serde_json::to_value(&n.mappings).unwrap_or_default()),
        "advice": nat.map(|n| n.advice.clone()),
    })
}

fn state_json(snap: &Snapshot) -> Value {
    let (down, up) = snap.rates();
    json!({
        "version": super::rpc::VERSION,
        "port": snap.port,
        "down_rate": down,
        "up_rate": up,
        "download_dir": snap.settings.download_dir,
        "torrents": snap.torrents.iter().map(torrent_json).collect::<Vec<_>>(),
        "connectivity": connectivity_json(snap),
        "stats": { "current": snap.current, "cumulative": snap.cumulative },
    })
}
