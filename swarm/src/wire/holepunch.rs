//! ut_holepunch (BEP 55) messages: a peer asks a relay to `rendezvous` with a target; the relay
//! sends `connect` to both, and both dial each other at once. Fixed binary layout, not bencode.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::WireError;

/// The three message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolepunchType {
    /// Initiator → relay: please connect me with `addr`.
    Rendezvous,
    /// Relay → both sides: dial `addr` now.
    Connect,
    /// Relay → initiator: the rendezvous failed.
    Error,
}

/// Error codes carried by [`HolepunchType::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolepunchError {
    /// No error (types other than Error).
    None,
    /// The relay does not know the target.
    NoSuchPeer,
    /// The target is known but not connected to the relay.
    NotConnected,
    /// The target does not support holepunch.
    NoSupport,
    /// The target is the initiator itself.
    NoSelf,
}

impl HolepunchError {
    fn code(self) -> u32 {
        match self {
            HolepunchError::None => 0,
            HolepunchError::NoSuchPeer => 1,
            HolepunchError::NotConnected => 2,
            HolepunchError::NoSupport => 3,
            HolepunchError::NoSelf => 4,
        }
    }
}

/// A ut_holepunch message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HolepunchMsg {
    /// What the message asks or tells.
    pub kind: HolepunchType,
    /// The peer concerned.
    pub addr: SocketAddr,
    /// Error code (only meaningful for [`HolepunchType::Error`]).
    pub error: HolepunchError,
}

impl HolepunchMsg {
    /// Parses a ut_holepunch payload.
    pub fn decode(p: &[u8]) -> Result<HolepunchMsg, WireError> {
        let bad = |m: &str| WireError::BadExtended(format!("ut_holepunch: {m}"));
        if p.len() < 2 {
            return Err(bad("too short"));
        }
        let kind = match p[0] {
            0 => HolepunchType::Rendezvous,
            1 => HolepunchType::Connect,
            2 => HolepunchType::Error,
            t => return Err(bad(&format!("unknown type {t}"))),
        };
        // The error code is only required in error messages: libtorrent 2.0 leaves it out of
        // `rendezvous` and `connect`, although BEP 55 shows it in every message.
        let (ip, rest): (IpAddr, &[u8]) = match p[1] {
            0 if p.len() >= 2 + 4 + 2 => (
                IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&p[2..6]).expect("4"))),
                &p[6..],
            ),
            1 if p.len() >= 2 + 16 + 2 => (
                IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&p[2..18]).expect("16"))),
                &p[18..],
            ),
            0 | 1 => return Err(bad("truncated")),
            t => return Err(bad(&format!("unknown address type {t}"))),
        };
        let port = u16::from_be_bytes([rest[0], rest[1]]);
        let code = match rest.get(2..6) {
            Some(c) => u32::from_be_bytes(c.try_into().expect("4")),
            None if kind == HolepunchType::Error => {
                return Err(bad("error message without a code"))
            }
            None => 0,
        };
        let error = match code {
            0 => HolepunchError::None,
            1 => HolepunchError::NoSuchPeer,
            2 => HolepunchError::NotConnected,
            3 => HolepunchError::NoSupport,
            4 => HolepunchError::NoSelf,
            e => return Err(bad(&format!("unknown error code {e}"))),
        };
        Ok(HolepunchMsg {
            kind,
            addr: SocketAddr::new(ip, port),
            error,
        })
    }

    /// Serialises the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        out.push(match self.kind {
            HolepunchType::Rendezvous => 0,
            HolepunchType::Connect => 1,
            HolepunchType::Error => 2,
        });
        match self.addr.ip() {
            IpAddr::V4(a) => {
                out.push(0);
                out.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                out.push(1);
                out.extend_from_slice(&a.octets());
            }
        }
        out.extend_from_slice(&self.addr.port().to_be_bytes());
        out.extend_from_slice(&self.error.code().to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let m = HolepunchMsg {
            kind: HolepunchType::Rendezvous,
            addr: "1.2.3.4:258".parse().unwrap(),
            error: HolepunchError::None,
        };
        assert_eq!(m.encode(), vec![0, 0, 1, 2, 3, 4, 1, 2, 0, 0, 0, 0]);
        assert_eq!(HolepunchMsg::decode(&m.encode()).unwrap(), m);
        let e = HolepunchMsg {
            kind: HolepunchType::Error,
            addr: "[2001:db8::1]:9".parse().unwrap(),
            error: HolepunchError::NoSelf,
        };
        assert_eq!(HolepunchMsg::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn accepts_libtorrent_messages_without_an_error_code() {
        // libtorrent 2.0 sends `connect` and `rendezvous` as type, address type, address, port.
        let connect = HolepunchMsg::decode(&[1, 0, 57, 66, 2, 1, 0x1a, 0xe1]).unwrap();
        assert_eq!(
            connect,
            HolepunchMsg {
                kind: HolepunchType::Connect,
                addr: "57.66.2.1:6881".parse().unwrap(),
                error: HolepunchError::None
            }
        );
        let mut v6 = vec![0u8, 1];
        v6.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&[0, 80]);
        assert_eq!(
            HolepunchMsg::decode(&v6).unwrap().addr,
            "[2001:db8::2]:80".parse().unwrap()
        );
        assert!(
            HolepunchMsg::decode(&[2, 0, 57, 66, 2, 1, 0x1a, 0xe1]).is_err(),
            "an error needs its code"
        );
        assert!(
            HolepunchMsg::decode(&[1, 0, 57, 66, 2, 1, 0x1a]).is_err(),
            "port cut short"
        );
    }

    #[test]
    fn refuses_malformed() {
        for p in [
            &[][..],
            &[0],
            &[3, 0, 1, 2, 3, 4, 0, 1, 0, 0, 0, 0],
            &[0, 2, 1, 2, 3, 4, 0, 1, 0, 0, 0, 0],
            &[0, 1, 1, 2, 3, 4, 0, 1, 0, 0, 0, 0],
            &[2, 0, 1, 2, 3, 4, 0, 1, 0, 0, 0, 9],
        ] {
            assert!(HolepunchMsg::decode(p).is_err(), "{p:?}");
        }
    }
}
