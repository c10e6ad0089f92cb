//! Node IDs bound to external IP addresses (BEP 42, "DHT Security extension").
//!
//! The first 21 bits of a compliant ID equal the first 21 bits of CRC32C over the masked IP with
//! a 3-bit random `r` folded into its top bits; the last byte of the ID carries `r`. Addresses on
//! local networks are exempt from verification.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::RngCore;

use crate::id::NodeId;

const V4_MASK: [u8; 4] = [0x03, 0x0f, 0x3f, 0xff];
const V6_MASK: [u8; 8] = [0x01, 0x03, 0x07, 0x0f, 0x1f, 0x3f, 0x7f, 0xff];

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) lookup table, built at compile time.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = CRC32C_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The CRC whose top 21 bits a compliant ID for `ip` with random value `r` (0..=7) starts with.
pub fn id_prefix(ip: IpAddr, r: u8) -> u32 {
    let r = r & 7;
    match ip {
        IpAddr::V4(v4) => {
            let mut b = v4.octets();
            for (x, m) in b.iter_mut().zip(V4_MASK) {
                *x &= m;
            }
            b[0] |= r << 5;
            crc32c(&b)
        }
        IpAddr::V6(v6) => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&v6.octets()[..8]);
            for (x, m) in b.iter_mut().zip(V6_MASK) {
                *x &= m;
            }
            b[0] |= r << 5;
            crc32c(&b)
        }
    }
}

/// A fresh random node ID that is valid for `ip`.
pub fn node_id_for(ip: IpAddr, rng: &mut impl RngCore) -> NodeId {
    let mut id = NodeId::random(rng).0;
    let r = id[19] & 7;
    let crc = id_prefix(ip, r);
    id[0] = (crc >> 24) as u8;
    id[1] = (crc >> 16) as u8;
    id[2] = ((crc >> 8) as u8 & 0xf8) | (id[2] & 0x07);
    NodeId(id)
}

/// True if `id` satisfies BEP 42 for `ip` (ignoring exemptions; see [`is_exempt`]).
pub fn id_matches_ip(id: &NodeId, ip: IpAddr) -> bool {
    let crc = id_prefix(ip, id.0[19] & 7);
    id.0[0] == (crc >> 24) as u8
        && id.0[1] == (crc >> 16) as u8
        && (id.0[2] & 0xf8) == ((crc >> 8) as u8 & 0xf8)
}

/// True for addresses that BEP 42 exempts from verification: private, link-local and loopback
/// IPv4 ranges, and their IPv6 counterparts (loopback, link-local, unique-local), which can never
/// be anyone's external address.
pub fn is_exempt(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_exempt(v4),
        IpAddr::V6(v6) => v6_exempt(v6),
    }
}

fn v4_exempt(ip: Ipv4Addr) -> bool {
    ip.is_private() || ip.is_link_local() || ip.is_loopback()
}

fn v6_exempt(ip: Ipv6Addr) -> bool {
    let s = ip.segments()[0];
    ip.is_loopback() || (s & 0xffc0) == 0xfe80 || (s & 0xfe00) == 0xfc00
}

/// True if a node claiming `id` from `ip` counts as verified: exempt address or matching ID.
pub fn is_verified(id: &NodeId, ip: IpAddr) -> bool {
    is_exempt(ip) || id_matches_ip(id, ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn hex_id(s: &str) -> NodeId {
        let mut id = [0u8; 20];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        NodeId(id)
    }

    /// The example rows of BEP 42: IP, the random byte, and an example ID valid for them.
    const VECTORS: [(&str, u8, &str); 5] = [
        (
            "124.31.75.21",
            1,
            "5fbfbff10c5d6a4ec8a88e4c6ab4c28b95eee401",
        ),
        (
            "21.75.31.124",
            86,
            "5a3ce9c14e7a08645677bbd1cfe7d8f956d53256",
        ),
        (
            "65.23.51.170",
            22,
            "a5d43220bc8f112a3d426c84764f8c2a1150e616",
        ),
        (
            "84.124.73.14",
            65,
            "1b0321dd1bb1fe518101ceef99462b947a01ff41",
        ),
        (
            "43.213.53.83",
            90,
            "e56f6cbf5b7c4be0237986d5243b87aa6d51305a",
        ),
    ];

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn spec_vectors_verify_and_derive() {
        for (ip, rand, id) in VECTORS {
            let ip: IpAddr = ip.parse().unwrap();
            let id = hex_id(id);
            assert_eq!(id.0[19], rand);
            assert!(id_matches_ip(&id, ip), "{ip}");
            assert!(!is_exempt(ip));
            let crc = id_prefix(ip, rand);
            assert_eq!(
                crc >> 11,
                u32::from_be_bytes([id.0[0], id.0[1], id.0[2], id.0[3]]) >> 11
            );
        }
        // An ID valid for one vector is not valid for another's address.
        assert!(!id_matches_ip(
            &hex_id(VECTORS[0].2),
            "21.75.31.124".parse().unwrap()
        ));
    }

    #[test]
    fn derived_ids_verify() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for ip in [
            "8.8.4.4",
            "203.0.114.9",
            "2001:db8:1234:5678::1",
            "2a00:1450:4001:80b::200e",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            for _ in 0..20 {
                let id = node_id_for(ip, &mut rng);
                assert!(id_matches_ip(&id, ip));
                assert!(is_verified(&id, ip));
            }
        }
    }

    #[test]
    fn local_addresses_are_exempt() {
        let id = NodeId([0; 20]);
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.3.3",
            "127.0.0.1",
            "::1",
            "fe80::1",
            "fd00::7",
        ] {
            assert!(is_verified(&id, ip.parse().unwrap()), "{ip}");
        }
        assert!(!is_verified(&id, "8.8.8.8".parse().unwrap()));
        assert!(!is_verified(&id, "2001:4860::8888".parse().unwrap()));
    }
}
