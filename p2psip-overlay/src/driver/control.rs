//! What `p2psip-node run` does: get an identity (dev CA files or HTTPS enrollment), start
//! the [`super`] driver, print one JSON line when joined, and serve a small local HTTP
//! control API so tests and operators can store and fetch through any peer:
//!
//! - `GET /status` -> `{"node_id":..,"listen":..,"joined":bool}`
//! - `POST /store?resource=NAME&kind=K` with the value as body -> `200 ok`
//! - `GET /fetch?resource=NAME&kind=K` -> `{"values":["..", ..]}` (values as UTF-8, lossy)
//! - `GET /local?resource=NAME&kind=K` -> the same for the values this peer holds itself
//!
//! `kind` is decimal or `0x` hex; the default is the channel -> relays kind.
//! Errors from the overlay are `502` with the reason as text.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use tracing::info;

use super::{identity_from_ca_dir, DriverConfig, DriverError, OverlayHandle};
use crate::link::LinkConfig;
use crate::storage::KindId;
use crate::wire::NodeId;

/// Options of `p2psip-node run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Overlay name.
    pub overlay: String,
    /// Directory with the dev CA (`ca.pem`, `ca.key`).
    pub ca_dir: PathBuf,
    /// Link listen address.
    pub listen: SocketAddr,
    /// Bootstrap peer.
    pub bootstrap: Option<SocketAddr>,
    /// Node-ID (`None`: random).
    pub node_id: Option<NodeId>,
    /// HTTP control address.
    pub control: Option<SocketAddr>,
    /// Enrollment server (`https://...`): the certificate (and Node-ID) come from it
    /// instead of the CA key; `ca.pem` is the root that authenticates it.
    pub enroll: Option<(String, String, String)>,
    /// Dev/test: write every sent PDU to this pcap on shutdown.
    pub pcap: Option<PathBuf>,
}

/// Writes a new dev CA for `overlay` into `dir` (`ca.pem`, `ca.key`).
pub fn write_ca(dir: &std::path::Path, overlay: &str) -> Result<(), DriverError> {
    std::fs::create_dir_all(dir)?;
    let ca = crate::cert::DevCa::new(overlay)?;
    let (cert, key) = ca.to_pem();
    std::fs::write(dir.join("ca.pem"), cert)?;
    std::fs::write(dir.join("ca.key"), key)?;
    Ok(())
}

/// A random Node-ID.
#[must_use]
pub fn random_node_id() -> NodeId {
    NodeId::from_u128(rand::random::<u128>())
}

/// Runs a peer until `stop` resolves; then leaves the overlay.
pub async fn run(
    opts: RunOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), DriverError> {
    let (identity, roots) = match &opts.enroll {
        None => identity_from_ca_dir(
            &opts.ca_dir,
            &opts.overlay,
            opts.node_id.unwrap_or_else(random_node_id),
        )?,
        Some((url, user, password)) => {
            let pem = std::fs::read_to_string(opts.ca_dir.join("ca.pem"))?;
            let root = rustls::pki_types::CertificateDer::from(
                crate::cert::DevCa::from_pem(
                    &opts.overlay,
                    &pem,
                    &std::fs::read_to_string(opts.ca_dir.join("ca.key"))?,
                )?
                .root_der()
                .to_vec(),
            );
            let id = crate::enroll::enroll(url, &root, user, password)
                .await
                .map_err(|e| DriverError::Io(std::io::Error::other(e.to_string())))?;
            (id, vec![root])
        }
    };
    let link = LinkConfig::new(&opts.overlay, identity, roots);
    let mut cfg = DriverConfig::new(link, opts.listen, opts.bootstrap);
    cfg.pcap = opts.pcap.clone();
    let (handle, task) = super::start(cfg).await?;
    let control = match opts.control {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a).await?;
            let addr = l.local_addr()?;
            let app = router(handle.clone());
            tokio::spawn(async move {
                let _ = axum::serve(l, app).await;
            });
            Some(addr)
        }
        None => None,
    };
    let h = handle.clone();
    let joined = async move {
        if h.joined().await.is_ok() {
            let line = serde_json::json!({
                "event": "joined",
                "node_id": h.node_id().to_string(),
                "listen": h.listen_addr().to_string(),
                "control": control.map(|c| c.to_string()),
            });
            println!("{line}");
            info!("{line}");
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = stop => {}
        () = joined => {}
    }
    handle.shutdown().await;
    let _ = task.await;
    Ok(())
}

fn kind_param(q: &HashMap<String, String>) -> Result<KindId, (StatusCode, String)> {
    let Some(k) = q.get("kind") else {
        return Ok(KindId::CHANNEL_RELAYS);
    };
    let v = match k.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16),
        None => k.parse(),
    };
    v.map(KindId)
        .map_err(|_| (StatusCode::BAD_REQUEST, format!("bad kind {k}")))
}

fn resource_param(q: &HashMap<String, String>) -> Result<Vec<u8>, (StatusCode, String)> {
    q.get("resource")
        .map(|r| r.as_bytes().to_vec())
        .ok_or((StatusCode::BAD_REQUEST, "resource missing".into()))
}

/// The control API's routes.
pub fn router(handle: OverlayHandle) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/fetch", get(fetch))
        .route("/store", post(store))
        .route("/local", get(local))
        .with_state(Arc::new(handle))
}

async fn status(State(h): State<Arc<OverlayHandle>>) -> String {
    let joined = *h.joined.borrow();
    serde_json::json!({
        "node_id": h.node_id().to_string(),
        "listen": h.listen_addr().to_string(),
        "joined": joined,
    })
    .to_string()
}

async fn fetch(
    State(h): State<Arc<OverlayHandle>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<String, (StatusCode, String)> {
    let kind = kind_param(&q)?;
    let resource = resource_param(&q)?;
    let values = h
        .fetch(&resource, kind)
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))?;
    let values: Vec<String> = values
        .iter()
        .map(|v| String::from_utf8_lossy(&v.data).into_owned())
        .collect();
    Ok(serde_json::json!({ "values": values }).to_string())
}

async fn store(
    State(h): State<Arc<OverlayHandle>>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Result<&'static str, (StatusCode, String)> {
    let kind = kind_param(&q)?;
    let resource = resource_param(&q)?;
    h.store(&resource, kind, body.to_vec())
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))?;
    Ok("ok")
}

async fn local(
    State(h): State<Arc<OverlayHandle>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<String, (StatusCode, String)> {
    let kind = kind_param(&q)?;
    let resource = resource_param(&q)?;
    let values = h
        .local(&resource, kind)
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))?;
    let values: Vec<String> = values
        .iter()
        .map(|v| String::from_utf8_lossy(&v.data).into_owned())
        .collect();
    Ok(serde_json::json!({ "values": values }).to_string())
}

/// Arguments of `p2psip-node run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Overlay name.
    #[arg(long, default_value = "iptv.test")]
    pub overlay: String,
    /// Directory of the dev CA (`ca.pem`, `ca.key`; written by `p2psip-node ca`).
    #[arg(long)]
    pub ca: PathBuf,
    /// Link listen address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// A peer already in the overlay; without it this peer starts a new overlay.
    #[arg(long)]
    pub bootstrap: Option<SocketAddr>,
    /// Node-ID: 32 hex digits, or `random`.
    #[arg(long, default_value = "random")]
    pub node_id: String,
    /// Local HTTP control API address (`/status`, `/store`, `/fetch`, `/local`).
    #[arg(long)]
    pub control: Option<SocketAddr>,
    /// Enroll at this HTTPS enrollment server instead of using the CA key (needs
    /// `--user` and `--password`; `ca.pem` authenticates the server).
    #[arg(long)]
    pub enroll: Option<String>,
    /// Enrollment user name.
    #[arg(long, default_value = "")]
    pub user: String,
    /// Enrollment password.
    #[arg(long, default_value = "")]
    pub password: String,
    /// Dev/test: write every RELOAD PDU this peer sends to this pcap file on exit.
    #[arg(long)]
    pub pcap: Option<PathBuf>,
}

/// Arguments of `p2psip-node ca`.
#[derive(clap::Args, Debug, Clone)]
pub struct CaArgs {
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Overlay name.
    #[arg(long, default_value = "iptv.test")]
    pub overlay: String,
}

/// `p2psip-node ca`: writes the dev CA once (an existing one is kept).
pub fn ca_cmd(a: &CaArgs) -> Result<(), DriverError> {
    if a.out.join("ca.pem").exists() && a.out.join("ca.key").exists() {
        return Ok(());
    }
    write_ca(&a.out, &a.overlay)
}

/// `p2psip-node run`: logs with tracing (`RUST_LOG`), runs until SIGINT or SIGTERM.
pub fn run_cmd(a: RunArgs) -> Result<(), DriverError> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let node_id = if a.node_id == "random" {
        None
    } else {
        let v = u128::from_str_radix(&a.node_id, 16).map_err(|_| {
            DriverError::Io(std::io::Error::other(format!(
                "bad --node-id {} (32 hex digits or random)",
                a.node_id
            )))
        })?;
        Some(NodeId::from_u128(v))
    };
    let opts = RunOptions {
        overlay: a.overlay,
        ca_dir: a.ca,
        listen: a.listen,
        bootstrap: a.bootstrap,
        node_id,
        control: a.control,
        enroll: a.enroll.map(|u| (u, a.user, a.password)),
        pcap: a.pcap,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let stop = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = async {
                    match term.as_mut() {
                        Some(t) => { t.recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {}
            }
        };
        run(opts, stop).await
    })
}
