//! Saving and restoring a node across restarts: its IDs and the contacts that had answered it,
//! so that a restarted node rejoins through them at once instead of through bootstrap routers.
//!
//! The format is a bencoded dictionary: `id`/`id6` (20 bytes each), `nodes`/`nodes6` (compact
//! node lists as in BEP 5/32) and `v` (format version).

use std::time::Instant;

use thiserror::Error;

use super::client::LookupKind;
use super::{Config, Node, MAX_SEEDS};
use crate::bencode::{BencodeError, Decoder, Encoder};
use crate::bep42;
use crate::compact::{decode_nodes, encode_node, NodeInfo};
use crate::id::NodeId;
use crate::routing::{Entry, NodeStatus, RoutingTable};

/// Largest state file a node loads: the IDs and [`MAX_SAVED_NODES`] contacts per family
/// take a few KiB, so anything near this is not a state file.
pub const MAX_STATE_SIZE: usize = 1 << 20;

/// Most contacts saved per family.
pub const MAX_SAVED_NODES: usize = 256;

/// The format version written by [`Node::save_state`].
const STATE_VERSION: i64 = 1;

/// Why saved state could not be restored.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StateError {
    /// Not valid bencode.
    #[error("saved DHT state is not valid bencode: {0}")]
    Bencode(#[from] BencodeError),
    /// A required key is absent or has the wrong size.
    #[error("saved DHT state lacks a valid {0}")]
    Invalid(&'static str),
    /// Written by an incompatible version.
    #[error("saved DHT state has unsupported version {0}")]
    Version(i64),
}

/// A state file's `v` must be the version this build writes.
pub(crate) fn check_version(found: Option<i64>, expected: i64) -> Result<(), StateError> {
    match found {
        Some(v) if v == expected => Ok(()),
        Some(v) => Err(StateError::Version(v)),
        None => Err(StateError::Invalid("v")),
    }
}

impl Node {
    /// Serialises our IDs and the contacts that have answered us (at most [`MAX_SAVED_NODES`]
    /// per family, good ones first).
    pub fn save_state(&self, now: Instant) -> Vec<u8> {
        let mut lists: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        for (f, list) in lists.iter_mut().enumerate() {
            let mut entries: Vec<&Entry> = self.families[f]
                .table
                .entries()
                .filter(|e| e.last_response.is_some() && e.status(now) != NodeStatus::Bad)
                .collect();
            entries.sort_by_key(|e| std::cmp::Reverse((e.status(now), e.last_seen())));
            for e in entries.into_iter().take(MAX_SAVED_NODES) {
                encode_node(&e.info(), list);
            }
        }
        let mut out = Vec::with_capacity(64 + lists[0].len() + lists[1].len());
        let mut e = Encoder::new(&mut out);
        e.dict();
        e.bytes(b"id");
        e.bytes(&self.families[0].id.0);
        e.bytes(b"id6");
        e.bytes(&self.families[1].id.0);
        e.bytes(b"nodes");
        e.bytes(&lists[0]);
        e.bytes(b"nodes6");
        e.bytes(&lists[1]);
        e.bytes(b"v");
        e.int(STATE_VERSION);
        e.end();
        out
    }

    /// A node restored from [`Node::save_state`] output: the saved IDs (unless `config.node_id`
    /// fixes one), the saved contacts in the routing tables as not-yet-confirmed, and a
    /// self-lookup through them already under way.
    pub fn from_state(
        config: Config,
        now: Instant,
        seed: [u8; 32],
        state: &[u8],
    ) -> Result<Node, StateError> {
        let mut ids: [Option<NodeId>; 2] = [None, None];
        let mut lists: [&[u8]; 2] = [&[], &[]];
        let mut version = None;
        let mut d = Decoder::new(state);
        d.enter_dict()?;
        while let Some(key) = d.next_key()? {
            match key {
                b"id" => {
                    ids[0] = Some(NodeId::from_slice(d.bytes()?).ok_or(StateError::Invalid("id"))?)
                }
                b"id6" => {
                    ids[1] = Some(NodeId::from_slice(d.bytes()?).ok_or(StateError::Invalid("id6"))?)
                }
                b"nodes" => lists[0] = d.bytes()?,
                b"nodes6" => lists[1] = d.bytes()?,
                b"v" => version = Some(d.int()?),
                _ => d.skip(1)?,
            }
        }
        d.finish()?;
        check_version(version, STATE_VERSION)?;
        let id4 = ids[0].ok_or(StateError::Invalid("id"))?;
        let id6 = ids[1].unwrap_or(id4);
        let mut node = Node::new(config, now, seed);
        for (f, (id, list)) in [(id4, lists[0]), (id6, lists[1])].into_iter().enumerate() {
            let fs = &mut node.families[f];
            if node.config.node_id.is_none() {
                fs.id = id;
                fs.table = RoutingTable::new(id, node.config.one_node_per_ip, now);
            }
            let nodes: Vec<NodeInfo> = decode_nodes(list, f == 1).take(MAX_SAVED_NODES).collect();
            for n in nodes {
                let mut e =
                    Entry::responded(n.id, n.addr, bep42::is_verified(&n.id, n.addr.ip()), now);
                e.last_response = None;
                fs.table.insert(e, now);
                if fs.seeds.len() < MAX_SEEDS {
                    fs.seeds.push(n.addr);
                }
            }
        }
        if node
            .families
            .iter()
            .any(|f| f.enabled && !f.table.is_empty())
        {
            node.start_lookup(now, None, LookupKind::Bootstrap, false);
        }
        Ok(node)
    }
}
