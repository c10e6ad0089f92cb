//! BEP 10 extended messages: the handshake, ut_metadata, ut_pex and ut_holepunch decoders.
//! None may panic; what decodes re-encodes to something that decodes to the same value.
#![no_main]
use burrow_swarm::wire::{ExtHandshake, HolepunchMsg, MetadataMsg, PexMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = ExtHandshake::decode(data) {
        assert_eq!(ExtHandshake::decode(&h.encode()).expect("re-encoded handshake"), h);
    }
    let bytes = bytes::Bytes::copy_from_slice(data);
    if let Ok(m) = MetadataMsg::decode(&bytes) {
        assert_eq!(MetadataMsg::decode(&bytes::Bytes::from(m.encode())).expect("re-encoded metadata message"), m);
    }
    if let Ok(p) = PexMessage::decode(data) {
        assert_eq!(PexMessage::decode(&p.encode()).expect("re-encoded pex"), p);
    }
    if let Ok(h) = HolepunchMsg::decode(data) {
        assert_eq!(HolepunchMsg::decode(&h.encode()).expect("re-encoded holepunch"), h);
    }
});
