//! Handling of each message a peer sends: BEP 3 state changes and data, BEP 6 fast-extension
//! messages and BEP 10 extended messages.

use std::time::Instant;

use bytes::Bytes;

use super::{Action, Assembly, CloseReason, TorrentCore};
use crate::peer::{PeerHas, PeerKey, MAX_ALLOWED_FAST, MAX_PENDING_HAVES};
use crate::torrent::bitfield::Bitfield;
use crate::torrent::picker::{Has, Received};
use crate::torrent::piece_buf::PieceBuf;
use crate::types::{BlockRef, PieceIndex, BLOCK_SIZE};
use crate::wire::{ExtHandshake, HolepunchMsg, Message, MetadataMsg, PexMessage, LOCAL_EXTENSIONS};

/// Largest block we serve. Peers should ask for 16 KiB; some ask for more, which costs us
/// nothing to honour up to this size.
pub const MAX_SERVE_LEN: u32 = 128 * 1024;
/// Unrequested or duplicate blocks a peer may send before it is dropped.
pub const MAX_UNWANTED_BLOCKS: u32 = 500;

impl TorrentCore {
    /// Messages arrived from a peer, in order.
    pub fn peer_messages(
        &mut self,
        key: PeerKey,
        msgs: impl IntoIterator<Item = Message>,
        now: Instant,
    ) {
        for m in msgs {
            if !self.peers.contains_key(&key) {
                return;
            }
            if let Err(reason) = self.on_message(key, m, now) {
                self.drop_peer(key, CloseReason::Protocol(reason));
                return;
            }
        }
        self.fill_requests(key);
    }

    pub(super) fn drop_peer(&mut self, key: PeerKey, reason: CloseReason) {
        self.peer_closed(key);
        self.actions.push_back(Action::Close(key, reason));
    }

    fn on_message(&mut self, key: PeerKey, m: Message, now: Instant) -> Result<(), String> {
        let fast = self.peers[&key].handshake.supports_fast();
        match m {
            Message::KeepAlive => {}
            Message::Choke => {
                let p = self.peers.get_mut(&key).expect("present");
                p.peer_choking = true;
                if !fast {
                    // Without BEP 6 a choke silently drops all our requests.
                    let lost: Vec<BlockRef> = p.outstanding.drain().collect();
                    if let Some(picker) = &mut self.picker {
                        lost.iter().for_each(|r| picker.request_failed(r));
                    }
                }
            }
            Message::Unchoke => {
                let p = self.peers.get_mut(&key).expect("present");
                p.peer_choking = false;
                p.last_block_at = now;
            }
            Message::Interested => {
                self.peers.get_mut(&key).expect("present").peer_interested = true;
                self.maybe_fast_unchoke(key, now);
            }
            Message::NotInterested => {
                let p = self.peers.get_mut(&key).expect("present");
                p.peer_interested = false;
            }
            Message::Have(i) => self.on_have(key, i.0)?,
            Message::Bitfield(b) => self.on_bitfield(key, Some(b), false)?,
            Message::HaveAll => self.on_bitfield(key, None, true)?,
            Message::HaveNone => self.on_bitfield(key, None, false)?,
            Message::Request(r) => self.on_request(key, r, fast),
            Message::Cancel(r) => {
                self.actions.push_back(Action::CancelServe(key, r));
            }
            Message::Piece {
                piece,
                offset,
                data,
            } => self.on_block(key, piece, offset, data, now)?,
            Message::Reject(r) => {
                let p = self.peers.get_mut(&key).expect("present");
                if p.outstanding.remove(&r) {
                    if let Some(picker) = &mut self.picker {
                        picker.request_failed(&r);
                    }
                }
            }
            Message::AllowedFast(i) => {
                let p = self.peers.get_mut(&key).expect("present");
                if p.allowed_fast.len() < MAX_ALLOWED_FAST && !p.allowed_fast.contains(&i.0) {
                    p.allowed_fast.push(i.0);
                }
            }
            Message::Suggest(_) => {}
            Message::Port(port) => {
                let ip = self.peers[&key].addr.ip();
                if port != 0 && !self.is_private() {
                    self.actions.push_back(Action::DhtNode((ip, port).into()));
                }
            }
            Message::Extended { id, payload } => self.on_extended(key, id, payload, now)?,
        }
        Ok(())
    }

    fn on_have(&mut self, key: PeerKey, i: u32) -> Result<(), String> {
        let count = self.info.as_ref().map(|i| i.piece_count());
        let p = self.peers.get_mut(&key).expect("present");
        match (&mut p.has, count) {
            (_, Some(n)) if i >= n => return Err(format!("have for piece {i} of {n}")),
            (PeerHas::Pending { haves, .. }, _) => {
                if haves.len() < MAX_PENDING_HAVES {
                    haves.push(i);
                }
            }
            (PeerHas::Unknown, None) => {
                p.has = PeerHas::Pending {
                    bitfield: None,
                    haves: vec![i],
                }
            }
            (PeerHas::Unknown, Some(n)) => {
                let mut b = Bitfield::new(n);
                b.set(i, true);
                p.has = PeerHas::Some(b);
                if let Some(picker) = &mut self.picker {
                    picker.peer_have(i);
                }
            }
            (PeerHas::Some(b), _) => {
                if b.set(i, true) {
                    if let Some(picker) = &mut self.picker {
                        picker.peer_have(i);
                    }
                    if b.is_full() {
                        // Count it as a seed from now on.
                        let full = std::mem::replace(&mut p.has, PeerHas::All);
                        if let (Some(picker), PeerHas::Some(b)) = (&mut self.picker, &full) {
                            picker.remove_peer(Has::Some(b));
                            picker.add_peer(Has::All);
                        }
                    }
                }
            }
            (PeerHas::All, _) => {}
        }
        self.update_interest(key);
        Ok(())
    }

    /// `raw` is a bitfield message; otherwise `all` tells have_all from have_none.
    fn on_bitfield(&mut self, key: PeerKey, raw: Option<Bytes>, all: bool) -> Result<(), String> {
        let count = self.info.as_ref().map(|i| i.piece_count());
        let p = self.peers.get_mut(&key).expect("present");
        // Some clients follow have_none with a bitfield; the latest announcement wins.
        if let Some(picker) = &mut self.picker {
            super::add_or_remove(picker, &p.has, false);
        }
        p.has = match (raw, count) {
            (Some(raw), Some(n)) => {
                let b = Bitfield::from_wire(&raw, n).ok_or("bitfield of the wrong length")?;
                if b.is_full() {
                    PeerHas::All
                } else {
                    PeerHas::Some(b)
                }
            }
            (Some(raw), None) => PeerHas::Pending {
                bitfield: Some(raw),
                haves: vec![],
            },
            (None, _) if all => PeerHas::All,
            (None, Some(n)) => PeerHas::Some(Bitfield::new(n)),
            (None, None) => PeerHas::Pending {
                bitfield: None,
                haves: vec![],
            },
        };
        if let Some(picker) = &mut self.picker {
            super::add_to_picker(picker, &p.has);
        }
        if self.is_useless(key) {
            self.drop_peer(key, CloseReason::Useless);
            return Ok(());
        }
        self.update_interest(key);
        Ok(())
    }

    fn on_request(&mut self, key: PeerKey, r: BlockRef, fast: bool) {
        let valid = match (&self.info, &self.picker) {
            (Some(info), Some(picker)) => {
                picker.have().get(r.piece.0)
                    && r.len > 0
                    && r.len <= MAX_SERVE_LEN
                    && r.offset as u64 + r.len as u64 <= info.piece_len(r.piece) as u64
            }
            _ => false,
        };
        let p = &self.peers[&key];
        if valid && !p.am_choking {
            self.actions.push_back(Action::Serve(key, r));
        } else if fast {
            self.send(key, Message::Reject(r));
        }
    }

    fn on_block(
        &mut self,
        key: PeerKey,
        piece: PieceIndex,
        offset: u32,
        data: Bytes,
        now: Instant,
    ) -> Result<(), String> {
        let r = BlockRef {
            piece,
            offset,
            len: data.len() as u32,
        };
        let p = self.peers.get_mut(&key).expect("present");
        let requested = p.outstanding.remove(&r);
        p.down.add(data.len() as u64);
        self.stats.downloaded += data.len() as u64;
        if requested {
            p.last_block_at = now;
            p.snubbed = false;
            // Slow start: a block arriving while the pipeline is nearly full means the peer
            // keeps up, so allow one more outstanding request (doubling per round trip).
            if (p.outstanding.len() + 1) * 4 >= p.max_requests * 3 {
                p.max_requests += 1;
            }
        }
        let ip = p.addr.ip();
        let (Some(picker), Some(info)) = (&mut self.picker, &self.info) else {
            self.stats.wasted += data.len() as u64;
            return Ok(());
        };
        // Smart ban: a piece given to one peer takes blocks from it alone, and a peer on
        // parole only adds to pieces it has alone.
        let received = if self.ban.may_store(key, &ip, piece.0) {
            picker.block_received(&r)
        } else {
            Received::Unwanted
        };
        let (complete, duplicated) = match received {
            Received::Unwanted => {
                self.stats.wasted += data.len() as u64;
                let p = self.peers.get_mut(&key).expect("present");
                if !requested {
                    p.unwanted_blocks += 1;
                    if p.unwanted_blocks > MAX_UNWANTED_BLOCKS {
                        return Err("too many unrequested blocks".into());
                    }
                }
                return Ok(());
            }
            Received::Stored { duplicated } => (false, duplicated),
            Received::PieceComplete { duplicated } => (true, duplicated),
        };
        let len = info.piece_len(piece) as usize;
        let spare = &mut self.spare_buffers;
        let a = self.assembling.entry(piece.0).or_insert_with(|| {
            // A reused buffer needs no zeroing: every byte is overwritten by a block.
            let mut buf = spare.pop().unwrap_or_default();
            buf.resize(len);
            Assembly {
                buf,
                senders: vec![None; len.div_ceil(BLOCK_SIZE as usize)],
                verifying: false,
            }
        });
        a.buf[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
        a.senders[r.index_in_piece() as usize] = Some(ip);
        self.ban.progress(piece.0, key, now);
        if complete {
            a.verifying = true;
            let buf = std::mem::take(&mut a.buf);
            self.actions.push_back(Action::Verify {
                piece: piece.0,
                data: buf,
            });
        }
        if duplicated {
            // Endgame: others were asked for the same block; withdraw those requests.
            let others: Vec<PeerKey> = self
                .peers
                .iter()
                .filter(|(k, p)| **k != key && p.outstanding.contains(&r))
                .map(|(k, _)| *k)
                .collect();
            for k in others {
                self.peers
                    .get_mut(&k)
                    .expect("present")
                    .outstanding
                    .remove(&r);
                self.send(k, Message::Cancel(r));
            }
        }
        Ok(())
    }

    /// The driver hashed piece `piece`: `ok` if it matched (and was written). `buf` comes back
    /// for reuse.
    pub fn piece_checked(&mut self, piece: u32, ok: bool, buf: PieceBuf) {
        let senders = self
            .assembling
            .remove(&piece)
            .map(|a| a.senders)
            .unwrap_or_default();
        let Some(picker) = &mut self.picker else {
            self.recycle(buf);
            return;
        };
        picker.piece_verified(piece, ok);
        if ok {
            self.smartban_passed(piece, &buf, &senders);
            self.recycle(buf);
            self.actions.push_back(Action::PieceVerified(piece));
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for k in keys {
                if !self.peers[&k].is_seed() {
                    self.send(k, Message::Have(PieceIndex(piece)));
                }
            }
            self.after_have_changed();
            self.check_complete();
        } else {
            self.stats.hash_failures += 1;
            self.stats.wasted += self
                .info
                .as_ref()
                .map_or(0, |i| i.piece_len(PieceIndex(piece)) as u64);
            self.smartban_failed(piece, &buf, &senders);
            self.recycle(buf);
        }
        self.fill_all_requests();
    }

    fn on_extended(
        &mut self,
        key: PeerKey,
        id: u8,
        payload: Bytes,
        now: Instant,
    ) -> Result<(), String> {
        if id == 0 {
            let hs = ExtHandshake::decode(&payload).map_err(|e| e.to_string())?;
            let p = self.peers.get_mut(&key).expect("present");
            if let Some(q) = hs.reqq {
                p.max_requests = p.max_requests.min(q.max(1) as usize);
            }
            let size = hs.metadata_size;
            let has_md = hs.ids.ut_metadata.is_some();
            if let Some(reported) = hs.yourip {
                self.actions.push_back(Action::YourIp {
                    reported,
                    by: p.addr.ip(),
                });
            }
            if let Some(other) = p.other_family(&hs) {
                self.actions
                    .push_back(Action::OtherFamily { key, addr: other });
            }
            p.ext = Some(hs);
            if self.info.is_none() && has_md {
                if let Some(size) = size {
                    self.metadata.set_size(size);
                }
                self.request_metadata(now);
            }
            if self.is_useless(key) {
                self.drop_peer(key, CloseReason::Useless);
            }
            return Ok(());
        }
        if Some(id) == LOCAL_EXTENSIONS.ut_metadata {
            let msg = MetadataMsg::decode(&payload).map_err(|e| e.to_string())?;
            self.on_metadata(key, msg, now);
        } else if Some(id) == LOCAL_EXTENSIONS.ut_pex {
            let msg = PexMessage::decode(&payload).map_err(|e| e.to_string())?;
            self.on_pex(key, msg);
        } else if Some(id) == LOCAL_EXTENSIONS.ut_holepunch {
            let msg = HolepunchMsg::decode(&payload).map_err(|e| e.to_string())?;
            self.on_holepunch(key, msg, now);
        }
        Ok(())
    }

    /// Re-evaluates interest in one peer, sending Interested/NotInterested on change.
    pub(super) fn update_interest(&mut self, key: PeerKey) {
        let Some(picker) = &self.picker else { return };
        let p = self.peers.get_mut(&key).expect("present");
        let want = match &p.has {
            PeerHas::All => !picker.is_complete(),
            PeerHas::Some(b) => b.any_wanted(picker.wanted(), picker.have()),
            _ => false,
        };
        if want != p.am_interested {
            p.am_interested = want;
            let m = if want {
                Message::Interested
            } else {
                Message::NotInterested
            };
            self.send(key, m);
        }
    }

    pub(super) fn after_have_changed(&mut self) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.update_interest(k);
        }
    }
}
