//! An in-memory network of nodes on a fake clock: datagrams are delivered after a fixed latency,
//! timers fire when the clock reaches them, and the clock jumps straight to the next thing that
//! happens, so minutes of protocol time take milliseconds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::node::{Config, Event, Node};

/// One-way latency of every datagram.
pub const LATENCY: Duration = Duration::from_millis(20);

pub struct Sim {
    pub now: Instant,
    pub nodes: Vec<Node>,
    /// Each node's IPv4 and IPv6 address.
    pub addrs: Vec<[SocketAddr; 2]>,
    pub by_addr: HashMap<SocketAddr, usize>,
    /// Events each node has emitted, in order.
    pub events: Vec<Vec<Event>>,
    /// Nodes whose traffic is dropped both ways.
    pub dead: HashSet<usize>,
    in_flight: BTreeMap<(Instant, u64), (SocketAddr, SocketAddr, Vec<u8>)>,
    seq: u64,
    /// Datagrams delivered so far.
    pub delivered: u64,
}

pub fn v4(i: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 1, (i >> 8) as u8, (i & 0xff) as u8)),
        6881,
    )
}

pub fn v6(i: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 1, i as u16)),
        6881,
    )
}

pub fn seed(i: usize) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&(i as u64).to_le_bytes());
    s[31] = 0x5a;
    s
}

impl Sim {
    /// `n` nodes configured by `config(i)`.
    pub fn new(n: usize, config: impl Fn(usize) -> Config) -> Sim {
        let now = Instant::now();
        let mut sim = Sim {
            now,
            nodes: Vec::new(),
            addrs: Vec::new(),
            by_addr: HashMap::new(),
            events: Vec::new(),
            dead: HashSet::new(),
            in_flight: BTreeMap::new(),
            seq: 0,
            delivered: 0,
        };
        for i in 0..n {
            sim.add(Node::new(config(i), now, seed(i)));
        }
        sim
    }

    /// Adds a node; returns its index.
    pub fn add(&mut self, node: Node) -> usize {
        let i = self.nodes.len();
        self.nodes.push(node);
        self.addrs.push([v4(i), v6(i)]);
        self.by_addr.insert(v4(i), i);
        self.by_addr.insert(v6(i), i);
        self.events.push(Vec::new());
        i
    }

    fn collect(&mut self, i: usize) {
        let from_pair = self.addrs[i];
        while let Some(t) = self.nodes[i].poll_transmit() {
            let from = from_pair[usize::from(t.to.is_ipv6())];
            self.seq += 1;
            self.in_flight
                .insert((self.now + LATENCY, self.seq), (from, t.to, t.data));
        }
        while let Some(e) = self.nodes[i].poll_event() {
            self.events[i].push(e);
        }
    }

    /// Runs the network for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end, |_| false);
    }

    /// Runs until `done` holds (checked after each step) or `deadline`; returns whether `done`.
    pub fn run_until(&mut self, deadline: Instant, mut done: impl FnMut(&Sim) -> bool) -> bool {
        for i in 0..self.nodes.len() {
            self.collect(i);
        }
        loop {
            if done(self) {
                return true;
            }
            let next_msg = self.in_flight.keys().next().map(|k| k.0);
            let next_timer = self.nodes.iter().filter_map(Node::poll_timeout).min();
            let next = match (next_msg, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(deadline),
            };
            if next > deadline {
                self.now = deadline;
                return done(self);
            }
            self.now = self.now.max(next);
            while let Some(entry) = self.in_flight.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let (from, to, data) = entry.remove();
                let (Some(&src), Some(&dst)) = (self.by_addr.get(&from), self.by_addr.get(&to))
                else {
                    continue;
                };
                if self.dead.contains(&src) || self.dead.contains(&dst) {
                    continue;
                }
                self.delivered += 1;
                self.nodes[dst].handle_datagram(self.now, from, &data);
                self.collect(dst);
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now) {
                    self.nodes[i].handle_timeout(self.now);
                    self.collect(i);
                }
            }
        }
    }

    /// Bootstraps every node but the first through the first (over IPv4, and IPv6 too if
    /// `dual_stack`), a few at a time, and lets the network settle.
    pub fn join_all(&mut self, dual_stack: bool) {
        let routers: &[SocketAddr] = if dual_stack {
            &self.addrs[0]
        } else {
            &self.addrs[0][..1]
        };
        let routers = routers.to_vec();
        for i in 1..self.nodes.len() {
            let now = self.now;
            self.nodes[i].bootstrap(now, &routers);
            self.collect(i);
            if i % 10 == 0 {
                self.run_for(Duration::from_millis(500));
            }
        }
        self.run_for(Duration::from_secs(60));
    }

    /// The lookup-done event for `lookup` emitted by node `i`, if any.
    pub fn done_event(&self, i: usize, lookup: crate::LookupId) -> Option<&crate::LookupDone> {
        self.events[i].iter().find_map(|e| match e {
            Event::LookupDone(d) if d.lookup == lookup => Some(d),
            _ => None,
        })
    }

    /// All peers node `i` reported for `lookup`.
    pub fn peers_found(&self, i: usize, lookup: crate::LookupId) -> Vec<SocketAddr> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::Peers {
                    lookup: l, peers, ..
                } if *l == lookup => Some(peers.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }
}
