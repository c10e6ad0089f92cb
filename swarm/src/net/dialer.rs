//! Choosing the transport for an outgoing peer connection.
//!
//! Policy (a staggered race, in the manner of "happy eyeballs", RFC 8305):
//! 1. The first transport is the one that last worked for this peer address, or TCP for a
//!    peer we have not reached before. TCP goes first because the kernel runs it more
//!    cheaply than µTP runs in user space, and most reachable peers accept it.
//! 2. If the first attempt has not succeeded after [`DialPolicy::fallback_delay`], or fails
//!    sooner, the other transport is tried as well; the first to connect wins and the other
//!    attempt is dropped. This covers peers that only accept µTP (TCP firewalled, or a NAT
//!    mapping that exists for UDP only) without waiting out a silent TCP handshake.
//! 3. The winner is remembered per peer address in a bounded LRU
//!    ([`DIAL_MEMORY_CAPACITY`]); a peer for which every transport failed is forgotten.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::udp::canonical;
use super::{NetError, PeerStream, TcpDialer, Transport, UtpSocket};

/// Default number of peer addresses whose working transport is remembered.
pub const DIAL_MEMORY_CAPACITY: usize = 4096;

/// Default head start of the first transport before the second is tried in parallel.
pub const DIAL_FALLBACK_DELAY: Duration = Duration::from_millis(300);

/// How the [`Dialer`] picks transports.
#[derive(Debug, Clone)]
pub struct DialPolicy {
    /// Transport tried first for a peer with nothing remembered.
    pub first: Transport,
    /// Head start of the first transport before the other one is tried too.
    pub fallback_delay: Duration,
    /// Whether to try the other transport at all.
    pub fallback: bool,
    /// How many peer addresses to remember the working transport of.
    pub memory_capacity: usize,
}

impl Default for DialPolicy {
    fn default() -> Self {
        Self {
            first: Transport::Tcp,
            fallback_delay: DIAL_FALLBACK_DELAY,
            fallback: true,
            memory_capacity: DIAL_MEMORY_CAPACITY,
        }
    }
}

/// Counters of dial outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DialCounters {
    /// Dials won by TCP.
    pub tcp: u64,
    /// Dials won by µTP.
    pub utp: u64,
    /// Dials where every transport failed.
    pub failed: u64,
}

/// Dials peers over TCP or µTP by [`DialPolicy`]. Cloning is cheap and shares the memory.
#[derive(Clone)]
pub struct Dialer {
    inner: Arc<Inner>,
}

struct Inner {
    tcp: TcpDialer,
    utp: Option<UtpSocket>,
    policy: DialPolicy,
    memory: Mutex<Lru>,
    tcp_wins: AtomicU64,
    utp_wins: AtomicU64,
    failures: AtomicU64,
}

impl Dialer {
    /// A dialer over `tcp` and, if given, `utp`.
    pub fn new(tcp: TcpDialer, utp: Option<UtpSocket>, policy: DialPolicy) -> Self {
        let memory = Mutex::new(Lru::new(policy.memory_capacity));
        Self {
            inner: Arc::new(Inner {
                tcp,
                utp,
                policy,
                memory,
                tcp_wins: AtomicU64::new(0),
                utp_wins: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            }),
        }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.inner
            .memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The transport that last worked for `addr`, if remembered.
    pub fn remembered(&self, addr: SocketAddr) -> Option<Transport> {
        self.memory().peek(&canonical(addr))
    }

    /// Connects to `addr` by the policy; the error lists every transport's failure.
    pub async fn dial(&self, addr: SocketAddr) -> Result<PeerStream, NetError> {
        let addr = canonical(addr);
        let policy = &self.inner.policy;
        let first = self.memory().get(&addr).unwrap_or(policy.first);
        let second = Some(other(first)).filter(|t| policy.fallback && self.supports(*t));
        let first = if self.supports(first) {
            first
        } else {
            // Only TCP exists when no µTP socket was given.
            Transport::Tcp
        };
        let result = match second {
            Some(second) if second != first => self.race(addr, first, second).await,
            _ => self.attempt(addr, first).await.map_err(|e| vec![e]),
        };
        match result {
            Ok(stream) => {
                let transport = stream.transport();
                let wins = match transport {
                    Transport::Tcp => &self.inner.tcp_wins,
                    Transport::Utp => &self.inner.utp_wins,
                };
                wins.fetch_add(1, Ordering::Relaxed);
                self.memory().insert(addr, transport);
                Ok(stream)
            }
            Err(errors) => {
                self.inner.failures.fetch_add(1, Ordering::Relaxed);
                self.memory().remove(&addr);
                Err(NetError::DialFailed { addr, errors })
            }
        }
    }

    fn supports(&self, t: Transport) -> bool {
        match t {
            Transport::Tcp => true,
            Transport::Utp => self.inner.utp.is_some(),
        }
    }

    async fn attempt(&self, addr: SocketAddr, t: Transport) -> Result<PeerStream, NetError> {
        match (t, &self.inner.utp) {
            (Transport::Tcp, _) => self.inner.tcp.connect(addr).await.map(PeerStream::Tcp),
            (Transport::Utp, Some(utp)) => utp.connect(addr).await.map(PeerStream::Utp),
            (Transport::Utp, None) => unreachable!("supports() excludes µTP without a socket"),
        }
    }

    /// Runs `first`, starts `second` after the head start or when `first` fails, and returns
    /// the first success (or both errors, in the order the attempts started).
    async fn race(
        &self,
        addr: SocketAddr,
        first: Transport,
        second: Transport,
    ) -> Result<PeerStream, Vec<NetError>> {
        let mut a = pin!(self.attempt(addr, first));
        let head_start = tokio::time::sleep(self.inner.policy.fallback_delay);
        let early = tokio::select! {
            r = &mut a => Some(r),
            () = head_start => None,
        };
        match early {
            Some(Ok(stream)) => return Ok(stream),
            Some(Err(e)) => {
                return self.attempt(addr, second).await.map_err(|e2| vec![e, e2]);
            }
            None => {}
        }
        let mut b = pin!(self.attempt(addr, second));
        let (mut a_err, mut b_err) = (None, None);
        loop {
            tokio::select! {
                r = &mut a, if a_err.is_none() => match r {
                    Ok(stream) => return Ok(stream),
                    Err(e) => a_err = Some(e),
                },
                r = &mut b, if b_err.is_none() => match r {
                    Ok(stream) => return Ok(stream),
                    Err(e) => b_err = Some(e),
                },
            }
            if let (Some(_), Some(_)) = (&a_err, &b_err) {
                return Err([a_err, b_err].into_iter().flatten().collect());
            }
        }
    }

    /// A snapshot of the dial counters.
    pub fn counters(&self) -> DialCounters {
        DialCounters {
            tcp: self.inner.tcp_wins.load(Ordering::Relaxed),
            utp: self.inner.utp_wins.load(Ordering::Relaxed),
            failed: self.inner.failures.load(Ordering::Relaxed),
        }
    }

    /// The TCP dialer underneath.
    pub fn tcp(&self) -> &TcpDialer {
        &self.inner.tcp
    }

    /// The µTP socket underneath, if any.
    pub fn utp(&self) -> Option<&UtpSocket> {
        self.inner.utp.as_ref()
    }
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("policy", &self.inner.policy)
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

fn other(t: Transport) -> Transport {
    match t {
        Transport::Tcp => Transport::Utp,
        Transport::Utp => Transport::Tcp,
    }
}

/// A least-recently-used map from peer address to the transport that worked, bounded by
/// `capacity`.
struct Lru {
    capacity: usize,
    tick: u64,
    entries: HashMap<SocketAddr, (Transport, u64)>,
    by_age: BTreeMap<u64, SocketAddr>,
}

impl Lru {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            tick: 0,
            entries: HashMap::new(),
            by_age: BTreeMap::new(),
        }
    }

    fn peek(&self, addr: &SocketAddr) -> Option<Transport> {
        self.entries.get(addr).map(|(t, _)| *t)
    }

    fn get(&mut self, addr: &SocketAddr) -> Option<Transport> {
        let t = self.peek(addr)?;
        self.insert(*addr, t);
        Some(t)
    }

    fn insert(&mut self, addr: SocketAddr, t: Transport) {
        if self.capacity == 0 {
            return;
        }
        self.tick += 1;
        if let Some((_, age)) = self.entries.insert(addr, (t, self.tick)) {
            self.by_age.remove(&age);
        }
        self.by_age.insert(self.tick, addr);
        while self.entries.len() > self.capacity {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }

    fn remove(&mut self, addr: &SocketAddr) {
        if let Some((_, age)) = self.entries.remove(addr) {
            self.by_age.remove(&age);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn lru_is_bounded_and_evicts_least_recent() {
        let mut lru = Lru::new(3);
        for p in 1..=3 {
            lru.insert(addr(p), Transport::Tcp);
        }
        // Touch 1 so that 2 becomes the oldest.
        assert_eq!(lru.get(&addr(1)), Some(Transport::Tcp));
        lru.insert(addr(4), Transport::Utp);
        assert_eq!(lru.len(), 3);
        assert_eq!(lru.peek(&addr(2)), None);
        assert_eq!(lru.peek(&addr(1)), Some(Transport::Tcp));
        assert_eq!(lru.peek(&addr(4)), Some(Transport::Utp));
        for p in 10..1000 {
            lru.insert(addr(p), Transport::Tcp);
        }
        assert_eq!(lru.len(), 3);
        assert_eq!(lru.by_age.len(), 3);
    }

    #[test]
    fn lru_update_replaces_transport() {
        let mut lru = Lru::new(2);
        lru.insert(addr(1), Transport::Tcp);
        lru.insert(addr(1), Transport::Utp);
        assert_eq!(lru.len(), 1);
        assert_eq!(lru.by_age.len(), 1);
        assert_eq!(lru.peek(&addr(1)), Some(Transport::Utp));
        lru.remove(&addr(1));
        assert_eq!(lru.peek(&addr(1)), None);
        assert!(lru.by_age.is_empty());
    }
}
