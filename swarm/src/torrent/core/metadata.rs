//! Fetching the info dictionary from peers (BEP 9) for magnet links, and serving it to others.
//! Pieces are requested from peers that announced the same `metadata_size`; the assembled
//! dictionary counts only if it hashes to the info-hash.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Action, Phase, TorrentCore};
use crate::metainfo::{Info, MAX_METAINFO_SIZE};
use crate::peer::PeerKey;
use crate::wire::{Message, MetadataMsg, METADATA_PIECE_SIZE};

/// How long a metadata request may stay unanswered before another peer is asked.
pub const METADATA_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Progress of the metadata download.
#[derive(Debug, Default)]
pub struct MetadataFetch {
    size: Option<u32>,
    pieces: Vec<Option<Bytes>>,
    pending: Vec<Option<(PeerKey, Instant)>>,
    /// Peers that rejected a request: not asked again.
    refused: HashSet<PeerKey>,
    /// Assemblies that did not hash to the info-hash.
    pub failures: u32,
}

impl MetadataFetch {
    /// Takes the size a peer announced, if none is known yet and it is plausible.
    pub fn set_size(&mut self, size: u32) {
        if self.size.is_none() && size > 0 && (size as usize) <= MAX_METAINFO_SIZE {
            let n = (size as usize).div_ceil(METADATA_PIECE_SIZE);
            self.size = Some(size);
            self.pieces = vec![None; n];
            self.pending = vec![None; n];
        }
    }

    /// Forgets requests sent to a peer that left.
    pub fn peer_gone(&mut self, key: PeerKey) {
        for p in &mut self.pending {
            if p.is_some_and(|(k, _)| k == key) {
                *p = None;
            }
        }
        self.refused.remove(&key);
    }

    /// Fraction of the metadata received, 0.0–1.0.
    pub fn progress(&self) -> f64 {
        if self.pieces.is_empty() {
            return 0.0;
        }
        self.pieces.iter().filter(|p| p.is_some()).count() as f64 / self.pieces.len() as f64
    }

    fn piece_len(&self, i: usize) -> usize {
        let size = self.size.unwrap_or(0) as usize;
        (size - i * METADATA_PIECE_SIZE).min(METADATA_PIECE_SIZE)
    }
}

impl TorrentCore {
    /// Fraction of the metadata received (magnet links).
    pub fn metadata_progress(&self) -> f64 {
        if self.info.is_some() {
            1.0
        } else {
            self.metadata.progress()
        }
    }

    /// Sends metadata requests for pieces nobody is fetching.
    pub(super) fn request_metadata(&mut self, now: Instant) {
        if self.info.is_some() {
            return;
        }
        let Some(size) = self.metadata.size else {
            return;
        };
        for i in 0..self.metadata.pieces.len() {
            if self.metadata.pieces[i].is_some() {
                continue;
            }
            if self.metadata.pending[i]
                .is_some_and(|(_, t)| now.duration_since(t) < METADATA_REQUEST_TIMEOUT)
            {
                continue;
            }
            let busy = |k: PeerKey| {
                self.metadata
                    .pending
                    .iter()
                    .filter(|p| p.is_some_and(|(pk, _)| pk == k))
                    .count()
            };
            let best = self
                .peers
                .iter()
                .filter(|(k, p)| {
                    !self.metadata.refused.contains(k)
                        && p.ext.as_ref().is_some_and(|e| {
                            e.ids.ut_metadata.is_some() && e.metadata_size == Some(size)
                        })
                })
                .min_by_key(|(k, _)| busy(**k))
                .map(|(k, p)| {
                    (
                        *k,
                        p.ext
                            .as_ref()
                            .and_then(|e| e.ids.ut_metadata)
                            .expect("filtered"),
                    )
                });
            let Some((key, id)) = best else { return };
            self.metadata.pending[i] = Some((key, now));
            let payload = MetadataMsg::Request { piece: i as u32 }.encode();
            self.send(
                key,
                Message::Extended {
                    id,
                    payload: payload.into(),
                },
            );
        }
    }

    pub(super) fn on_metadata(&mut self, key: PeerKey, msg: MetadataMsg, now: Instant) {
        let their_id = self.peers[&key]
            .ext
            .as_ref()
            .and_then(|e| e.ids.ut_metadata);
        match msg {
            MetadataMsg::Request { piece } => {
                let Some(id) = their_id else { return };
                let reply = match &self.info {
                    Some(info) if (piece as usize) * METADATA_PIECE_SIZE < info.raw.len() => {
                        let start = piece as usize * METADATA_PIECE_SIZE;
                        let end = (start + METADATA_PIECE_SIZE).min(info.raw.len());
                        MetadataMsg::Data {
                            piece,
                            total_size: info.raw.len() as u32,
                            data: info.raw.slice(start..end),
                        }
                    }
                    _ => MetadataMsg::Reject { piece },
                };
                self.send(
                    key,
                    Message::Extended {
                        id,
                        payload: reply.encode().into(),
                    },
                );
            }
            MetadataMsg::Reject { piece } => {
                self.metadata.refused.insert(key);
                if let Some(p) = self.metadata.pending.get_mut(piece as usize) {
                    if p.is_some_and(|(k, _)| k == key) {
                        *p = None;
                    }
                }
                self.request_metadata(now);
            }
            MetadataMsg::Data {
                piece,
                total_size,
                data,
            } => {
                if self.info.is_some() || Some(total_size) != self.metadata.size {
                    return;
                }
                let i = piece as usize;
                if i >= self.metadata.pieces.len()
                    || data.len() != self.metadata.piece_len(i)
                    || self.metadata.pieces[i].is_some()
                {
                    return;
                }
                self.metadata.pieces[i] = Some(data);
                self.metadata.pending[i] = None;
                if self.metadata.pieces.iter().all(|p| p.is_some()) {
                    self.finish_metadata();
                } else {
                    self.request_metadata(now);
                }
            }
        }
    }

    fn finish_metadata(&mut self) {
        let mut raw = Vec::with_capacity(self.metadata.size.unwrap_or(0) as usize);
        for p in self.metadata.pieces.iter().flatten() {
            raw.extend_from_slice(p);
        }
        match Info::from_bytes_checked(&raw, self.info_hash) {
            Ok(info) => {
                let info = Arc::new(info);
                self.info = Some(info.clone());
                self.phase = Phase::Checking;
                self.metadata = MetadataFetch::default();
                self.actions.push_back(Action::MetadataReady(info));
            }
            Err(e) => {
                tracing::warn!(error = %e, "metadata from peers was invalid; fetching again");
                let failures = self.metadata.failures + 1;
                self.metadata = MetadataFetch {
                    failures,
                    ..Default::default()
                };
                // Sizes announced by other peers will be taken afresh.
                let sizes: Vec<u32> = self
                    .peers
                    .values()
                    .filter_map(|p| p.ext.as_ref().and_then(|e| e.metadata_size))
                    .collect();
                if let Some(&s) = sizes.iter().next_back() {
                    self.metadata.set_size(s);
                }
            }
        }
    }
}
