//! The sockets of a session: one UDP socket per address family shared by the DHT, µTP
//! (BEP 29), UDP trackers (BEP 15) and hole-punch probes; a TCP listener per family on the
//! same port number; a dialer that makes outgoing TCP connections from that port; and a
//! transport-agnostic [`PeerStream`] that the peer-wire layer reads and writes.
//!
//! Sharing one port for everything means every NAT mapping we open serves every purpose,
//! and the port that remotes see is the port we announce.

mod bind;
pub mod dialer;
mod error;
mod sockets;
pub mod stream;
pub mod tcp;
pub mod udp;
pub mod utp;

pub use dialer::{DialPolicy, Dialer, DIAL_MEMORY_CAPACITY};
pub use error::NetError;
pub use sockets::{NetConfig, SessionSockets};
pub use stream::{PeerStream, Transport};
pub use tcp::{TcpDialer, TcpListeners};
pub use udp::{
    Datagram, TrackerTransaction, TrackerTransactions, TransactionId, UdpConfig, UdpCounters,
    UdpMux, UdpSender,
};
pub use utp::{UtpConfig, UtpCounters, UtpSocket, UtpStream};
