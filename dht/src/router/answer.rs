//! The router's fast path: answering a query from the verified-node cache (BEP 5 `ping`,
//! `find_node`, `get_peers`; `want` and `nodes6` of BEP 32; the requester's `ip` of BEP 42;
//! an empty sample for BEP 51's `sample_infohashes`).
//!
//! The reply is written into the caller's vector with keys in bencode order and node entries
//! copied straight from cache records. Its size is capped at [`MAX_AMPLIFICATION`] times the
//! query's: a spoofed query makes the router send at most that much to the victim, and it
//! still carries a full K nodes of one family for any ordinary query.

use std::net::SocketAddr;
use std::time::Instant;

use super::{fam, Router};
use crate::bencode::Encoder;
use crate::compact::{peer_bytes, NODE_V4_LEN, NODE_V6_LEN};
use crate::id::NodeId;
use crate::krpc::{error_code, write_error, Args, Message, Method, Want, CLIENT_VERSION};
use crate::routing::K;

/// A reply is at most this many times as long as the query it answers. A typical `find_node`
/// or `get_peers` query is about 95 bytes and its reply with K IPv4 nodes about 290; the
/// smallest valid query (about 50 bytes) still gets its reply, only with fewer nodes.
pub const MAX_AMPLIFICATION: usize = 4;

/// `interval` in an answer to `sample_infohashes`: the router stores no info-hashes, so there
/// is no point in asking again soon (BEP 51 allows up to six hours).
const SAMPLE_INTERVAL_SECS: i64 = 6 * 3600;

/// Nodes picked for one answer, in compact form.
struct Picked {
    n: [usize; 2],
    v4: [u8; K * NODE_V4_LEN],
    v6: [u8; K * NODE_V6_LEN],
}

impl Picked {
    fn bytes(&self, f: usize) -> &[u8] {
        if f == 0 {
            &self.v4[..self.n[0] * NODE_V4_LEN]
        } else {
            &self.v6[..self.n[1] * NODE_V6_LEN]
        }
    }

    fn push(&mut self, f: usize, node: &[u8]) {
        let len = node.len();
        let at = self.n[f] * len;
        let dst = if f == 0 {
            &mut self.v4[..]
        } else {
            &mut self.v6[..]
        };
        dst[at..at + len].copy_from_slice(node);
        self.n[f] += 1;
    }

    fn has_id(&self, f: usize, id: &NodeId) -> bool {
        let len = if f == 0 { NODE_V4_LEN } else { NODE_V6_LEN };
        self.bytes(f).chunks_exact(len).any(|c| c[..20] == id.0)
    }
}

fn kind_index(method: Method) -> usize {
    match method {
        Method::Ping => 0,
        Method::FindNode => 1,
        Method::GetPeers => 2,
        Method::AnnouncePeer => 3,
        Method::SampleInfohashes => 4,
        Method::Unknown => 5,
    }
}

impl Router {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn answer(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &Message<'_>,
        method: Method,
        args: &Args<'_>,
        request_len: usize,
        reply: &mut Vec<u8>,
    ) -> bool {
        if let Some(limiter) = &mut self.limiter {
            if !limiter.allow(from.ip(), now) {
                self.stats.dropped_rate_limited += 1;
                return false;
            }
        }
        self.stats.queries[kind_index(method)] += 1;
        let secs = self.secs(now);
        if let (false, Some(id)) = (msg.read_only, args.id) {
            self.consider(secs, id, from);
        }
        let tid = msg.tid;
        let key = match method {
            Method::Ping => None,
            Method::FindNode | Method::SampleInfohashes => match args.target {
                Some(t) => Some(t),
                None => {
                    return self.error(reply, from, tid, error_code::PROTOCOL, "missing target")
                }
            },
            Method::GetPeers => match args.info_hash {
                Some(ih) => Some(ih),
                None => {
                    return self.error(reply, from, tid, error_code::PROTOCOL, "missing info_hash")
                }
            },
            // No token was handed out, so no announce can be valid (BEP 5: error 203).
            Method::AnnouncePeer => {
                return self.error(
                    reply,
                    from,
                    tid,
                    error_code::PROTOCOL,
                    "this node stores no peers",
                )
            }
            // Forward compatibility: unknown queries naming a key get the closest nodes.
            Method::Unknown => match args.target.or(args.info_hash) {
                Some(k) => Some(k),
                None => {
                    return self.error(
                        reply,
                        from,
                        tid,
                        error_code::METHOD_UNKNOWN,
                        "method unknown",
                    )
                }
            },
        };
        let mut picked = Picked {
            n: [0; 2],
            v4: [0; K * NODE_V4_LEN],
            v6: [0; K * NODE_V6_LEN],
        };
        if let Some(key) = key {
            let want = args.want.unwrap_or(Want {
                n4: !from.is_ipv6(),
                n6: from.is_ipv6(),
            });
            for (f, wanted) in [(0, want.n4), (1, want.n6)] {
                if wanted {
                    self.pick(f, &key, secs, &mut picked);
                }
            }
        }
        let sample = method == Method::SampleInfohashes;
        let own = self.node.id(from.is_ipv6());
        let budget = request_len.saturating_mul(MAX_AMPLIFICATION);
        let mut trimmed = false;
        loop {
            reply.clear();
            write_reply(reply, tid, &own, &from, &picked, sample);
            if reply.len() <= budget {
                break;
            }
            if picked.n == [0, 0] {
                reply.clear();
                self.stats.dropped_amplification += 1;
                return false;
            }
            // Shed nodes of the requester's other family first.
            let mut excess = reply.len() - budget;
            let own_family = fam(&from);
            for f in [1 - own_family, own_family] {
                let len = if f == 0 { NODE_V4_LEN } else { NODE_V6_LEN };
                while excess > 0 && picked.n[f] > 0 {
                    picked.n[f] -= 1;
                    excess = excess.saturating_sub(len);
                }
            }
            trimmed = true;
        }
        self.stats.replies_trimmed += u64::from(trimmed);
        self.stats.replies += 1;
        self.stats.reply_bytes += reply.len() as u64;
        true
    }

    /// Adds up to K nodes of family `f` close to `key`: from the cache, topped up from the
    /// embedded node's routing table while the cache is sparse.
    fn pick(&mut self, f: usize, key: &[u8; 20], secs: u32, picked: &mut Picked) {
        if !self.enabled_family(f) {
            return;
        }
        let cache = &self.caches[f];
        let mut slots = [0u32; K];
        let n = cache.closest(key, secs, self.max_age(), &mut slots);
        for &s in &slots[..n] {
            picked.push(f, cache.node_bytes(s as usize));
        }
        if n == K {
            return;
        }
        let mut contacts = std::mem::take(&mut self.scratch_contacts);
        self.node
            .routing_table(f == 1)
            .closest(key, K, &mut contacts);
        for c in &contacts {
            if picked.n[f] == K {
                break;
            }
            if picked.has_id(f, &c.id) {
                continue;
            }
            let (addr, len) = peer_bytes(&c.addr);
            let mut node = [0u8; NODE_V6_LEN];
            node[..20].copy_from_slice(&c.id.0);
            node[20..20 + len].copy_from_slice(&addr[..len]);
            picked.push(f, &node[..20 + len]);
        }
        self.scratch_contacts = contacts;
    }

    fn error(
        &mut self,
        reply: &mut Vec<u8>,
        to: SocketAddr,
        tid: &[u8],
        code: i64,
        message: &str,
    ) -> bool {
        reply.clear();
        write_error(reply, tid, code, message, Some(to));
        self.stats.errors_sent += 1;
        self.stats.replies += 1;
        self.stats.reply_bytes += reply.len() as u64;
        true
    }
}

/// Writes a response with our ID, the requester's address and the picked nodes (plus an empty
/// sample for `sample_infohashes`). Keys in bencode's sorted order.
fn write_reply(
    out: &mut Vec<u8>,
    tid: &[u8],
    own: &NodeId,
    requester: &SocketAddr,
    picked: &Picked,
    sample: bool,
) {
    let mut e = Encoder::new(out);
    e.dict();
    let (ip, ip_len) = peer_bytes(requester);
    e.bytes(b"ip");
    e.bytes(&ip[..ip_len]);
    e.bytes(b"r");
    e.dict();
    e.bytes(b"id");
    e.bytes(&own.0);
    if sample {
        e.bytes(b"interval");
        e.int(SAMPLE_INTERVAL_SECS);
    }
    if picked.n[0] > 0 {
        e.bytes(b"nodes");
        e.bytes(picked.bytes(0));
    }
    if picked.n[1] > 0 {
        e.bytes(b"nodes6");
        e.bytes(picked.bytes(1));
    }
    if sample {
        e.bytes(b"num");
        e.int(0);
        e.bytes(b"samples");
        e.bytes(b"");
    }
    e.end();
    e.bytes(b"t");
    e.bytes(tid);
    e.bytes(b"v");
    e.bytes(&CLIENT_VERSION);
    e.bytes(b"y");
    e.bytes(b"r");
    e.end();
}
