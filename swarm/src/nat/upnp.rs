//! UPnP-IGD port mapping through `igd-next` (SSDP discovery, then SOAP to the gateway's
//! WANIPConnection or WANPPPConnection service, IGD v1 or v2).
//!
//! Limits inherited from `igd-next` 0.17: it searches for `InternetGatewayDevice:1` (IGD v2
//! devices answer that too) and names `WANIPConnection:1` in its SOAP action header whichever
//! service it found; miniupnpd accepts this for both services.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use igd_next::aio::tokio::Tokio;
use igd_next::{AddPortError, PortMappingProtocol, SearchOptions};

use super::{MapError, MappingProtocol, Transport};

/// A discovered UPnP Internet Gateway Device.
pub struct UpnpGateway {
    inner: igd_next::aio::Gateway<Tokio>,
}

/// Searches the local network for a gateway (SSDP multicast from `local`), for `timeout`.
pub async fn discover(local: Ipv4Addr, timeout: Duration) -> Result<UpnpGateway, MapError> {
    let options = SearchOptions {
        bind_addr: SocketAddr::from((local, 0)),
        timeout: Some(timeout),
        single_search_timeout: Some(timeout),
        ..SearchOptions::default()
    };
    match igd_next::aio::tokio::search_gateway(options).await {
        Ok(inner) => Ok(UpnpGateway { inner }),
        Err(igd_next::SearchError::NoResponseWithinTimeout) => {
            Err(MapError::NoAnswer(MappingProtocol::Upnp))
        }
        Err(e) => Err(refused(e)),
    }
}

fn refused(e: impl std::fmt::Display) -> MapError {
    MapError::Refused {
        protocol: MappingProtocol::Upnp,
        reason: e.to_string(),
    }
}

fn igd_protocol(t: Transport) -> PortMappingProtocol {
    match t {
        Transport::Tcp => PortMappingProtocol::TCP,
        Transport::Udp => PortMappingProtocol::UDP,
    }
}

/// What a successful AddPortMapping gave us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpnpLease {
    /// The external port mapped.
    pub external_port: u16,
    /// The lease in seconds; 0 means the gateway only does permanent mappings.
    pub lease: u32,
}

impl UpnpGateway {
    /// The gateway's control address.
    pub fn address(&self) -> SocketAddr {
        self.inner.addr
    }

    /// GetExternalIPAddress. An empty answer (what a gateway with a private WAN address
    /// gives) is [`MapError::NoExternalAddress`].
    pub async fn external_ip(&self) -> Result<IpAddr, MapError> {
        match self.inner.get_external_ip().await {
            Ok(ip) if ip.is_unspecified() => {
                Err(MapError::NoExternalAddress(MappingProtocol::Upnp))
            }
            Ok(ip) => Ok(ip),
            // igd-next cannot parse an empty address and hands back the raw body.
            Err(igd_next::GetExternalIpError::RequestError(
                igd_next::RequestError::InvalidResponse(body),
            )) if is_empty_external_address(&body) => {
                Err(MapError::NoExternalAddress(MappingProtocol::Upnp))
            }
            Err(e) => Err(refused(e)),
        }
    }

    /// Maps `external_port` to `internal` for `lease` seconds. When the port is taken by
    /// another client, asks for any port instead; when the gateway only supports permanent
    /// leases, maps permanently (the mapper still renews, which detects restarts).
    pub async fn map(
        &self,
        transport: Transport,
        internal: SocketAddrV4,
        external_port: u16,
        lease: u32,
        description: &str,
    ) -> Result<UpnpLease, MapError> {
        let proto = igd_protocol(transport);
        let local = SocketAddr::V4(internal);
        match self
            .inner
            .add_port(proto, external_port, local, lease, description)
            .await
        {
            Ok(()) => Ok(UpnpLease {
                external_port,
                lease,
            }),
            Err(AddPortError::OnlyPermanentLeasesSupported) => {
                self.inner
                    .add_port(proto, external_port, local, 0, description)
                    .await
                    .map_err(refused)?;
                Ok(UpnpLease {
                    external_port,
                    lease: 0,
                })
            }
            Err(AddPortError::PortInUse) => {
                let port = self
                    .inner
                    .add_any_port(proto, local, lease, description)
                    .await
                    .map_err(refused)?;
                Ok(UpnpLease {
                    external_port: port,
                    lease,
                })
            }
            Err(e) => Err(refused(e)),
        }
    }

    /// DeletePortMapping.
    pub async fn unmap(&self, transport: Transport, external_port: u16) -> Result<(), MapError> {
        self.inner
            .remove_port(igd_protocol(transport), external_port)
            .await
            .map_err(refused)
    }
}

/// True when a GetExternalIPAddress response body carries an empty address.
fn is_empty_external_address(body: &str) -> bool {
    let compact: String = body.split_whitespace().collect();
    compact.contains("<NewExternalIPAddress></NewExternalIPAddress>")
        || compact.contains("<NewExternalIPAddress/>")
}

#[cfg(test)]
mod tests {
    #[test]
    fn recognises_an_empty_external_address() {
        // Body miniupnpd 2.3.1 sent in the lab from behind a carrier-grade NAT.
        let body = r#"<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:GetExternalIPAddressResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1"><NewExternalIPAddress></NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>"#;
        assert!(super::is_empty_external_address(body));
        assert!(super::is_empty_external_address("<NewExternalIPAddress />"));
        assert!(!super::is_empty_external_address(
            "<NewExternalIPAddress>57.66.2.1</NewExternalIPAddress>"
        ));
    }
}
