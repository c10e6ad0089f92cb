//! The connectivity report `burrow nat-check` prints: what the gateway said, what remotes see,
//! and one sentence of advice. Display is for people, Serialize (JSON) for scripts.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Serialize;

use super::mapper::{MapperState, ProtocolStatus};
use super::voter::{is_public, AddressVoter, MappingBehaviour};
use super::{MappingProtocol, Transport};

/// A mapped port as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MappedPort {
    /// TCP or UDP.
    pub transport: Transport,
    /// The protocol that made the mapping.
    pub protocol: MappingProtocol,
    /// Where the gateway forwards to.
    pub internal: SocketAddr,
    /// Where the outside reaches us.
    pub external: SocketAddr,
    /// Lease granted in seconds (0: permanent).
    pub lease_secs: u32,
}

/// Everything known about this host's reachability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The port the session listens on (TCP and UDP).
    pub port: u16,
    /// This host's own addresses.
    pub local_addresses: Vec<IpAddr>,
    /// The default IPv4 gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Which mapping protocols were tried and whether they answered.
    pub protocols: Vec<ProtocolStatus>,
    /// Active port mappings.
    pub mappings: Vec<MappedPort>,
    /// The external IPv4 address (consensus of remotes, or the gateway's).
    pub external_ipv4: Option<Ipv4Addr>,
    /// The external IPv6 address, when remotes reported one.
    pub external_ipv6: Option<Ipv6Addr>,
    /// How the NAT maps our UDP socket.
    pub nat_behaviour: MappingBehaviour,
    /// More than one NAT between us and the internet.
    pub double_nat: bool,
    /// Inbound TCP verified by a remote peer (`None`: not tested).
    pub inbound_tcp: Option<bool>,
    /// Inbound UDP verified by a remote peer (`None`: not tested).
    pub inbound_udp: Option<bool>,
    /// One plain sentence on what to do.
    pub advice: String,
}

impl Report {
    /// Builds the report from the mapper's state and the address votes; inbound checks are
    /// left untested (the caller fills them in and calls [`Report::refresh_advice`]).
    pub fn new(
        port: u16,
        local_addresses: Vec<IpAddr>,
        mapper: &MapperState,
        voter: &AddressVoter,
    ) -> Report {
        let mut report = Report {
            port,
            local_addresses,
            gateway: mapper.gateway,
            protocols: mapper.probes.clone(),
            mappings: mapper
                .mappings
                .iter()
                .map(|m| MappedPort {
                    transport: m.transport,
                    protocol: m.protocol,
                    internal: SocketAddr::V4(m.internal),
                    external: m.external,
                    lease_secs: m.lease_secs,
                })
                .collect(),
            external_ipv4: voter.external_ipv4().or(match mapper.external_ip {
                Some(IpAddr::V4(a)) if is_public(IpAddr::V4(a)) => Some(a),
                _ => None,
            }),
            external_ipv6: voter.external_ipv6(),
            nat_behaviour: voter.behaviour(),
            double_nat: false,
            inbound_tcp: None,
            inbound_udp: None,
            advice: String::new(),
        };
        // A gateway with a private / shared external address, or none at all while remotes
        // see us at a public one, is itself behind a NAT.
        report.double_nat = voter.double_nat()
            || mapper.external_ip.is_some_and(|a| !is_public(a))
            || (mapper.gateway_lacks_external_address && report.external_ipv4.is_some());
        report.refresh_advice();
        report
    }

    /// Whether anything is known yet: a gateway, a mapping protocol's answer, the NAT's
    /// behaviour or our external address.
    pub fn has_findings(&self) -> bool {
        self.gateway.is_some()
            || !self.protocols.is_empty()
            || self.nat_behaviour != MappingBehaviour::Unknown
            || self.external_ipv4.is_some()
    }

    /// One line for a running download or seed: what was found, then the advice. `None`
    /// until there are findings.
    pub fn summary_line(&self) -> Option<String> {
        if !self.has_findings() {
            return None;
        }
        let mapping = match self.mappings.first() {
            Some(m) => format!("port {} mapped by {}", m.external.port(), m.protocol),
            None => "no port mapping".to_string(),
        };
        Some(format!(
            "network: external address {}, NAT {}, {mapping}. {}",
            opt(&self.external_ipv4),
            self.nat_behaviour,
            self.advice
        ))
    }

    /// Recomputes [`Report::advice`] from the other fields.
    pub fn refresh_advice(&mut self) {
        self.advice = self.compute_advice();
    }

    fn compute_advice(&self) -> String {
        let port = self.port;
        if self.inbound_tcp == Some(true) && self.inbound_udp == Some(true) {
            return format!(
                "TCP and UDP port {port} are reachable from the internet; nothing to do."
            );
        }
        if self.double_nat {
            return "You are behind carrier-grade NAT: IPv6 or your ISP can help.".into();
        }
        if self.nat_behaviour == MappingBehaviour::NoNat {
            return format!(
                "You have a public address: allow TCP and UDP port {port} in your firewall."
            );
        }
        let tcp = self.mappings.iter().any(|m| m.transport == Transport::Tcp);
        let udp = self.mappings.iter().any(|m| m.transport == Transport::Udp);
        if tcp && udp {
            let via = self.mappings[0].protocol;
            return format!("Your router forwards port {port} for us ({via}); nothing to do.");
        }
        if !self.has_findings() {
            return "Not enough reports yet to judge reachability: stay connected to the swarm a little longer.".into();
        }
        let lan = self
            .gateway
            .and_then(|_| self.local_addresses.iter().find(|a| a.is_ipv4()).copied());
        if self.protocols.iter().any(|p| p.answered) {
            return match lan {
                Some(lan) => format!("Your router refused to map the port: forward TCP and UDP port {port} to {lan}."),
                None => format!("Your router refused to map the port: forward TCP and UDP port {port} to this computer."),
            };
        }
        match lan {
            Some(lan) => format!("Enable UPnP or NAT-PMP on your router, or forward TCP and UDP port {port} to {lan}."),
            None => "Enable UPnP or NAT-PMP on your router.".into(),
        }
    }
}

fn opt<T: fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "unknown".to_string(), |v| v.to_string())
}

fn tested(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "reachable",
        Some(false) => "NOT reachable",
        None => "not tested",
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let locals: Vec<String> = self.local_addresses.iter().map(|a| a.to_string()).collect();
        writeln!(
            f,
            "Local addresses:   {}",
            if locals.is_empty() {
                "none".into()
            } else {
                locals.join(", ")
            }
        )?;
        writeln!(f, "Gateway:           {}", opt(&self.gateway))?;
        for p in &self.protocols {
            let what = match (&p.error, p.answered) {
                (None, _) => "mapped".to_string(),
                (Some(e), true) => format!("answered: {e}"),
                (Some(_), false) => "no answer".to_string(),
            };
            writeln!(f, "  {:<16} {what}", format!("{}:", p.protocol))?;
        }
        if self.mappings.is_empty() {
            writeln!(f, "Port mappings:     none")?;
        }
        for m in &self.mappings {
            let lease = if m.lease_secs == 0 {
                "permanent".to_string()
            } else {
                format!("lease {} s", m.lease_secs)
            };
            writeln!(
                f,
                "Port mapping:      {} {} -> {} via {} ({lease})",
                m.transport, m.external, m.internal, m.protocol
            )?;
        }
        writeln!(f, "External IPv4:     {}", opt(&self.external_ipv4))?;
        writeln!(f, "External IPv6:     {}", opt(&self.external_ipv6))?;
        writeln!(f, "NAT behaviour:     {}", self.nat_behaviour)?;
        writeln!(
            f,
            "Double NAT:        {}",
            if self.double_nat { "yes" } else { "no" }
        )?;
        writeln!(
            f,
            "Inbound TCP {}:  {}",
            self.port,
            tested(self.inbound_tcp)
        )?;
        writeln!(
            f,
            "Inbound UDP {}:  {}",
            self.port,
            tested(self.inbound_udp)
        )?;
        write!(f, "Advice: {}", self.advice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::mapper::Mapping;
    use crate::nat::voter::{Vote, VoteSource};
    use std::net::SocketAddrV4;
    use std::time::Instant;

    fn lan() -> Vec<IpAddr> {
        vec!["10.1.0.2".parse().unwrap()]
    }

    fn state_with(protocol_answered: Option<bool>, mapped: bool) -> MapperState {
        let mut s = MapperState {
            gateway: Some(Ipv4Addr::new(10, 1, 0, 1)),
            ..Default::default()
        };
        if let Some(answered) = protocol_answered {
            s.probes.push(ProtocolStatus {
                protocol: MappingProtocol::Pcp,
                answered,
                error: (!mapped).then(|| "NotAuthorized".into()),
            });
        }
        if mapped {
            s.external_ip = Some("57.66.2.1".parse().unwrap());
            for t in [Transport::Tcp, Transport::Udp] {
                s.mappings.push(Mapping {
                    transport: t,
                    protocol: MappingProtocol::Pcp,
                    internal: SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 2), 51413),
                    external: "57.66.2.1:51413".parse().unwrap(),
                    lease_secs: 7200,
                    expires: None,
                });
            }
        }
        s
    }

    #[test]
    fn advice_follows_the_situation() {
        let v = AddressVoter::new(51413, lan());
        let r = Report::new(51413, lan(), &state_with(None, false), &v);
        assert_eq!(
            r.advice,
            "Enable UPnP or NAT-PMP on your router, or forward TCP and UDP port 51413 to 10.1.0.2."
        );
        let r = Report::new(51413, lan(), &state_with(Some(true), false), &v);
        assert!(
            r.advice.contains("refused")
                && r.advice
                    .contains("forward TCP and UDP port 51413 to 10.1.0.2"),
            "{}",
            r.advice
        );
        let r = Report::new(51413, lan(), &state_with(Some(true), true), &v);
        assert!(
            r.advice.contains("forwards port 51413") && r.advice.contains("PCP"),
            "{}",
            r.advice
        );
        assert_eq!(
            r.external_ipv4,
            Some(Ipv4Addr::new(57, 66, 2, 1)),
            "a public gateway address counts"
        );

        let mut cgn = state_with(Some(true), false);
        cgn.external_ip = Some("100.64.1.2".parse().unwrap());
        let r = Report::new(51413, lan(), &cgn, &v);
        assert!(r.double_nat);
        assert_eq!(r.external_ipv4, None);
        assert_eq!(
            r.advice,
            "You are behind carrier-grade NAT: IPv6 or your ISP can help."
        );

        // The gateway has no external address while remotes see a public one: double NAT.
        let mut hidden = state_with(Some(true), false);
        hidden.gateway_lacks_external_address = true;
        assert!(
            !Report::new(51413, lan(), &hidden, &v).double_nat,
            "no remote view yet"
        );
        let mut seen = AddressVoter::new(51413, lan());
        for r in ["57.66.1.1", "57.66.1.2"] {
            seen.add(
                Vote {
                    source: VoteSource::Dht,
                    reporter: r.parse().unwrap(),
                    address: "57.66.3.1".parse().unwrap(),
                    udp_port: Some(1),
                },
                Instant::now(),
            );
        }
        assert!(Report::new(51413, lan(), &hidden, &seen).double_nat);

        let mut ok = Report::new(51413, lan(), &state_with(Some(true), true), &v);
        ok.inbound_tcp = Some(true);
        ok.inbound_udp = Some(true);
        ok.refresh_advice();
        assert!(ok.advice.contains("nothing to do") && ok.advice.contains("reachable"));
    }

    #[test]
    fn renders_text_and_json() {
        let mut v = AddressVoter::new(51413, lan());
        let now = Instant::now();
        for (r, p) in [("57.66.1.1", 40000), ("57.66.1.2", 40001)] {
            v.add(
                Vote {
                    source: VoteSource::Dht,
                    reporter: r.parse().unwrap(),
                    address: "57.66.2.1".parse().unwrap(),
                    udp_port: Some(p),
                },
                now,
            );
        }
        let r = Report::new(51413, lan(), &state_with(Some(true), true), &v);
        let text = r.to_string();
        assert!(text.contains("Gateway:           10.1.0.1"), "{text}");
        assert!(
            text.contains(
                "Port mapping:      UDP 57.66.2.1:51413 -> 10.1.0.2:51413 via PCP (lease 7200 s)"
            ),
            "{text}"
        );
        assert!(
            text.contains("NAT behaviour:     endpoint-dependent mapping"),
            "{text}"
        );
        assert!(text.contains("Inbound TCP 51413:  not tested"), "{text}");
        assert!(text.ends_with(&format!("Advice: {}", r.advice)));
        let json: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(json["gateway"], "10.1.0.1");
        assert_eq!(json["nat_behaviour"], "endpoint-dependent");
        assert_eq!(json["mappings"][1]["transport"], "udp");
        assert_eq!(json["mappings"][1]["protocol"], "pcp");
        assert_eq!(json["protocols"][0]["answered"], true);
        assert_eq!(json["inbound_udp"], serde_json::Value::Null);
        assert_eq!(json["external_ipv4"], "57.66.2.1");
    }
}
