//! Compact address encodings (BEP 5 "Contact Encoding", BEP 32 for IPv6): a peer is the IP
//! followed by the big-endian port (6 or 18 bytes); a node is its 20-byte ID followed by its peer
//! encoding (26 or 38 bytes).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::id::NodeId;

/// Length of a compact IPv4 peer.
pub const PEER_V4_LEN: usize = 6;
/// Length of a compact IPv6 peer.
pub const PEER_V6_LEN: usize = 18;
/// Length of a compact IPv4 node.
pub const NODE_V4_LEN: usize = 26;
/// Length of a compact IPv6 node.
pub const NODE_V6_LEN: usize = 38;

/// A node's ID and UDP address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeInfo {
    /// The node's ID.
    pub id: NodeId,
    /// Where the node receives datagrams.
    pub addr: SocketAddr,
}

/// Decodes a 6- or 18-byte compact peer address.
pub fn decode_peer(b: &[u8]) -> Option<SocketAddr> {
    match b.len() {
        PEER_V4_LEN => {
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be_bytes([b[4], b[5]]),
            )))
        }
        PEER_V6_LEN => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[..16]);
            let port = u16::from_be_bytes([b[16], b[17]]);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(o),
                port,
                0,
                0,
            )))
        }
        _ => None,
    }
}

/// Appends the compact form of `addr` (6 or 18 bytes).
pub fn encode_peer(addr: &SocketAddr, out: &mut Vec<u8>) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// The compact form of `addr` in a fixed buffer, and how many bytes of it are used.
pub fn peer_bytes(addr: &SocketAddr) -> ([u8; PEER_V6_LEN], usize) {
    let mut b = [0u8; PEER_V6_LEN];
    let n = match addr.ip() {
        IpAddr::V4(ip) => {
            b[..4].copy_from_slice(&ip.octets());
            4
        }
        IpAddr::V6(ip) => {
            b[..16].copy_from_slice(&ip.octets());
            16
        }
    };
    b[n..n + 2].copy_from_slice(&addr.port().to_be_bytes());
    (b, n + 2)
}

/// Appends a compact node entry.
pub fn encode_node(node: &NodeInfo, out: &mut Vec<u8>) {
    out.extend_from_slice(&node.id.0);
    encode_peer(&node.addr, out);
}

/// Iterates over a `nodes` (IPv4, `v6 == false`) or `nodes6` string. Trailing bytes that do not
/// form a whole entry are ignored; entries with port 0 are skipped since nothing listens there.
pub fn decode_nodes(b: &[u8], v6: bool) -> impl Iterator<Item = NodeInfo> + '_ {
    let len = if v6 { NODE_V6_LEN } else { NODE_V4_LEN };
    b.chunks_exact(len).filter_map(|c| {
        let id = NodeId::from_slice(&c[..20])?;
        let addr = decode_peer(&c[20..])?;
        (addr.port() != 0).then_some(NodeInfo { id, addr })
    })
}

/// Maps an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) to plain IPv4; other addresses unchanged.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => addr,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_round_trip() {
        for a in ["1.2.3.4:6881", "[2001:db8::1]:51413"] {
            let a: SocketAddr = a.parse().unwrap();
            let mut v = Vec::new();
            encode_peer(&a, &mut v);
            assert_eq!(decode_peer(&v), Some(a));
            let (b, n) = peer_bytes(&a);
            assert_eq!(&b[..n], &v[..]);
        }
        assert_eq!(decode_peer(&[1, 2, 3]), None);
    }

    #[test]
    fn nodes_round_trip_and_skip_partial_entries() {
        let n1 = NodeInfo {
            id: NodeId([1; 20]),
            addr: "9.9.9.9:1".parse().unwrap(),
        };
        let n2 = NodeInfo {
            id: NodeId([2; 20]),
            addr: "8.8.8.8:2".parse().unwrap(),
        };
        let mut v = Vec::new();
        encode_node(&n1, &mut v);
        encode_node(&n2, &mut v);
        v.extend_from_slice(&[0; 5]);
        assert_eq!(decode_nodes(&v, false).collect::<Vec<_>>(), vec![n1, n2]);
        let n6 = NodeInfo {
            id: NodeId([3; 20]),
            addr: "[2001:db8::2]:3".parse().unwrap(),
        };
        let mut v = Vec::new();
        encode_node(&n6, &mut v);
        assert_eq!(decode_nodes(&v, true).collect::<Vec<_>>(), vec![n6]);
    }

    #[test]
    fn mapped_addresses_become_v4() {
        let a: SocketAddr = "[::ffff:10.0.0.1]:5".parse().unwrap();
        assert_eq!(canonical(a), "10.0.0.1:5".parse::<SocketAddr>().unwrap());
        let b: SocketAddr = "[2001:db8::1]:5".parse().unwrap();
        assert_eq!(canonical(b), b);
    }
}
