//! One input, three uses of the MSE handshake cores, shared by the cargo-fuzz target
//! (fuzz/fuzz_targets/mse.rs) and the stable mutation test: the first byte picks
//!   0 — the bytes as a dialling peer's stream into a responder,
//!   1 — the bytes as a listening peer's stream into an initiator,
//!   2 — the bytes as a scenario: pads, policies, initial payload, chunk sizes and at most one
//!       corrupted byte in flight, with both roles run against each other.
//! Properties: no panic, never more than `MAX_BUFFERED` bytes held, output within the spec's
//! sizes, and an untouched exchange always succeeds with the payload intact.

use burrow_swarm::types::InfoHash;
use burrow_swarm::wire::mse::{
    req2_hash, Crypto, EncryptionPolicy, Initiator, LocalParams, Responder, KEY_LEN, MAX_BUFFERED,
    MAX_PAD_LEN,
};

const IH: InfoHash = InfoHash([0x5e; 20]);

fn known(h: &[u8; 20]) -> Option<InfoHash> {
    (req2_hash(&IH) == *h).then_some(IH)
}

/// Reads parameters off the input; zeros once it runs out.
struct Params<'a>(&'a [u8]);

impl Params<'_> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self
            .0
            .split_first()
            .map(|(b, r)| (*b, r))
            .unwrap_or((0, &[]));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }
    fn pad(&mut self) -> Vec<u8> {
        vec![0xa5; self.u16() as usize % (MAX_PAD_LEN + 1)]
    }
    fn policy(&mut self) -> EncryptionPolicy {
        [
            EncryptionPolicy::PlaintextPreferred,
            EncryptionPolicy::Rc4Preferred,
            EncryptionPolicy::Rc4Required,
        ][self.byte() as usize % 3]
    }
}

/// Runs one input.
pub fn exercise(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let mut b = Responder::new(
                EncryptionPolicy::Rc4Preferred,
                LocalParams::new([2; 20], vec![1; 40], vec![]).unwrap(),
            );
            for chunk in rest.chunks(61) {
                let r = b.feed(chunk, &known);
                assert!(b.buffered() <= MAX_BUFFERED);
                assert!(b.take_output().len() <= KEY_LEN + MAX_PAD_LEN);
                if r.is_err() {
                    break;
                }
            }
        }
        1 => {
            let mut a = Initiator::new(
                IH,
                EncryptionPolicy::Rc4Preferred,
                b"",
                LocalParams::new([1; 20], vec![], vec![]).unwrap(),
            )
            .unwrap();
            a.take_output();
            for chunk in rest.chunks(61) {
                let r = a.feed(chunk);
                assert!(a.buffered() <= MAX_BUFFERED);
                assert!(a.take_output().len() <= 40 + 16 + MAX_PAD_LEN);
                if r.is_err() {
                    break;
                }
            }
        }
        _ => scenario(Params(rest)),
    }
}

fn scenario(mut p: Params) {
    let (pad_a, pad_b, pad_c, pad_d) = (p.pad(), p.pad(), p.pad(), p.pad());
    let (pa, pb) = (p.policy(), p.policy());
    let ia: Vec<u8> = (0..p.byte()).collect();
    let chunk_a = 1 + p.byte() as usize % 200;
    let chunk_b = 1 + p.byte() as usize % 200;
    // At most one flipped byte: which direction, where, and how.
    let flip = p.byte();
    let flip_at = p.u16() as usize;
    let flip_xor = p.byte();
    let corrupt = flip & 1 == 1 && flip_xor != 0;

    let mut a = Initiator::new(
        IH,
        pa,
        &ia,
        LocalParams::new([1; 20], pad_a, pad_c).unwrap(),
    )
    .unwrap();
    let mut b = Responder::new(pb, LocalParams::new([2; 20], pad_b, pad_d).unwrap());
    let (mut to_b, mut to_a) = (Vec::new(), Vec::new());
    let (mut sent_a, mut sent_b) = (0usize, 0usize);
    let (mut failed_a, mut failed_b) = (false, false);
    loop {
        for (out, q, sent, dir) in [
            (a.take_output(), &mut to_b, &mut sent_a, 0),
            (b.take_output(), &mut to_a, &mut sent_b, 2),
        ] {
            let start = q.len();
            q.extend_from_slice(&out);
            if corrupt && flip & 2 == dir && flip_at >= *sent && flip_at < *sent + out.len() {
                q[start + flip_at - *sent] ^= flip_xor;
            }
            *sent += out.len();
        }
        let mut moved = false;
        if !failed_b && !b.is_done() && !to_b.is_empty() {
            let k = chunk_b.min(to_b.len());
            match b.feed(&to_b[..k], &known) {
                Ok(n) => {
                    moved |= n > 0;
                    to_b.drain(..n);
                }
                Err(_) => failed_b = true,
            }
        }
        if !failed_a && !a.is_done() && !to_a.is_empty() {
            let k = chunk_a.min(to_a.len());
            match a.feed(&to_a[..k]) {
                Ok(n) => {
                    moved |= n > 0;
                    to_a.drain(..n);
                }
                Err(_) => failed_a = true,
            }
        }
        assert!(a.buffered() <= MAX_BUFFERED && b.buffered() <= MAX_BUFFERED);
        // Each feed of a core that is neither done nor failed takes at least one byte, and
        // fresh output is queued at the top of the loop: no movement means nobody can move.
        if !moved {
            break;
        }
    }
    if corrupt {
        return;
    }
    assert!(
        !failed_a && !failed_b && a.is_done() && b.is_done(),
        "an untouched exchange must succeed"
    );
    let (mut ea, mut eb) = (a.into_established().unwrap(), b.into_established().unwrap());
    assert_eq!(ea.crypto, eb.crypto);
    assert_eq!(eb.info_hash, IH);
    if pa == EncryptionPolicy::Rc4Required || pb == EncryptionPolicy::Rc4Required {
        assert_eq!(ea.crypto, Crypto::Rc4);
    }
    // B holds A's IA; A then sends more, and B answers.
    let mut later = b"payload".to_vec();
    ea.cipher.encrypt(&mut later);
    to_b.extend_from_slice(&later);
    eb.cipher.decrypt(&mut to_b);
    assert_eq!(to_b, [&ia[..], b"payload"].concat());
    let mut reply = b"reply".to_vec();
    eb.cipher.encrypt(&mut reply);
    ea.cipher.decrypt(&mut reply);
    assert_eq!(reply, b"reply");
}
