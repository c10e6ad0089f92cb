//! NAT-PMP (RFC 6886): a sans-IO codec for the external-address and mapping requests.
//!
//! Written here rather than taken from the `natpmp` crate: the protocol is four fixed-size
//! messages (§3.2, §3.3), and owning the codec keeps the epoch (§3.6) and the exact bytes in
//! the same shape as the PCP codec beside it, which the mapper drives the same way.

use std::net::Ipv4Addr;

use super::Transport;

/// UDP port NAT-PMP servers listen on (the gateway's).
pub const SERVER_PORT: u16 = 5351;

const VERSION: u8 = 0;
const OP_EXTERNAL_ADDRESS: u8 = 0;
const RESPONSE_BIT: u8 = 0x80;

/// Why a datagram is not a response we can use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Too short for the response it claims to be.
    #[error("NAT-PMP response too short ({0} bytes)")]
    Short(usize),
    /// Not version 0 (a PCP server answers version 2).
    #[error("NAT-PMP server answered version {0}")]
    Version(u8),
    /// Not a response to the request we sent.
    #[error("not a NAT-PMP response to our opcode (byte {0:#04x})")]
    Opcode(u8),
}

/// NAT-PMP result codes (§3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultCode {
    /// The request succeeded.
    Success,
    /// The server does not speak version 0.
    UnsupportedVersion,
    /// Refused (e.g. mapping disabled by the user).
    NotAuthorized,
    /// The gateway has no external address yet (e.g. DHCP pending).
    NetworkFailure,
    /// No more mappings available.
    OutOfResources,
    /// The opcode is not supported.
    UnsupportedOpcode,
    /// A code this codec does not know.
    Other(u16),
}

impl ResultCode {
    fn from_u16(v: u16) -> Self {
        match v {
            0 => ResultCode::Success,
            1 => ResultCode::UnsupportedVersion,
            2 => ResultCode::NotAuthorized,
            3 => ResultCode::NetworkFailure,
            4 => ResultCode::OutOfResources,
            5 => ResultCode::UnsupportedOpcode,
            other => ResultCode::Other(other),
        }
    }
}

/// Encodes the "what is your external address" request (§3.2).
pub fn encode_external_address() -> [u8; 2] {
    [VERSION, OP_EXTERNAL_ADDRESS]
}

/// The external-address response (§3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExternalAddress {
    /// Outcome.
    pub result: ResultCode,
    /// Seconds since the gateway's mapping table was (re)initialised.
    pub epoch: u32,
    /// The gateway's external IPv4 address.
    pub ip: Ipv4Addr,
}

/// Decodes an external-address response.
pub fn decode_external_address(buf: &[u8]) -> Result<ExternalAddress, DecodeError> {
    let (result, epoch) = decode_header(buf, OP_EXTERNAL_ADDRESS, 12)?;
    Ok(ExternalAddress {
        result,
        epoch,
        ip: Ipv4Addr::new(buf[8], buf[9], buf[10], buf[11]),
    })
}

/// A mapping request (§3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapRequest {
    /// TCP or UDP.
    pub transport: Transport,
    /// The internal port to map.
    pub internal_port: u16,
    /// The external port we would like (the gateway may choose another).
    pub suggested_external_port: u16,
    /// Requested lifetime in seconds; 0 deletes the mapping.
    pub lifetime: u32,
}

impl MapRequest {
    /// Encodes the request (12 bytes).
    pub fn encode(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0] = VERSION;
        b[1] = op(self.transport);
        b[4..6].copy_from_slice(&self.internal_port.to_be_bytes());
        b[6..8].copy_from_slice(&self.suggested_external_port.to_be_bytes());
        b[8..12].copy_from_slice(&self.lifetime.to_be_bytes());
        b
    }
}

fn op(transport: Transport) -> u8 {
    match transport {
        Transport::Udp => 1,
        Transport::Tcp => 2,
    }
}

/// A mapping response (§3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapResponse {
    /// Outcome.
    pub result: ResultCode,
    /// Seconds since the gateway's mapping table was (re)initialised.
    pub epoch: u32,
    /// The internal port the mapping is for.
    pub internal_port: u16,
    /// The external port assigned.
    pub external_port: u16,
    /// The lifetime granted, in seconds.
    pub lifetime: u32,
}

/// Decodes a mapping response to a request for `transport`.
pub fn decode_map(buf: &[u8], transport: Transport) -> Result<MapResponse, DecodeError> {
    let (result, epoch) = decode_header(buf, op(transport), 16)?;
    Ok(MapResponse {
        result,
        epoch,
        internal_port: u16::from_be_bytes([buf[8], buf[9]]),
        external_port: u16::from_be_bytes([buf[10], buf[11]]),
        lifetime: u32::from_be_bytes(buf[12..16].try_into().unwrap()),
    })
}

fn decode_header(buf: &[u8], opcode: u8, len: usize) -> Result<(ResultCode, u32), DecodeError> {
    if buf.len() < 2 {
        return Err(DecodeError::Short(buf.len()));
    }
    if buf[0] != VERSION {
        return Err(DecodeError::Version(buf[0]));
    }
    if buf[1] != RESPONSE_BIT | opcode {
        return Err(DecodeError::Opcode(buf[1]));
    }
    // Error responses have the full length too (§3.5: fields are zeroed, not omitted).
    if buf.len() < len {
        return Err(DecodeError::Short(buf.len()));
    }
    let result = ResultCode::from_u16(u16::from_be_bytes([buf[2], buf[3]]));
    Ok((result, u32::from_be_bytes(buf[4..8].try_into().unwrap())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_request_layout() {
        let req = MapRequest {
            transport: Transport::Tcp,
            internal_port: 6881,
            suggested_external_port: 6882,
            lifetime: 60,
        };
        assert_eq!(
            req.encode(),
            [0, 2, 0, 0, 0x1a, 0xe1, 0x1a, 0xe2, 0, 0, 0, 60]
        );
        let udp = MapRequest {
            transport: Transport::Udp,
            ..req
        };
        assert_eq!(udp.encode()[1], 1);
    }

    #[test]
    fn decodes_responses_captured_from_miniupnpd() {
        // Bytes miniupnpd 2.3.1 sent in the lab to an external-address and a TCP map request.
        let ext = hex("00800000000000033942000c");
        let e = decode_external_address(&ext).unwrap();
        assert_eq!(e.result, ResultCode::Success);
        assert_eq!(e.epoch, 3);
        assert_eq!(e.ip, Ipv4Addr::new(57, 66, 0, 12));
        let map = hex("00820000000000031ae11ae10000003c");
        let m = decode_map(&map, Transport::Tcp).unwrap();
        assert_eq!(
            (m.internal_port, m.external_port, m.lifetime, m.epoch),
            (6881, 6881, 60, 3)
        );
        assert_eq!(
            decode_map(&map, Transport::Udp),
            Err(DecodeError::Opcode(0x82))
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(decode_external_address(&[0]), Err(DecodeError::Short(1)));
        assert_eq!(
            decode_external_address(&[2, 0x80, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
            Err(DecodeError::Version(2))
        );
        assert_eq!(
            decode_external_address(&[0, 0x80, 0, 0, 0, 0, 0, 0, 1, 2]),
            Err(DecodeError::Short(10))
        );
        assert_eq!(
            decode_map(&[0, 0x82, 0, 2, 0, 0, 0, 9], Transport::Tcp),
            Err(DecodeError::Short(8))
        );
        let refused = hex("00820002000000090000000000000000");
        assert_eq!(
            decode_map(&refused, Transport::Tcp).unwrap().result,
            ResultCode::NotAuthorized
        );
        let odd = hex("00820063000000090000000000000000");
        assert_eq!(
            decode_map(&odd, Transport::Tcp).unwrap().result,
            ResultCode::Other(99)
        );
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
