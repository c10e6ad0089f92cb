//! The lab: builds namespaces, wires them, and tears everything down on drop.
//!
//! Address plan (also in README.md):
//! - the "internet" is a bridge in its own namespace on 57.66.0.0/16 and 2001:db8::/64:
//!   public host `i` is 57.66.1.i / 2001:db8::1:i, home router `j` is 57.66.2.j / 2001:db8::2:j,
//!   carrier `c` is 57.66.3.c / 2001:db8::3:c;
//! - home `k` has the LAN 10.k.0.0/24 (57.67.k.0/24 when routed without NAT) and 2001:db8:k::/64,
//!   router .1 / ::1, LAN hosts from .2 / ::2;
//! - carrier `c` serves its homes on 100.64.c.0/24 (carrier .1, homes from .2).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::cmd::{self, LabError};
use crate::host::{Host, Teardown};
use crate::router::{self, MappingProtocols, Router};

/// How a home router maps its LAN's IPv4 traffic onto its WAN address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// Port-preserving masquerade: one external port per internal socket, whatever the remote.
    EndpointIndependent,
    /// Masquerade with a random port per connection: a new external port per remote endpoint.
    EndpointDependent,
    /// No NAT: the LAN has public addresses and the router only routes (with a stateful
    /// firewall unless [`HomeSpec::open_firewall`]).
    Routed,
}

/// Where a home router's WAN side is plugged in.
#[derive(Clone, Copy)]
pub enum Upstream<'a> {
    /// Straight onto the public internet bridge.
    Internet,
    /// Behind a carrier-grade NAT (double NAT).
    Carrier(&'a Carrier),
}

/// What a home network looks like.
#[derive(Clone, Copy)]
pub struct HomeSpec<'a> {
    /// NAT behaviour of the home router.
    pub nat: Nat,
    /// Number of LAN hosts to create (at least one is useful).
    pub lan_hosts: usize,
    /// Give the LAN routed IPv6 (2001:db8:k::/64) behind a stateful firewall.
    /// Not available behind a carrier.
    pub ipv6: bool,
    /// Start miniupnpd on the router offering these protocols.
    pub mapping: Option<MappingProtocols>,
    /// Accept unsolicited inbound traffic (only meaningful for IPv6 and [`Nat::Routed`]).
    pub open_firewall: bool,
    /// Where the router's WAN is plugged in.
    pub upstream: Upstream<'a>,
}

impl<'a> HomeSpec<'a> {
    /// A home with one LAN host behind `nat`, IPv4 only, no port mapping service.
    pub fn new(nat: Nat) -> Self {
        HomeSpec {
            nat,
            lan_hosts: 1,
            ipv6: false,
            mapping: None,
            open_firewall: false,
            upstream: Upstream::Internet,
        }
    }
}

/// A home network: its router and its LAN hosts.
pub struct Home {
    /// The home router.
    pub router: Router,
    /// The LAN hosts, in creation order.
    pub hosts: Vec<Host>,
}

/// A carrier-grade NAT router with its own subscriber segment in 100.64.0.0/10.
pub struct Carrier {
    /// The carrier's router (its `ipv4()` is the public WAN address).
    pub router: Host,
    index: u8,
    homes: Mutex<u8>,
}

/// A network-namespace lab. Everything it created is removed when it is dropped.
pub struct Lab {
    id: String,
    dir: PathBuf,
    internet: String,
    namespaces: Vec<String>,
    /// Namespaces plugged into the internet bridge; each needs the routes in `routes`.
    attached: Vec<String>,
    /// Routes to routed (non-NATed) prefixes: (prefix, via), added on every attached namespace.
    routes: Vec<(String, String)>,
    next_public: u8,
    next_wan: u8,
    next_home: u8,
    next_carrier: u8,
    next_port: u32,
    teardown: Arc<Mutex<Teardown>>,
}

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Namespace-name prefix of every lab; followed by the owning pid.
const NS_PREFIX: &str = "blab-";

impl Lab {
    /// Builds an empty lab (just the internet bridge), or `None` after reporting a skip when
    /// not running as root. Panics when root but the lab cannot be built: that is a failure.
    pub fn new_or_skip(test: &str) -> Option<Lab> {
        if !crate::is_root() {
            crate::report_skip(test, "needs root");
            return None;
        }
        Some(Lab::new().unwrap_or_else(|e| panic!("building the lab for {test}: {e}")))
    }

    /// Builds an empty lab: a namespace holding the internet bridge.
    pub fn new() -> Result<Lab, LabError> {
        remove_stale_labs();
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{NS_PREFIX}{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("burrow-netlab-{id}"));
        std::fs::create_dir_all(&dir).map_err(|source| LabError::Io {
            what: format!("creating {dir:?}"),
            source,
        })?;
        let mut lab = Lab {
            internet: format!("{id}-net"),
            id,
            dir,
            namespaces: Vec::new(),
            attached: Vec::new(),
            routes: Vec::new(),
            next_public: 1,
            next_wan: 1,
            next_home: 1,
            next_carrier: 1,
            next_port: 0,
            teardown: Arc::default(),
        };
        let net = lab.internet.clone();
        lab.add_ns(&net)?;
        cmd::ip(&net, "link add br0 type bridge")?;
        cmd::ip(&net, "link set br0 up")?;
        Ok(lab)
    }

    /// The directory where this lab keeps configuration files and logs.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Every namespace this lab created.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// Adds a host with a public address on the internet bridge.
    pub fn public_host(&mut self, name: &str) -> Result<Host, LabError> {
        let i = self.next_public;
        self.next_public += 1;
        let ns = format!("{}-{name}", self.id);
        self.add_ns(&ns)?;
        let v4 = Ipv4Addr::new(57, 66, 1, i);
        let v6: Ipv6Addr = format!("2001:db8::1:{i}").parse().unwrap();
        self.attach(&ns, v4, Some(v6))?;
        Ok(self.host(ns, name, v4, Some(v6)))
    }

    /// Adds a carrier-grade NAT router (endpoint-independent or -dependent, per `nat`).
    pub fn carrier(&mut self, name: &str, nat: Nat) -> Result<Carrier, LabError> {
        assert!(nat != Nat::Routed, "a carrier always NATs");
        let c = self.next_carrier;
        self.next_carrier += 1;
        let ns = format!("{}-{name}", self.id);
        self.add_ns(&ns)?;
        let v4 = Ipv4Addr::new(57, 66, 3, c);
        let v6: Ipv6Addr = format!("2001:db8::3:{c}").parse().unwrap();
        self.attach(&ns, v4, Some(v6))?;
        cmd::ip(&ns, "link add cg0 type bridge")?;
        cmd::ip(&ns, &format!("addr add 100.64.{c}.1/24 dev cg0"))?;
        cmd::ip(&ns, "link set cg0 up")?;
        cmd::sysctl(&ns, "net.ipv4.ip_forward", "1")?;
        cmd::nft(&ns, &router::carrier_ruleset(nat))?;
        Ok(Carrier {
            router: self.host(ns, name, v4, Some(v6)),
            index: c,
            homes: Mutex::new(0),
        })
    }

    /// Adds a home network: a router (WAN on the internet or behind a carrier) and LAN hosts.
    pub fn home(&mut self, name: &str, spec: HomeSpec<'_>) -> Result<Home, LabError> {
        let k = self.next_home;
        self.next_home += 1;
        let ns = format!("{}-{name}", self.id);
        self.add_ns(&ns)?;
        let ipv6 = spec.ipv6 && matches!(spec.upstream, Upstream::Internet);
        assert!(
            ipv6 == spec.ipv6,
            "IPv6 homes behind a carrier are not modelled"
        );
        // WAN side.
        let (wan_v4, wan_v6) = match spec.upstream {
            Upstream::Internet => {
                let j = self.next_wan;
                self.next_wan += 1;
                let v4 = Ipv4Addr::new(57, 66, 2, j);
                let v6: Ipv6Addr = format!("2001:db8::2:{j}").parse().unwrap();
                // Every internet-attached namespace has IPv6 so routes to v6 homes always apply.
                self.attach(&ns, v4, Some(v6))?;
                (v4, ipv6.then_some(v6))
            }
            Upstream::Carrier(carrier) => {
                let mut homes = carrier.homes.lock().unwrap();
                *homes += 1;
                let v4 = Ipv4Addr::new(100, 64, carrier.index, 1 + *homes);
                let port = format!("h{}", *homes);
                cmd::ip(
                    &carrier.router.ns,
                    &format!("link add {port} type veth peer name wan0 netns {ns}"),
                )?;
                cmd::ip(
                    &carrier.router.ns,
                    &format!("link set {port} master cg0 up"),
                )?;
                cmd::ip(&ns, &format!("addr add {v4}/24 dev wan0"))?;
                cmd::ip(&ns, "link set wan0 up")?;
                cmd::ip(
                    &ns,
                    &format!("route add default via 100.64.{}.1", carrier.index),
                )?;
                (v4, None)
            }
        };
        // LAN side: a bridge on the router, one veth per host.
        let lan_net = if spec.nat == Nat::Routed {
            [57, 67, k]
        } else {
            [10, k, 0]
        };
        let lan_v4 = Ipv4Addr::new(lan_net[0], lan_net[1], lan_net[2], 1);
        let lan_v6: Option<Ipv6Addr> = ipv6.then(|| format!("2001:db8:{k}::1").parse().unwrap());
        cmd::ip(&ns, "link add lan0 type bridge")?;
        cmd::ip(&ns, &format!("addr add {lan_v4}/24 dev lan0"))?;
        if let Some(v6) = lan_v6 {
            cmd::ip(&ns, &format!("addr add {v6}/64 dev lan0 nodad"))?;
        }
        cmd::ip(&ns, "link set lan0 up")?;
        cmd::sysctl(&ns, "net.ipv4.ip_forward", "1")?;
        cmd::sysctl(&ns, "net.ipv6.conf.all.forwarding", "1")?;
        cmd::nft(&ns, &router::home_ruleset(spec.nat, spec.open_firewall))?;
        if spec.nat == Nat::Routed {
            self.add_route(
                &format!("{}.{}.{}.0/24", lan_net[0], lan_net[1], lan_net[2]),
                &wan_v4.to_string(),
            )?;
        }
        if let (Some(_), Some(wan6)) = (lan_v6, wan_v6) {
            self.add_route(&format!("2001:db8:{k}::/64"), &wan6.to_string())?;
        }
        let router_host = self.host(ns.clone(), name, wan_v4, wan_v6);
        let mut hosts = Vec::new();
        for n in 0..spec.lan_hosts {
            let host_name = format!("{name}-h{}", n + 1);
            let hns = format!("{}-{host_name}", self.id);
            self.add_ns(&hns)?;
            let port = format!("l{}", n + 1);
            cmd::ip(
                &ns,
                &format!("link add {port} type veth peer name eth0 netns {hns}"),
            )?;
            cmd::ip(&ns, &format!("link set {port} master lan0 up"))?;
            let v4 = Ipv4Addr::new(lan_net[0], lan_net[1], lan_net[2], 2 + n as u8);
            cmd::ip(&hns, &format!("addr add {v4}/24 dev eth0"))?;
            let v6: Option<Ipv6Addr> =
                ipv6.then(|| format!("2001:db8:{k}::{:x}", 2 + n).parse().unwrap());
            if let Some(v6) = v6 {
                cmd::ip(&hns, &format!("addr add {v6}/64 dev eth0 nodad"))?;
            }
            cmd::ip(&hns, "link set eth0 up")?;
            cmd::ip(&hns, &format!("route add default via {lan_v4}"))?;
            if let Some(gw6) = lan_v6 {
                cmd::ip(&hns, &format!("-6 route add default via {gw6}"))?;
            }
            hosts.push(self.host(hns, &host_name, v4, v6));
        }
        let router = Router::new(router_host, spec.nat, lan_v4, lan_v6, self.dir.clone());
        if let Some(protocols) = spec.mapping {
            router.start_mapping(protocols)?;
        }
        Ok(Home { router, hosts })
    }

    fn host(&self, ns: String, name: &str, ipv4: Ipv4Addr, ipv6: Option<Ipv6Addr>) -> Host {
        Host {
            ns,
            name: name.to_string(),
            ipv4,
            ipv6,
            teardown: self.teardown.clone(),
        }
    }

    /// Creates a namespace with loopback up, IPv6 DAD and router advertisements off.
    fn add_ns(&mut self, ns: &str) -> Result<(), LabError> {
        cmd::run(&["ip", "netns", "add", ns], None)?;
        self.namespaces.push(ns.to_string());
        cmd::ip(ns, "link set lo up")?;
        for key in [
            "net.ipv6.conf.default.accept_dad",
            "net.ipv6.conf.all.accept_dad",
        ] {
            cmd::sysctl(ns, key, "0")?;
        }
        for key in [
            "net.ipv6.conf.default.accept_ra",
            "net.ipv6.conf.all.accept_ra",
        ] {
            cmd::sysctl(ns, key, "0")?;
        }
        Ok(())
    }

    /// Plugs namespace `ns` into the internet bridge as `wan0` with the given addresses.
    fn attach(&mut self, ns: &str, v4: Ipv4Addr, v6: Option<Ipv6Addr>) -> Result<(), LabError> {
        self.next_port += 1;
        let port = format!("p{}", self.next_port);
        cmd::ip(
            &self.internet,
            &format!("link add {port} type veth peer name wan0 netns {ns}"),
        )?;
        cmd::ip(&self.internet, &format!("link set {port} master br0 up"))?;
        cmd::ip(ns, &format!("addr add {v4}/16 dev wan0"))?;
        if let Some(v6) = v6 {
            cmd::ip(ns, &format!("addr add {v6}/64 dev wan0 nodad"))?;
        }
        cmd::ip(ns, "link set wan0 up")?;
        for (prefix, via) in &self.routes {
            cmd::ip(ns, &format!("route add {prefix} via {via}"))?;
        }
        self.attached.push(ns.to_string());
        Ok(())
    }

    /// Adds a route to a routed prefix on every namespace on the internet (except its router).
    fn add_route(&mut self, prefix: &str, via: &str) -> Result<(), LabError> {
        for ns in &self.attached {
            let own = cmd::ip(ns, "-o addr show dev wan0")?;
            if String::from_utf8_lossy(&own.stdout).contains(&format!(" {via}/")) {
                continue;
            }
            cmd::ip(ns, &format!("route add {prefix} via {via}"))?;
        }
        self.routes.push((prefix.to_string(), via.to_string()));
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let (children, background) = {
            let mut t = self.teardown.lock().unwrap_or_else(|p| p.into_inner());
            (
                std::mem::take(&mut t.children),
                std::mem::take(&mut t.background),
            )
        };
        for mut child in children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for (stop, thread) in background {
            let _ = stop.send(());
            let _ = thread.join();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = cmd::run(&["ip", "netns", "del", ns], None);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Deletes namespaces left by labs whose process died without tearing down (e.g. SIGKILL).
fn remove_stale_labs() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = cmd::run(&["ip", "netns", "del", &name], None);
        }
    }
}
