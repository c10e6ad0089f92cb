//! Prometheus text exposition (format 0.0.4) of a snapshot: session totals and rates, torrents
//! by state, per-torrent counters, connections by route, and reachability with the port
//! mapping state (absent until the session reports NAT state).

use std::fmt::Write;

use super::model::{Activity, Snapshot};

/// Escapes a label value.
fn label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn value(&mut self, name: &str, labels: &str, v: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {v}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {v}");
        }
    }
    fn one(&mut self, name: &str, kind: &str, help: &str, v: impl std::fmt::Display) {
        self.head(name, kind, help);
        self.value(name, "", v);
    }
}

/// Renders every metric.
pub fn render(s: &Snapshot) -> String {
    let mut o = Out(String::new());
    let (down, up) = s.rates();
    o.one(
        "burrow_download_rate_bytes",
        "gauge",
        "Payload download rate of all torrents.",
        down as u64,
    );
    o.one(
        "burrow_upload_rate_bytes",
        "gauge",
        "Payload upload rate of all torrents.",
        up as u64,
    );
    o.one(
        "burrow_downloaded_bytes_total",
        "counter",
        "Payload downloaded since the daemon started.",
        s.current.downloaded,
    );
    o.one(
        "burrow_uploaded_bytes_total",
        "counter",
        "Payload uploaded since the daemon started.",
        s.current.uploaded,
    );
    o.one(
        "burrow_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
        s.current.seconds_active,
    );
    o.one("burrow_listen_port", "gauge", "Peer listen port.", s.port);
    o.head("burrow_torrents", "gauge", "Torrents by state.");
    for a in Activity::ALL {
        let n = s.torrents.iter().filter(|t| t.activity == a).count();
        o.value("burrow_torrents", &format!("state=\"{}\"", a.label()), n);
    }

    let c = &s.connectivity;
    o.head(
        "burrow_connections",
        "gauge",
        "Open peer connections by how they were made.",
    );
    for (r, n) in &c.routes {
        o.value("burrow_connections", &format!("route=\"{}\"", label(r)), n);
    }
    o.head(
        "burrow_connections_total",
        "counter",
        "Peer connections made since start, by route.",
    );
    for (r, n) in &c.route_totals {
        o.value(
            "burrow_connections_total",
            &format!("route=\"{}\"", label(r)),
            n,
        );
    }
    o.head(
        "burrow_inbound_seen",
        "gauge",
        "Whether any peer has connected to the listen port since start (1) or not (0).",
    );
    o.value(
        "burrow_inbound_seen",
        "transport=\"tcp\"",
        u8::from(c.inbound_tcp_seen),
    );
    o.value(
        "burrow_inbound_seen",
        "transport=\"utp\"",
        u8::from(c.inbound_utp_seen),
    );
    o.one(
        "burrow_nat_reported",
        "gauge",
        "Whether the session reports NAT state (1) or not yet (0).",
        u8::from(c.nat.is_some()),
    );
    if let Some(nat) = &c.nat {
        o.head(
            "burrow_port_mapping_active",
            "gauge",
            "Port mappings held at the gateway.",
        );
        for m in &nat.mappings {
            let labels = format!(
                "transport=\"{}\",protocol=\"{}\",external=\"{}\"",
                m.transport,
                label(&format!("{:?}", m.protocol)),
                m.external
            );
            o.value("burrow_port_mapping_active", &labels, 1);
        }
        o.head(
            "burrow_nat_behaviour",
            "gauge",
            "How the NAT maps our UDP socket (1 for the current behaviour).",
        );
        o.value(
            "burrow_nat_behaviour",
            &format!("behaviour=\"{}\"", label(&nat.nat_behaviour.to_string())),
            1,
        );
        o.head(
            "burrow_inbound_verified",
            "gauge",
            "Inbound reachability verified by a remote peer (1 yes, 0 no).",
        );
        for (t, v) in [("tcp", nat.inbound_tcp), ("udp", nat.inbound_udp)] {
            if let Some(v) = v {
                o.value(
                    "burrow_inbound_verified",
                    &format!("transport=\"{t}\""),
                    u8::from(v),
                );
            }
        }
    }

    let per = [
        (
            "burrow_torrent_downloaded_bytes_total",
            "counter",
            "Payload downloaded over the torrent's life.",
        ),
        (
            "burrow_torrent_uploaded_bytes_total",
            "counter",
            "Payload uploaded over the torrent's life.",
        ),
        (
            "burrow_torrent_verified_bytes",
            "gauge",
            "Bytes of wanted pieces verified.",
        ),
        (
            "burrow_torrent_wanted_bytes",
            "gauge",
            "Bytes of wanted pieces.",
        ),
        (
            "burrow_torrent_download_rate_bytes",
            "gauge",
            "Payload download rate.",
        ),
        (
            "burrow_torrent_upload_rate_bytes",
            "gauge",
            "Payload upload rate.",
        ),
        ("burrow_torrent_peers", "gauge", "Connected peers."),
        (
            "burrow_torrent_peers_banned_total",
            "counter",
            "Addresses banned for sending bad data this session.",
        ),
        (
            "burrow_torrent_peers_on_parole",
            "gauge",
            "Addresses involved in failed pieces, trusted only with pieces they send alone.",
        ),
        (
            "burrow_torrent_hash_failures_total",
            "counter",
            "Pieces that failed verification this session.",
        ),
    ];
    for (i, (name, kind, help)) in per.iter().enumerate() {
        o.head(name, kind, help);
        for t in &s.torrents {
            let (d, u) = t.rates();
            let running = t.status.as_ref().filter(|_| t.handle.is_some());
            let peers = running.map_or(0, |st| st.peers) as u64;
            let st = t.status.as_ref();
            let v = [
                t.downloaded_ever,
                t.uploaded_ever,
                t.verified_bytes,
                t.wanted_bytes,
                d as u64,
                u as u64,
                peers,
                st.map_or(0, |s| s.banned_total),
                running.map_or(0, |s| s.on_parole as u64),
                st.map_or(0, |s| s.hash_failures as u64),
            ][i];
            o.value(
                name,
                &format!(
                    "info_hash=\"{}\",name=\"{}\"",
                    t.info_hash.to_hex(),
                    label(&t.name)
                ),
                v,
            );
        }
    }
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
