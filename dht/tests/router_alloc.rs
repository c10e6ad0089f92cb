//! The router's query path allocates nothing once warmed up: a counting global allocator
//! watches a stream of mixed queries (answered, rate-limited and malformed).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use burrow_dht::krpc::{write_find_node, write_get_peers, write_ping, Want};
use burrow_dht::rate_limit::RateLimit;
use burrow_dht::router::{Router, RouterConfig};
use burrow_dht::{Config, NodeId};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn answering_queries_does_not_allocate() {
    let config = RouterConfig {
        node: Config {
            one_node_per_ip: false,
            ..Config::default()
        },
        cache_size: 4096,
        cache_size_v6: 1024,
        rate_limit: Some(RateLimit {
            per_second: 1000,
            burst: 1000,
        }),
        ..RouterConfig::default()
    };
    let mut now = Instant::now();
    let mut router = Router::new(config, now, [3; 32]);

    // Some nodes in the cache: answer the verification queries the router sends to queriers.
    let mut reply = Vec::new();
    let mut q = Vec::new();
    for i in 0..200u32 {
        let from = SocketAddr::from(([10, 9, (i >> 8) as u8, i as u8], 7000));
        let id = NodeId([(i as u8).wrapping_mul(59); 20]);
        q.clear();
        write_ping(&mut q, b"pp", &id, false);
        router.handle_datagram(now, from, &q, &mut reply);
    }
    now += Duration::from_secs(1);
    router.handle_timeout(now);
    while let Some(t) = router.poll_transmit() {
        let msg = burrow_dht::krpc::Message::decode(&t.data).unwrap();
        let i = u32::from(
            t.to.ip()
                .to_string()
                .rsplit('.')
                .next()
                .unwrap()
                .parse::<u8>()
                .unwrap(),
        );
        let id = NodeId([(i as u8).wrapping_mul(59); 20]);
        let mut r = Vec::new();
        burrow_dht::krpc::write_response(&mut r, msg.tid, &id, &Default::default());
        router.handle_datagram(now, t.to, &r, &mut reply);
    }
    assert!(
        router.cache(false).len() >= 150,
        "{}",
        router.cache(false).len()
    );

    // The query stream: every kind the fast path handles, from many sources.
    let both = Some(Want { n4: true, n6: true });
    let mut queries: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    for i in 0..64u32 {
        let from = SocketAddr::from(([10, 20, 0, i as u8], 6000 + i as u16));
        let from6: SocketAddr = format!("[fd00::{i:x}]:6000").parse().unwrap();
        let id = NodeId([i as u8; 20]);
        let mut a = Vec::new();
        write_find_node(&mut a, b"fn", &id, &[i as u8; 20], None, false);
        let mut b = Vec::new();
        write_get_peers(&mut b, b"gp", &id, &[!(i as u8); 20], both, false);
        let mut c = Vec::new();
        write_ping(&mut c, b"pi", &id, false);
        queries.push((from, a));
        queries.push((from6, b));
        queries.push((from, c));
        queries.push((from, b"d1:ad2:id4:abcde".to_vec()));
    }
    // Warm up: reply buffers grow to size, candidates are queued once.
    for (from, q) in &queries {
        router.handle_datagram(now, *from, q, &mut reply);
    }
    let probe = allocations();
    drop(std::hint::black_box(vec![0u8; 64]));
    assert_eq!(allocations(), probe + 1, "the counter sees allocations");
    let before = allocations();
    let mut answered = 0;
    let mut limited = 0;
    for round in 0..50 {
        for (from, q) in &queries {
            if router.handle_datagram(now, *from, q, &mut reply) {
                answered += 1;
            }
        }
        if round == 40 {
            limited = router.stats().dropped_rate_limited;
        }
    }
    let after = allocations();
    let stats = router.stats();
    assert!(answered > 5000, "{answered}");
    assert!(
        stats.dropped_rate_limited > limited || stats.dropped_rate_limited > 0,
        "{stats:?}"
    );
    assert_eq!(
        after - before,
        0,
        "allocations while answering {answered} queries"
    );
}
