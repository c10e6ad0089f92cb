//! Finding the default IPv4 gateway and our address toward it.
//!
//! Linux lists routes in `/proc/net/route` with addresses as little-endian hex. The file of the
//! calling thread's network namespace is `/proc/thread-self/net/route`; `/proc/net` follows the
//! process's main thread, which differs when a thread has switched namespaces.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

/// RTF_UP | RTF_GATEWAY: a usable route through a gateway.
const FLAGS_UP_GATEWAY: u32 = 0x1 | 0x2;

/// Parses the text of `/proc/net/route` and returns the gateway of the default route with the
/// lowest metric.
pub fn parse_default_gateway(route_table: &str) -> Option<Ipv4Addr> {
    let mut best: Option<(u32, Ipv4Addr)> = None;
    for line in route_table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 7 {
            continue;
        }
        let (Ok(dest), Ok(gw), Ok(flags), Ok(metric)) = (
            u32::from_str_radix(f[1], 16),
            u32::from_str_radix(f[2], 16),
            u32::from_str_radix(f[3], 16),
            f[6].parse::<u32>(),
        ) else {
            continue;
        };
        if dest != 0 || flags & FLAGS_UP_GATEWAY != FLAGS_UP_GATEWAY || gw == 0 {
            continue;
        }
        // The kernel prints the address in host (little-endian) byte order.
        let addr = Ipv4Addr::from(gw.to_le_bytes());
        if best.is_none_or(|(m, _)| metric < m) {
            best = Some((metric, addr));
        }
    }
    best.map(|(_, a)| a)
}

/// Reads the default IPv4 gateway of the calling thread's network namespace.
pub fn default_gateway() -> io::Result<Option<Ipv4Addr>> {
    let text = std::fs::read_to_string("/proc/thread-self/net/route")
        .or_else(|_| std::fs::read_to_string("/proc/net/route"))?;
    Ok(parse_default_gateway(&text))
}

/// Our local address on the path to `gateway` (no packet is sent: connecting a UDP socket
/// only selects the route and source address).
pub fn local_address_toward(gateway: Ipv4Addr) -> io::Result<Ipv4Addr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.connect((gateway, 9))?;
    match socket.local_addr()? {
        SocketAddr::V4(a) => Ok(*a.ip()),
        SocketAddr::V6(_) => Err(io::Error::other("IPv6 source toward an IPv4 gateway")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0100010A\t0003\t0\t0\t200\t00000000\t0\t0\t0
eth0\t0000010A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
";

    #[test]
    fn picks_lowest_metric_default_route() {
        assert_eq!(
            parse_default_gateway(TABLE),
            Some(Ipv4Addr::new(192, 168, 1, 1))
        );
        let only_eth: String = TABLE
            .lines()
            .filter(|l| !l.starts_with("wlan0"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            parse_default_gateway(&only_eth),
            Some(Ipv4Addr::new(10, 1, 0, 1))
        );
    }

    #[test]
    fn no_default_route_or_garbage() {
        assert_eq!(parse_default_gateway("Iface\tDestination\n"), None);
        assert_eq!(
            parse_default_gateway("header\neth0 zz yy 0003 0 0 0 0\n"),
            None
        );
        // A default route without the gateway flag (point-to-point) has no gateway to ask.
        assert_eq!(
            parse_default_gateway("h\nppp0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\n"),
            None
        );
    }

    #[test]
    fn local_address_toward_loopback() {
        assert_eq!(
            local_address_toward(Ipv4Addr::LOCALHOST).unwrap(),
            Ipv4Addr::LOCALHOST
        );
    }
}
