//! `burrow daemon`: run the seedbox until stopped.

use std::path::PathBuf;

use crate::daemon::config::{default_config_path, Config};

/// Arguments of `burrow daemon`.
#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    /// Configuration file (TOML); default $XDG_CONFIG_HOME/burrow/daemon.toml, used only if
    /// it exists.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the configuration in effect and exit.
    #[arg(long)]
    check_config: bool,
}

pub async fn daemon(a: DaemonArgs) -> anyhow::Result<()> {
    let (path, explicit) = match a.config {
        Some(p) => (p, true),
        None => (default_config_path(), false),
    };
    let config = Config::load(&path, explicit)?;
    if a.check_config {
        println!("{config:#?}");
        return Ok(());
    }
    crate::daemon::run(config).await
}
