//! Magnet links: parsing never panics, and what parses renders back to a link that parses to
//! the same info-hash.
#![no_main]
use burrow_swarm::metainfo::Magnet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(m) = Magnet::parse(s) {
            let again = Magnet::parse(&m.to_uri()).expect("rendered link parses");
            assert_eq!(again.info_hash, m.info_hash);
        }
    }
});
