//! NAT traversal that needs no peer's help: asking the home router for port mappings and
//! learning what the outside sees of us.
//!
//! - [`pcp`] and [`natpmp`] are sans-IO codecs (RFC 6887, RFC 6886); [`upnp`] wraps
//!   `igd-next` for UPnP-IGD. [`mapper::PortMapper`] is the tokio task that tries them in the
//!   order PCP, NAT-PMP, UPnP, keeps the mappings alive and removes them on shutdown.
//! - [`voter::AddressVoter`] (sans-IO) turns reports of our address from DHT nodes, peers and the
//!   gateway into a consensus external address and a NAT classification.
//! - [`report::Report`] gathers everything `burrow nat-check` prints.

pub mod epoch;
pub mod gateway;
pub mod ifaddrs;
pub mod mapper;
pub mod natpmp;
pub mod pcp;
pub mod report;
mod udp_client;
pub use udp_client::Retry;
pub mod upnp;
pub mod voter;

pub use mapper::{MapperConfig, MapperState, Mapping, PortMapper, ProtocolStatus, DEFAULT_LEASE};
pub use report::Report;
pub use voter::{AddressVoter, MappingBehaviour, Vote, VoteSource};

use serde::Serialize;

/// The transport a port mapping is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Transport {
    /// IANA protocol number (as PCP carries it).
    pub fn ip_protocol(self) -> u8 {
        match self {
            Transport::Tcp => 6,
            Transport::Udp => 17,
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "TCP",
            Transport::Udp => "UDP",
        })
    }
}

/// A port-mapping protocol a gateway may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MappingProtocol {
    /// Port Control Protocol, RFC 6887.
    Pcp,
    /// NAT Port Mapping Protocol, RFC 6886.
    NatPmp,
    /// UPnP Internet Gateway Device (WANIPConnection / WANPPPConnection).
    Upnp,
}

impl MappingProtocol {
    /// The order in which the mapper tries them: PCP can replace NAT-PMP on the same port,
    /// and both are cheaper and more precise than UPnP's SSDP + SOAP.
    pub const ORDER: [MappingProtocol; 3] = [
        MappingProtocol::Pcp,
        MappingProtocol::NatPmp,
        MappingProtocol::Upnp,
    ];
}

impl std::fmt::Display for MappingProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MappingProtocol::Pcp => "PCP",
            MappingProtocol::NatPmp => "NAT-PMP",
            MappingProtocol::Upnp => "UPnP",
        })
    }
}

/// Why a mapping attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// No default gateway was found (and none was configured).
    #[error("no default IPv4 gateway")]
    NoGateway,
    /// The gateway did not answer within the retry budget.
    #[error("no answer from {0}")]
    NoAnswer(MappingProtocol),
    /// The gateway answered with an error.
    #[error("{protocol} refused: {reason}")]
    Refused {
        /// The protocol that refused.
        protocol: MappingProtocol,
        /// The result code or fault, as text.
        reason: String,
    },
    /// The gateway answered but has no usable external address: it is itself behind another
    /// NAT (miniupnpd, for one, will not map with a private or shared WAN address).
    #[error("{0}: the gateway has no usable external address")]
    NoExternalAddress(MappingProtocol),
    /// A socket operation failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}
