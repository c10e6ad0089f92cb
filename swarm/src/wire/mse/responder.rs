//! The listening side (B) of MSE: answers Ya with Yb and PadB, finds A's synchronisation hash
//! in PadA, learns the torrent from the obfuscated info-hash, checks the encrypted offer and
//! sends its choice. The initial payload that follows is left to the payload cipher.

use super::input::{Input, Sync};
use super::{
    sha1, stream_keys, EncryptionPolicy, Established, KeyPair, LocalParams, MseError,
    PayloadCipher, Phase, Rc4, KEY_LEN, MAX_PAD_LEN, VC,
};
use crate::types::InfoHash;

/// The listening side of an MSE handshake.
#[derive(Debug)]
pub struct Responder {
    policy: EncryptionPolicy,
    keys: KeyPair,
    pad: Vec<u8>,
    negotiation_pad: Vec<u8>,
    state: State,
    input: Input,
    output: Vec<u8>,
}

#[derive(Debug)]
enum State {
    /// Waiting for Ya.
    AwaitKey,
    /// Scanning PadA for HASH('req1', S).
    SyncReq1 {
        secret: Box<[u8; KEY_LEN]>,
        req1: [u8; 20],
    },
    /// Reading the obfuscated info-hash.
    Skey {
        secret: Box<[u8; KEY_LEN]>,
    },
    /// Reading VC, crypto_provide and len(PadC).
    Provide {
        send: Rc4,
        recv: Rc4,
        info_hash: InfoHash,
    },
    /// Reading PadC and len(IA).
    PadC {
        send: Rc4,
        recv: Rc4,
        info_hash: InfoHash,
        provided: u32,
        len: usize,
    },
    Done(Box<Established>),
    Failed,
}

impl Responder {
    /// Starts answering a dialling peer.
    pub fn new(policy: EncryptionPolicy, local: LocalParams) -> Responder {
        Responder {
            policy,
            keys: local.keys,
            pad: local.pad,
            negotiation_pad: local.negotiation_pad,
            state: State::AwaitKey,
            input: Input::default(),
            output: Vec::new(),
        }
    }

    /// Bytes to send now.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Where the handshake stands.
    pub fn phase(&self) -> Phase {
        match self.state {
            State::AwaitKey => Phase::KeyExchange,
            State::SyncReq1 { .. } => Phase::Sync,
            State::Skey { .. } | State::Provide { .. } | State::PadC { .. } => Phase::Negotiation,
            State::Done(_) | State::Failed => Phase::Done,
        }
    }

    /// Bytes of the peer's handshake held right now (at most [`super::MAX_BUFFERED`]).
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Takes received bytes; returns how many belong to the handshake. `known` maps
    /// `SHA1("req2", info_hash)` (see [`super::req2_hash`]) to a torrent we serve. Once done,
    /// the rest of `data` is payload for [`Established::cipher`], starting with the IA.
    pub fn feed(
        &mut self,
        data: &[u8],
        known: &dyn Fn(&[u8; 20]) -> Option<InfoHash>,
    ) -> Result<usize, MseError> {
        let mut used = 0;
        loop {
            let state = std::mem::replace(&mut self.state, State::Failed);
            if let State::Failed = state {
                return Err(MseError::Failed);
            }
            let (n, next, moved) = self.step(state, &data[used..], known)?;
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

    fn step(
        &mut self,
        state: State,
        data: &[u8],
        known: &dyn Fn(&[u8; 20]) -> Option<InfoHash>,
    ) -> Result<(usize, State, bool), MseError> {
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
                self.output.extend_from_slice(self.keys.public());
                self.output.append(&mut self.pad);
                let req1 = sha1(&[b"req1", &secret]);
                (
                    n,
                    State::SyncReq1 {
                        secret: Box::new(secret),
                        req1,
                    },
                    true,
                )
            }
            State::SyncReq1 { secret, req1 } => match self.input.sync(data, &req1, MAX_PAD_LEN) {
                (n, Sync::Found) => {
                    self.input.clear();
                    (n, State::Skey { secret }, true)
                }
                (_, Sync::Missing) => return Err(MseError::SyncHashNotFound),
                (n, Sync::Pending) => (n, State::SyncReq1 { secret, req1 }, false),
            },
            State::Skey { secret } => {
                let (n, full) = self.input.fill(data, 20);
                if !full {
                    return Ok((n, State::Skey { secret }, false));
                }
                let req3 = sha1(&[b"req3", &secret[..]]);
                let req2: [u8; 20] = std::array::from_fn(|i| self.input.bytes()[i] ^ req3[i]);
                self.input.clear();
                let info_hash = known(&req2).ok_or(MseError::UnknownInfoHash)?;
                let (recv, send) = stream_keys(&secret, &info_hash);
                (
                    n,
                    State::Provide {
                        send,
                        recv,
                        info_hash,
                    },
                    true,
                )
            }
            State::Provide {
                send,
                mut recv,
                info_hash,
            } => {
                let (n, full) = self.input.fill(data, 14);
                if !full {
                    return Ok((
                        n,
                        State::Provide {
                            send,
                            recv,
                            info_hash,
                        },
                        false,
                    ));
                }
                let b = self.input.bytes();
                recv.apply(b);
                if b[..8] != VC {
                    return Err(MseError::BadVc);
                }
                let provided = u32::from_be_bytes(b[8..12].try_into().expect("4 bytes"));
                let len = u16::from_be_bytes([b[12], b[13]]) as usize;
                self.input.clear();
                if len > MAX_PAD_LEN {
                    return Err(MseError::PadTooLong(len));
                }
                (
                    n,
                    State::PadC {
                        send,
                        recv,
                        info_hash,
                        provided,
                        len,
                    },
                    true,
                )
            }
            State::PadC {
                mut send,
                mut recv,
                info_hash,
                provided,
                len,
            } => {
                let (n, full) = self.input.fill(data, len + 2);
                if !full {
                    return Ok((
                        n,
                        State::PadC {
                            send,
                            recv,
                            info_hash,
                            provided,
                            len,
                        },
                        false,
                    ));
                }
                let b = self.input.bytes();
                recv.apply(b);
                let ia_len = u16::from_be_bytes([b[len], b[len + 1]]) as usize;
                self.input.clear();
                let crypto = self
                    .policy
                    .select(provided)
                    .ok_or(MseError::NoCommonMethod(provided))?;
                // Step 4: ENCRYPT(VC, crypto_select, len(padD), padD).
                let start = self.output.len();
                self.output.extend_from_slice(&VC);
                self.output.extend_from_slice(&crypto.bits().to_be_bytes());
                self.output
                    .extend_from_slice(&(self.negotiation_pad.len() as u16).to_be_bytes());
                self.output.extend_from_slice(&self.negotiation_pad);
                send.apply(&mut self.output[start..]);
                let established = Established {
                    info_hash,
                    crypto,
                    cipher: PayloadCipher::negotiated(crypto, send, recv, ia_len),
                    initial_payload_len: ia_len,
                };
                (n, State::Done(Box::new(established)), true)
            }
            done @ State::Done(_) => (0, done, false),
            State::Failed => return Err(MseError::Failed),
        })
    }
}
