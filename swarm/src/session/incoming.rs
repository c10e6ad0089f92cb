//! Incoming connections: the accept loops on the session's TCP listeners and µTP socket, the
//! encryption handshake (MSE/PE) when a peer starts with one, and the routing of each
//! connection to the torrent its handshake names.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::connectivity::{Connector, PeerSource, Route};
use crate::net::{TcpListeners, UtpSocket};
use crate::peer::conn::{read_handshake_prefix, PeerIo};
use crate::torrent::task::TaskMsg;
use crate::types::InfoHash;

/// Which torrent task an incoming connection (or a peer found on the LAN) belongs to. Only
/// senders live here, no torrent state: each torrent's state stays inside its own task.
#[derive(Default)]
pub(super) struct Routing {
    /// Torrent tasks by info-hash.
    registry: Mutex<HashMap<InfoHash, mpsc::UnboundedSender<TaskMsg>>>,
    /// Our torrents by MSE's `req2` hash, to recognise which one an encrypted peer wants.
    req2: Mutex<HashMap<[u8; 20], InfoHash>>,
}

impl Routing {
    /// Routes connections for `info_hash` to `tx` from now on.
    pub fn insert(&self, info_hash: InfoHash, tx: mpsc::UnboundedSender<TaskMsg>) {
        self.registry
            .lock()
            .expect("registry lock")
            .insert(info_hash, tx);
        self.req2
            .lock()
            .expect("req2 lock")
            .insert(crate::wire::mse::req2_hash(&info_hash), info_hash);
    }

    /// Refuses connections for `info_hash` from now on.
    pub fn remove(&self, info_hash: &InfoHash) {
        self.registry
            .lock()
            .expect("registry lock")
            .remove(info_hash);
        self.req2
            .lock()
            .expect("req2 lock")
            .remove(&crate::wire::mse::req2_hash(info_hash));
    }

    fn task(&self, info_hash: &InfoHash) -> Option<mpsc::UnboundedSender<TaskMsg>> {
        self.registry
            .lock()
            .expect("registry lock")
            .get(info_hash)
            .cloned()
    }

    /// Hands peers found on the LAN to their torrent.
    pub fn lsd_peer(&self, info_hash: &InfoHash, peer: SocketAddr) {
        if let Some(tx) = self.task(info_hash) {
            let _ = tx.send(TaskMsg::Peers(PeerSource::Lsd, vec![peer]));
        }
    }
}

/// Accepts TCP connections for ever.
pub(super) async fn accept_tcp(
    tcp: Arc<TcpListeners>,
    routing: Arc<Routing>,
    connector: Arc<Connector>,
) {
    loop {
        let Ok((stream, addr)) = tcp.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(route_incoming(
            Box::new(stream),
            addr,
            Route::IncomingTcp,
            routing.clone(),
            connector.clone(),
        ));
    }
}

/// Accepts µTP connections for ever.
pub(super) async fn accept_utp(utp: UtpSocket, routing: Arc<Routing>, connector: Arc<Connector>) {
    loop {
        match utp.accept().await {
            Ok((stream, addr)) => {
                tokio::spawn(route_incoming(
                    Box::new(stream),
                    addr,
                    Route::IncomingUtp,
                    routing.clone(),
                    connector.clone(),
                ));
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

/// Tells a plain BitTorrent handshake from an MSE one by its first bytes, completes the
/// encryption handshake if there is one, then reads the start of the BitTorrent handshake and
/// hands the connection to its torrent.
async fn route_incoming(
    stream: Box<dyn PeerIo>,
    addr: SocketAddr,
    route: Route,
    routing: Arc<Routing>,
    connector: Arc<Connector>,
) {
    let known = |h: &[u8; 20]| routing.req2.lock().expect("req2 lock").get(h).copied();
    let accepted = match crate::peer::mse::accept(stream, known, connector.encryption()).await {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(%addr, error = %e, "incoming connection refused during encryption handshake");
            return;
        }
    };
    let named = accepted.info_hash();
    let mut stream: Box<dyn PeerIo> = Box::new(accepted.into_stream());
    let Ok((reserved, ih)) = read_handshake_prefix(&mut stream).await else {
        return;
    };
    if named.is_some_and(|n| n != ih) {
        return; // The encrypted handshake named one torrent, the BitTorrent one another.
    }
    let route = connector.punched_route(addr, route);
    if let Some(tx) = routing.task(&ih) {
        let _ = tx.send(TaskMsg::Incoming {
            stream,
            addr,
            reserved,
            route,
        });
    }
}
