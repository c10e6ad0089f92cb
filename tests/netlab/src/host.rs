//! One machine of the lab: a network namespace with its addresses, and ways to run code in it.
//!
//! Rust code runs inside a host on a thread that has joined the host's namespace (`setns`):
//! sockets created there belong to that namespace for their whole life, whichever thread polls
//! them later.

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::cmd::{self, LabError};

/// What a lab keeps to tear down: processes to kill and background threads to stop.
#[derive(Default)]
pub(crate) struct Teardown {
    pub(crate) children: Vec<Child>,
    pub(crate) background: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
}

/// A machine in the lab (a network namespace).
#[derive(Clone)]
pub struct Host {
    pub(crate) ns: String,
    pub(crate) name: String,
    pub(crate) ipv4: Ipv4Addr,
    pub(crate) ipv6: Option<Ipv6Addr>,
    pub(crate) teardown: Arc<Mutex<Teardown>>,
}

/// A task running in a host on its own thread until this handle is stopped or dropped.
pub struct Background {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Stops the task and waits for its thread (dropping the handle does the same).
    pub fn stop(self) {}

    fn stop_inner(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

impl Host {
    /// The lab-internal name (used in the namespace name and in messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network namespace this host lives in (for `ip netns exec`).
    pub fn netns(&self) -> &str {
        &self.ns
    }

    /// The host's IPv4 address on its main interface.
    pub fn ipv4(&self) -> Ipv4Addr {
        self.ipv4
    }

    /// The host's global IPv6 address, if its network has IPv6.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.ipv6
    }

    /// Runs a command inside the host and returns its stdout; fails on non-zero exit.
    pub fn exec(&self, args: &[&str]) -> Result<String, LabError> {
        let mut full = vec!["ip", "netns", "exec", self.ns.as_str()];
        full.extend_from_slice(args);
        let out = cmd::run(&full, None)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Caps what the host sends to the internet (its `wan0`) at `kbit` kilobits per second
    /// with a token bucket holding at most `queue_ms` of packets: an uplink of that speed,
    /// whatever the software above does. (The lab's kernel has no fair-queuing qdisc, so flows
    /// share it as TCP makes them.)
    pub fn limit_upload(&self, kbit: u32, queue_ms: u32) -> Result<(), LabError> {
        self.exec(&[
            "tc",
            "qdisc",
            "replace",
            "dev",
            "wan0",
            "root",
            "tbf",
            "rate",
            &format!("{kbit}kbit"),
            "burst",
            "16kb",
            "latency",
            &format!("{queue_ms}ms"),
        ])
        .map(drop)
    }

    /// Starts a long-running command inside the host; it is killed when the lab is torn down.
    /// Its stdout and stderr go to `log` (a file path) when given, else are discarded.
    pub fn spawn(&self, args: &[&str], log: Option<&std::path::Path>) -> Result<u32, LabError> {
        let (out, err) = match log {
            Some(path) => {
                let f = std::fs::File::create(path).map_err(|source| LabError::Io {
                    what: format!("creating {path:?}"),
                    source,
                })?;
                let g = f.try_clone().map_err(|source| LabError::Io {
                    what: "dup log".into(),
                    source,
                })?;
                (Stdio::from(f), Stdio::from(g))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| LabError::Io {
                what: format!("spawning {args:?}"),
                source,
            })?;
        let pid = child.id();
        self.teardown.lock().unwrap().children.push(child);
        Ok(pid)
    }

    /// Kills a process started with [`Host::spawn`] (SIGKILL, like pulling the power) and reaps it.
    pub fn kill(&self, pid: u32) {
        let mut teardown = self.teardown.lock().unwrap();
        if let Some(pos) = teardown.children.iter().position(|c| c.id() == pid) {
            let mut child = teardown.children.remove(pos);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `f` on a fresh thread that has joined this host's namespace, and returns its result.
    pub fn run<R, F>(&self, f: F) -> Result<R, LabError>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let ns = self.ns.clone();
        let handle = std::thread::Builder::new()
            .name(format!("netns-{}", self.name))
            .spawn(move || {
                enter_netns(&ns)?;
                Ok(f())
            })
            .map_err(|source| LabError::Io {
                what: "spawning thread".into(),
                source,
            })?;
        handle
            .join()
            .map_err(|_| LabError::Panicked(self.ns.clone()))?
    }

    /// Runs the future made by `make` to completion on a current-thread tokio runtime inside
    /// this host. Panics in the future propagate as [`LabError::Panicked`].
    pub fn block_on<R, Fut, F>(&self, make: F) -> Result<R, LabError>
    where
        R: Send + 'static,
        Fut: Future<Output = R>,
        F: FnOnce() -> Fut + Send + 'static,
    {
        self.run(move || runtime().block_on(make()))
    }

    /// Starts the future made by `make` in the background inside this host. It runs until the
    /// returned handle is stopped or the lab is torn down.
    pub fn background<Fut, F>(&self, make: F) -> Result<Background, LabError>
    where
        Fut: Future<Output = ()>,
        F: FnOnce() -> Fut + Send + 'static,
    {
        let ns = self.ns.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("netns-bg-{}", self.name))
            .spawn(move || {
                if let Err(e) = enter_netns(&ns) {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
                let rt = runtime();
                rt.block_on(async move {
                    let fut = make();
                    let _ = ready_tx.send(Ok(()));
                    tokio::select! {
                        _ = fut => {}
                        _ = rx => {}
                    }
                });
            })
            .map_err(|source| LabError::Io {
                what: "spawning thread".into(),
                source,
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(LabError::Panicked(self.ns.clone())),
        }
        Ok(Background {
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Like [`Host::background`], but the task lives until the lab is torn down.
    pub fn background_for_lab<Fut, F>(&self, make: F) -> Result<(), LabError>
    where
        Fut: Future<Output = ()>,
        F: FnOnce() -> Fut + Send + 'static,
    {
        let mut bg = self.background(make)?;
        let pair = (
            bg.stop.take().expect("fresh"),
            bg.thread.take().expect("fresh"),
        );
        self.teardown.lock().unwrap().background.push(pair);
        Ok(())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a current-thread runtime")
}

/// Moves the calling thread into the named network namespace.
fn enter_netns(ns: &str) -> Result<(), LabError> {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).map_err(|source| LabError::Io {
        what: format!("opening {path}"),
        source,
    })?;
    // SAFETY: the fd is valid for the call; setns only changes this thread's namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(LabError::Io {
            what: format!("setns into {ns}"),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}
