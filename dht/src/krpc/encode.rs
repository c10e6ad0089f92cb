//! Writing KRPC messages. Keys are written in the sorted order bencode requires, straight into
//! the output vector: no intermediate tree, one growth of the vector at most.

use std::net::SocketAddr;

use super::{Want, CLIENT_VERSION};
use crate::bencode::Encoder;
use crate::compact::{peer_bytes, NodeInfo, NODE_V4_LEN, NODE_V6_LEN};
use crate::id::NodeId;

/// The contents of a response (`y: r`); absent fields are omitted.
#[derive(Debug, Default, Clone, Copy)]
pub struct ResponseOut<'a> {
    /// The address the requester was seen at (BEP 42 `ip`).
    pub requester: Option<SocketAddr>,
    /// `interval` (BEP 51).
    pub interval: Option<i64>,
    /// `nodes`: IPv4 nodes.
    pub nodes: Option<&'a [NodeInfo]>,
    /// `nodes6`: IPv6 nodes.
    pub nodes6: Option<&'a [NodeInfo]>,
    /// `num` (BEP 51).
    pub num: Option<i64>,
    /// `samples` (BEP 51).
    pub samples: Option<&'a [[u8; 20]]>,
    /// `token`.
    pub token: Option<&'a [u8]>,
    /// `values`: peers, written in compact form.
    pub values: Option<&'a [SocketAddr]>,
}

fn tail(e: &mut Encoder<'_>, tid: &[u8], read_only: bool, y: &[u8]) {
    if read_only {
        e.bytes(b"ro");
        e.int(1);
    }
    e.bytes(b"t");
    e.bytes(tid);
    e.bytes(b"v");
    e.bytes(&CLIENT_VERSION);
    e.bytes(b"y");
    e.bytes(y);
    e.end();
}

fn query_head(e: &mut Encoder<'_>, id: &NodeId) {
    e.dict();
    e.bytes(b"a");
    e.dict();
    e.bytes(b"id");
    e.bytes(&id.0);
}

fn query_tail(e: &mut Encoder<'_>, method: &[u8], tid: &[u8], read_only: bool) {
    e.end(); // a
    e.bytes(b"q");
    e.bytes(method);
    tail(e, tid, read_only, b"q");
}

fn want(e: &mut Encoder<'_>, want: Option<Want>) {
    if let Some(w) = want {
        e.bytes(b"want");
        e.list();
        if w.n4 {
            e.bytes(b"n4");
        }
        if w.n6 {
            e.bytes(b"n6");
        }
        e.end();
    }
}

/// Writes a `ping` query.
pub fn write_ping(out: &mut Vec<u8>, tid: &[u8], id: &NodeId, read_only: bool) {
    let mut e = Encoder::new(out);
    query_head(&mut e, id);
    query_tail(&mut e, b"ping", tid, read_only);
}

/// Writes a `find_node` query.
pub fn write_find_node(
    out: &mut Vec<u8>,
    tid: &[u8],
    id: &NodeId,
    target: &[u8; 20],
    w: Option<Want>,
    ro: bool,
) {
    let mut e = Encoder::new(out);
    query_head(&mut e, id);
    e.bytes(b"target");
    e.bytes(target);
    want(&mut e, w);
    query_tail(&mut e, b"find_node", tid, ro);
}

/// Writes a `get_peers` query.
pub fn write_get_peers(
    out: &mut Vec<u8>,
    tid: &[u8],
    id: &NodeId,
    info_hash: &[u8; 20],
    w: Option<Want>,
    ro: bool,
) {
    let mut e = Encoder::new(out);
    query_head(&mut e, id);
    e.bytes(b"info_hash");
    e.bytes(info_hash);
    want(&mut e, w);
    query_tail(&mut e, b"get_peers", tid, ro);
}

/// Writes an `announce_peer` query. With `implied_port` the receiver uses our source port and
/// ignores `port`, which is still sent because some implementations require the key.
#[allow(clippy::too_many_arguments)]
pub fn write_announce_peer(
    out: &mut Vec<u8>,
    tid: &[u8],
    id: &NodeId,
    info_hash: &[u8; 20],
    port: u16,
    implied_port: bool,
    token: &[u8],
    ro: bool,
) {
    let mut e = Encoder::new(out);
    query_head(&mut e, id);
    if implied_port {
        e.bytes(b"implied_port");
        e.int(1);
    }
    e.bytes(b"info_hash");
    e.bytes(info_hash);
    e.bytes(b"port");
    e.int(i64::from(port));
    e.bytes(b"token");
    e.bytes(token);
    query_tail(&mut e, b"announce_peer", tid, ro);
}

/// Writes a `sample_infohashes` query (BEP 51).
pub fn write_sample_infohashes(
    out: &mut Vec<u8>,
    tid: &[u8],
    id: &NodeId,
    target: &[u8; 20],
    ro: bool,
) {
    let mut e = Encoder::new(out);
    query_head(&mut e, id);
    e.bytes(b"target");
    e.bytes(target);
    query_tail(&mut e, b"sample_infohashes", tid, ro);
}

fn nodes(e: &mut Encoder<'_>, key: &[u8], list: &[NodeInfo]) {
    // Sized from the entries themselves, so a list mixing families still encodes validly.
    let len: usize = list
        .iter()
        .map(|n| {
            if n.addr.is_ipv4() {
                NODE_V4_LEN
            } else {
                NODE_V6_LEN
            }
        })
        .sum();
    e.bytes(key);
    e.bytes_header(len);
    for n in list {
        let (b, len) = peer_bytes(&n.addr);
        e.raw(&n.id.0);
        e.raw(&b[..len]);
    }
}

fn requester_ip(e: &mut Encoder<'_>, requester: Option<SocketAddr>) {
    if let Some(addr) = requester {
        let (b, len) = peer_bytes(&addr);
        e.bytes(b"ip");
        e.bytes(&b[..len]);
    }
}

/// Writes a response. `nodes` should hold IPv4 nodes only and `nodes6` IPv6 nodes only
/// (BEP 32); other receivers cannot split a mixed list.
pub fn write_response(out: &mut Vec<u8>, tid: &[u8], id: &NodeId, r: &ResponseOut<'_>) {
    let mut e = Encoder::new(out);
    e.dict();
    requester_ip(&mut e, r.requester);
    e.bytes(b"r");
    e.dict();
    e.bytes(b"id");
    e.bytes(&id.0);
    if let Some(i) = r.interval {
        e.bytes(b"interval");
        e.int(i);
    }
    if let Some(list) = r.nodes {
        nodes(&mut e, b"nodes", list);
    }
    if let Some(list) = r.nodes6 {
        nodes(&mut e, b"nodes6", list);
    }
    if let Some(n) = r.num {
        e.bytes(b"num");
        e.int(n);
    }
    if let Some(s) = r.samples {
        e.bytes(b"samples");
        e.bytes_header(s.len() * 20);
        for h in s {
            e.raw(h);
        }
    }
    if let Some(t) = r.token {
        e.bytes(b"token");
        e.bytes(t);
    }
    if let Some(values) = r.values {
        e.bytes(b"values");
        e.list();
        for v in values {
            let (b, len) = peer_bytes(v);
            e.bytes(&b[..len]);
        }
        e.end();
    }
    e.end(); // r
    tail(&mut e, tid, false, b"r");
}

/// Writes an error message (`y: e`).
pub fn write_error(
    out: &mut Vec<u8>,
    tid: &[u8],
    code: i64,
    message: &str,
    requester: Option<SocketAddr>,
) {
    let mut e = Encoder::new(out);
    e.dict();
    e.bytes(b"e");
    e.list();
    e.int(code);
    e.bytes(message.as_bytes());
    e.end();
    requester_ip(&mut e, requester);
    tail(&mut e, tid, false, b"e");
}
