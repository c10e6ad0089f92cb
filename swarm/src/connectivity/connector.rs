//! Making a connection to one peer: the dial (TCP from the listen port or µTP from the shared
//! UDP socket, as the dialer's policy decides), the BitTorrent handshake with a fallback to
//! MSE/PE, and the simultaneous dial of a ut_holepunch rendezvous (BEP 55) with its port
//! prediction. It also remembers which addresses a holepunch is under way toward, so that a
//! connection from one of them is labelled as the punch's, not as proof that outsiders reach us.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Route;
use crate::net::{Dialer, Transport};
use crate::peer::conn::{handshake_outgoing, ConnError, PeerIo};
use crate::types::{InfoHash, PeerId};
use crate::wire::mse::EncryptionPolicy;
use crate::wire::Handshake;

/// Time allowed for a TCP connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Ports above the relay-observed one that a holepunch also tries (port prediction).
pub const PREDICTED_PORTS: u16 = 8;
/// Head start of the direct holepunch attempt before predicted ports are tried.
pub const PREDICTION_DELAY: Duration = Duration::from_millis(500);
/// How long a connection from a peer we dialled for a holepunch counts as part of it.
const PUNCH_MEMORY: Duration = Duration::from_secs(30);

/// Opens connections to peers for every torrent of a session.
pub struct Connector {
    peer_id: PeerId,
    encryption: EncryptionPolicy,
    dialer: Dialer,
    /// Addresses we dialled for a holepunch lately.
    punches: Mutex<HashMap<IpAddr, Instant>>,
}

impl Connector {
    /// A connector that dials with `dialer` and introduces itself as `peer_id`.
    pub fn new(peer_id: PeerId, encryption: EncryptionPolicy, dialer: Dialer) -> Self {
        Connector {
            peer_id,
            encryption,
            dialer,
            punches: Mutex::default(),
        }
    }

    /// The encryption policy connections are made and accepted with.
    pub fn encryption(&self) -> EncryptionPolicy {
        self.encryption
    }

    /// Remembers that a holepunch toward `ip` is under way (we asked a relay for a
    /// rendezvous, or one told us to dial).
    pub fn note_punch(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut punches = self.punches.lock().expect("punches lock");
        punches.retain(|_, at| now.duration_since(*at) < PUNCH_MEMORY);
        punches.insert(ip, now);
    }

    /// How a connection came about: one with an address we are punching toward, whichever
    /// side dialled, exists thanks to the rendezvous.
    pub fn punched_route(&self, addr: SocketAddr, route: Route) -> Route {
        let punched = self
            .punches
            .lock()
            .expect("punches lock")
            .get(&addr.ip())
            .is_some_and(|at| at.elapsed() < PUNCH_MEMORY);
        match route {
            Route::IncomingTcp | Route::OutgoingTcp if punched => Route::HolepunchedTcp,
            Route::IncomingUtp | Route::OutgoingUtp if punched => Route::HolepunchedUtp,
            other => other,
        }
    }

    /// Opens a connection to a peer, over TCP from our listen port or over µTP from our
    /// shared UDP socket, as the dialer's policy decides.
    pub async fn dial(&self, addr: SocketAddr) -> std::io::Result<(Box<dyn PeerIo>, Route)> {
        let s = self
            .dialer
            .dial(addr)
            .await
            .map_err(std::io::Error::other)?;
        let route = match s.transport() {
            Transport::Tcp => Route::OutgoingTcp,
            Transport::Utp => Route::OutgoingUtp,
        };
        Ok((Box::new(s), route))
    }

    /// Connects to a peer and completes the BitTorrent handshake for `info_hash`. Plain first
    /// (every client accepts it unless told to insist on encryption); a peer that hangs up on
    /// the plain handshake gets one more try through MSE. With a policy that requires
    /// encryption, only MSE is used.
    pub async fn connect_peer(
        &self,
        addr: SocketAddr,
        info_hash: InfoHash,
    ) -> Result<(Box<dyn PeerIo>, Handshake, Route), String> {
        let dial = || async {
            let (s, route) = tokio::time::timeout(CONNECT_TIMEOUT, self.dial(addr))
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((s, self.punched_route(addr, route)))
        };
        let encrypted = || async {
            let (s, route) = dial().await?;
            let mut s: Box<dyn PeerIo> = Box::new(
                crate::peer::mse::mse_connect(s, info_hash, self.encryption)
                    .await
                    .map_err(|e| format!("encryption: {e}"))?,
            );
            let h = handshake_outgoing(&mut s, info_hash, self.peer_id)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            Ok::<_, String>((s, h, route))
        };
        if self.encryption == EncryptionPolicy::Rc4Required {
            return encrypted().await;
        }
        let (mut s, route) = dial().await?;
        match handshake_outgoing(&mut s, info_hash, self.peer_id).await {
            Ok(h) => Ok((s, h, route)),
            Err(ConnError::Eof) | Err(ConnError::Io(_)) => encrypted()
                .await
                .map_err(|e| format!("plain handshake refused; {e}")),
            Err(e) => Err(format!("handshake: {e}")),
        }
    }

    /// Dials for a holepunch rendezvous: µTP from the shared UDP socket and TCP from the
    /// listen port at the same moment (a simultaneous open when the other side does the
    /// same, as the relay asked it to). The first to connect wins.
    ///
    /// Port prediction, the last resort for a peer behind a NAT that maps each destination to
    /// a new port: the relay saw the peer's mapping toward itself, and many such NATs hand
    /// out the next mapping close by, so after a short head start µTP is also tried toward
    /// the [`PREDICTED_PORTS`] ports above it. Bounded: at most that many extra SYNs, each
    /// retried by µTP's own timers, all cancelled once one connects.
    pub async fn dial_punch(
        self: &Arc<Self>,
        addr: SocketAddr,
    ) -> std::io::Result<(Box<dyn PeerIo>, SocketAddr, Route)> {
        self.note_punch(addr.ip());
        let mut attempts = tokio::task::JoinSet::new();
        let me = self.clone();
        attempts.spawn(async move {
            let s = me
                .dialer
                .tcp()
                .connect(addr)
                .await
                .map_err(std::io::Error::other)?;
            let _ = s.set_nodelay(true);
            Ok::<_, std::io::Error>((Box::new(s) as Box<dyn PeerIo>, addr, Route::HolepunchedTcp))
        });
        if let Some(utp) = self.dialer.utp().cloned() {
            let direct = utp.clone();
            attempts.spawn(async move {
                Ok((
                    Box::new(direct.connect(addr).await.map_err(std::io::Error::other)?)
                        as Box<dyn PeerIo>,
                    addr,
                    Route::HolepunchedUtp,
                ))
            });
            for k in 1..=PREDICTED_PORTS {
                let Some(port) = addr.port().checked_add(k) else {
                    break;
                };
                let guess = SocketAddr::new(addr.ip(), port);
                let u = utp.clone();
                attempts.spawn(async move {
                    tokio::time::sleep(PREDICTION_DELAY).await;
                    Ok((
                        Box::new(u.connect(guess).await.map_err(std::io::Error::other)?)
                            as Box<dyn PeerIo>,
                        guess,
                        Route::PortPredicted,
                    ))
                });
            }
        }
        let mut last = std::io::Error::other("no transport");
        while let Some(r) = attempts.join_next().await {
            match r {
                Ok(Ok(found)) => {
                    attempts.abort_all();
                    return Ok(found);
                }
                Ok(Err(e)) => last = e,
                Err(e) => last = std::io::Error::other(e),
            }
        }
        Err(last)
    }
}
