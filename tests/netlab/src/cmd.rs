//! Running the lab's shell tools (`ip`, `nft`, `sysctl`) and reporting their failures.

use std::process::{Command, Output, Stdio};

/// Why building or driving the lab failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command exited non-zero.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        /// The command line, for the reader.
        cmd: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A command could not be started, or a file could not be used.
    #[error("{what}: {source}")]
    Io {
        /// What was being attempted.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A process run inside a namespace panicked or its thread could not be started.
    #[error("in namespace {0}: the closure panicked")]
    Panicked(String),
}

/// Runs `args[0]` with the remaining arguments, optionally feeding `stdin`; fails on non-zero exit.
pub(crate) fn run(args: &[&str], stdin: Option<&str>) -> Result<Output, LabError> {
    let line = args.join(" ");
    let mut command = Command::new(args[0]);
    command
        .args(&args[1..])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = command.spawn().map_err(|source| LabError::Io {
        what: format!("starting `{line}`"),
        source,
    })?;
    if let Some(text) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin was piped");
        pipe.write_all(text.as_bytes())
            .map_err(|source| LabError::Io {
                what: format!("feeding `{line}`"),
                source,
            })?;
    }
    let out = child.wait_with_output().map_err(|source| LabError::Io {
        what: format!("waiting for `{line}`"),
        source,
    })?;
    if !out.status.success() {
        return Err(LabError::Command {
            cmd: match stdin {
                Some(text) => format!("{line} <<< {text}"),
                None => line,
            },
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// Runs an `ip` subcommand inside namespace `ns`.
pub(crate) fn ip(ns: &str, args: &str) -> Result<Output, LabError> {
    let mut full = vec!["ip", "-n", ns];
    full.extend(args.split_whitespace());
    run(&full, None)
}

/// Loads an nftables ruleset into namespace `ns`.
pub(crate) fn nft(ns: &str, ruleset: &str) -> Result<(), LabError> {
    run(
        &["ip", "netns", "exec", ns, "nft", "-f", "-"],
        Some(ruleset),
    )
    .map(drop)
}

/// Sets a sysctl inside namespace `ns` (net.* sysctls are per namespace).
pub(crate) fn sysctl(ns: &str, key: &str, value: &str) -> Result<(), LabError> {
    let assignment = format!("{key}={value}");
    run(
        &["ip", "netns", "exec", ns, "sysctl", "-qw", &assignment],
        None,
    )
    .map(drop)
}
