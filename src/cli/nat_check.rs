//! `burrow nat-check`: joins the DHT and asks the gateway for a port mapping for a short
//! while, then reports what it learned — mappings, external addresses, NAT behaviour,
//! whether strangers reached us — and one sentence of what to do.

use std::time::{Duration, Instant};

use anyhow::Context;
use burrow_swarm::session::Session;

use super::SwarmArgs;

/// Arguments of `burrow nat-check`.
#[derive(clap::Args, Debug)]
pub struct NatCheckArgs {
    /// Seconds to listen for votes and incoming contacts.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    swarm: SwarmArgs,
}

pub async fn nat_check(a: NatCheckArgs) -> anyhow::Result<()> {
    let session = Session::start(a.swarm.session_config())
        .await
        .with_context(|| format!("cannot listen on port {}", a.swarm.port))?;
    if !a.json {
        eprintln!(
            "checking reachability of port {} for {} s…",
            session.port(),
            a.duration
        );
    }
    let reach = session.reachability().clone();
    let mut watch = reach.watch();
    let deadline = Instant::now() + Duration::from_secs(a.duration);
    loop {
        let proven = {
            let r = &watch.borrow().report;
            r.inbound_tcp == Some(true) && r.inbound_udp == Some(true)
        };
        // Both directions proven reachable: nothing more to learn.
        if proven {
            break;
        }
        if tokio::time::timeout_at(deadline.into(), watch.changed())
            .await
            .is_err()
        {
            break;
        }
    }
    let snap = reach.snapshot();
    session.shutdown().await;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&snap.report)?);
    } else {
        println!("{}", snap.report);
        println!(
            "Seen from outside: {} incoming TCP, {} incoming µTP, {} unsolicited DHT queries",
            snap.incoming_tcp, snap.incoming_utp, snap.unsolicited_udp
        );
    }
    Ok(())
}
