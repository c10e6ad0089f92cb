//! What the torrent tells the world: the status snapshot read by the CLI, the daemon's RPC
//! and metrics, and the figures the trackers are told. Counters come from the core, which
//! has every payload byte by the time they are read (see `links`).

use super::Task;
use crate::torrent::core::Phase;
use crate::torrent::selection::wanted_and_verified;
use crate::torrent::status::TorrentState;

impl Task {
    /// Hands the payload each connection sent since the last call to the core, including
    /// connections that closed meanwhile.
    pub(super) fn count_uploads(&mut self) {
        for (key, bytes) in self.links.take_sent() {
            self.core.record_upload(key, bytes);
        }
    }

    /// One trace line on the download pipeline: payload received so far, requests
    /// outstanding against the peers' pipelines, pieces in the picker's window (against its
    /// cap) and pieces on their way to the disk.
    pub(super) fn sample_pipeline(&self) {
        let (outstanding, pipelines) = self
            .core
            .peers()
            .map(|(_, p)| (p.outstanding.len(), p.max_requests))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let (window, cap) = self.core.window();
        tracing::trace!(
            target: "burrow::pipeline",
            downloaded = self.core.stats().downloaded,
            outstanding,
            pipelines,
            window,
            cap,
            disk = self.disk.len(),
            "pipeline"
        );
    }

    /// Publishes the status and the figures for the next announce.
    pub(super) fn publish(&mut self) {
        let s = self.core.stats();
        let st = &mut self.status;
        st.state = if let Some(e) = &self.error {
            TorrentState::Error(e.clone())
        } else {
            match self.core.phase() {
                Phase::FetchingMetadata => TorrentState::FetchingMetadata,
                Phase::Checking => TorrentState::Checking,
                Phase::Downloading => TorrentState::Downloading,
                Phase::Complete if self.p.seed => TorrentState::Seeding,
                Phase::Complete => TorrentState::Complete,
            }
        };
        if let (Some(info), Some(have)) = (self.core.info(), self.core.have()) {
            st.pieces = info.piece_count();
            st.pieces_have = have.count();
            let key = (have.count(), self.extra.selection_version);
            if self.extra.sizes.0 != Some(key) {
                let prios = self.p.selection.resolve(info);
                self.extra.sizes = (Some(key), wanted_and_verified(info, have, &prios));
            }
            (st.wanted_bytes, st.verified_bytes) = self.extra.sizes.1;
        }
        st.download_rate = s.download_rate;
        st.upload_rate = s.upload_rate;
        st.downloaded = s.downloaded;
        st.uploaded = s.uploaded;
        st.wasted = s.wasted;
        st.hash_failures = s.hash_failures;
        st.on_parole = s.on_parole;
        st.peers = s.peers;
        st.seeds = s.seeds;
        st.known_peers = self.pool.len();
        st.connecting = self.pool.connecting();
        st.metadata_progress = self.core.metadata_progress();
        st.routes.clear();
        for (_, l) in self.links.iter() {
            *st.routes.entry(l.route.label()).or_default() += 1;
            if l.addr.is_ipv6() {
                *st.routes.entry("ipv6").or_default() += 1;
            }
        }
        let _ = self.status_tx.send(st.clone());
        let left = st.wanted_bytes.saturating_sub(st.verified_bytes);
        let complete = self.core.phase() == Phase::Complete;
        let v6 = self.own_v6();
        self.announce_tx.send_modify(|a| {
            a.ipv6 = v6;
            a.uploaded = s.uploaded;
            a.downloaded = s.downloaded;
            a.left = left;
            a.complete = complete;
        });
    }
}
