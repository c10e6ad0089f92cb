//! burrow-netlab: a network-namespace lab that builds small "internets" with real Linux NAT.
//!
//! Every host is its own network namespace; hosts are wired with veth pairs and bridges that are
//! created directly inside the lab's namespaces, so nothing is ever linked to the machine's real
//! interfaces. Routers NAT with nftables (endpoint-independent or endpoint-dependent mapping, or
//! plain routing), filter IPv6 statefully, and can run `miniupnpd` offering UPnP-IGD, NAT-PMP and
//! PCP. See `README.md` beside this crate for the address plan and the measured behaviour.
//!
//! Tests that use the lab call [`Lab::new_or_skip`]: without root it prints a visible
//! `SKIPPED (needs root): ...` line (and appends it to the file named by `BURROW_SKIP_LOG`)
//! and returns `None`.

mod cmd;
mod host;
mod lab;
mod router;
mod services;

pub use cmd::LabError;
pub use host::{Background, Host};
pub use lab::{Carrier, Home, HomeSpec, Lab, Nat, Upstream};
pub use router::{MappingProtocols, Router};
pub use services::{parse_echo_reply, tcp_echo_reply, udp_echo_reply};

use std::io::Write;

/// Environment variable naming a file to which every skipped lab test appends one line.
pub const SKIP_LOG_ENV: &str = "BURROW_SKIP_LOG";

/// True when this process can build namespaces (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Records that `test` was skipped for `reason`: a line on the real stderr (not captured by the
/// test harness) and, when `BURROW_SKIP_LOG` is set, a line appended to that file.
pub fn report_skip(test: &str, reason: &str) {
    let line = format!("SKIPPED ({reason}): {test}\n");
    // Written to the stderr handle directly so the line shows even for passing tests.
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}
