//! Peer exchange (BEP 11): peers tell each other whom they are connected to, IPv4 in `added`
//! and IPv6 in `added6`, with one flag byte per peer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use librqbit_bencode::ByteBuf;
use serde::{Deserialize, Serialize};

use super::WireError;

/// Most peers per list (added, added6, dropped, dropped6) in one message, in either direction:
/// more than this in a received message is cut off, and we never send more.
pub const MAX_PEX_PEERS: usize = 50;

/// BEP 11 peer flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PexFlags(pub u8);

impl PexFlags {
    /// Prefers encrypted connections.
    pub const ENCRYPTION: u8 = 0x01;
    /// Is a seed (upload only).
    pub const SEED: u8 = 0x02;
    /// Supports µTP.
    pub const UTP: u8 = 0x04;
    /// Supports ut_holepunch.
    pub const HOLEPUNCH: u8 = 0x08;
    /// Reachable: the sender made an outgoing connection to it.
    pub const REACHABLE: u8 = 0x10;

    /// Whether `bit` is set.
    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// A peer announced through PEX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PexPeer {
    /// Its address.
    pub addr: SocketAddr,
    /// What the sender knows of it.
    pub flags: PexFlags,
}

/// A ut_pex message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PexMessage {
    /// Newly connected peers, both families.
    pub added: Vec<PexPeer>,
    /// Peers no longer connected, both families.
    pub dropped: Vec<SocketAddr>,
}

#[derive(Deserialize, Default)]
struct Raw<'a> {
    #[serde(borrow, default)]
    added: Option<ByteBuf<'a>>,
    #[serde(borrow, rename = "added.f", default)]
    added_f: Option<ByteBuf<'a>>,
    #[serde(borrow, default)]
    added6: Option<ByteBuf<'a>>,
    #[serde(borrow, rename = "added6.f", default)]
    added6_f: Option<ByteBuf<'a>>,
    #[serde(borrow, default)]
    dropped: Option<ByteBuf<'a>>,
    #[serde(borrow, default)]
    dropped6: Option<ByteBuf<'a>>,
}

/// Parses compact addresses (6 bytes for IPv4, 18 for IPv6), at most `limit` of them.
pub(crate) fn parse_compact(b: &[u8], v6: bool, limit: usize) -> Vec<SocketAddr> {
    let size = if v6 { 18 } else { 6 };
    b.chunks_exact(size)
        .take(limit)
        .map(|c| {
            let port = u16::from_be_bytes([c[size - 2], c[size - 1]]);
            let ip = if v6 {
                IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(&c[..16]).expect("16 bytes"),
                ))
            } else {
                IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3]))
            };
            SocketAddr::new(ip, port)
        })
        .collect()
}

/// Appends an address in compact form.
pub(crate) fn push_compact(out: &mut Vec<u8>, a: &SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&a.port().to_be_bytes());
}

impl PexMessage {
    /// Parses a ut_pex payload. Lists beyond [`MAX_PEX_PEERS`] are truncated.
    pub fn decode(payload: &[u8]) -> Result<PexMessage, WireError> {
        let raw: Raw<'_> =
            crate::bencode::decode(payload).map_err(|e| WireError::BadExtended(e.to_string()))?;
        let mut msg = PexMessage::default();
        for (list, flags, v6) in [
            (raw.added, raw.added_f, false),
            (raw.added6, raw.added6_f, true),
        ] {
            let Some(list) = list else { continue };
            let flags = flags.map(|f| f.0).unwrap_or(&[]);
            for (i, addr) in parse_compact(list.0, v6, MAX_PEX_PEERS)
                .into_iter()
                .enumerate()
            {
                msg.added.push(PexPeer {
                    addr,
                    flags: PexFlags(flags.get(i).copied().unwrap_or(0)),
                });
            }
        }
        for (list, v6) in [(raw.dropped, false), (raw.dropped6, true)] {
            if let Some(list) = list {
                msg.dropped.extend(parse_compact(list.0, v6, MAX_PEX_PEERS));
            }
        }
        Ok(msg)
    }

    /// Serialises the message, keeping at most [`MAX_PEX_PEERS`] per list.
    pub fn encode(&self) -> Vec<u8> {
        let (mut a4, mut f4, mut a6, mut f6, mut d4, mut d6) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for p in &self.added {
            let (list, flags) = if p.addr.is_ipv4() {
                (&mut a4, &mut f4)
            } else {
                (&mut a6, &mut f6)
            };
            if flags.len() < MAX_PEX_PEERS {
                push_compact(list, &p.addr);
                flags.push(p.flags.0);
            }
        }
        for d in &self.dropped {
            let (list, size) = if d.is_ipv4() {
                (&mut d4, 6)
            } else {
                (&mut d6, 18)
            };
            if list.len() / size < MAX_PEX_PEERS {
                push_compact(list, d);
            }
        }
        // BEP 11 lists every key even when empty; strict parsers expect them.
        let out = Out {
            added: ByteBuf(&a4),
            added_f: ByteBuf(&f4),
            added6: ByteBuf(&a6),
            added6_f: ByteBuf(&f6),
            dropped: ByteBuf(&d4),
            dropped6: ByteBuf(&d6),
        };
        let mut bytes = Vec::new();
        librqbit_bencode::bencode_serialize_to_writer(&out, &mut bytes)
            .expect("writing to a Vec cannot fail");
        bytes
    }
}

#[derive(Serialize)]
struct Out<'a> {
    added: ByteBuf<'a>,
    #[serde(rename = "added.f")]
    added_f: ByteBuf<'a>,
    added6: ByteBuf<'a>,
    #[serde(rename = "added6.f")]
    added6_f: ByteBuf<'a>,
    dropped: ByteBuf<'a>,
    dropped6: ByteBuf<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_both_families() {
        let m = PexMessage {
            added: vec![
                PexPeer {
                    addr: "10.0.0.1:6881".parse().unwrap(),
                    flags: PexFlags(PexFlags::HOLEPUNCH | PexFlags::UTP),
                },
                PexPeer {
                    addr: "[2001:db8::7]:51413".parse().unwrap(),
                    flags: PexFlags(PexFlags::REACHABLE),
                },
            ],
            dropped: vec!["10.0.0.9:1".parse().unwrap(), "[::1]:2".parse().unwrap()],
        };
        let enc = m.encode();
        assert!(enc.windows(8).any(|w| w == b"6:added6"));
        assert_eq!(PexMessage::decode(&enc).unwrap(), m);
    }

    #[test]
    fn oversized_lists_are_cut_and_ragged_ones_tolerated() {
        let mut list = Vec::new();
        for i in 0..200u16 {
            push_compact(&mut list, &SocketAddr::from(([10, 0, 0, 1], i)));
        }
        list.extend_from_slice(&[1, 2, 3]); // a ragged tail
        let mut payload = format!("d5:added{}:", list.len()).into_bytes();
        payload.extend_from_slice(&list);
        payload.extend_from_slice(b"7:added.f0:e");
        let m = PexMessage::decode(&payload).unwrap();
        assert_eq!(m.added.len(), MAX_PEX_PEERS);
        assert!(m.added.iter().all(|p| p.flags == PexFlags(0)));
        assert!(PexMessage::decode(b"d5:addedi3ee").is_err());
    }
}
