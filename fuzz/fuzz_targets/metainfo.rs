//! .torrent files and bare info dictionaries: any input gives a value or a typed error, and
//! every accepted torrent keeps all its paths inside the download folder.
#![no_main]
use burrow_swarm::metainfo::{Info, Metainfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Metainfo::from_bytes(data) {
        for f in &m.info.files {
            assert!(f.path.components().all(|c| matches!(c, std::path::Component::Normal(_))));
        }
        assert_eq!(m.info.pieces.len() as u64, m.info.total_length.div_ceil(m.info.piece_length as u64));
    }
    let _ = Info::from_bytes(data);
});
