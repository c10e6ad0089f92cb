//! `/metrics` for Prometheus: a small HTTP/1.0 responder over a tokio listener (RFC 1945: one
//! request per connection, the response ends when the connection closes). It reads at most
//! [`MAX_REQUEST`] bytes of request head, waits at most [`REQUEST_TIMEOUT`] for it and serves
//! at most [`MAX_CONNECTIONS`] clients at once; meant for a local scraper, not the internet.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::Server;

/// Longest request head read.
pub const MAX_REQUEST: usize = 4096;

/// Time a client has to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once; more wait in the listen queue.
pub const MAX_CONNECTIONS: usize = 16;

/// Serves `/metrics` on `listener` until the router task stops.
pub async fn serve(listener: TcpListener, server: Server) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "metrics accept failed");
                continue;
            }
        };
        let server = server.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = handle(stream, &server).await {
                tracing::debug!(error = %e, "metrics request failed");
            }
        });
    }
}

async fn handle(mut stream: TcpStream, server: &Server) -> std::io::Result<()> {
    let mut buf = [0u8; MAX_REQUEST];
    let mut len = 0;
    let head = tokio::time::timeout(REQUEST_TIMEOUT, async {
        while len < buf.len() {
            let n = stream.read(&mut buf[len..]).await?;
            if n == 0 {
                break;
            }
            len += n;
            if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") || buf[..len].ends_with(b"\n\n") {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(head, Ok(Ok(()))) {
        return Ok(());
    }
    let line = buf[..len].split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (status, body) = match (method, path) {
        (b"GET", b"/metrics") => match server.stats().await {
            Ok(stats) => {
                let mut body = String::with_capacity(4096);
                stats.write_prometheus(&mut body);
                if let Some(rss) = resident_bytes() {
                    body.push_str("# HELP burrow_dht_process_resident_bytes Resident memory.\n");
                    body.push_str("# TYPE burrow_dht_process_resident_bytes gauge\n");
                    body.push_str(&format!("burrow_dht_process_resident_bytes {rss}\n"));
                }
                ("200 OK", body)
            }
            Err(_) => ("503 Service Unavailable", "router stopped\n".to_owned()),
        },
        (b"GET", _) => ("404 Not Found", "see /metrics\n".to_owned()),
        _ => ("405 Method Not Allowed", "GET only\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Resident set size of this process in bytes (Linux `/proc/self/statm`), if known.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}
