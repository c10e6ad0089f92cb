//! Routers: their nftables rulesets and the miniupnpd port-mapping service they can run.
//!
//! miniupnpd 2.3.1 (Debian's nftables build) has `enable_upnp` and `enable_natpmp`, but NAT-PMP
//! and PCP share one switch and one port (UDP 5351). To offer only one of the two, the router
//! drops the other's requests in its input chain by the first payload byte, the version: 0 is
//! NAT-PMP (RFC 6886), 2 is PCP (RFC 6887).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::cmd::{self, LabError};
use crate::host::Host;
use crate::lab::Nat;

/// The nftables table every lab router uses; miniupnpd is configured to write into it.
const TABLE: &str = "burrowlab";

/// Which port-mapping protocols a router's miniupnpd answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappingProtocols {
    /// UPnP-IGD (SSDP discovery + SOAP control).
    pub upnp: bool,
    /// NAT-PMP (RFC 6886).
    pub natpmp: bool,
    /// PCP (RFC 6887).
    pub pcp: bool,
}

impl MappingProtocols {
    /// UPnP-IGD only.
    pub const UPNP_ONLY: Self = Self {
        upnp: true,
        natpmp: false,
        pcp: false,
    };
    /// NAT-PMP only.
    pub const NATPMP_ONLY: Self = Self {
        upnp: false,
        natpmp: true,
        pcp: false,
    };
    /// PCP only.
    pub const PCP_ONLY: Self = Self {
        upnp: false,
        natpmp: false,
        pcp: true,
    };
    /// All three.
    pub const ALL: Self = Self {
        upnp: true,
        natpmp: true,
        pcp: true,
    };
}

/// A home router: its host (WAN addresses) plus LAN addresses and the mapping service.
#[derive(Clone)]
pub struct Router {
    host: Host,
    nat: Nat,
    lan_v4: Ipv4Addr,
    lan_v6: Option<Ipv6Addr>,
    dir: PathBuf,
    upnpd: Arc<Mutex<Option<(u32, MappingProtocols)>>>,
}

impl Router {
    pub(crate) fn new(
        host: Host,
        nat: Nat,
        lan_v4: Ipv4Addr,
        lan_v6: Option<Ipv6Addr>,
        dir: PathBuf,
    ) -> Self {
        Router {
            host,
            nat,
            lan_v4,
            lan_v6,
            dir,
            upnpd: Arc::default(),
        }
    }

    /// The router's namespace (run commands in it, read its WAN address with `ipv4()`).
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The router's WAN IPv4 address (public, or 100.64.x.y behind a carrier).
    pub fn wan_ipv4(&self) -> Ipv4Addr {
        self.host.ipv4
    }

    /// The router's LAN IPv4 address: the LAN hosts' default gateway.
    pub fn lan_ipv4(&self) -> Ipv4Addr {
        self.lan_v4
    }

    /// The router's LAN IPv6 address, if the LAN has IPv6.
    pub fn lan_ipv6(&self) -> Option<Ipv6Addr> {
        self.lan_v6
    }

    /// The NAT behaviour this router was built with.
    pub fn nat(&self) -> Nat {
        self.nat
    }

    /// Starts miniupnpd offering `protocols` to the LAN (and sets the matching filter rules).
    pub fn start_mapping(&self, protocols: MappingProtocols) -> Result<(), LabError> {
        let mut state = self.upnpd.lock().unwrap();
        assert!(
            state.is_none(),
            "miniupnpd already running on {}",
            self.host.name
        );
        let ns = &self.host.ns;
        // Which of the two UDP 5351 protocols to drop (see the module comment).
        cmd::run(
            &[
                "ip",
                "netns",
                "exec",
                ns,
                "nft",
                "flush",
                "chain",
                "inet",
                TABLE,
                "mapping_filter",
            ],
            None,
        )?;
        let mut drops = String::new();
        if !protocols.natpmp {
            drops +=
                &format!("add rule inet {TABLE} mapping_filter udp dport 5351 @th,64,8 0 drop\n");
        }
        if !protocols.pcp {
            drops +=
                &format!("add rule inet {TABLE} mapping_filter udp dport 5351 @th,64,8 2 drop\n");
        }
        if !drops.is_empty() {
            cmd::nft(ns, &drops)?;
        }
        let name = &self.host.name;
        let conf = self.dir.join(format!("{name}-miniupnpd.conf"));
        let text = format!(
            "ext_ifname=wan0\nlistening_ip=lan0\n\
             enable_upnp={upnp}\nenable_natpmp={pmp}\nsecure_mode=yes\nsystem_uptime=no\n\
             http_port=5000\nnotify_interval=60\nlease_file={lease}\n\
             uuid=6b1e5d8c-7f3a-4c2e-9d4b-0a1b2c3d4e5f\n\
             upnp_table_name={TABLE}\nupnp_nat_table_name={TABLE}\nupnp_forward_chain=miniupnpd\n\
             upnp_nat_chain=prerouting_miniupnpd\nupnp_nat_postrouting_chain=postrouting_miniupnpd\n\
             min_lifetime=1\nmax_lifetime=86400\n\
             allow 1024-65535 0.0.0.0/0 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
            upnp = yes_no(protocols.upnp),
            pmp = yes_no(protocols.natpmp || protocols.pcp),
            lease = self.lease_file().display(),
        );
        std::fs::write(&conf, text).map_err(|source| LabError::Io {
            what: format!("writing {conf:?}"),
            source,
        })?;
        let conf_s = conf.to_string_lossy().into_owned();
        let pid_file = self.dir.join(format!("{name}-miniupnpd.pid"));
        let log = self.dir.join(format!("{name}-miniupnpd.log"));
        let pid = self.host.spawn(
            &[
                "miniupnpd",
                "-d",
                "-f",
                &conf_s,
                "-P",
                &pid_file.to_string_lossy(),
            ],
            Some(&log),
        )?;
        *state = Some((pid, protocols));
        drop(state);
        self.wait_listening(protocols)
    }

    /// Simulates a router restart: kills miniupnpd, flushes its rules and leases, starts it again.
    pub fn restart_mapping(&self) -> Result<(), LabError> {
        let protocols = self.stop_mapping().expect("miniupnpd was not running");
        self.start_mapping(protocols)
    }

    /// Kills miniupnpd and flushes every mapping it made; returns what it was offering.
    pub fn stop_mapping(&self) -> Option<MappingProtocols> {
        let (pid, protocols) = self.upnpd.lock().unwrap().take()?;
        self.host.kill(pid);
        for chain in ["miniupnpd", "prerouting_miniupnpd", "postrouting_miniupnpd"] {
            let _ = cmd::run(
                &[
                    "ip",
                    "netns",
                    "exec",
                    &self.host.ns,
                    "nft",
                    "flush",
                    "chain",
                    "inet",
                    TABLE,
                    chain,
                ],
                None,
            );
        }
        let _ = std::fs::remove_file(self.lease_file());
        Some(protocols)
    }

    /// The port-forwarding (DNAT) rules miniupnpd has installed, as `nft` prints them.
    pub fn forwarding_rules(&self) -> Result<String, LabError> {
        self.host.exec(&[
            "nft",
            "list",
            "chain",
            "inet",
            TABLE,
            "prerouting_miniupnpd",
        ])
    }

    /// miniupnpd's log so far (for failure messages).
    pub fn mapping_log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}-miniupnpd.log", self.host.name)))
            .unwrap_or_default()
    }

    fn lease_file(&self) -> PathBuf {
        self.dir
            .join(format!("{}-miniupnpd.leases", self.host.name))
    }

    /// Waits until miniupnpd's sockets are bound so a test's first request is not lost.
    fn wait_listening(&self, protocols: MappingProtocols) -> Result<(), LabError> {
        for _ in 0..100 {
            let ss = self.host.exec(&["ss", "-lnu"])?;
            let tcp = self.host.exec(&["ss", "-lnt"])?;
            let pmp_ok = !(protocols.natpmp || protocols.pcp) || ss.contains(":5351");
            let upnp_ok = !protocols.upnp || (ss.contains(":1900") && tcp.contains(":5000"));
            if pmp_ok && upnp_ok {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Err(LabError::Command {
            cmd: "miniupnpd".into(),
            status: "not listening after 5 s".into(),
            stderr: self.mapping_log(),
        })
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The ruleset of a home router. IPv4 is masqueraded on `wan0` unless routed; forwarding is
/// stateful (replies and LAN-originated traffic pass, plus whatever miniupnpd opens).
///
/// Unsolicited TCP and UDP from the WAN to the router itself is dropped, as home routers do.
/// That matters for hole punching: a packet the router accepted for its own (closed) port
/// leaves a conntrack entry, which then takes the port-preserving mapping a LAN host's
/// packet toward the same remote would have had, and the host is masqueraded onto another
/// port. A dropped packet leaves no entry.
pub(crate) fn home_ruleset(nat: Nat, open_firewall: bool) -> String {
    let masquerade = match nat {
        Nat::EndpointIndependent => "meta nfproto ipv4 oifname \"wan0\" masquerade",
        Nat::EndpointDependent => "meta nfproto ipv4 oifname \"wan0\" masquerade random",
        Nat::Routed => "",
    };
    let open = if open_firewall {
        "iifname \"wan0\" accept"
    } else {
        ""
    };
    format!(
        "table inet {TABLE} {{
  chain input {{
    type filter hook input priority 0; policy accept;
    jump mapping_filter
    iifname \"wan0\" ct state established,related accept
    iifname \"wan0\" meta l4proto {{ tcp, udp }} drop
  }}
  chain mapping_filter {{ }}
  chain forward {{
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname \"lan0\" accept
    jump miniupnpd
    {open}
  }}
  chain miniupnpd {{ }}
  chain prerouting {{
    type nat hook prerouting priority -100; policy accept;
    jump prerouting_miniupnpd
  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd
    {masquerade}
  }}
  chain prerouting_miniupnpd {{ }}
  chain postrouting_miniupnpd {{ }}
}}
"
    )
}

/// The ruleset of a carrier-grade NAT: forwards everything, masquerades onto its WAN, drops
/// unsolicited TCP and UDP to itself from the WAN (see [`home_ruleset`]).
pub(crate) fn carrier_ruleset(nat: Nat) -> String {
    let random = if nat == Nat::EndpointDependent {
        " random"
    } else {
        ""
    };
    format!(
        "table ip {TABLE} {{
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname \"wan0\" ct state established,related accept
    iifname \"wan0\" meta l4proto {{ tcp, udp }} drop
  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    oifname \"wan0\" masquerade{random}
  }}
}}
"
    )
}
