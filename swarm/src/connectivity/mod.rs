//! The swarm-level connectivity policy: whom to dial, by which route, and when to give up on
//! a peer. Spending little on any one unreachable peer, and keeping enough connections that
//! the swarm's connection graph stays connected.

mod connector;
pub mod lsd;
mod pool;
pub mod reach;

pub use connector::{Connector, CONNECT_TIMEOUT, PREDICTED_PORTS, PREDICTION_DELAY};
pub use pool::{PeerPool, PeerSource, MAX_KNOWN_PEERS};
pub use reach::{ReachEvent, ReachSnapshot, Reachability};

/// How a connection came about; counted per route for the progress line, `nat-check` and
/// the daemon's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// We dialled over TCP.
    OutgoingTcp,
    /// We dialled over µTP.
    OutgoingUtp,
    /// The peer dialled us over TCP.
    IncomingTcp,
    /// The peer dialled us over µTP.
    IncomingUtp,
    /// Made by a ut_holepunch rendezvous, over µTP.
    HolepunchedUtp,
    /// Made by a ut_holepunch rendezvous, over TCP (simultaneous open).
    HolepunchedTcp,
    /// Made by a rendezvous at a port predicted from the relay's view of the peer's NAT.
    PortPredicted,
}

impl Route {
    /// Short label used in logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Route::OutgoingTcp => "outgoing_tcp",
            Route::OutgoingUtp => "outgoing_utp",
            Route::IncomingTcp => "incoming_tcp",
            Route::IncomingUtp => "incoming_utp",
            Route::HolepunchedUtp => "holepunched_utp",
            Route::HolepunchedTcp => "holepunched_tcp",
            Route::PortPredicted => "port_predicted",
        }
    }

    /// Whether we initiated the connection.
    pub fn is_outgoing(self) -> bool {
        matches!(self, Route::OutgoingTcp | Route::OutgoingUtp)
    }

    /// Whether a holepunch rendezvous made the connection.
    pub fn is_holepunched(self) -> bool {
        matches!(
            self,
            Route::HolepunchedUtp | Route::HolepunchedTcp | Route::PortPredicted
        )
    }

    /// Whether the connection runs over µTP.
    pub fn is_utp(self) -> bool {
        matches!(
            self,
            Route::OutgoingUtp | Route::IncomingUtp | Route::HolepunchedUtp | Route::PortPredicted
        )
    }
}
