//! Saving a router across restarts: the embedded node's state (its IDs, so the router keeps its
//! identity, and its best contacts) plus a sample of the cache. Cached nodes come back as
//! candidates, not as verified nodes: they are asked again before anyone is sent to them.
//!
//! The format is a bencoded dictionary: `node` (the output of [`Node::save_state`]),
//! `cache`/`cache6` (compact node lists as in BEP 5/32) and `v` (format version).

use std::time::Instant;

use super::verify::Candidate;
use super::{node_config, Router, RouterConfig};
use crate::bencode::Decoder;
use crate::bencode::Encoder;
use crate::compact::decode_nodes;
use crate::node::persist::check_version;
use crate::node::{Node, StateError};

/// Most cached nodes saved per family (26 or 38 bytes each in the file).
pub const MAX_SAVED_CACHE: usize = 32_768;

/// The format version written by [`Router::save_state`].
const STATE_VERSION: i64 = 1;

impl Router {
    /// Serialises the embedded node's state and up to [`MAX_SAVED_CACHE`] cached nodes per
    /// family, spread evenly over the keyspace.
    pub fn save_state(&self, now: Instant) -> Vec<u8> {
        let node = self.node.save_state(now);
        let mut lists: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        for (f, list) in lists.iter_mut().enumerate() {
            let cache = &self.caches[f];
            let step = cache.len().div_ceil(MAX_SAVED_CACHE).max(1);
            for (id, addr) in cache.iter().step_by(step).take(MAX_SAVED_CACHE) {
                crate::compact::encode_node(&crate::compact::NodeInfo { id, addr }, list);
            }
        }
        let mut out = Vec::with_capacity(64 + node.len() + lists[0].len() + lists[1].len());
        let mut e = Encoder::new(&mut out);
        e.dict();
        e.bytes(b"cache");
        e.bytes(&lists[0]);
        e.bytes(b"cache6");
        e.bytes(&lists[1]);
        e.bytes(b"node");
        e.bytes(&node);
        e.bytes(b"v");
        e.int(STATE_VERSION);
        e.end();
        out
    }

    /// A router restored from [`Router::save_state`] output: the node with its saved IDs and
    /// contacts (already re-joining through them), and the saved cache entries queued for
    /// verification.
    pub fn from_state(
        config: RouterConfig,
        now: Instant,
        seed: [u8; 32],
        state: &[u8],
    ) -> Result<Router, StateError> {
        let mut node_state = None;
        let mut lists: [&[u8]; 2] = [&[], &[]];
        let mut version = None;
        let mut d = Decoder::new(state);
        d.enter_dict()?;
        while let Some(key) = d.next_key()? {
            match key {
                b"node" => node_state = Some(d.bytes()?),
                b"cache" => lists[0] = d.bytes()?,
                b"cache6" => lists[1] = d.bytes()?,
                b"v" => version = Some(d.int()?),
                _ => d.skip(1)?,
            }
        }
        d.finish()?;
        check_version(version, STATE_VERSION)?;
        let node_state = node_state.ok_or(StateError::Invalid("node"))?;
        let node = Node::from_state(node_config(&config), now, seed, node_state)?;
        let mut router = Router::with_node(config, node, now, seed);
        for (f, list) in lists.iter().enumerate() {
            if !router.enabled_family(f) {
                continue;
            }
            for n in decode_nodes(list, f == 1).take(MAX_SAVED_CACHE) {
                router.verifier.offer(
                    0,
                    Candidate {
                        id: Some(n.id),
                        addr: n.addr,
                    },
                );
            }
        }
        Ok(router)
    }
}
