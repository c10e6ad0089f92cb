//! The sockets of a session: one UDP socket per address family shared by the DHT, µTP
//! (BEP 29), UDP trackers (BEP 15) and hole-punch probes; a TCP listener per family on the
//! same port number; a dialer that makes outgoing TCP connections from that port; and a
//! transport-agnostic [`PeerStream`] that the peer-wire layer reads and writes.
//!
//! Sharing one port for everything means every NAT mapping we open serves every purpose,
//! and the port that remotes see is the port we announce.
//!
//! A session binds everything at once:
//!
//! ```no_run
//! use burrow_swarm::net::{NetConfig, SessionSockets};
//! # async fn session() -> Result<(), burrow_swarm::net::NetError> {
//! let mut sockets = SessionSockets::bind(NetConfig::default()).await?;
//! // The DHT driver reads KRPC datagrams here and answers through the shared sender.
//! let mut dht_inbox = sockets.udp.take_dht_inbox().expect("taken once");
//! let udp = sockets.udp.sender();
//! // UDP trackers register a transaction id, send, and await the reply.
//! let trackers = sockets.udp.tracker_transactions();
//! // Incoming peers arrive on `sockets.tcp.accept()` and `sockets.utp.accept()`; outgoing
//! // ones come from `sockets.dialer.dial(addr)`, a `PeerStream` over TCP or µTP.
//! # let _ = (&mut dht_inbox, udp, trackers);
//! # Ok(())
//! # }
//! ```

mod bind;
pub mod dialer;
mod error;
mod sockets;
pub mod stream;
pub mod tcp;
pub mod udp;
pub mod utp;

pub use dialer::{DialCounters, DialPolicy, Dialer, DIAL_MEMORY_CAPACITY};
pub use error::NetError;
pub use sockets::{NetConfig, SessionSockets};
pub use stream::{PeerStream, Transport};
pub use tcp::{TcpDialCounters, TcpDialer, TcpListeners};
pub use udp::{
    Datagram, TrackerTransaction, TrackerTransactions, TransactionId, UdpConfig, UdpCounters,
    UdpMux, UdpSender,
};
pub use utp::{UtpConfig, UtpCounters, UtpSocket, UtpStats, UtpStream};
