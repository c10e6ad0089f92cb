//! PCP (RFC 6887) MAP and ANNOUNCE messages: a sans-IO codec.
//!
//! Only what a client that maps one port needs: the common request/response headers (§7.1,
//! §7.2), the MAP opcode (§11.1) and ANNOUNCE (§14.1), whose response carries the server's
//! epoch. Options in responses are skipped (§7.3: a client may ignore optional ones, and the
//! mandatory ones a server may send to a MAP client do not change what we do with the result).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Transport;

/// The PCP version this codec speaks.
pub const VERSION: u8 = 2;
/// UDP port PCP servers listen on (shared with NAT-PMP).
pub const SERVER_PORT: u16 = 5351;
/// Largest PCP message (§7): longer datagrams are rejected rather than read.
pub const MAX_MESSAGE: usize = 1100;

const OPCODE_ANNOUNCE: u8 = 0;
const OPCODE_MAP: u8 = 1;
const RESPONSE_BIT: u8 = 0x80;
const HEADER_LEN: usize = 24;
const MAP_PAYLOAD_LEN: usize = 36;

/// A MAP nonce (§11.1): random per mapping, repeated in renewals so the server knows it is us.
pub type Nonce = [u8; 12];

/// Why a datagram is not a response we can use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the fixed part, longer than [`MAX_MESSAGE`], or not a multiple of 4.
    #[error("PCP message has a bad length ({0} bytes)")]
    BadLength(usize),
    /// The server speaks another version (a NAT-PMP server answers version 0).
    #[error("PCP server answered version {0}")]
    Version(u8),
    /// Not a response, or a response to another opcode.
    #[error("not a PCP response to our opcode (byte {0:#04x})")]
    Opcode(u8),
}

/// PCP result codes (§7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultCode {
    /// The request succeeded.
    Success,
    /// The server does not speak this version.
    UnsupportedVersion,
    /// Refused by policy.
    NotAuthorized,
    /// The server could not parse the request.
    MalformedRequest,
    /// The opcode is not supported.
    UnsupportedOpcode,
    /// A mandatory option is not supported.
    UnsupportedOption,
    /// An option was malformed.
    MalformedOption,
    /// The server or device has a network failure (short-lived).
    NetworkFailure,
    /// The server is out of resources (short-lived).
    NoResources,
    /// The protocol is not supported.
    UnsupportedProtocol,
    /// The client exceeded its quota of mappings.
    UserExceededQuota,
    /// The suggested external address or port cannot be provided.
    CannotProvideExternal,
    /// The client address field does not match the packet's source (another NAT in between).
    AddressMismatch,
    /// Too many remote peers.
    ExcessiveRemotePeers,
    /// A code this codec does not know.
    Other(u8),
}

impl ResultCode {
    fn from_u8(v: u8) -> Self {
        use ResultCode::*;
        match v {
            0 => Success,
            1 => UnsupportedVersion,
            2 => NotAuthorized,
            3 => MalformedRequest,
            4 => UnsupportedOpcode,
            5 => UnsupportedOption,
            6 => MalformedOption,
            7 => NetworkFailure,
            8 => NoResources,
            9 => UnsupportedProtocol,
            10 => UserExceededQuota,
            11 => CannotProvideExternal,
            12 => AddressMismatch,
            13 => ExcessiveRemotePeers,
            other => Other(other),
        }
    }

    /// Short-lived errors (§7.4): retrying later may succeed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ResultCode::NetworkFailure | ResultCode::NoResources | ResultCode::UserExceededQuota
        )
    }
}

/// A MAP request (§11.1) for one internal port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapRequest {
    /// Identifies the mapping across renewals.
    pub nonce: Nonce,
    /// TCP or UDP.
    pub transport: Transport,
    /// The address the server sees as our source (our address on the gateway's link).
    pub client: IpAddr,
    /// The internal port to map.
    pub internal_port: u16,
    /// The external port we would like (the server may choose another).
    pub suggested_external_port: u16,
    /// Requested lifetime in seconds; 0 deletes the mapping.
    pub lifetime: u32,
}

impl MapRequest {
    /// Encodes the request (60 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = header(OPCODE_MAP, self.lifetime, self.client);
        out.extend_from_slice(&self.nonce);
        out.push(self.transport.ip_protocol());
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&self.internal_port.to_be_bytes());
        out.extend_from_slice(&self.suggested_external_port.to_be_bytes());
        // "All zeros" suggested external address, in the family of the client (§11.1).
        let any = match self.client {
            IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.to_ipv6_mapped(),
            IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED,
        };
        out.extend_from_slice(&any.octets());
        out
    }
}

/// An ANNOUNCE request (§14.1): asks only for the server's epoch.
pub fn encode_announce(client: IpAddr) -> Vec<u8> {
    header(OPCODE_ANNOUNCE, 0, client)
}

fn header(opcode: u8, lifetime: u32, client: IpAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + MAP_PAYLOAD_LEN);
    out.push(VERSION);
    out.push(opcode);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&lifetime.to_be_bytes());
    out.extend_from_slice(&to_pcp_addr(client).octets());
    out
}

/// Addresses are always 16 bytes on the wire; IPv4 is IPv4-mapped (§5).
fn to_pcp_addr(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn from_pcp_addr(bytes: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// The common response header (§7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeader {
    /// Outcome of the request.
    pub result: ResultCode,
    /// Granted lifetime in seconds (on errors: how long the error is likely to last).
    pub lifetime: u32,
    /// Server epoch: seconds since the server lost or reset its mapping state.
    pub epoch: u32,
}

/// A decoded MAP response (§11.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapResponse {
    /// Result, lifetime and epoch.
    pub header: ResponseHeader,
    /// Echo of the request's nonce.
    pub nonce: Nonce,
    /// Transport the mapping is for.
    pub protocol: u8,
    /// Internal port the mapping is for.
    pub internal_port: u16,
    /// External port assigned.
    pub external_port: u16,
    /// External address assigned.
    pub external_ip: IpAddr,
}

impl MapResponse {
    /// True when this response answers `request` (same nonce, protocol and internal port).
    pub fn answers(&self, request: &MapRequest) -> bool {
        self.nonce == request.nonce
            && self.protocol == request.transport.ip_protocol()
            && self.internal_port == request.internal_port
    }
}

fn decode_header(buf: &[u8], opcode: u8) -> Result<ResponseHeader, DecodeError> {
    // The version first: a NAT-PMP server's short "unsupported version" reply (RFC 6887 §9)
    // must read as such, not as a bad length.
    match buf.first() {
        None => return Err(DecodeError::BadLength(0)),
        Some(&v) if v != VERSION => return Err(DecodeError::Version(v)),
        Some(_) => {}
    }
    if buf.len() < HEADER_LEN || buf.len() > MAX_MESSAGE || buf.len() % 4 != 0 {
        return Err(DecodeError::BadLength(buf.len()));
    }
    if buf[1] != RESPONSE_BIT | opcode {
        return Err(DecodeError::Opcode(buf[1]));
    }
    Ok(ResponseHeader {
        result: ResultCode::from_u8(buf[3]),
        lifetime: u32::from_be_bytes(buf[4..8].try_into().unwrap()),
        epoch: u32::from_be_bytes(buf[8..12].try_into().unwrap()),
    })
}

/// Decodes an ANNOUNCE response's header.
pub fn decode_announce(buf: &[u8]) -> Result<ResponseHeader, DecodeError> {
    decode_header(buf, OPCODE_ANNOUNCE)
}

/// Decodes a MAP response. Error responses may lack the payload; then only `header` is
/// meaningful and the rest is zero.
pub fn decode_map(buf: &[u8]) -> Result<MapResponse, DecodeError> {
    let header = decode_header(buf, OPCODE_MAP)?;
    if buf.len() < HEADER_LEN + MAP_PAYLOAD_LEN {
        if header.result == ResultCode::Success {
            return Err(DecodeError::BadLength(buf.len()));
        }
        return Ok(MapResponse {
            header,
            nonce: [0; 12],
            protocol: 0,
            internal_port: 0,
            external_port: 0,
            external_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        });
    }
    let p = &buf[HEADER_LEN..HEADER_LEN + MAP_PAYLOAD_LEN];
    Ok(MapResponse {
        header,
        nonce: p[0..12].try_into().unwrap(),
        protocol: p[12],
        internal_port: u16::from_be_bytes([p[16], p[17]]),
        external_port: u16::from_be_bytes([p[18], p[19]]),
        external_ip: from_pcp_addr(p[20..36].try_into().unwrap()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> MapRequest {
        MapRequest {
            nonce: [7; 12],
            transport: Transport::Udp,
            client: IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2)),
            internal_port: 51413,
            suggested_external_port: 51413,
            lifetime: 7200,
        }
    }

    /// Builds a server response the way RFC 6887 §7.2 and §11.1 lay it out.
    fn response(result: u8, nonce: Nonce, proto: u8, internal: u16, external: u16) -> Vec<u8> {
        let mut b = vec![2, 0x81, 0, result];
        b.extend_from_slice(&3600u32.to_be_bytes());
        b.extend_from_slice(&42u32.to_be_bytes());
        b.extend_from_slice(&[0; 12]);
        b.extend_from_slice(&nonce);
        b.extend_from_slice(&[proto, 0, 0, 0]);
        b.extend_from_slice(&internal.to_be_bytes());
        b.extend_from_slice(&external.to_be_bytes());
        b.extend_from_slice(&Ipv4Addr::new(57, 66, 2, 1).to_ipv6_mapped().octets());
        b
    }

    #[test]
    fn map_request_layout() {
        let b = request().encode();
        assert_eq!(b.len(), 60);
        assert_eq!(&b[..4], &[2, 1, 0, 0]);
        assert_eq!(u32::from_be_bytes(b[4..8].try_into().unwrap()), 7200);
        assert_eq!(
            &b[8..24],
            &Ipv4Addr::new(10, 1, 0, 2).to_ipv6_mapped().octets()
        );
        assert_eq!(&b[24..36], &[7; 12]);
        assert_eq!(b[36], 17);
        assert_eq!(u16::from_be_bytes([b[40], b[41]]), 51413);
        assert_eq!(u16::from_be_bytes([b[42], b[43]]), 51413);
        assert_eq!(&b[44..60], &Ipv4Addr::UNSPECIFIED.to_ipv6_mapped().octets());
    }

    #[test]
    fn decodes_success_and_matches_request() {
        let r = decode_map(&response(0, [7; 12], 17, 51413, 40000)).unwrap();
        assert_eq!(r.header.result, ResultCode::Success);
        assert_eq!(r.header.lifetime, 3600);
        assert_eq!(r.header.epoch, 42);
        assert_eq!(r.external_port, 40000);
        assert_eq!(r.external_ip, IpAddr::V4(Ipv4Addr::new(57, 66, 2, 1)));
        assert!(r.answers(&request()));
        let other = decode_map(&response(0, [8; 12], 17, 51413, 40000)).unwrap();
        assert!(
            !other.answers(&request()),
            "another nonce is another mapping"
        );
        let tcp = decode_map(&response(0, [7; 12], 6, 51413, 40000)).unwrap();
        assert!(!tcp.answers(&request()));
    }

    #[test]
    fn decodes_error_codes() {
        let r = decode_map(&response(2, [7; 12], 17, 51413, 0)).unwrap();
        assert_eq!(r.header.result, ResultCode::NotAuthorized);
        let short = &response(8, [7; 12], 17, 51413, 0)[..24];
        let r = decode_map(short).unwrap();
        assert_eq!(r.header.result, ResultCode::NoResources);
        assert!(r.header.result.is_transient());
        assert_eq!(
            decode_map(&response(99, [7; 12], 17, 1, 1))
                .unwrap()
                .header
                .result,
            ResultCode::Other(99)
        );
    }

    #[test]
    fn rejects_bad_input() {
        let good = response(0, [7; 12], 17, 51413, 40000);
        assert_eq!(decode_map(&good[..23]), Err(DecodeError::BadLength(23)));
        assert_eq!(decode_map(&good[..30]), Err(DecodeError::BadLength(30)));
        assert_eq!(
            decode_map(&good[..40]),
            Err(DecodeError::BadLength(40)),
            "success without payload"
        );
        assert_eq!(
            decode_map(&vec![2; MAX_MESSAGE + 4]),
            Err(DecodeError::BadLength(MAX_MESSAGE + 4))
        );
        let mut natpmp = good.clone();
        natpmp[0] = 0;
        assert_eq!(decode_map(&natpmp), Err(DecodeError::Version(0)));
        assert_eq!(
            decode_map(&[0, 0x81, 0, 1, 0, 0, 0, 0]),
            Err(DecodeError::Version(0))
        );
        assert_eq!(decode_map(&[]), Err(DecodeError::BadLength(0)));
        let mut req = good.clone();
        req[1] = 1;
        assert_eq!(decode_map(&req), Err(DecodeError::Opcode(1)));
        assert_eq!(decode_announce(&good), Err(DecodeError::Opcode(0x81)));
        // Options after the payload are skipped.
        let mut with_option = good.clone();
        with_option.extend_from_slice(&[0x80, 0, 0, 4, 1, 2, 3, 4]);
        assert_eq!(decode_map(&with_option).unwrap().external_port, 40000);
    }

    #[test]
    fn announce_round_trip() {
        let b = encode_announce(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2)));
        assert_eq!(b.len(), 24);
        assert_eq!(&b[..2], &[2, 0]);
        let mut resp = b.clone();
        resp[1] = 0x80;
        resp[8..12].copy_from_slice(&9u32.to_be_bytes());
        assert_eq!(decode_announce(&resp).unwrap().epoch, 9);
    }
}
