//! The extension protocol handshake (BEP 10): which extended messages each side speaks and
//! under which ids, plus the facts peers tell each other — client name, listen port, the
//! address they see us at (`yourip`), their own addresses (`ipv4`/`ipv6`), request queue depth
//! and the metadata size for BEP 9.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use librqbit_bencode::{ByteBuf, ByteBufOwned};
use serde::{Deserialize, Serialize};

use super::WireError;

/// The ids under which burrow receives each extension (our side of `m`). Chosen to match the
/// numbers libtorrent uses, which costs nothing and eases reading captures.
pub const LOCAL_EXTENSIONS: ExtensionIds = ExtensionIds {
    ut_pex: Some(1),
    ut_metadata: Some(2),
    ut_holepunch: Some(4),
};

/// Ids of the extended messages burrow knows; `None` when the side does not speak it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtensionIds {
    /// BEP 9 metadata exchange.
    pub ut_metadata: Option<u8>,
    /// BEP 11 peer exchange.
    pub ut_pex: Option<u8>,
    /// BEP 55 holepunch.
    pub ut_holepunch: Option<u8>,
}

/// A BEP 10 handshake, ours or a peer's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtHandshake {
    /// Known extensions and their ids.
    pub ids: ExtensionIds,
    /// Client name and version (`v`).
    pub client: Option<String>,
    /// The sender's TCP listen port (`p`).
    pub listen_port: Option<u16>,
    /// Our address as the sender sees it (`yourip`).
    pub yourip: Option<IpAddr>,
    /// The sender's own IPv4 address, if it knows one (`ipv4`).
    pub ipv4: Option<Ipv4Addr>,
    /// The sender's own IPv6 address, if it has one (`ipv6`).
    pub ipv6: Option<Ipv6Addr>,
    /// How many outstanding requests the sender accepts (`reqq`).
    pub reqq: Option<u32>,
    /// Size of the info dictionary, when the sender has it (`metadata_size`, BEP 9).
    pub metadata_size: Option<u32>,
    /// The sender only seeds (`upload_only`).
    pub upload_only: bool,
}

#[derive(Serialize, Deserialize, Default)]
struct Raw<'a> {
    #[serde(default)]
    m: BTreeMap<ByteBufOwned, i64>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    v: Option<ByteBuf<'a>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    p: Option<i64>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    yourip: Option<ByteBuf<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    ipv4: Option<ByteBuf<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none", default)]
    ipv6: Option<ByteBuf<'a>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    reqq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    metadata_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    upload_only: Option<i64>,
}

fn ip_from(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?))),
        _ => None,
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

impl ExtHandshake {
    /// Parses a peer's handshake. Unknown keys and unknown extensions are ignored; fields of
    /// the wrong shape are dropped rather than failing the connection.
    pub fn decode(payload: &[u8]) -> Result<ExtHandshake, WireError> {
        let raw: Raw<'_> =
            crate::bencode::decode(payload).map_err(|e| WireError::BadExtended(e.to_string()))?;
        let id = |name: &[u8]| {
            raw.m
                .iter()
                .find(|(k, _)| k.0.as_ref() == name)
                .and_then(|(_, &v)| u8::try_from(v).ok())
                .filter(|&v| v != 0)
        };
        let small = |v: Option<i64>| v.and_then(|x| u32::try_from(x).ok());
        Ok(ExtHandshake {
            ids: ExtensionIds {
                ut_metadata: id(b"ut_metadata"),
                ut_pex: id(b"ut_pex"),
                ut_holepunch: id(b"ut_holepunch"),
            },
            client: raw.v.map(|v| client_name(v.0)),
            listen_port: raw
                .p
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p != 0),
            yourip: raw.yourip.and_then(|b| ip_from(b.0)),
            ipv4: raw.ipv4.and_then(|b| match ip_from(b.0) {
                Some(IpAddr::V4(a)) => Some(a),
                _ => None,
            }),
            ipv6: raw.ipv6.and_then(|b| match ip_from(b.0) {
                Some(IpAddr::V6(a)) => Some(a),
                _ => None,
            }),
            reqq: small(raw.reqq),
            metadata_size: small(raw.metadata_size),
            upload_only: raw.upload_only.unwrap_or(0) != 0,
        })
    }

    /// Serialises the handshake.
    pub fn encode(&self) -> Vec<u8> {
        let mut m = BTreeMap::new();
        let mut put = |name: &'static [u8], id: Option<u8>| {
            if let Some(id) = id {
                m.insert(ByteBufOwned(bytes::Bytes::from_static(name)), id as i64);
            }
        };
        put(b"ut_metadata", self.ids.ut_metadata);
        put(b"ut_pex", self.ids.ut_pex);
        put(b"ut_holepunch", self.ids.ut_holepunch);
        let yourip = self.yourip.as_ref().map(ip_bytes);
        let ipv4 = self.ipv4.map(|a| a.octets());
        let ipv6 = self.ipv6.map(|a| a.octets());
        let raw = Raw {
            m,
            v: self.client.as_ref().map(|c| ByteBuf(c.as_bytes())),
            p: self.listen_port.map(|p| p as i64),
            yourip: yourip.as_deref().map(ByteBuf),
            ipv4: ipv4.as_ref().map(|a| ByteBuf(a)),
            ipv6: ipv6.as_ref().map(|a| ByteBuf(a)),
            reqq: self.reqq.map(|v| v as i64),
            metadata_size: self.metadata_size.map(|v| v as i64),
            upload_only: self.upload_only.then_some(1),
        };
        let mut out = Vec::new();
        librqbit_bencode::bencode_serialize_to_writer(&raw, &mut out)
            .expect("writing to a Vec cannot fail");
        out
    }
}

/// A peer's client name for display: at most [`MAX_CLIENT_NAME`] bytes of it, invalid UTF-8
/// replaced, cut on a character boundary so that the name survives being sent on unchanged.
fn client_name(raw: &[u8]) -> String {
    let mut name = String::from_utf8_lossy(&raw[..raw.len().min(MAX_CLIENT_NAME)]).into_owned();
    let mut end = name.len().min(MAX_CLIENT_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
    name
}

/// Longest client name kept from an extension handshake.
pub const MAX_CLIENT_NAME: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_name_is_bounded_and_survives_a_round_trip() {
        // Invalid UTF-8 grows when replaced: the name is still cut to the limit, on a
        // character boundary, and decodes to itself when sent on.
        let raw = [0xffu8; 100];
        let name = client_name(&raw);
        assert!(
            name.len() <= MAX_CLIENT_NAME && name.chars().all(|c| c == char::REPLACEMENT_CHARACTER)
        );
        assert_eq!(client_name(name.as_bytes()), name);
        assert_eq!(client_name(b"burrow 0.1"), "burrow 0.1");
    }

    #[test]
    fn round_trip() {
        let h = ExtHandshake {
            ids: LOCAL_EXTENSIONS,
            client: Some("burrow 0.1".into()),
            listen_port: Some(51413),
            yourip: Some("203.0.113.9".parse().unwrap()),
            ipv4: Some("198.51.100.1".parse().unwrap()),
            ipv6: Some("2001:db8::1".parse().unwrap()),
            reqq: Some(500),
            metadata_size: Some(12345),
            upload_only: true,
        };
        assert_eq!(ExtHandshake::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn foreign_handshake_with_odd_fields() {
        // As sent by other clients: unknown extensions, id 0 (disabled), a 16-byte yourip,
        // an out-of-range port and a negative reqq.
        let raw = b"d1:md11:lt_donthavei7e12:ut_holepunchi0e11:ut_metadatai3e6:ut_pexi1ee1:pi70000e4:reqqi-1e1:v13:qBittorrent 46:yourip16:\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x05e";
        let h = ExtHandshake::decode(raw).unwrap();
        assert_eq!(
            h.ids,
            ExtensionIds {
                ut_metadata: Some(3),
                ut_pex: Some(1),
                ut_holepunch: None
            }
        );
        assert_eq!(h.listen_port, None);
        assert_eq!(h.reqq, None);
        assert_eq!(h.yourip, Some("2001:db8::5".parse().unwrap()));
        assert_eq!(h.client.as_deref(), Some("qBittorrent 4"));
        assert!(ExtHandshake::decode(b"d1:md").is_err());
        assert!(ExtHandshake::decode(b"le").is_err());
    }
}
