//! Reachability as the daemon reports it (web page, `/api/connectivity`, metrics and the RPC's
//! `port-test`). What the daemon observes itself — which routes peers connected by, whether
//! any peer ever reached the listen port — comes from the torrents' statuses; NAT behaviour and
//! port mappings come from the session's port mapper and address votes through [`nat_report`].

use burrow_swarm::nat::Report;
use burrow_swarm::session::Session;

use super::model::Connectivity;

/// The session's reachability report: gateway mappings, external address, mapping behaviour
/// (from the votes of DHT nodes and peers) and the inbound checks.
pub fn nat_report(session: Option<&Session>) -> Option<Report> {
    session.map(|s| s.reachability().snapshot().report)
}

/// Whether the listen port is known to be reachable from outside: the NAT report's inbound
/// check when there is one, otherwise whether any peer has connected to us since start.
pub fn port_is_open(c: &Connectivity) -> bool {
    match &c.nat {
        Some(r) if r.inbound_tcp.is_some() || r.inbound_udp.is_some() => {
            r.inbound_tcp == Some(true) || r.inbound_udp == Some(true)
        }
        _ => c.inbound_tcp_seen || c.inbound_utp_seen,
    }
}
