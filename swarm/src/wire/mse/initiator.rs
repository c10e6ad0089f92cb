//! The dialling side (A) of MSE: sends Ya and PadA at once, answers Yb with the
//! synchronisation hash, the obfuscated info-hash and the encrypted offer (carrying the
//! initial payload, if any), then finds B's encrypted VC and reads its choice.

use super::input::{Input, Sync};
use super::{
    sha1, stream_keys, Crypto, EncryptionPolicy, Established, KeyPair, LocalParams, MseError,
    PayloadCipher, Phase, Rc4, CRYPTO_PLAINTEXT, CRYPTO_RC4, KEY_LEN, MAX_INITIAL_PAYLOAD,
    MAX_PAD_LEN, VC,
};
use crate::types::InfoHash;

/// The dialling side of an MSE handshake.
#[derive(Debug)]
pub struct Initiator {
    info_hash: InfoHash,
    policy: EncryptionPolicy,
    keys: KeyPair,
    negotiation_pad: Vec<u8>,
    initial_payload: Vec<u8>,
    state: State,
    input: Input,
    output: Vec<u8>,
}

#[derive(Debug)]
enum State {
    /// Waiting for Yb.
    AwaitKey,
    /// Scanning PadB for the encrypted VC.
    SyncVc {
        send: Rc4,
        recv: Rc4,
        vc: [u8; 8],
    },
    /// Reading crypto_select and len(PadD).
    Select {
        send: Rc4,
        recv: Rc4,
    },
    /// Reading PadD.
    PadD {
        send: Rc4,
        recv: Rc4,
        crypto: Crypto,
        len: usize,
    },
    Done(Box<Established>),
    Failed,
}

impl Initiator {
    /// Starts a handshake for `info_hash`; `initial_payload` (IA, usually our BitTorrent
    /// handshake or nothing) goes out with step 3, before the peer's choice is known.
    pub fn new(
        info_hash: InfoHash,
        policy: EncryptionPolicy,
        initial_payload: &[u8],
        local: LocalParams,
    ) -> Result<Initiator, MseError> {
        if initial_payload.len() > MAX_INITIAL_PAYLOAD {
            return Err(MseError::InitialPayloadTooLong(initial_payload.len()));
        }
        let mut output = Vec::with_capacity(KEY_LEN + local.pad.len());
        output.extend_from_slice(local.keys.public());
        output.extend_from_slice(&local.pad);
        Ok(Initiator {
            info_hash,
            policy,
            keys: local.keys,
            negotiation_pad: local.negotiation_pad,
            initial_payload: initial_payload.to_vec(),
            state: State::AwaitKey,
            input: Input::default(),
            output,
        })
    }

    /// Bytes to send now.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Where the handshake stands.
    pub fn phase(&self) -> Phase {
        match self.state {
            State::AwaitKey => Phase::KeyExchange,
            State::SyncVc { .. } => Phase::Sync,
            State::Select { .. } | State::PadD { .. } => Phase::Negotiation,
            State::Done(_) | State::Failed => Phase::Done,
        }
    }

    /// Bytes of the peer's handshake held right now (at most [`super::MAX_BUFFERED`]).
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Takes received bytes; returns how many belong to the handshake. Once it is done, the
    /// rest of `data` (and everything after) is payload for [`Established::cipher`].
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, MseError> {
        let mut used = 0;
        loop {
            let state = std::mem::replace(&mut self.state, State::Failed);
            if let State::Failed = state {
                return Err(MseError::Failed);
            }
            let (n, next, moved) = self.step(state, &data[used..])?;
            used += n;
            self.state = next;
            if !moved || matches!(self.state, State::Done(_)) {
                return Ok(used);
            }
        }
    }

    /// Whether the handshake has finished (collect the output first, then the result).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done(_))
    }

    /// The result, once done.
    pub fn into_established(self) -> Option<Established> {
        match self.state {
            State::Done(e) => Some(*e),
            _ => None,
        }
    }

    /// One state's work: bytes taken, the next state, and whether it changed.
    fn step(&mut self, state: State, data: &[u8]) -> Result<(usize, State, bool), MseError> {
        Ok(match state {
            State::AwaitKey => {
                let (n, full) = self.input.fill(data, KEY_LEN);
                if !full {
                    return Ok((n, State::AwaitKey, false));
                }
                let remote: [u8; KEY_LEN] = self.input.bytes()[..KEY_LEN]
                    .try_into()
                    .expect("key length");
                self.input.clear();
                let secret = self
                    .keys
                    .shared_secret(&remote)
                    .ok_or(MseError::BadPublicKey)?;
                let (mut send, mut recv) = stream_keys(&secret, &self.info_hash);
                self.write_offer(&secret, &mut send);
                let mut vc = VC;
                recv.apply(&mut vc);
                (n, State::SyncVc { send, recv, vc }, true)
            }
            State::SyncVc { send, recv, vc } => match self.input.sync(data, &vc, MAX_PAD_LEN) {
                (n, Sync::Found) => {
                    self.input.clear();
                    (n, State::Select { send, recv }, true)
                }
                (_, Sync::Missing) => return Err(MseError::VcNotFound),
                (n, Sync::Pending) => (n, State::SyncVc { send, recv, vc }, false),
            },
            State::Select { send, mut recv } => {
                let (n, full) = self.input.fill(data, 6);
                if !full {
                    return Ok((n, State::Select { send, recv }, false));
                }
                let b = self.input.bytes();
                recv.apply(b);
                let select = u32::from_be_bytes(b[..4].try_into().expect("4 bytes"));
                let len = u16::from_be_bytes([b[4], b[5]]) as usize;
                self.input.clear();
                let crypto = match select {
                    CRYPTO_PLAINTEXT => Crypto::Plaintext,
                    CRYPTO_RC4 => Crypto::Rc4,
                    _ => return Err(MseError::BadSelect(select)),
                };
                if select & self.policy.provide() == 0 {
                    return Err(MseError::BadSelect(select));
                }
                if len > MAX_PAD_LEN {
                    return Err(MseError::PadTooLong(len));
                }
                (
                    n,
                    State::PadD {
                        send,
                        recv,
                        crypto,
                        len,
                    },
                    true,
                )
            }
            State::PadD {
                send,
                mut recv,
                crypto,
                len,
            } => {
                let (n, full) = self.input.fill(data, len);
                if !full {
                    return Ok((
                        n,
                        State::PadD {
                            send,
                            recv,
                            crypto,
                            len,
                        },
                        false,
                    ));
                }
                recv.apply(self.input.bytes());
                self.input.clear();
                let established = Established {
                    info_hash: self.info_hash,
                    crypto,
                    cipher: PayloadCipher::negotiated(crypto, send, recv, 0),
                    initial_payload_len: 0,
                };
                (n, State::Done(Box::new(established)), true)
            }
            done @ State::Done(_) => (0, done, false),
            State::Failed => return Err(MseError::Failed),
        })
    }

    /// Step 3: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
    /// ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA).
    fn write_offer(&mut self, secret: &[u8; KEY_LEN], send: &mut Rc4) {
        self.output.extend_from_slice(&sha1(&[b"req1", secret]));
        let req2 = sha1(&[b"req2", &self.info_hash.0]);
        let req3 = sha1(&[b"req3", secret]);
        self.output
            .extend(req2.iter().zip(req3).map(|(a, b)| a ^ b));
        let start = self.output.len();
        self.output.extend_from_slice(&VC);
        self.output
            .extend_from_slice(&self.policy.provide().to_be_bytes());
        self.output
            .extend_from_slice(&(self.negotiation_pad.len() as u16).to_be_bytes());
        self.output.extend_from_slice(&self.negotiation_pad);
        self.output
            .extend_from_slice(&(self.initial_payload.len() as u16).to_be_bytes());
        self.output.extend_from_slice(&self.initial_payload);
        send.apply(&mut self.output[start..]);
    }
}
