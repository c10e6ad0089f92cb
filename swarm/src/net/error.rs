//! Errors of the socket layer.

use std::io;
use std::net::SocketAddr;

use super::stream::Transport;

/// Everything that can go wrong opening, binding or using the session's sockets.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A socket could not be created, configured or bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address we tried to bind.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Neither address family could be bound.
    #[error("no address family could be bound: {0}")]
    NoFamily(String),
    /// We have no socket of the destination's address family.
    #[error("no socket of the address family of {0}")]
    NoSocketForFamily(SocketAddr),
    /// Sending a datagram failed.
    #[error("sending to {to}: {source}")]
    Send {
        /// Destination of the datagram.
        to: SocketAddr,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// An outgoing connection failed.
    #[error("connecting to {addr} over {transport}: {source}")]
    Connect {
        /// The remote.
        addr: SocketAddr,
        /// The transport tried.
        transport: Transport,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// An outgoing connection did not complete in time.
    #[error("connecting to {addr} over {transport}: timed out")]
    ConnectTimeout {
        /// The remote.
        addr: SocketAddr,
        /// The transport tried.
        transport: Transport,
    },
    /// Every transport the dial policy tried failed; the errors are in the order tried.
    #[error("dialing {addr}: {}", join(.errors))]
    DialFailed {
        /// The remote.
        addr: SocketAddr,
        /// One error per transport tried.
        errors: Vec<NetError>,
    },
    /// Accepting a connection failed.
    #[error("accepting: {0}")]
    Accept(#[source] io::Error),
    /// The table of pending UDP-tracker transactions is full.
    #[error("too many pending UDP-tracker transactions (limit {limit})")]
    TrackerTableFull {
        /// The configured limit.
        limit: usize,
    },
    /// The µTP inbox of this mux was already handed to a µTP socket.
    #[error("the µTP inbox of this UDP mux is already in use")]
    UtpInboxTaken,
    /// The UDP mux has shut down.
    #[error("the UDP socket has shut down")]
    Closed,
}

fn join(errors: &[NetError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
