//! Message Stream Encryption (MSE, also "Protocol Encryption"), the obfuscated opening that
//! libtorrent, qBittorrent, Transmission, Vuze and µTorrent put in front of the BitTorrent
//! handshake. Sans-IO: the two roles are state machines fed received bytes, returning bytes to
//! send; the async driver lives in `peer::mse`.
//!
//! The exchange, A dialling B (S is the Diffie-Hellman secret, SKEY the info-hash):
//! 1. A→B: Ya, PadA
//! 2. B→A: Yb, PadB
//! 3. A→B: SHA1("req1", S), SHA1("req2", SKEY) ⊕ SHA1("req3", S),
//!    RC4A(VC, crypto_provide, len(PadC), PadC, len(IA)), RC4A(IA)
//! 4. B→A: RC4B(VC, crypto_select, len(PadD), PadD), then the payload
//!
//! RC4A/RC4B are keyed with SHA1("keyA"/"keyB", S, SKEY) after dropping 1024 keystream bytes;
//! VC is eight zero bytes; pads are at most 512 bytes. After step 4 the payload is RC4 in both
//! directions (select 0x02) or plaintext (0x01) — except IA, which is always RC4.

mod dh;
mod initiator;
mod input;
mod rc4;
mod responder;
#[cfg(test)]
mod tests;

pub use dh::{KeyPair, KEY_LEN, PRIVATE_KEY_LEN};
pub use initiator::Initiator;
pub use rc4::Rc4;
pub use responder::Responder;

use sha1::{Digest, Sha1};

use crate::types::InfoHash;

/// Longest PadA, PadB, PadC or PadD the spec allows.
pub const MAX_PAD_LEN: usize = 512;
/// Longest initial payload (IA): its length travels in two bytes. IA is never buffered, so
/// accepting the whole range costs no memory.
pub const MAX_INITIAL_PAYLOAD: usize = u16::MAX as usize;
/// Most bytes a handshake holds from the peer at once: the window in which a sync pattern
/// (20-byte `req1` hash or 8-byte encrypted VC) must appear after a maximal pad.
pub const MAX_BUFFERED: usize = MAX_PAD_LEN + 20;
/// Bit of `crypto_provide`/`crypto_select` for a plaintext payload.
pub const CRYPTO_PLAINTEXT: u32 = 0x01;
/// Bit of `crypto_provide`/`crypto_select` for an RC4 payload.
pub const CRYPTO_RC4: u32 = 0x02;

/// The verification constant.
const VC: [u8; 8] = [0; 8];

/// How the payload travels once the handshake is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crypto {
    /// Plaintext: only the handshake was obfuscated.
    Plaintext,
    /// RC4 in both directions.
    Rc4,
}

/// What we offer, accept and choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncryptionPolicy {
    /// Plain BitTorrent handshakes accepted; in MSE both methods offered, and plaintext chosen
    /// when the peer offers both (cheaper; libtorrent's default choice).
    PlaintextPreferred,
    /// Plain BitTorrent handshakes accepted; in MSE both methods offered, and RC4 chosen when
    /// the peer offers both.
    #[default]
    Rc4Preferred,
    /// Only MSE with an RC4 payload: plain handshakes refused, plaintext never offered.
    Rc4Required,
}

impl EncryptionPolicy {
    /// The `crypto_provide` bits we send when dialling.
    pub fn provide(self) -> u32 {
        match self {
            EncryptionPolicy::Rc4Required => CRYPTO_RC4,
            _ => CRYPTO_PLAINTEXT | CRYPTO_RC4,
        }
    }

    /// Whether a connection may start with a plain BitTorrent handshake.
    pub fn allows_plain_handshake(self) -> bool {
        self != EncryptionPolicy::Rc4Required
    }

    /// Our choice among the methods a dialling peer provides.
    pub fn select(self, provided: u32) -> Option<Crypto> {
        let ok = provided & self.provide();
        match (ok & CRYPTO_PLAINTEXT != 0, ok & CRYPTO_RC4 != 0) {
            (true, true) if self == EncryptionPolicy::PlaintextPreferred => Some(Crypto::Plaintext),
            (_, true) => Some(Crypto::Rc4),
            (true, false) => Some(Crypto::Plaintext),
            (false, false) => None,
        }
    }
}

impl Crypto {
    fn bits(self) -> u32 {
        match self {
            Crypto::Plaintext => CRYPTO_PLAINTEXT,
            Crypto::Rc4 => CRYPTO_RC4,
        }
    }
}

/// Why an MSE handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum MseError {
    /// Network error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection during the handshake.
    #[error("closed during the encryption handshake ({0:?})")]
    Eof(Phase),
    /// A phase of the handshake took too long.
    #[error("encryption handshake timed out ({0:?})")]
    Timeout(Phase),
    /// The peer's public key is 0, 1, P-1 or not below P.
    #[error("degenerate Diffie-Hellman public key")]
    BadPublicKey,
    /// No `req1` hash within PadA's maximum: not an MSE initiator, or a different secret.
    #[error("no synchronisation hash within {MAX_PAD_LEN} bytes of padding")]
    SyncHashNotFound,
    /// No encrypted verification constant within PadB's maximum.
    #[error("no verification constant within {MAX_PAD_LEN} bytes of padding")]
    VcNotFound,
    /// The obfuscated info-hash names no torrent we serve.
    #[error("the peer asked for a torrent we do not serve")]
    UnknownInfoHash,
    /// The verification constant decrypted to something other than zeros.
    #[error("bad verification constant")]
    BadVc,
    /// A pad length above [`MAX_PAD_LEN`].
    #[error("pad of {0} bytes exceeds {MAX_PAD_LEN}")]
    PadTooLong(usize),
    /// Our own initial payload exceeds [`MAX_INITIAL_PAYLOAD`].
    #[error("initial payload of {0} bytes exceeds {MAX_INITIAL_PAYLOAD}")]
    InitialPayloadTooLong(usize),
    /// The peer provides no method our policy accepts.
    #[error("no common encryption method (peer provides {0:#x})")]
    NoCommonMethod(u32),
    /// The peer selected something we did not provide, or more than one method.
    #[error("peer selected {0:#x}, which we did not provide")]
    BadSelect(u32),
    /// A plain BitTorrent handshake under a policy that requires encryption.
    #[error("plaintext connection refused by the encryption policy")]
    PlaintextRefused,
    /// The handshake already failed; it takes no more input.
    #[error("the encryption handshake already failed")]
    Failed,
}

/// The stages of a handshake, each with its own time limit in the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the peer's public key.
    KeyExchange,
    /// Scanning the peer's padding for the synchronisation point.
    Sync,
    /// Reading the method negotiation and its padding.
    Negotiation,
    /// Finished.
    Done,
}

/// The random material of one handshake: our key pair and our pads.
#[derive(Debug, Clone)]
pub struct LocalParams {
    keys: KeyPair,
    pad: Vec<u8>,
    negotiation_pad: Vec<u8>,
}

impl LocalParams {
    /// A fresh private key and a random PadA/PadB of 0–512 bytes; PadC/PadD empty (the spec
    /// reserves them for extensions).
    pub fn random() -> LocalParams {
        use rand::{Rng, RngCore};
        let mut rng = rand::rng();
        let mut private = [0u8; PRIVATE_KEY_LEN];
        rng.fill_bytes(&mut private);
        let mut pad = vec![0u8; rng.random_range(0..=MAX_PAD_LEN)];
        rng.fill_bytes(&mut pad);
        LocalParams {
            keys: KeyPair::from_private(private),
            pad,
            negotiation_pad: Vec::new(),
        }
    }

    /// Chosen material: the private key, PadA/PadB and PadC/PadD (for tests and fuzzing).
    pub fn new(
        private: [u8; PRIVATE_KEY_LEN],
        pad: Vec<u8>,
        negotiation_pad: Vec<u8>,
    ) -> Result<LocalParams, MseError> {
        for p in [&pad, &negotiation_pad] {
            if p.len() > MAX_PAD_LEN {
                return Err(MseError::PadTooLong(p.len()));
            }
        }
        Ok(LocalParams {
            keys: KeyPair::from_private(private),
            pad,
            negotiation_pad,
        })
    }
}

/// The outcome of a successful handshake.
#[derive(Debug)]
pub struct Established {
    /// The torrent the connection is for.
    pub info_hash: InfoHash,
    /// The method for the payload.
    pub crypto: Crypto,
    /// The payload transform for both directions.
    pub cipher: PayloadCipher,
    /// Bytes of initial payload (IA) a dialling peer announced (0 on the dialling side). They
    /// follow the handshake, RC4-encrypted even when plaintext was chosen; `cipher` knows.
    pub initial_payload_len: usize,
}

/// Encrypts what we send and decrypts what we receive once the handshake is done.
#[derive(Debug)]
pub struct PayloadCipher {
    send: Option<Rc4>,
    recv: Option<Rc4>,
    /// Received bytes still to run through `recv`; `None` is without end.
    recv_left: Option<usize>,
}

impl PayloadCipher {
    /// No transform at all (a plain BitTorrent connection).
    pub fn plaintext() -> PayloadCipher {
        PayloadCipher {
            send: None,
            recv: None,
            recv_left: None,
        }
    }

    /// The transform after negotiating `crypto`: RC4 both ways, or plaintext except for the
    /// first `recv_rc4_prefix` received bytes (the initial payload, always RC4).
    fn negotiated(crypto: Crypto, send: Rc4, recv: Rc4, recv_rc4_prefix: usize) -> PayloadCipher {
        match crypto {
            Crypto::Rc4 => PayloadCipher {
                send: Some(send),
                recv: Some(recv),
                recv_left: None,
            },
            Crypto::Plaintext if recv_rc4_prefix == 0 => PayloadCipher::plaintext(),
            Crypto::Plaintext => PayloadCipher {
                send: None,
                recv: Some(recv),
                recv_left: Some(recv_rc4_prefix),
            },
        }
    }

    /// Whether outgoing bytes are encrypted.
    pub fn encrypts(&self) -> bool {
        self.send.is_some()
    }

    /// Encrypts outgoing bytes in place.
    pub fn encrypt(&mut self, buf: &mut [u8]) {
        if let Some(rc4) = &mut self.send {
            rc4.apply(buf);
        }
    }

    /// The send state now, to return to if bytes encrypted after it are not sent after all
    /// (a writer that encrypts ahead of a partial or refused write).
    pub fn send_checkpoint(&self) -> SendCheckpoint {
        SendCheckpoint(self.send.clone())
    }

    /// Returns the send state to `checkpoint`.
    pub fn rewind_send(&mut self, checkpoint: SendCheckpoint) {
        self.send = checkpoint.0;
    }

    /// Decrypts incoming bytes in place; each byte must pass exactly once, in order.
    pub fn decrypt(&mut self, buf: &mut [u8]) {
        let Some(rc4) = &mut self.recv else { return };
        match &mut self.recv_left {
            None => rc4.apply(buf),
            Some(left) => {
                let n = (*left).min(buf.len());
                rc4.apply(&mut buf[..n]);
                *left -= n;
                if *left == 0 {
                    self.recv = None;
                    self.recv_left = None;
                }
            }
        }
    }
}

/// A saved send state (see [`PayloadCipher::send_checkpoint`]).
#[derive(Debug, Clone)]
pub struct SendCheckpoint(Option<Rc4>);

/// SHA-1 over the concatenation of `parts`.
fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `SHA1("req2", info_hash)`: what a responder looks up to learn which torrent a dialling
/// peer wants. A session keeps these for the torrents it serves.
pub fn req2_hash(info_hash: &InfoHash) -> [u8; 20] {
    sha1(&[b"req2", &info_hash.0])
}

/// The RC4 states for A→B (keyA) and B→A (keyB).
fn stream_keys(secret: &[u8; KEY_LEN], info_hash: &InfoHash) -> (Rc4, Rc4) {
    let a = sha1(&[b"keyA", secret, &info_hash.0]);
    let b = sha1(&[b"keyB", secret, &info_hash.0]);
    (Rc4::mse(&a), Rc4::mse(&b))
}
