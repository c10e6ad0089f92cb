//! KRPC decoding and query handling on arbitrary datagrams: nothing may panic, and whatever the
//! node sends back must itself be valid KRPC within the BEP 32 size limit.
//! Run from the repository root with the hand-written seeds as a second corpus:
//! `cargo +nightly fuzz run krpc fuzz/corpus/krpc fuzz/seeds/krpc`.

#![no_main]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Instant;

use burrow_dht::krpc::Message;
use burrow_dht::{Config, Node};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static NODE: RefCell<(Node, Instant)> = RefCell::new({
        let now = Instant::now();
        (Node::new(Config { rate_limit: None, ..Config::default() }, now, [3; 32]), now)
    });
}

fuzz_target!(|data: &[u8]| {
    let _ = Message::decode(data);
    NODE.with(|cell| {
        let (node, now) = &mut *cell.borrow_mut();
        // Alternate families by the first byte so both tables see traffic.
        let from: SocketAddr = if data.first().is_some_and(|b| b & 1 == 1) {
            "[2001:db8::7]:6881".parse().unwrap()
        } else {
            "192.0.2.7:6881".parse().unwrap()
        };
        node.handle_datagram(*now, from, data);
        while let Some(t) = node.poll_transmit() {
            assert!(t.data.len() <= 1024, "{} byte answer", t.data.len());
            Message::decode(&t.data).expect("the node sent invalid KRPC");
        }
        while node.poll_event().is_some() {}
    });
});
