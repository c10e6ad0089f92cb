//! Datagram counters of the shared UDP socket, per kind and per reason for a drop.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, updated by the reader tasks and senders.
#[derive(Debug, Default)]
pub(crate) struct CounterCells {
    pub rx_dht: AtomicU64,
    pub rx_utp: AtomicU64,
    pub rx_tracker: AtomicU64,
    pub rx_unknown: AtomicU64,
    pub dropped_dht_queue_full: AtomicU64,
    pub dropped_utp_queue_full: AtomicU64,
    pub dropped_tracker_unmatched: AtomicU64,
    pub rx_errors: AtomicU64,
    pub tx_datagrams: AtomicU64,
    pub tx_errors: AtomicU64,
}

impl CounterCells {
    pub fn bump(cell: &AtomicU64) {
        cell.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> UdpCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        UdpCounters {
            rx_dht: get(&self.rx_dht),
            rx_utp: get(&self.rx_utp),
            rx_tracker: get(&self.rx_tracker),
            rx_unknown: get(&self.rx_unknown),
            dropped_dht_queue_full: get(&self.dropped_dht_queue_full),
            dropped_utp_queue_full: get(&self.dropped_utp_queue_full),
            dropped_tracker_unmatched: get(&self.dropped_tracker_unmatched),
            rx_errors: get(&self.rx_errors),
            tx_datagrams: get(&self.tx_datagrams),
            tx_errors: get(&self.tx_errors),
        }
    }
}

/// A snapshot of the shared UDP socket's counters (both address families together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpCounters {
    /// KRPC datagrams queued for the DHT.
    pub rx_dht: u64,
    /// µTP datagrams queued for the µTP socket.
    pub rx_utp: u64,
    /// UDP-tracker replies delivered to a waiting request.
    pub rx_tracker: u64,
    /// Datagrams of no known kind (dropped).
    pub rx_unknown: u64,
    /// KRPC datagrams dropped because the DHT queue was full (or nobody reads it).
    pub dropped_dht_queue_full: u64,
    /// µTP datagrams dropped because the µTP queue was full (or no µTP socket exists).
    pub dropped_utp_queue_full: u64,
    /// Tracker-looking datagrams with no waiting request for their id and source.
    pub dropped_tracker_unmatched: u64,
    /// Errors reported by `recvfrom` (e.g. ICMP errors surfaced by the kernel).
    pub rx_errors: u64,
    /// Datagrams sent.
    pub tx_datagrams: u64,
    /// Sends that failed.
    pub tx_errors: u64,
}
