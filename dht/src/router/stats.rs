//! Counters of a bootstrap router and their Prometheus text rendering (the exposition format's
//! `# TYPE` lines plus `name{label="…"} value`, one sample per line).

use std::fmt::Write;

/// Query methods counted separately.
pub const QUERY_KINDS: [&str; 6] = [
    "ping",
    "find_node",
    "get_peers",
    "announce_peer",
    "sample_infohashes",
    "other",
];

/// Counters since start, plus current sizes (filled in by [`crate::router::Router::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Datagrams handed to the router.
    pub datagrams_in: u64,
    /// Bytes of those datagrams.
    pub bytes_in: u64,
    /// Queries accepted (past the rate limit), by method in [`QUERY_KINDS`] order.
    pub queries: [u64; 6],
    /// Replies (responses and errors) written.
    pub replies: u64,
    /// Bytes of replies written.
    pub reply_bytes: u64,
    /// Error replies among them.
    pub errors_sent: u64,
    /// Replies that had to leave out nodes to stay within the amplification bound.
    pub replies_trimmed: u64,
    /// Dropped: longer than [`crate::node::MAX_DATAGRAM_LEN`].
    pub dropped_oversized: u64,
    /// Dropped: not a KRPC message, or from a disabled address family or port 0.
    pub dropped_malformed: u64,
    /// Queries dropped by the per-IP rate limit.
    pub dropped_rate_limited: u64,
    /// Queries left unanswered because no reply fits the amplification bound.
    pub dropped_amplification: u64,
    /// Datagrams the driver could not send (socket buffer full).
    pub dropped_send: u64,
    /// Verification queries sent (new candidates and re-checks of cached nodes).
    pub verify_sent: u64,
    /// Answers to verification queries.
    pub verify_answers: u64,
    /// Answers whose node ID fails BEP 42 for the answering IP (not cached).
    pub verify_rejected_bep42: u64,
    /// Queriers not considered for the cache because their ID fails BEP 42.
    pub queriers_bep42_failed: u64,
    /// Nodes that entered the cache.
    pub cache_added: u64,
    /// Nodes that could not enter because their bucket was full of good nodes.
    pub cache_full: u64,
    /// Nodes dropped from the cache after missing re-verification pings.
    pub cache_evicted: u64,
    /// Candidates dropped because the verification queue was full.
    pub candidates_dropped: u64,
    /// Transmits (verification queries) dropped because the queue was full.
    pub transmits_dropped: u64,
    /// Responses and errors passed to the embedded node (its own lookups and pings).
    pub node_datagrams: u64,
    /// Cached IPv4 nodes.
    pub cache_v4: usize,
    /// Cached IPv6 nodes.
    pub cache_v6: usize,
    /// Cached nodes that missed their last re-verification (not handed out).
    pub cache_failing: usize,
    /// IPv4 plus IPv6 cache slots.
    pub cache_capacity: usize,
    /// Bytes allocated for the caches.
    pub cache_bytes: usize,
    /// Candidates waiting for a verification query.
    pub candidates_queued: usize,
    /// Contacts in the embedded node's IPv4 routing table.
    pub routing_v4: usize,
    /// Contacts in the embedded node's IPv6 routing table.
    pub routing_v6: usize,
}

impl RouterStats {
    /// Queries accepted, all methods.
    pub fn queries_total(&self) -> u64 {
        self.queries.iter().sum()
    }

    /// Share of cached nodes in good standing (answered their last check), 1.0 when empty.
    pub fn verified_fraction(&self) -> f64 {
        let len = self.cache_v4 + self.cache_v6;
        if len == 0 {
            return 1.0;
        }
        (len - self.cache_failing.min(len)) as f64 / len as f64
    }

    /// Appends the counters in Prometheus text format, metric names prefixed `burrow_dht_`.
    pub fn write_prometheus(&self, out: &mut String) {
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP burrow_dht_{name} {help}");
            let _ = writeln!(out, "# TYPE burrow_dht_{name} counter");
            let _ = writeln!(out, "burrow_dht_{name} {v}");
        };
        counter(
            "datagrams_received_total",
            "Datagrams received.",
            self.datagrams_in,
        );
        counter("bytes_received_total", "Bytes received.", self.bytes_in);
        counter("replies_total", "Replies sent.", self.replies);
        counter("reply_bytes_total", "Bytes of replies.", self.reply_bytes);
        counter(
            "errors_sent_total",
            "KRPC error replies sent.",
            self.errors_sent,
        );
        counter(
            "replies_trimmed_total",
            "Replies shortened to stay within the amplification bound.",
            self.replies_trimmed,
        );
        counter(
            "verify_sent_total",
            "Verification queries sent.",
            self.verify_sent,
        );
        counter(
            "verify_answers_total",
            "Answers to verification queries.",
            self.verify_answers,
        );
        counter(
            "cache_added_total",
            "Nodes added to the cache.",
            self.cache_added,
        );
        counter(
            "cache_full_total",
            "Verified nodes not cached: bucket full.",
            self.cache_full,
        );
        counter(
            "cache_evicted_total",
            "Cached nodes dropped as dead.",
            self.cache_evicted,
        );
        counter(
            "node_datagrams_total",
            "Datagrams for the embedded node.",
            self.node_datagrams,
        );
        let _ = writeln!(
            out,
            "# HELP burrow_dht_queries_total Queries accepted, by method."
        );
        let _ = writeln!(out, "# TYPE burrow_dht_queries_total counter");
        for (name, v) in QUERY_KINDS.iter().zip(self.queries) {
            let _ = writeln!(out, "burrow_dht_queries_total{{method=\"{name}\"}} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP burrow_dht_dropped_total Datagrams dropped, by reason."
        );
        let _ = writeln!(out, "# TYPE burrow_dht_dropped_total counter");
        for (reason, v) in self.drops() {
            let _ = writeln!(out, "burrow_dht_dropped_total{{reason=\"{reason}\"}} {v}");
        }
        let mut gauge = |name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP burrow_dht_{name} {help}");
            let _ = writeln!(out, "# TYPE burrow_dht_{name} gauge");
            let _ = writeln!(out, "burrow_dht_{name} {v}");
        };
        gauge("cache_nodes_v4", "Cached IPv4 nodes.", self.cache_v4 as f64);
        gauge("cache_nodes_v6", "Cached IPv6 nodes.", self.cache_v6 as f64);
        gauge(
            "cache_capacity",
            "Cache slots, both families.",
            self.cache_capacity as f64,
        );
        gauge(
            "cache_bytes",
            "Bytes allocated for the caches.",
            self.cache_bytes as f64,
        );
        gauge(
            "cache_verified_fraction",
            "Share of cached nodes that answered their last check.",
            self.verified_fraction(),
        );
        gauge(
            "candidates_queued",
            "Nodes waiting for verification.",
            self.candidates_queued as f64,
        );
        gauge(
            "routing_nodes_v4",
            "IPv4 routing-table contacts.",
            self.routing_v4 as f64,
        );
        gauge(
            "routing_nodes_v6",
            "IPv6 routing-table contacts.",
            self.routing_v6 as f64,
        );
    }

    /// Drop counters by reason, for logs and metrics.
    pub fn drops(&self) -> [(&'static str, u64); 7] {
        [
            ("oversized", self.dropped_oversized),
            ("malformed", self.dropped_malformed),
            ("rate_limited", self.dropped_rate_limited),
            ("amplification", self.dropped_amplification),
            ("send_failed", self.dropped_send),
            ("candidate_queue_full", self.candidates_dropped),
            ("transmit_queue_full", self.transmits_dropped),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_one_sample_per_line() {
        let s = RouterStats {
            queries: [1, 2, 3, 0, 0, 4],
            dropped_malformed: 7,
            cache_v4: 10,
            cache_failing: 1,
            ..RouterStats::default()
        };
        let mut out = String::new();
        s.write_prometheus(&mut out);
        assert!(out.contains("burrow_dht_queries_total{method=\"get_peers\"} 3\n"));
        assert!(out.contains("burrow_dht_dropped_total{reason=\"malformed\"} 7\n"));
        assert!(out.contains("burrow_dht_cache_verified_fraction 0.9\n"));
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("burrow_dht_"), "{line}");
            value.parse::<f64>().unwrap();
        }
        assert_eq!(s.queries_total(), 10);
    }
}
