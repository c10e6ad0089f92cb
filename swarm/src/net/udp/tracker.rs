//! Routing of UDP-tracker replies (BEP 15) to the request waiting for them.
//!
//! A request registers a random 32-bit transaction id together with the tracker's address
//! before it sends; the reader hands a reply to the registration whose id and source address
//! both match, so a third party that guesses an id still cannot answer for a tracker it is not.
//! The table is shared between the reader task and requesters behind a short-held mutex: the
//! critical sections are a hash-map insert or remove, and a requester must hold its id before
//! its packet leaves, which a message round trip to the reader could not guarantee.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use super::{canonical, Datagram};
use crate::net::NetError;

/// Default limit on UDP-tracker transactions waiting for a reply at once.
pub const MAX_PENDING_TRACKER_TRANSACTIONS: usize = 1024;

/// A 32-bit BEP 15 transaction id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionId(pub u32);

struct Waiter {
    remote: SocketAddr,
    serial: u64,
    reply: oneshot::Sender<Datagram>,
}

/// The table of transactions waiting for a reply.
pub(crate) struct TrackerTable {
    waiting: Mutex<HashMap<u32, Waiter>>,
    limit: usize,
    /// Tells registrations apart when an id is reused after a delivery.
    next_serial: AtomicU64,
}

/// What became of a datagram that looked like a tracker reply.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TrackerRoute {
    /// Handed to the waiting request.
    Delivered,
    /// No request waits for this id from this address.
    Unmatched,
}

impl TrackerTable {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            waiting: Mutex::new(HashMap::new()),
            limit,
            next_serial: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Waiter>> {
        // The map stays consistent even if a holder panicked: every operation is one call.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new transaction with `remote` under a fresh random id.
    pub(crate) fn register(
        self: &Arc<Self>,
        remote: SocketAddr,
    ) -> Result<TrackerTransaction, NetError> {
        let (tx, rx) = oneshot::channel();
        let mut waiting = self.lock();
        if waiting.len() >= self.limit {
            return Err(NetError::TrackerTableFull { limit: self.limit });
        }
        let id = loop {
            let id: u32 = rand::random();
            if !waiting.contains_key(&id) {
                break id;
            }
        };
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        waiting.insert(
            id,
            Waiter {
                remote: canonical(remote),
                serial,
                reply: tx,
            },
        );
        Ok(TrackerTransaction {
            id: TransactionId(id),
            serial,
            remote,
            reply: rx,
            table: Arc::clone(self),
        })
    }

    /// Hands `datagram` (transaction id `id`) to its waiting request, if any.
    pub(crate) fn route(&self, id: u32, datagram: Datagram) -> TrackerRoute {
        let mut waiting = self.lock();
        match waiting.get(&id) {
            Some(w) if w.remote == canonical(datagram.from) => {}
            _ => return TrackerRoute::Unmatched,
        }
        let waiter = waiting.remove(&id).expect("checked above");
        drop(waiting);
        match waiter.reply.send(datagram) {
            Ok(()) => TrackerRoute::Delivered,
            Err(_) => TrackerRoute::Unmatched,
        }
    }

    pub(crate) fn pending(&self) -> usize {
        self.lock().len()
    }
}

/// A cloneable handle for registering UDP-tracker transactions, for tracker tasks that do not
/// hold the [`super::UdpMux`].
#[derive(Clone)]
pub struct TrackerTransactions {
    table: Arc<TrackerTable>,
}

impl TrackerTransactions {
    pub(crate) fn new(table: Arc<TrackerTable>) -> Self {
        Self { table }
    }

    /// Registers a transaction with `tracker` under a fresh random id: write the id into the
    /// request, send it with [`super::UdpSender::send_to`], then await
    /// [`TrackerTransaction::reply`].
    pub fn register(&self, tracker: SocketAddr) -> Result<TrackerTransaction, NetError> {
        self.table.register(tracker)
    }

    /// Transactions currently waiting for a reply.
    pub fn pending(&self) -> usize {
        self.table.pending()
    }
}

impl std::fmt::Debug for TrackerTransactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackerTransactions")
            .field("pending", &self.pending())
            .finish()
    }
}

/// A UDP-tracker request waiting for its reply; dropping it frees its transaction id.
pub struct TrackerTransaction {
    id: TransactionId,
    serial: u64,
    remote: SocketAddr,
    reply: oneshot::Receiver<Datagram>,
    table: Arc<TrackerTable>,
}

impl TrackerTransaction {
    /// The transaction id to write into the request (bytes 12..16 of a BEP 15 request).
    pub fn id(&self) -> TransactionId {
        self.id
    }

    /// The tracker this transaction was registered with.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// Waits for the reply. Callers bound the wait with their own timeout (BEP 15's
    /// 15·2ⁿ-second retransmission schedule); resending under the same id is allowed.
    pub async fn reply(&mut self) -> Result<Datagram, NetError> {
        (&mut self.reply).await.map_err(|_| NetError::Closed)
    }
}

impl Drop for TrackerTransaction {
    fn drop(&mut self) {
        let mut waiting = self.table.lock();
        // Only remove our own entry: after a delivery the id may have been reused.
        if waiting
            .get(&self.id.0)
            .is_some_and(|w| w.serial == self.serial)
        {
            waiting.remove(&self.id.0);
        }
    }
}

impl std::fmt::Debug for TrackerTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackerTransaction")
            .field("id", &self.id)
            .field("remote", &self.remote)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn reply(id: u32, from: &str) -> Datagram {
        let mut data = 1u32.to_be_bytes().to_vec();
        data.extend_from_slice(&id.to_be_bytes());
        Datagram {
            from: addr(from),
            data: Bytes::from(data),
        }
    }

    #[tokio::test]
    async fn reply_reaches_its_transaction() {
        let table = TrackerTable::new(8);
        let mut a = table.register(addr("127.0.0.1:6969")).unwrap();
        let mut b = table.register(addr("127.0.0.1:6970")).unwrap();
        assert_ne!(a.id(), b.id());
        assert_eq!(
            table.route(b.id().0, reply(b.id().0, "127.0.0.1:6970")),
            TrackerRoute::Delivered
        );
        assert_eq!(
            table.route(a.id().0, reply(a.id().0, "127.0.0.1:6969")),
            TrackerRoute::Delivered
        );
        assert_eq!(a.reply().await.unwrap().from, addr("127.0.0.1:6969"));
        assert_eq!(b.reply().await.unwrap().from, addr("127.0.0.1:6970"));
        assert_eq!(table.pending(), 0);
    }

    #[test]
    fn reply_from_another_address_is_unmatched() {
        let table = TrackerTable::new(8);
        let t = table.register(addr("127.0.0.1:6969")).unwrap();
        let id = t.id().0;
        assert_eq!(
            table.route(id, reply(id, "127.0.0.2:6969")),
            TrackerRoute::Unmatched
        );
        assert_eq!(
            table.route(id ^ 1, reply(id ^ 1, "127.0.0.1:6969")),
            TrackerRoute::Unmatched
        );
        assert_eq!(table.pending(), 1);
    }

    #[test]
    fn v4_mapped_source_matches_v4_registration() {
        let table = TrackerTable::new(8);
        let t = table.register(addr("127.0.0.1:6969")).unwrap();
        let id = t.id().0;
        assert_eq!(
            table.route(id, reply(id, "[::ffff:127.0.0.1]:6969")),
            TrackerRoute::Delivered
        );
    }

    #[test]
    fn table_is_bounded_and_drop_frees_ids() {
        let table = TrackerTable::new(2);
        let a = table.register(addr("127.0.0.1:1")).unwrap();
        let _b = table.register(addr("127.0.0.1:2")).unwrap();
        assert!(matches!(
            table.register(addr("127.0.0.1:3")),
            Err(NetError::TrackerTableFull { limit: 2 })
        ));
        drop(a);
        assert_eq!(table.pending(), 1);
        table.register(addr("127.0.0.1:3")).unwrap();
    }

    #[test]
    fn a_second_reply_to_one_id_is_unmatched() {
        let table = TrackerTable::new(8);
        let t = table.register(addr("127.0.0.1:6969")).unwrap();
        let id = t.id().0;
        assert_eq!(
            table.route(id, reply(id, "127.0.0.1:6969")),
            TrackerRoute::Delivered
        );
        assert_eq!(
            table.route(id, reply(id, "127.0.0.1:6969")),
            TrackerRoute::Unmatched
        );
    }
}
