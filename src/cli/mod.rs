//! The command line: one file per subcommand.

mod create;
mod daemon;
mod dht_node;
mod download;
mod nat_check;
mod progress;
mod select;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A BitTorrent client that keeps peers behind NATs full members of the swarm.
#[derive(Parser, Debug)]
#[command(name = "burrow", version, about)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Download a torrent from a magnet link or a .torrent file.
    Download(download::DownloadArgs),
    /// Seed a torrent from data already on disk.
    Seed(download::SeedArgs),
    /// Make a .torrent file from a file or folder.
    Create(create::CreateArgs),
    /// Find out how reachable this machine is and what would help.
    NatCheck(nat_check::NatCheckArgs),
    /// Run the seedbox: many torrents, Transmission RPC, web page, metrics.
    Daemon(daemon::DaemonArgs),
    /// Run a mainline DHT bootstrap node built for heavy traffic.
    DhtNode(dht_node::DhtNodeArgs),
}

/// Options shared by commands that join a swarm.
#[derive(Args, Debug, Clone)]
pub struct SwarmArgs {
    /// Port for incoming peers (TCP).
    #[arg(long, default_value_t = 51413)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub listen: std::net::IpAddr,
    /// Connect to this peer directly (repeatable).
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,
    /// Where resume data and the DHT's routing table are kept.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// DHT bootstrap node (repeatable; replaces the default routers).
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT")]
    pub dht_bootstrap: Vec<String>,
    /// Do not use the DHT.
    #[arg(long)]
    pub no_dht: bool,
    /// Do not ask the router to forward our port (PCP, NAT-PMP, UPnP).
    #[arg(long)]
    pub no_port_mapping: bool,
    /// Lease in seconds to ask the gateway for (renewed at half of it).
    #[arg(long, value_name = "SECS", default_value_t = burrow_swarm::nat::DEFAULT_LEASE.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub mapping_lease: u64,
    /// Do not announce torrents on the local network (BEP 14).
    #[arg(long)]
    pub no_lsd: bool,
    /// Transports for outgoing connections.
    #[arg(long, value_enum, default_value_t = TransportArg::Both)]
    pub transport: TransportArg,
    /// Message stream encryption (MSE/PE) with peers.
    #[arg(long, value_enum, default_value_t = EncryptionArg::PreferPlain)]
    pub encryption: EncryptionArg,
    /// Write pieces through the page cache even where direct I/O is possible.
    #[arg(long)]
    pub no_direct_io: bool,
}

/// `--encryption` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum EncryptionArg {
    /// Accept and offer both; choose plaintext payload when the peer allows (least CPU).
    PreferPlain,
    /// Accept and offer both; choose RC4 when the peer allows.
    PreferRc4,
    /// Only encrypted connections.
    Require,
}

/// `--transport` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum TransportArg {
    /// TCP first, µTP if TCP is slow to connect.
    Both,
    /// TCP only.
    Tcp,
    /// µTP only.
    Utp,
}

impl SwarmArgs {
    /// Resolves `--peer` values.
    pub async fn resolve_peers(&self) -> anyhow::Result<Vec<SocketAddr>> {
        let mut out = Vec::new();
        for p in &self.peers {
            let mut addrs = tokio::net::lookup_host(p.as_str())
                .await
                .map_err(|e| anyhow::anyhow!("--peer {p}: {e}"))?;
            out.push(
                addrs
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--peer {p}: no address"))?,
            );
        }
        Ok(out)
    }

    /// Session settings from these options.
    pub fn session_config(&self) -> burrow_swarm::session::SessionConfig {
        let mut c = burrow_swarm::session::SessionConfig {
            listen_port: self.port,
            listen_ip: self.listen,
            ..Default::default()
        };
        if let Some(d) = &self.state_dir {
            c.state_dir = d.clone();
        }
        if self.no_dht {
            c.dht = None;
        } else if let Some(dht) = &mut c.dht {
            if !self.dht_bootstrap.is_empty() {
                dht.bootstrap = self.dht_bootstrap.clone();
            }
        }
        c.port_mapping = !self.no_port_mapping;
        c.mapping_lease = std::time::Duration::from_secs(self.mapping_lease);
        c.lsd = !self.no_lsd;
        c.direct_io = !self.no_direct_io;
        c.encryption = match self.encryption {
            EncryptionArg::PreferPlain => {
                burrow_swarm::wire::mse::EncryptionPolicy::PlaintextPreferred
            }
            EncryptionArg::PreferRc4 => burrow_swarm::wire::mse::EncryptionPolicy::Rc4Preferred,
            EncryptionArg::Require => burrow_swarm::wire::mse::EncryptionPolicy::Rc4Required,
        };
        c.transports = match self.transport {
            TransportArg::Both => burrow_swarm::session::Transports::Both,
            TransportArg::Tcp => burrow_swarm::session::Transports::Tcp,
            TransportArg::Utp => burrow_swarm::session::Transports::Utp,
        };
        c
    }
}

/// Sets up logging to stderr.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn,burrow=info,burrow_swarm=info",
        1 => "info,burrow=debug,burrow_swarm=debug,burrow_dht=debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// Runs the chosen command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Download(a) => download::download(a, cli.verbose > 0).await,
        Command::Seed(a) => download::seed(a, cli.verbose > 0).await,
        Command::Create(a) => create::create(a),
        Command::NatCheck(a) => nat_check::nat_check(a).await,
        Command::Daemon(a) => daemon::daemon(a).await,
        Command::DhtNode(a) => dht_node::dht_node(a).await,
    }
}
