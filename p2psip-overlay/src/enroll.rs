//! The enrollment service (RFC 6940 section 11.3) and its client.
//!
//! A new peer makes a key pair and a PKCS#10 request ([`NodeIdentity::csr`]) and POSTs it
//! over HTTPS as `multipart/form-data` with the fields `nodeids`, `username`, `password` and
//! `csr`. The server checks the credentials, picks a random Node-ID (peers never choose their
//! own: that is what keeps an attacker from placing itself next to a victim's data), and
//! answers `200` with the certificate as `application/pkix-cert` (DER). Refusals are plain
//! HTTP errors with a reason: `401` unknown user or wrong password, `400` a missing field or a
//! CSR that does not parse or whose signature does not verify, `415` another body type.
//! The same server hands out the overlay configuration document ([`crate::config`]) at
//! `/.well-known/reload-config` (`application/p2p-overlay+xml`).
//!
//! The server runs on tokio with the dev CA ([`DevCa`]) as issuer; its own TLS certificate is
//! issued by the same CA for `localhost` and the bound IP, so standard clients (`curl
//! --cacert root.pem`) verify it. [`enroll`] is the client: a single HTTP/1.1 request over
//! rustls, trusting only the overlay's root.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Multipart, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::cert::{CertError, DevCa, NodeIdentity};
use crate::wire::NodeId;

/// Why enrollment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// Socket trouble.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// TLS set-up.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// Certificates.
    #[error("certificates: {0}")]
    Cert(#[from] CertError),
    /// The server refused (status and its reason).
    #[error("enrollment refused: {status} {reason}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Body text.
        reason: String,
    },
    /// The URL or the answer could not be understood.
    #[error("enrollment: {0}")]
    Protocol(String),
}

/// What the server serves.
#[derive(Debug)]
pub struct EnrollConfig {
    /// The CA that issues node certificates.
    pub ca: DevCa,
    /// user → password (dev mode credentials).
    pub users: HashMap<String, String>,
    /// The configuration document served at `/.well-known/reload-config`.
    pub overlay_xml: String,
}

struct Shared {
    ca: DevCa,
    users: HashMap<String, String>,
    overlay_xml: String,
    /// Node-IDs handed out, so none is issued twice.
    issued: Mutex<std::collections::HashSet<NodeId>>,
}

/// A running enrollment server.
#[derive(Debug)]
pub struct EnrollServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// `https://<addr>/enroll`.
    pub url: String,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl EnrollServer {
    /// Binds `addr` and serves until [`EnrollServer::shutdown`].
    pub async fn start(cfg: EnrollConfig, addr: SocketAddr) -> Result<Self, EnrollError> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (chain, key) = server_cert(&cfg.ca, addr)?;
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let shared = Arc::new(Shared {
            ca: cfg.ca,
            users: cfg.users,
            overlay_xml: cfg.overlay_xml,
            issued: Mutex::new(std::collections::HashSet::new()),
        });
        let router = Router::new()
            .route("/enroll", post(enroll_handler))
            .route("/.well-known/reload-config", get(config_handler))
            .with_state(shared);
        let (shutdown, mut rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = listener.accept() => {
                        let Ok((tcp, _)) = r else { continue };
                        let acceptor = acceptor.clone();
                        let svc = TowerToHyperService::new(router.clone());
                        tokio::spawn(async move {
                            let Ok(tls) = acceptor.accept(tcp).await else { return };
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(tls), svc)
                                .await;
                        });
                    }
                    _ = rx.changed() => break,
                }
            }
        });
        let host = match addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        Ok(Self {
            addr,
            url: format!("https://{host}:{}/enroll", addr.port()),
            shutdown,
            task,
        })
    }

    /// Stops accepting and waits for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// The server's own certificate: `localhost` and the bound IP, issued by the CA.
fn server_cert(
    ca: &DevCa,
    addr: SocketAddr,
) -> Result<
    (
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    EnrollError,
> {
    let key = KeyPair::generate().map_err(CertError::from)?;
    let params = CertificateParams::new(vec!["localhost".to_owned(), addr.ip().to_string()])
        .map_err(CertError::from)?;
    let cert = ca.sign_params(params, &key)?;
    Ok((
        vec![cert, ca.root_der()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    ))
}

fn refuse(status: StatusCode, why: impl Into<String>) -> Response {
    (status, why.into()).into_response()
}

async fn config_handler(State(s): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/p2p-overlay+xml")],
        s.overlay_xml.clone(),
    )
        .into_response()
}

async fn enroll_handler(
    State(s): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("multipart/form-data") {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected multipart/form-data (RFC 6940 section 11.3)",
        );
    }
    let mut multipart = match multipart {
        Ok(m) => m,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let mut fields: HashMap<String, Vec<u8>> = HashMap::new();
    loop {
        match multipart.next_field().await {
            Ok(Some(f)) => {
                let name = f.name().unwrap_or("").to_owned();
                match f.bytes().await {
                    Ok(b) if b.len() <= 64 * 1024 => {
                        fields.insert(name, b.to_vec());
                    }
                    Ok(_) => return refuse(StatusCode::PAYLOAD_TOO_LARGE, "field over 64 KB"),
                    Err(e) => return refuse(StatusCode::BAD_REQUEST, e.body_text()),
                }
            }
            Ok(None) => break,
            Err(e) => return refuse(StatusCode::BAD_REQUEST, e.body_text()),
        }
    }
    let text = |k: &str| {
        fields
            .get(k)
            .map(|v| String::from_utf8_lossy(v).trim().to_owned())
    };
    let (Some(user), Some(password), Some(csr)) =
        (text("username"), text("password"), fields.get("csr"))
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "missing field: username, password and csr are required",
        );
    };
    if let Some(n) = text("nodeids") {
        match n.parse::<u32>() {
            Ok(1..=16) => {}
            _ => return refuse(StatusCode::BAD_REQUEST, format!("bad nodeids {n:?}")),
        }
    }
    if s.users.get(&user) != Some(&password) {
        return refuse(StatusCode::UNAUTHORIZED, "unknown user or wrong password");
    }
    // The CSR may come as DER or PEM.
    let der = match std::str::from_utf8(csr) {
        Ok(t) if t.contains("-----BEGIN") => match pem_body(t) {
            Some(d) => d,
            None => return refuse(StatusCode::BAD_REQUEST, "CSR PEM without a body"),
        },
        _ => csr.clone(),
    };
    let node = {
        let mut issued = s.issued.lock().await;
        let mut node = random_node_id();
        while issued.contains(&node) || node == NodeId::ZERO || node == NodeId::MAX {
            node = random_node_id();
        }
        issued.insert(node);
        node
    };
    match s.ca.issue_from_csr(&der, node, Some(&user)) {
        Ok(cert) => (
            [(header::CONTENT_TYPE, "application/pkix-cert")],
            cert.to_vec(),
        )
            .into_response(),
        Err(e) => {
            s.issued.lock().await.remove(&node);
            refuse(StatusCode::BAD_REQUEST, format!("bad CSR: {e}"))
        }
    }
}

fn pem_body(t: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let b64: String = t
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()
}

fn random_node_id() -> NodeId {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    // SystemRandom only fails when the OS has no randomness at all.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    NodeId(b)
}

/// Enrolls at `url` (`https://host:port/enroll`) trusting only `root`: a fresh key, a CSR,
/// the POST; returns the identity with its certificate chain (leaf, root).
pub async fn enroll(
    url: &str,
    root: &CertificateDer<'static>,
    user: &str,
    password: &str,
) -> Result<NodeIdentity, EnrollError> {
    let (key, csr) = NodeIdentity::csr(user)?;
    let boundary = "reload-enrollment-7d3f9a";
    let mut body = Vec::new();
    for (name, value, ct) in [
        ("nodeids", b"1".as_slice(), None),
        ("username", user.as_bytes(), None),
        ("password", password.as_bytes(), None),
        ("csr", csr.as_slice(), Some("application/pkcs10")),
    ] {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{name}\"\r\n").as_bytes(),
        );
        if let Some(ct) = ct {
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let ctype = format!("multipart/form-data; boundary={boundary}");
    let (status, rtype, body) = https_request(
        url,
        root,
        "POST",
        &[
            ("Accept", "application/pkix-cert"),
            ("Content-Type", &ctype),
        ],
        &body,
    )
    .await?;
    if status != 200 {
        return Err(EnrollError::Refused {
            status,
            reason: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    if !rtype.eq_ignore_ascii_case("application/pkix-cert") {
        return Err(EnrollError::Protocol(format!("answer type {rtype:?}")));
    }
    let leaf = CertificateDer::from(body);
    let id = crate::cert::PeerIdentity::from_der(&leaf)?;
    let node = id
        .nodes
        .first()
        .map(|(n, _)| *n)
        .ok_or_else(|| EnrollError::Protocol("certificate without a Node-ID".into()))?;
    Ok(NodeIdentity {
        node,
        chain: vec![leaf, root.clone()],
        key_pkcs8: key,
    })
}

/// Fetches the overlay configuration document from `url`
/// (`https://host:port/.well-known/reload-config`) trusting only `root`.
pub async fn fetch_config(
    url: &str,
    root: &CertificateDer<'static>,
) -> Result<crate::config::OverlayConfig, EnrollError> {
    let (status, _, body) = https_request(url, root, "GET", &[], &[]).await?;
    if status != 200 {
        return Err(EnrollError::Refused {
            status,
            reason: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    let text = String::from_utf8(body)
        .map_err(|_| EnrollError::Protocol("configuration is not UTF-8".into()))?;
    crate::config::OverlayConfig::from_xml(&text).map_err(|e| EnrollError::Protocol(e.to_string()))
}

/// One HTTP/1.1 request over rustls trusting only `root`: (status, content type, body).
async fn https_request(
    url: &str,
    root: &CertificateDer<'static>,
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String, Vec<u8>), EnrollError> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| EnrollError::Protocol(format!("not an https URL: {url}")))?;
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = split_host_port(hostport)?;
    let mut req = format!("{method} /{path} HTTP/1.1\r\nHost: {hostport}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut req = req.into_bytes();
    req.extend_from_slice(body);

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(root.clone())
        .map_err(|e| EnrollError::Protocol(e.to_string()))?;
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(host.clone())
        .map_err(|e| EnrollError::Protocol(format!("server name {host}: {e}")))?;
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    let mut tls = TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await?;
    tls.write_all(&req).await?;
    let mut resp = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match tls.read(&mut chunk).await {
            Ok(n) => n,
            // Servers that close without close_notify: what was read is the answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        resp.extend_from_slice(&chunk[..n]);
        // Bounded: a certificate or a configuration document is a few KB.
        if resp.len() > 1024 * 1024 {
            return Err(EnrollError::Protocol("answer over 1 MB".into()));
        }
    }
    let (status, ctype, body) = parse_response(&resp)?;
    Ok((status, ctype, body.to_vec()))
}

fn split_host_port(hp: &str) -> Result<(String, u16), EnrollError> {
    let bad = || EnrollError::Protocol(format!("bad host:port {hp:?}"));
    if let Some(rest) = hp.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
        return Ok((h.to_owned(), p.parse().map_err(|_| bad())?));
    }
    let (h, p) = hp.rsplit_once(':').ok_or_else(bad)?;
    Ok((h.to_owned(), p.parse().map_err(|_| bad())?))
}

/// (status, content type, body) of an HTTP/1.1 answer with Content-Length or to EOF.
fn parse_response(resp: &[u8]) -> Result<(u16, String, &[u8]), EnrollError> {
    let bad = |w: &str| EnrollError::Protocol(format!("bad HTTP answer: {w}"));
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&resp[..end]).map_err(|_| bad("not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status line"))?;
    let mut ctype = String::new();
    let mut len = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-type") {
                ctype = v.trim().to_owned();
            } else if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse::<usize>().ok();
            }
        }
    }
    let body = &resp[end + 4..];
    let body = match len {
        Some(n) if n <= body.len() => &body[..n],
        Some(_) => return Err(bad("body shorter than Content-Length")),
        None => body,
    };
    Ok((status, ctype, body))
}
