//! Memory per cached node, measured: a million-node cache filled with random nodes, resident
//! memory read from /proc before and after. One test per process, so nothing else moves RSS.

use std::net::{Ipv4Addr, SocketAddr};

use burrow_dht::router::cache::NodeCache;
use burrow_dht::NodeId;
use rand::{Rng, SeedableRng};

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn a_full_million_node_cache_costs_about_32_bytes_per_node() {
    let start = resident_bytes();
    let mut cache = NodeCache::new(1_000_000, false, false);
    let empty = resident_bytes();
    // Allocated but untouched: the kernel has not handed out the pages yet.
    assert!(
        empty - start < 1 << 20,
        "an empty cache is resident: {}",
        empty - start
    );

    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let capacity = cache.capacity();
    for i in 0..3 * capacity as u32 {
        let addr = SocketAddr::from((
            Ipv4Addr::from(rng.random::<u32>() | 1),
            (i % 60000) as u16 + 1,
        ));
        cache.insert(NodeId(rng.random()), addr, 0, 600);
        if cache.len() == capacity {
            break;
        }
    }
    let full = resident_bytes();
    let per_node = (full - start) as f64 / cache.len() as f64;
    println!(
        "{} nodes in {} slots: {:.1} bytes resident per node ({} allocated)",
        cache.len(),
        capacity,
        per_node,
        cache.allocated_bytes()
    );
    assert!(
        cache.len() as f64 > 0.99 * capacity as f64,
        "{}",
        cache.len()
    );
    assert!(per_node <= 40.0, "{per_node:.1} bytes per node");
}
