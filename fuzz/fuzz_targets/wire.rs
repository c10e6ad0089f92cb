//! The peer-wire decoder fed arbitrary streams: it returns messages or an error, never holds
//! more than one message's limit, and what it decodes re-encodes to the same bytes.
#![no_main]
use burrow_swarm::wire::{Message, MAX_MESSAGE_LEN};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.clone();
        match Message::decode(&mut buf) {
            Ok(Some(m)) => {
                let mut out = BytesMut::new();
                m.encode(&mut out);
                assert_eq!(&out[..], &before[..out.len()], "re-encoding differs for {m:?}");
            }
            Ok(None) => {
                assert!(buf.len() < 4 + MAX_MESSAGE_LEN + 4);
                break;
            }
            Err(_) => break,
        }
    }
});
