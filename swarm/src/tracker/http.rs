//! HTTP and HTTPS tracker announces (BEP 3), compact peer lists (BEP 23) and `peers6` (BEP 7),
//! with a deliberately small HTTP/1.0 client: one GET, a bounded response, up to three
//! redirects. HTTPS uses rustls and the system's trusted certificates (`/etc/ssl/certs`, or the
//! file `SSL_CERT_FILE` names).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use librqbit_bencode::{BencodeValue, ByteBuf};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls;

use super::{
    AnnounceRequest, AnnounceResponse, Event, TrackerError, MAX_PEERS_PER_RESPONSE,
    MAX_RESPONSE_BYTES,
};
use crate::metainfo::percent_encode_bytes;
use crate::wire::parse_compact;

/// Builds the announce URL for `base` (which may already carry a query string).
pub fn build_http_url(base: &str, r: &AnnounceRequest) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut url = format!(
        "{base}{sep}info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact=1&numwant={}&key={:08x}",
        percent_encode_bytes(&r.info_hash.0),
        percent_encode_bytes(&r.peer_id.0),
        r.port,
        r.uploaded,
        r.downloaded,
        r.left,
        r.num_want,
        r.key
    );
    if let Some(v6) = r.ipv6 {
        url.push_str("&ipv6=");
        url.push_str(&percent_encode_bytes(v6.to_string().as_bytes()));
    }
    match r.event {
        Event::None => {}
        Event::Started => url.push_str("&event=started"),
        Event::Completed => url.push_str("&event=completed"),
        Event::Stopped => url.push_str("&event=stopped"),
    }
    url
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow, rename = "failure reason", default)]
    failure: Option<ByteBuf<'a>>,
    #[serde(borrow, rename = "warning message", default)]
    warning: Option<ByteBuf<'a>>,
    #[serde(default)]
    interval: Option<i64>,
    #[serde(default)]
    complete: Option<i64>,
    #[serde(default)]
    incomplete: Option<i64>,
    #[serde(default)]
    peers: Option<BencodeValue<librqbit_bencode::ByteBufOwned>>,
    #[serde(borrow, default)]
    peers6: Option<ByteBuf<'a>>,
}

/// Parses a tracker's bencoded answer.
pub fn parse_http_response(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    let raw: Raw<'_> =
        crate::bencode::decode(body).map_err(|e| TrackerError::Malformed(e.to_string()))?;
    if let Some(f) = raw.failure {
        return Err(TrackerError::Failure(
            String::from_utf8_lossy(f.0).into_owned(),
        ));
    }
    let mut peers = Vec::new();
    match raw.peers {
        Some(BencodeValue::Bytes(b)) => {
            peers.extend(parse_compact(&b.0, false, MAX_PEERS_PER_RESPONSE))
        }
        Some(BencodeValue::List(list)) => {
            // The original, non-compact form: a list of dicts with `ip` and `port`.
            for d in list.iter().take(MAX_PEERS_PER_RESPONSE) {
                let BencodeValue::Dict(d) = d else { continue };
                let ip = d
                    .iter()
                    .find(|(k, _)| k.0.as_ref() == b"ip")
                    .and_then(|(_, v)| match v {
                        BencodeValue::Bytes(b) => {
                            std::str::from_utf8(&b.0).ok()?.parse::<IpAddr>().ok()
                        }
                        _ => None,
                    });
                let port =
                    d.iter()
                        .find(|(k, _)| k.0.as_ref() == b"port")
                        .and_then(|(_, v)| match v {
                            BencodeValue::Integer(p) => u16::try_from(*p).ok(),
                            _ => None,
                        });
                if let (Some(ip), Some(port)) = (ip, port) {
                    peers.push(SocketAddr::new(ip, port));
                }
            }
        }
        _ => {}
    }
    if let Some(p6) = raw.peers6 {
        let room = MAX_PEERS_PER_RESPONSE.saturating_sub(peers.len());
        peers.extend(parse_compact(p6.0, true, room));
    }
    let interval = raw.interval.filter(|&i| i > 0).unwrap_or(1800);
    Ok(AnnounceResponse {
        interval: Duration::from_secs(interval as u64),
        peers,
        seeders: raw.complete.and_then(|v| u32::try_from(v).ok()),
        leechers: raw.incomplete.and_then(|v| u32::try_from(v).ok()),
        warning: raw
            .warning
            .map(|w| String::from_utf8_lossy(w.0).into_owned()),
    })
}

struct Url<'a> {
    tls: bool,
    host: &'a str,
    port: u16,
    path: &'a str,
}

impl Url<'_> {
    fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

fn split_url(url: &str) -> Result<Url<'_>, TrackerError> {
    let bad = || TrackerError::BadUrl(url.to_string());
    let (tls, rest) = match url.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, url.strip_prefix("http://").ok_or_else(bad)?),
    };
    let default_port = if tls { 443 } else { 80 };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = after
            .strip_prefix(':')
            .map(|p| p.parse().map_err(|_| bad()))
            .transpose()?
            .unwrap_or(default_port);
        (h, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
            None => (authority, default_port),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok(Url {
        tls,
        host,
        port,
        path,
    })
}

/// The TLS client configuration: the system's trusted certificates, loaded once.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, TrackerError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!(error = %e, "skipping a system certificate");
            }
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "no trusted certificates found (install ca-certificates, or set SSL_CERT_FILE)"
                        .into(),
                );
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
        .map_err(TrackerError::Tls)
}

/// Announces over HTTP. `timeout` bounds the whole exchange.
pub async fn announce_http(
    url: &str,
    r: &AnnounceRequest,
    timeout: Duration,
) -> Result<AnnounceResponse, TrackerError> {
    let mut target = build_http_url(url, r);
    for _ in 0..4 {
        let body = tokio::time::timeout(timeout, get(&target))
            .await
            .map_err(|_| TrackerError::Timeout)??;
        match body {
            Fetched::Body(b) => return parse_http_response(&b),
            Fetched::Redirect(loc) => target = loc,
        }
    }
    Err(TrackerError::Malformed("too many redirects".into()))
}

enum Fetched {
    Body(Vec<u8>),
    Redirect(String),
}

async fn get(url: &str) -> Result<Fetched, TrackerError> {
    let u = split_url(url)?;
    let addr = match u.host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, u.port),
        Err(_) => tokio::net::lookup_host((u.host, u.port))
            .await?
            .next()
            .ok_or_else(|| TrackerError::BadUrl(format!("{} does not resolve", u.host)))?,
    };
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let host_header = if u.host.contains(':') {
        format!("[{}]", u.host)
    } else {
        u.host.to_string()
    };
    let req = format!(
        "GET {} HTTP/1.0\r\nHost: {}:{}\r\nUser-Agent: burrow/{}\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n",
        u.path,
        host_header,
        u.port,
        env!("CARGO_PKG_VERSION")
    );
    let resp = if u.tls {
        let name = rustls::pki_types::ServerName::try_from(u.host.to_string())
            .map_err(|_| TrackerError::BadUrl(format!("{url} (not a valid TLS server name)")))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, tcp)
            .await
            .map_err(
                |e| match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                    Some(e) => TrackerError::Tls(e.to_string()),
                    None => TrackerError::Io(e),
                },
            )?;
        exchange(tls, req.as_bytes()).await?
    } else {
        exchange(tcp, req.as_bytes()).await?
    };
    parse_http(&resp, url)
}

/// Sends `req` and reads the whole response, up to [`MAX_RESPONSE_BYTES`].
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    req: &[u8],
) -> Result<Vec<u8>, TrackerError> {
    s.write_all(req).await?;
    let mut resp = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match s.read(&mut chunk).await {
            Ok(n) => n,
            // Many HTTPS servers close without a TLS close_notify; the response ends there as
            // an HTTP/1.0 response does, and the bencoded body is checked whole anyway.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        if resp.len() + n > MAX_RESPONSE_BYTES {
            return Err(TrackerError::Malformed("response too large".into()));
        }
        resp.extend_from_slice(&chunk[..n]);
    }
    Ok(resp)
}

fn parse_http(resp: &[u8], base: &str) -> Result<Fetched, TrackerError> {
    let bad = |m: &str| TrackerError::Malformed(m.to_string());
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&resp[..end]).map_err(|_| bad("headers are not text"))?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    if (300..400).contains(&status) {
        let loc = header("location").ok_or_else(|| bad("redirect without location"))?;
        let loc = if loc.starts_with('/') {
            let u = split_url(base)?;
            let host = if u.host.contains(':') {
                format!("[{}]", u.host)
            } else {
                u.host.to_string()
            };
            format!("{}://{}:{}{}", u.scheme(), host, u.port, loc)
        } else {
            loc
        };
        return Ok(Fetched::Redirect(loc));
    }
    if status != 200 {
        return Err(TrackerError::Failure(format!("HTTP status {status}")));
    }
    let body = &resp[end + 4..];
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return dechunk(body)
            .map(Fetched::Body)
            .ok_or_else(|| bad("bad chunked encoding"));
    }
    Ok(Fetched::Body(body.to_vec()))
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&b[..line_end]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if b.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{InfoHash, PeerId};

    fn req() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash([0xab; 20]),
            peer_id: PeerId(*b"-BW0100-abcdefghijkl"),
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: Event::Started,
            num_want: 50,
            key: 0x1234,
            ipv6: Some("2001:db8::7".parse().unwrap()),
        }
    }

    #[test]
    fn url_encodes_binary_fields() {
        let u = build_http_url("http://t.example/announce?x=1", &req());
        assert!(u.starts_with("http://t.example/announce?x=1&info_hash=%AB%AB"));
        assert!(u.contains(
            "&peer_id=-BW0100-abcdefghijkl&port=6881&uploaded=1&downloaded=2&left=3&compact=1"
        ));
        assert!(u.ends_with("&ipv6=2001%3Adb8%3A%3A7&event=started"), "{u}");
    }

    #[test]
    fn compact_dict_and_v6_peers() {
        let mut body = b"d8:completei5e10:incompletei2e8:intervali900e5:peers12:".to_vec();
        body.extend_from_slice(&[10, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0, 80]);
        body.extend_from_slice(b"6:peers618:");
        body.extend_from_slice(&[
            0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 81,
        ]);
        body.push(b'e');
        let r = parse_http_response(&body).unwrap();
        assert_eq!(r.interval, Duration::from_secs(900));
        assert_eq!(r.seeders, Some(5));
        assert_eq!(
            r.peers,
            vec![
                "10.0.0.1:6881".parse().unwrap(),
                "10.0.0.2:80".parse().unwrap(),
                "[2001:db8::1]:81".parse().unwrap()
            ]
        );
        let dicts = b"d8:intervali60e5:peersld2:ip8:10.0.0.74:porti99eed2:ip3:bad4:porti1eeee";
        assert_eq!(
            parse_http_response(dicts).unwrap().peers,
            vec!["10.0.0.7:99".parse().unwrap()]
        );
        assert!(
            matches!(parse_http_response(b"d14:failure reason4:nopee"), Err(TrackerError::Failure(m)) if m == "nope")
        );
        assert!(matches!(
            parse_http_response(b"garbage"),
            Err(TrackerError::Malformed(_))
        ));
    }

    #[test]
    fn http_framing() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nd8:i\r\n9\r\nntervali1\r\n2\r\nee\r\n0\r\n\r\n";
        match parse_http(chunked, "http://a/").unwrap() {
            Fetched::Body(b) => assert_eq!(b, b"d8:intervali1ee"),
            _ => panic!("expected a body"),
        }
        match parse_http(
            b"HTTP/1.0 302 Found\r\nLocation: /other?x\r\n\r\n",
            "http://h:81/a",
        )
        .unwrap()
        {
            Fetched::Redirect(l) => assert_eq!(l, "http://h:81/other?x"),
            _ => panic!("expected a redirect"),
        }
        assert!(matches!(
            parse_http(b"HTTP/1.0 404 Not Found\r\n\r\n", "http://a/"),
            Err(TrackerError::Failure(_))
        ));
        assert!(split_url("ftp://a/").is_err());
        let u = split_url("http://[::1]:8080/ann").unwrap();
        assert_eq!(
            (u.tls, u.host, u.port, u.path),
            (false, "::1", 8080, "/ann")
        );
        let u = split_url("https://t.example/ann").unwrap();
        assert_eq!(
            (u.tls, u.host, u.port, u.path),
            (true, "t.example", 443, "/ann")
        );
        match parse_http(
            b"HTTP/1.1 301 Moved\r\nLocation: /b\r\n\r\n",
            "https://[::1]:8443/a",
        )
        .unwrap()
        {
            Fetched::Redirect(l) => assert_eq!(l, "https://[::1]:8443/b"),
            _ => panic!("expected a redirect"),
        }
    }
}
