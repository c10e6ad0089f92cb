//! The daemon's HTTP/1.1 server (hyper): Transmission RPC at `/transmission/rpc`, the web
//! page, its JSON endpoints and Prometheus `/metrics`.
//!
//! Guards, in order: a bounded number of connections, header size and read time limits, the
//! `Host` check against DNS rebinding (when no credentials are configured), HTTP basic auth
//! (when they are), and for the RPC Transmission's `X-Transmission-Session-Id` handshake,
//! which stops other web sites from driving the RPC through a user's browser.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::config::Config;
use super::engine::EngineHandle;

/// Connections served at once; further ones are closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Time allowed to send a request's headers (also the idle limit between requests).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to send a request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest life of one connection, however busy.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(600);
/// Largest request head (request line and headers).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest RPC body: room for a base64-encoded `.torrent` of about 12 MiB.
pub const MAX_RPC_BODY: usize = 16 * 1024 * 1024;
/// The header carrying the RPC session id.
pub const SESSION_ID_HEADER: &str = "X-Transmission-Session-Id";

/// What every request handler needs.
pub struct HttpState {
    /// The engine.
    pub engine: EngineHandle,
    /// The RPC session id clients must echo.
    pub session_id: String,
    /// `user:password` when auth is on.
    credentials: Option<String>,
    /// Extra host names allowed without auth.
    host_whitelist: Vec<String>,
}

impl HttpState {
    /// State for a server configured by `config`.
    pub fn new(engine: EngineHandle, config: &Config) -> HttpState {
        use rand::distr::{Alphanumeric, SampleString};
        let credentials = match (&config.rpc.username, &config.rpc.password) {
            (Some(u), Some(p)) => Some(format!("{u}:{p}")),
            _ => None,
        };
        HttpState {
            engine,
            session_id: Alphanumeric.sample_string(&mut rand::rng(), 48),
            credentials,
            host_whitelist: config
                .rpc
                .host_whitelist
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        }
    }
}

type Resp = Response<Full<Bytes>>;

/// A response with a body and content type.
pub fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(
        "X-Content-Type-Options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn text(status: StatusCode, body: &'static str) -> Resp {
    respond(status, "text/plain; charset=utf-8", body)
}

/// Accepts connections until the task is aborted.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
            drop(permit);
        });
    }
}

/// Whether a `Host` header names this machine by address, `localhost`, or a listed name.
fn host_allowed(host: Option<&str>, whitelist: &[String]) -> bool {
    let Some(host) = host else { return true };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let name = name.to_ascii_lowercase();
    name.parse::<IpAddr>().is_ok() || name == "localhost" || whitelist.contains(&name)
}

/// Compares without leaking, through timing, how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(req: &Request<Incoming>, credentials: &str) -> bool {
    let Some(value) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(b64) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return false;
    };
    match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
        Ok(given) => same(&given, credentials.as_bytes()),
        Err(_) => false,
    }
}

async fn handle(state: &HttpState, req: Request<Incoming>) -> Resp {
    match &state.credentials {
        Some(c) => {
            if !authorized(&req, c) {
                let mut r = text(StatusCode::UNAUTHORIZED, "401: Unauthorized\n");
                r.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"burrow\""),
                );
                return r;
            }
        }
        None => {
            let host = req.headers().get(HOST).and_then(|h| h.to_str().ok());
            if !host_allowed(host, &state.host_whitelist) {
                return text(
                    StatusCode::MISDIRECTED_REQUEST,
                    "421: unknown Host; add it to rpc.host_whitelist or set credentials\n",
                );
            }
        }
    }
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (_, "/transmission/rpc" | "/transmission/rpc/") => rpc(state, req).await,
        (&Method::GET, "/metrics") => match state.engine.snapshot().await {
            Some(s) => respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                super::metrics::render(&s),
            ),
            None => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
        },
        (&Method::GET, _) => super::web::get(state, &path).await,
        _ => text(StatusCode::NOT_FOUND, "404: not found\n"),
    }
}

async fn rpc(state: &HttpState, req: Request<Incoming>) -> Resp {
    let given = req.headers().get(SESSION_ID_HEADER).map(|v| v.as_bytes());
    if !given.is_some_and(|g| same(g, state.session_id.as_bytes())) {
        let mut r = respond(
            StatusCode::CONFLICT,
            "text/html; charset=utf-8",
            format!("<h1>409: Conflict</h1><p>Your request had an invalid session-id header.</p><p><code>{SESSION_ID_HEADER}: {}</code></p>", state.session_id),
        );
        r.headers_mut().insert(
            SESSION_ID_HEADER,
            HeaderValue::from_str(&state.session_id).expect("alphanumeric"),
        );
        return r;
    }
    if req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "405: use POST\n");
    }
    let body = match read_body(req, MAX_RPC_BODY).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let out = super::rpc::handle(&state.engine, &state.session_id, &body).await;
    let mut r = respond(
        StatusCode::OK,
        "application/json; charset=utf-8",
        serde_json::to_vec(&out).unwrap_or_default(),
    );
    r.headers_mut().insert(
        SESSION_ID_HEADER,
        HeaderValue::from_str(&state.session_id).expect("alphanumeric"),
    );
    r
}

/// Reads a request body of at most `max` bytes within [`BODY_TIMEOUT`].
async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, Resp> {
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "413: request body too large\n",
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let body = Limited::new(req.into_body(), max);
    match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        Err(_) => Err(text(
            StatusCode::REQUEST_TIMEOUT,
            "408: request body too slow\n",
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(text(
            StatusCode::BAD_REQUEST,
            "400: cannot read request body\n",
        )),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_by_address_and_localhost_pass_names_do_not() {
        let wl = vec!["seedbox.lan".to_string()];
        for ok in [
            "127.0.0.1:9091",
            "127.0.0.1",
            "[::1]:9091",
            "localhost:9091",
            "LOCALHOST",
            "seedbox.lan:9091",
            "192.168.1.5:80",
        ] {
            assert!(host_allowed(Some(ok), &wl), "{ok}");
        }
        for bad in [
            "evil.example:9091",
            "evil.example",
            "127.0.0.1.evil.example:9091",
            "[evil]:1",
        ] {
            assert!(!host_allowed(Some(bad), &wl), "{bad}");
        }
    }

    #[test]
    fn constant_time_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
