//! The daemon's configuration file (TOML). Every field has a default, so an empty or missing
//! default file is a working configuration; unknown keys are refused so that a typo is an
//! error, not a silently ignored setting.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

/// Largest `daemon.toml` read: a hand-written configuration is a few KiB.
pub const MAX_CONFIG_SIZE: usize = 1 << 20;

/// Everything `daemon.toml` can set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the database lives (`$XDG_DATA_HOME/burrow`).
    pub data_dir: PathBuf,
    /// Where torrents download to unless a request names another allowed folder.
    pub download_dir: PathBuf,
    /// Further folders torrents may be downloaded into (besides `download_dir`).
    pub allowed_dirs: Vec<PathBuf>,
    /// A folder whose `.torrent` files are added and then renamed to `.torrent.added`.
    pub watch_dir: Option<PathBuf>,
    /// How often the watch folder is scanned, in seconds.
    pub watch_interval_secs: f64,
    /// Longest time verified pieces go unrecorded while downloading, in seconds.
    pub checkpoint_interval_secs: f64,
    /// Write verified pieces by direct I/O where the file system allows it.
    pub direct_io: bool,
    /// Peer connections.
    pub peer: PeerConfig,
    /// The RPC and web server.
    pub rpc: RpcConfig,
    /// Rates, seeding limits and queues.
    pub limits: LimitsConfig,
}

/// `[peer]`: the swarm side.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeerConfig {
    /// Listen port for peers (0 picks one).
    pub port: u16,
    /// Listen address for peers.
    pub listen: IpAddr,
    /// Most connections per torrent.
    pub max_peers_per_torrent: usize,
    /// Upload slots per torrent.
    pub upload_slots: usize,
    /// Take part in the DHT.
    pub dht: bool,
    /// DHT bootstrap nodes as `host:port` (empty: the well-known routers).
    pub dht_bootstrap: Vec<String>,
    /// Ask the gateway to forward the port (PCP, NAT-PMP, UPnP-IGD).
    pub port_mapping: bool,
    /// Local service discovery (BEP 14).
    pub lsd: bool,
}

/// `[rpc]`: the HTTP server for Transmission RPC, the web page and metrics.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcConfig {
    /// Address and port to serve on.
    pub bind: SocketAddr,
    /// User name for HTTP basic auth; auth is on when both this and `password` are set.
    pub username: Option<String>,
    /// Password for HTTP basic auth.
    pub password: Option<String>,
    /// Host names accepted in the `Host` header without auth (IP literals and `localhost`
    /// always are); guards against DNS rebinding.
    pub host_whitelist: Vec<String>,
}

impl std::fmt::Debug for RpcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never reaches logs or `--check-config` output.
        f.debug_struct("RpcConfig")
            .field("bind", &self.bind)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .field("host_whitelist", &self.host_whitelist)
            .finish()
    }
}

/// `[limits]`: rates in kB/s (1000 bytes, as Transmission counts), 0 meaning none.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Session download cap, kB/s.
    pub download_kbps: u64,
    /// Session upload cap, kB/s.
    pub upload_kbps: u64,
    /// Stop seeding a torrent once uploaded/downloaded reaches this.
    pub seed_ratio: Option<f64>,
    /// Stop seeding a torrent after this many minutes of seeding.
    pub seed_time_minutes: Option<u64>,
    /// Most torrents downloading at once (0: no limit); others wait in the queue.
    pub max_active_downloads: usize,
    /// Most torrents seeding at once (0: no limit).
    pub max_active_seeds: usize,
}

impl Default for Config {
    fn default() -> Self {
        let data_dir = default_data_dir();
        Config {
            download_dir: data_dir.join("downloads"),
            data_dir,
            allowed_dirs: Vec::new(),
            watch_dir: None,
            watch_interval_secs: 5.0,
            checkpoint_interval_secs: 30.0,
            direct_io: true,
            peer: PeerConfig::default(),
            rpc: RpcConfig::default(),
            limits: LimitsConfig::default(),
        }
    }
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            port: 51413,
            listen: Ipv4Addr::UNSPECIFIED.into(),
            max_peers_per_torrent: 50,
            upload_slots: 8,
            dht: true,
            dht_bootstrap: Vec::new(),
            port_mapping: true,
            lsd: true,
        }
    }
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 9091)),
            username: None,
            password: None,
            host_whitelist: Vec::new(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            download_kbps: 0,
            upload_kbps: 0,
            seed_ratio: None,
            seed_time_minutes: None,
            max_active_downloads: 5,
            max_active_seeds: 0,
        }
    }
}

/// `$XDG_DATA_HOME/burrow` (or `~/.local/share/burrow`).
pub fn default_data_dir() -> PathBuf {
    burrow_swarm::session::default_state_dir()
}

/// `$XDG_CONFIG_HOME/burrow/daemon.toml` (or `~/.config/burrow/daemon.toml`).
pub fn default_config_path() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("burrow/daemon.toml");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".config/burrow/daemon.toml"),
        None => PathBuf::from("daemon.toml"),
    }
}

impl Config {
    /// Reads `path`; with `explicit` false a missing file means the defaults.
    pub fn load(path: &Path, explicit: bool) -> anyhow::Result<Config> {
        let text = match burrow_swarm::fsread::read_bounded(path, MAX_CONFIG_SIZE) {
            Ok(t) => String::from_utf8(t)
                .map_err(|_| anyhow::anyhow!("cannot read {}: not UTF-8", path.display()))?,
            Err(e) if e.is_not_found() && !explicit => String::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let c = Config::parse(&text).with_context(|| format!("in {}", path.display()))?;
        Ok(c)
    }

    /// Parses and checks a configuration.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let c: Config = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !(self.checkpoint_interval_secs > 0.0 && self.checkpoint_interval_secs <= 3600.0) {
            bail!("checkpoint_interval_secs must be in (0, 3600]");
        }
        if !(self.watch_interval_secs >= 0.1 && self.watch_interval_secs <= 3600.0) {
            bail!("watch_interval_secs must be in [0.1, 3600]");
        }
        if self
            .limits
            .seed_ratio
            .is_some_and(|r| !(r >= 0.0 && r.is_finite()))
        {
            bail!("limits.seed_ratio must be a non-negative number");
        }
        if self.rpc.username.as_deref() == Some("") || self.rpc.password.as_deref() == Some("") {
            bail!("rpc.username and rpc.password must not be empty when set");
        }
        if self.rpc.username.is_some() != self.rpc.password.is_some() {
            bail!("set both rpc.username and rpc.password, or neither");
        }
        // Anyone who can reach the RPC can make the daemon write files: off loopback it must
        // ask who is calling.
        if !self.rpc.bind.ip().is_loopback() && !self.auth_enabled() {
            bail!(
                "rpc.bind {} is not a loopback address: set rpc.username and rpc.password",
                self.rpc.bind
            );
        }
        Ok(())
    }

    /// Whether HTTP basic auth is required.
    pub fn auth_enabled(&self) -> bool {
        self.rpc.username.is_some() && self.rpc.password.is_some()
    }

    /// The checkpoint interval.
    pub fn checkpoint_interval(&self) -> Duration {
        Duration::from_secs_f64(self.checkpoint_interval_secs)
    }

    /// The database file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("daemon.sqlite")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// daemon.toml is read only from a regular file of at most MAX_CONFIG_SIZE bytes.
    #[test]
    fn configuration_reads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("daemon.toml");
        std::fs::write(&p, "[rpc]\n").unwrap();
        assert!(Config::load(&p, true).is_ok());
        std::fs::File::options()
            .append(true)
            .open(&p)
            .unwrap()
            .set_len(MAX_CONFIG_SIZE as u64 + 1)
            .unwrap();
        let e = format!("{:#}", Config::load(&p, true).unwrap_err());
        assert!(e.ends_with("larger than the 1048576 byte limit"), "{e}");
        let e = format!(
            "{:#}",
            Config::load(Path::new("/dev/zero"), true).unwrap_err()
        );
        assert_eq!(e, "cannot read /dev/zero: a device, not a regular file");
        assert!(Config::load(dir.path(), false).is_err());
        assert!(Config::load(&dir.path().join("none"), false).is_ok());
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.rpc.bind, "127.0.0.1:9091".parse().unwrap());
        assert_eq!(c.peer.port, 51413);
        assert_eq!(c.limits.max_active_downloads, 5);
        assert!(!c.auth_enabled());
    }

    #[test]
    fn sections_and_values_are_read() {
        let c = Config::parse(
            r#"
            download_dir = "/srv/dl"
            allowed_dirs = ["/srv/other"]
            checkpoint_interval_secs = 0.5
            [peer]
            port = 6881
            [rpc]
            bind = "0.0.0.0:9091"
            username = "u"
            password = "p"
            [limits]
            upload_kbps = 100
            seed_ratio = 2.0
            max_active_seeds = 3
            "#,
        )
        .unwrap();
        assert_eq!(c.download_dir, PathBuf::from("/srv/dl"));
        assert_eq!(c.checkpoint_interval(), Duration::from_millis(500));
        assert_eq!(c.peer.port, 6881);
        assert!(c.auth_enabled());
        assert_eq!(c.limits.upload_kbps, 100);
        assert_eq!(c.limits.seed_ratio, Some(2.0));
        assert!(!format!("{c:?}").contains("\"p\""), "password printed");
    }

    #[test]
    fn public_bind_without_credentials_is_refused() {
        let e = Config::parse("[rpc]\nbind = \"0.0.0.0:9091\"").unwrap_err();
        assert!(format!("{e:#}").contains("not a loopback address"), "{e:#}");
        assert!(Config::parse("[rpc]\nbind = \"[::1]:9091\"").is_ok());
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        assert!(Config::parse("dowload_dir = \"/x\"").is_err());
        assert!(Config::parse("[rpc]\nusername = \"u\"").is_err());
        assert!(Config::parse("checkpoint_interval_secs = 0").is_err());
        assert!(Config::parse("[limits]\nseed_ratio = -1.0").is_err());
    }
}
