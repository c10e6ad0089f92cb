//! The two roles against each other, and against hand-made steps that break one rule each.

use super::*;
use crate::types::InfoHash;

const IH: InfoHash = InfoHash([0x11; 20]);
const OTHER: InfoHash = InfoHash([0x22; 20]);

fn known(h: &[u8; 20]) -> Option<InfoHash> {
    [IH, OTHER].into_iter().find(|ih| req2_hash(ih) == *h)
}

fn params(seed: u8, pad: usize, pad2: usize) -> LocalParams {
    LocalParams::new([seed; 20], vec![seed; pad], vec![seed ^ 0xff; pad2]).unwrap()
}

/// Bytes in flight and what each side read past its handshake.
struct Wire {
    to_b: Vec<u8>,
    to_a: Vec<u8>,
}

/// Runs both sides until neither moves, delivering at most `chunk` bytes per feed. Returns
/// each side's error, if any; leftovers stay in `wire`.
fn pump(
    a: &mut Initiator,
    b: &mut Responder,
    chunk: usize,
    wire: &mut Wire,
) -> (Option<MseError>, Option<MseError>) {
    let (mut ea, mut eb) = (None, None);
    loop {
        let mut moved = false;
        wire.to_b.extend(a.take_output());
        wire.to_a.extend(b.take_output());
        if eb.is_none() && !b.is_done() && !wire.to_b.is_empty() {
            let k = chunk.min(wire.to_b.len());
            match b.feed(&wire.to_b[..k], &known) {
                Ok(n) => {
                    moved |= n > 0;
                    wire.to_b.drain(..n);
                }
                Err(e) => eb = Some(e),
            }
            assert!(b.buffered() <= MAX_BUFFERED);
        }
        if ea.is_none() && !a.is_done() && !wire.to_a.is_empty() {
            let k = chunk.min(wire.to_a.len());
            match a.feed(&wire.to_a[..k]) {
                Ok(n) => {
                    moved |= n > 0;
                    wire.to_a.drain(..n);
                }
                Err(e) => ea = Some(e),
            }
            assert!(a.buffered() <= MAX_BUFFERED);
        }
        if !moved {
            wire.to_b.extend(a.take_output());
            wire.to_a.extend(b.take_output());
            return (ea, eb);
        }
    }
}

fn handshake(
    pa: EncryptionPolicy,
    pb: EncryptionPolicy,
    pads: (usize, usize),
    ia: &[u8],
    chunk: usize,
) -> (Established, Established, Wire) {
    let mut a = Initiator::new(IH, pa, ia, params(1, pads.0, pads.1)).unwrap();
    let mut b = Responder::new(pb, params(2, pads.0, pads.1));
    let mut wire = Wire {
        to_b: Vec::new(),
        to_a: Vec::new(),
    };
    let (ea, eb) = pump(&mut a, &mut b, chunk, &mut wire);
    assert!(ea.is_none() && eb.is_none(), "{ea:?} {eb:?}");
    assert_eq!((a.phase(), b.phase()), (Phase::Done, Phase::Done));
    (
        a.into_established().unwrap(),
        b.into_established().unwrap(),
        wire,
    )
}

/// After the handshake: B reads IA then more from A; A reads what B sends.
fn check_payload(mut ea: Established, mut eb: Established, mut wire: Wire, ia: &[u8]) {
    let mut later = b"after the handshake".to_vec();
    ea.cipher.encrypt(&mut later);
    let raw_from_a = [std::mem::take(&mut wire.to_b), later].concat();
    let mut got = raw_from_a.clone();
    // Decrypting in uneven pieces must not matter.
    let third = got.len() / 3;
    let (x, y) = got.split_at_mut(third);
    eb.cipher.decrypt(x);
    eb.cipher.decrypt(y);
    assert_eq!(got, [ia, b"after the handshake"].concat());
    assert_eq!(eb.initial_payload_len, ia.len());
    let plain_tail = raw_from_a.ends_with(b"after the handshake");
    assert_eq!(plain_tail, ea.crypto == Crypto::Plaintext);
    if !ia.is_empty() {
        assert!(
            !raw_from_a.starts_with(ia),
            "IA travels encrypted whatever the choice"
        );
    }

    let mut reply = b"reply from B".to_vec();
    eb.cipher.encrypt(&mut reply);
    assert_eq!(reply == b"reply from B", eb.crypto == Crypto::Plaintext);
    assert!(wire.to_a.is_empty());
    ea.cipher.decrypt(&mut reply);
    assert_eq!(reply, b"reply from B");
}

#[test]
fn both_roles_agree_on_every_policy_pair() {
    use EncryptionPolicy::*;
    let bt = crate::wire::Handshake::ours(IH, crate::types::PeerId([7; 20])).encode();
    for (pa, pb, want) in [
        (Rc4Preferred, Rc4Preferred, Crypto::Rc4),
        (Rc4Preferred, PlaintextPreferred, Crypto::Plaintext),
        (PlaintextPreferred, Rc4Preferred, Crypto::Rc4),
        (Rc4Required, PlaintextPreferred, Crypto::Rc4),
        (PlaintextPreferred, Rc4Required, Crypto::Rc4),
        (Rc4Required, Rc4Required, Crypto::Rc4),
    ] {
        for ia in [&[][..], &bt[..]] {
            let (ea, eb, wire) = handshake(pa, pb, (17, 3), ia, 1000);
            assert_eq!((ea.crypto, eb.crypto), (want, want), "{pa:?} {pb:?}");
            assert_eq!((ea.info_hash, eb.info_hash), (IH, IH));
            check_payload(ea, eb, wire, ia);
        }
    }
}

#[test]
fn maximal_and_empty_pads_in_any_chunking() {
    for pads in [
        (MAX_PAD_LEN, MAX_PAD_LEN),
        (0, 0),
        (MAX_PAD_LEN, 0),
        (1, MAX_PAD_LEN),
    ] {
        for chunk in [1, 7, 20, 97, 4096] {
            for pb in [
                EncryptionPolicy::Rc4Preferred,
                EncryptionPolicy::PlaintextPreferred,
            ] {
                let (ea, eb, wire) =
                    handshake(EncryptionPolicy::Rc4Preferred, pb, pads, b"IA bytes", chunk);
                check_payload(ea, eb, wire, b"IA bytes");
            }
        }
    }
}

#[test]
fn responder_picks_the_torrent_from_the_obfuscated_hash() {
    let mut a =
        Initiator::new(OTHER, EncryptionPolicy::Rc4Preferred, b"", params(3, 5, 0)).unwrap();
    let mut b = Responder::new(EncryptionPolicy::Rc4Preferred, params(4, 5, 0));
    let mut wire = Wire {
        to_b: Vec::new(),
        to_a: Vec::new(),
    };
    assert!(matches!(pump(&mut a, &mut b, 64, &mut wire), (None, None)));
    assert_eq!(b.into_established().unwrap().info_hash, OTHER);

    let mut a = Initiator::new(
        InfoHash([0x33; 20]),
        EncryptionPolicy::Rc4Preferred,
        b"",
        params(3, 5, 0),
    )
    .unwrap();
    let mut b = Responder::new(EncryptionPolicy::Rc4Preferred, params(4, 5, 0));
    let (ea, eb) = pump(
        &mut a,
        &mut b,
        64,
        &mut Wire {
            to_b: Vec::new(),
            to_a: Vec::new(),
        },
    );
    assert!(ea.is_none() && !a.is_done(), "A still waits");
    assert!(matches!(eb, Some(MseError::UnknownInfoHash)), "{eb:?}");
    assert!(matches!(b.feed(b"more", &known), Err(MseError::Failed)));
}

#[test]
fn truncated_handshakes_wait_without_error() {
    let mut a = Initiator::new(IH, EncryptionPolicy::Rc4Preferred, b"", params(1, 100, 0)).unwrap();
    let mut b = Responder::new(EncryptionPolicy::Rc4Preferred, params(2, 100, 0));
    let from_a = a.take_output();
    assert_eq!(from_a.len(), KEY_LEN + 100);
    assert_eq!(b.feed(&from_a[..95], &known).unwrap(), 95);
    assert_eq!(b.phase(), Phase::KeyExchange);
    assert!(b.take_output().is_empty());
    // The rest of the key and all of PadA: B scans padding for the sync point.
    assert_eq!(b.feed(&from_a[95..], &known).unwrap(), from_a.len() - 95);
    assert_eq!(b.phase(), Phase::Sync);
    let from_b = b.take_output();
    assert_eq!(from_b.len(), KEY_LEN + 100);
    assert_eq!(a.feed(&from_b[..KEY_LEN]).unwrap(), KEY_LEN);
    assert_eq!(a.phase(), Phase::Sync);
    let step3 = a.take_output();
    // Step 3 minus its last byte: B stops in the negotiation, nothing sent.
    assert_eq!(
        b.feed(&step3[..step3.len() - 1], &known).unwrap(),
        step3.len() - 1
    );
    assert_eq!(b.phase(), Phase::Negotiation);
    assert!(b.take_output().is_empty());
    assert_eq!(b.feed(&step3[step3.len() - 1..], &known).unwrap(), 1);
    assert!(b.is_done());
}

#[test]
fn degenerate_public_keys_are_refused() {
    let p = dh_p_bytes();
    for key in [[0u8; KEY_LEN], p, [0xff; KEY_LEN]] {
        let mut b = Responder::new(EncryptionPolicy::Rc4Preferred, params(2, 0, 0));
        assert!(matches!(b.feed(&key, &known), Err(MseError::BadPublicKey)));
        assert!(b.take_output().is_empty(), "no reply to a bad key");
        let mut a =
            Initiator::new(IH, EncryptionPolicy::Rc4Preferred, b"", params(1, 0, 0)).unwrap();
        assert!(matches!(a.feed(&key), Err(MseError::BadPublicKey)));
    }
}

fn dh_p_bytes() -> [u8; KEY_LEN] {
    // P = 2^768 - (2^768 mod P); the public key for exponent 768 over base 2 is 2^768 mod P.
    let mut e = [0u8; 20];
    e[18..].copy_from_slice(&768u16.to_be_bytes());
    let r = *KeyPair::from_private(e).public();
    let mut p = [0u8; KEY_LEN];
    let mut borrow = 0i16;
    for i in (0..KEY_LEN).rev() {
        let d = 0 - r[i] as i16 - borrow;
        p[i] = d.rem_euclid(256) as u8;
        borrow = (d < 0) as i16;
    }
    p
}

#[test]
fn junk_instead_of_a_sync_point_is_bounded() {
    // A valid key followed by endless junk: B gives up after the pad maximum.
    let peer = KeyPair::from_private([5; 20]);
    let mut b = Responder::new(EncryptionPolicy::Rc4Preferred, params(2, 0, 0));
    let mut stream = peer.public().to_vec();
    stream.extend(std::iter::repeat_n(0xAB, 100_000));
    let mut used = 0;
    let err = loop {
        match b.feed(&stream[used..used + 50], &known) {
            Ok(n) => used += n,
            Err(e) => break e,
        }
        assert!(b.buffered() <= MAX_BUFFERED);
    };
    assert!(matches!(err, MseError::SyncHashNotFound), "{err:?}");
    assert!(used <= KEY_LEN + MAX_BUFFERED);

    let mut a = Initiator::new(IH, EncryptionPolicy::Rc4Preferred, b"", params(1, 0, 0)).unwrap();
    assert!(matches!(a.feed(&stream), Err(MseError::VcNotFound)));
}

/// Step 3 as an initiator with secret `s` would send it, with every field chosen.
fn step3(
    s: &[u8; KEY_LEN],
    ih: &InfoHash,
    vc: [u8; 8],
    provide: u32,
    pad_len_field: u16,
    pad: &[u8],
    ia: &[u8],
) -> Vec<u8> {
    let mut out = sha1(&[b"req1", s]).to_vec();
    let req3 = sha1(&[b"req3", s]);
    out.extend(req2_hash(ih).iter().zip(req3).map(|(a, b)| a ^ b));
    let start = out.len();
    out.extend_from_slice(&vc);
    out.extend_from_slice(&provide.to_be_bytes());
    out.extend_from_slice(&pad_len_field.to_be_bytes());
    out.extend_from_slice(pad);
    out.extend_from_slice(&(ia.len() as u16).to_be_bytes());
    out.extend_from_slice(ia);
    let (mut send, _) = stream_keys(s, ih);
    send.apply(&mut out[start..]);
    out
}

/// Feeds a responder a key and a hand-made step 3.
fn responder_with(
    policy: EncryptionPolicy,
    make: impl Fn(&[u8; KEY_LEN]) -> Vec<u8>,
) -> (Responder, Result<usize, MseError>) {
    let peer = KeyPair::from_private([6; 20]);
    let mut b = Responder::new(policy, params(2, 9, 0));
    b.feed(peer.public(), &known).unwrap();
    let yb: [u8; KEY_LEN] = b.take_output()[..KEY_LEN].try_into().unwrap();
    let s = peer.shared_secret(&yb).unwrap();
    let r = b.feed(&make(&s), &known);
    (b, r)
}

#[test]
fn responder_rejects_each_broken_field() {
    use EncryptionPolicy::*;
    let (_, r) = responder_with(Rc4Preferred, |s| {
        step3(s, &IH, [0, 0, 0, 1, 0, 0, 0, 0], 3, 0, b"", b"")
    });
    assert!(matches!(r, Err(MseError::BadVc)), "{r:?}");
    let (_, r) = responder_with(Rc4Preferred, |s| {
        step3(s, &IH, [0; 8], 3, 513, &[0; 513], b"")
    });
    assert!(matches!(r, Err(MseError::PadTooLong(513))), "{r:?}");
    let (_, r) = responder_with(Rc4Required, |s| {
        step3(s, &IH, [0; 8], CRYPTO_PLAINTEXT, 0, b"", b"")
    });
    assert!(matches!(r, Err(MseError::NoCommonMethod(1))), "{r:?}");
    let (_, r) = responder_with(Rc4Preferred, |s| step3(s, &IH, [0; 8], 0x10, 0, b"", b""));
    assert!(matches!(r, Err(MseError::NoCommonMethod(0x10))), "{r:?}");
    // Unknown bits beside a known one are ignored; a plaintext-only offer is honoured.
    let (b, r) = responder_with(Rc4Preferred, |s| {
        step3(
            s,
            &IH,
            [0; 8],
            0xf0 | CRYPTO_PLAINTEXT,
            512,
            &[9; 512],
            b"x",
        )
    });
    assert!(r.is_ok());
    let e = b.into_established().unwrap();
    assert_eq!((e.crypto, e.initial_payload_len), (Crypto::Plaintext, 1));
}

/// Feeds an initiator B's key and a hand-made step 4.
fn initiator_with(
    policy: EncryptionPolicy,
    select: u32,
    pad_len_field: u16,
    pad: &[u8],
) -> Result<usize, MseError> {
    let peer = KeyPair::from_private([8; 20]);
    let mut a = Initiator::new(IH, policy, b"", params(1, 0, 0)).unwrap();
    let ya: [u8; KEY_LEN] = a.take_output()[..KEY_LEN].try_into().unwrap();
    a.feed(peer.public()).unwrap();
    let s = peer.shared_secret(&ya).unwrap();
    let (_, mut send) = stream_keys(&s, &IH);
    let mut step4 = VC.to_vec();
    step4.extend_from_slice(&select.to_be_bytes());
    step4.extend_from_slice(&pad_len_field.to_be_bytes());
    step4.extend_from_slice(pad);
    send.apply(&mut step4);
    let mut stream = vec![0x5a; 200]; // PadB
    stream.extend(step4);
    let r = a.feed(&stream);
    assert!(r.is_err() || a.is_done());
    r
}

#[test]
fn initiator_rejects_each_broken_choice() {
    use EncryptionPolicy::*;
    assert!(initiator_with(Rc4Preferred, CRYPTO_RC4, 0, b"").is_ok());
    assert!(initiator_with(Rc4Preferred, CRYPTO_PLAINTEXT, 512, &[1; 512]).is_ok());
    assert!(matches!(
        initiator_with(Rc4Required, CRYPTO_PLAINTEXT, 0, b""),
        Err(MseError::BadSelect(1))
    ));
    assert!(matches!(
        initiator_with(Rc4Preferred, 3, 0, b""),
        Err(MseError::BadSelect(3))
    ));
    assert!(matches!(
        initiator_with(Rc4Preferred, 0, 0, b""),
        Err(MseError::BadSelect(0))
    ));
    assert!(matches!(
        initiator_with(Rc4Preferred, CRYPTO_RC4, 513, &[0; 513]),
        Err(MseError::PadTooLong(513))
    ));
}

#[test]
fn a_flipped_byte_in_the_encrypted_part_fails_cleanly() {
    let mut a = Initiator::new(IH, EncryptionPolicy::Rc4Preferred, b"", params(1, 30, 0)).unwrap();
    let mut b = Responder::new(EncryptionPolicy::Rc4Preferred, params(2, 30, 0));
    let from_a = a.take_output();
    b.feed(&from_a, &known).unwrap();
    a.feed(&b.take_output()).unwrap();
    let mut step3 = a.take_output();
    step3[20] ^= 1; // first byte of the obfuscated info-hash
    assert!(matches!(
        b.feed(&step3, &known),
        Err(MseError::UnknownInfoHash)
    ));
}

#[test]
fn oversized_local_material_is_refused() {
    assert!(matches!(
        LocalParams::new([1; 20], vec![0; 513], vec![]),
        Err(MseError::PadTooLong(513))
    ));
    assert!(matches!(
        LocalParams::new([1; 20], vec![], vec![0; 513]),
        Err(MseError::PadTooLong(513))
    ));
    let ia = vec![0; MAX_INITIAL_PAYLOAD + 1];
    assert!(matches!(
        Initiator::new(IH, EncryptionPolicy::Rc4Preferred, &ia, params(1, 0, 0)),
        Err(MseError::InitialPayloadTooLong(_))
    ));
    let p = LocalParams::random();
    assert!(p.pad.len() <= MAX_PAD_LEN && p.negotiation_pad.is_empty());
}

#[test]
fn random_streams_never_panic_or_grow() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..300 {
        let len = (next() % 2000) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let mut b = Responder::new(EncryptionPolicy::Rc4Preferred, params(2, 0, 0));
        let mut a =
            Initiator::new(IH, EncryptionPolicy::Rc4Preferred, b"", params(1, 0, 0)).unwrap();
        for chunk in data.chunks(1 + (next() % 300) as usize) {
            let rb = b.feed(chunk, &known);
            let ra = a.feed(chunk);
            assert!(a.buffered() <= MAX_BUFFERED && b.buffered() <= MAX_BUFFERED);
            assert!(!a.is_done() && !b.is_done());
            if rb.is_err() && ra.is_err() {
                break;
            }
        }
        assert!(b.take_output().len() <= KEY_LEN);
    }
}
