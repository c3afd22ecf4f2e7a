//! Operator HTTP API (axum): the channel catalogue, live sessions, metrics and health.
//!
//! | method + path | answer |
//! | --- | --- |
//! | `POST /api/channels` `{"id"?, "name", "kind"?, "test_pattern"?}` | `201` `{"channel": {...}, "ingest": {"rtp": "ip:port", "rtcp": "ip:port"}}`: the relay ingest address a producer sends RTP to |
//! | `POST /api/channels` `{"id"?, "name", "kind": "personalized", "schedule": [{"channel", "seconds"}, ...]}` or `"rule": {"category", "seconds"?}` | `201` `{"channel": {...}, "id", "uri", "schedule", "relays"}`: a personalised channel ([`crate::service::personalized`]); `400` with the reason |
//! | `GET /api/channels` | `200` the channel list, the same JSON array as the `iptv-channels` NOTIFY body |
//! | `GET /api/channels/{id}` | `200` one channel, or `404` |
//! | `DELETE /api/channels/{id}` | `204`; its viewers get a BYE |
//! | `GET /api/sessions` | `200` live sessions `[{"call_id", "channel", "kind", "viewer", "remote", "started_ms"}]` |
//! | `GET /metrics` | Prometheus text (sessions active, joins, zaps, leaves, failures by code, subscriptions, relay stats) |
//! | `GET /healthz` | `200 ok` |
//! | `GET /api/channels/{id}/personalized` | `200` a personalised channel's splicer at each relay: see [`personalized`] |
//! | `GET /api/channels/{id}/quality`, `POST/GET /api/polls`, `GET/DELETE /api/polls/{poll}` | live feedback: see [`feedback`] |
//!
//! Errors are JSON `{"error": "..."}` with the status of [`crate::error::Error::http_status`].
//! The handlers only translate: every decision is in [`crate::service::Service`].

pub mod feedback;
pub mod personalized;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::service::channel_list::ChannelEntry;
use crate::service::{NewChannel, Service};

/// Body of `POST /api/channels`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateChannel {
    /// Channel id (the SIP user part); a slug of `name` when absent.
    pub id: Option<String>,
    /// Human-readable name.
    pub name: String,
    /// `producer` (default) or `personalized`; `personal` channels are made over SIP.
    #[serde(default)]
    pub kind: Option<String>,
    /// Feed it with the relay's H.264 test pattern instead of an external producer.
    #[serde(default)]
    pub test_pattern: bool,
    /// A personalised channel's slots (kind `personalized`).
    #[serde(default)]
    pub schedule: Option<Vec<crate::service::personalized::SlotDef>>,
    /// A personalised channel's category rule (kind `personalized`).
    #[serde(default)]
    pub rule: Option<crate::service::personalized::Rule>,
}

/// Where a producer sends the channel's media.
#[derive(Debug, Clone, Serialize)]
pub struct IngestAddr {
    /// RTP destination.
    pub rtp: std::net::SocketAddr,
    /// RTCP destination.
    pub rtcp: std::net::SocketAddr,
}

/// Answer of `POST /api/channels`.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    /// The new channel.
    pub channel: ChannelEntry,
    /// The relay's ingest.
    pub ingest: IngestAddr,
}

/// Serves `router` on `listener` until `shutdown` changes (or its sender is gone), on its own
/// task; `what` names the server in the warning logged if it ends with an error. The AS's
/// operator API, the relays' control APIs and the AAA's API all run this way.
pub fn serve_until(
    listener: tokio::net::TcpListener,
    router: Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    what: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let r = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = shutdown.changed().await;
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, server = what, "HTTP server ended");
        }
    })
}

/// The router; serve it with `axum::serve`.
pub fn router(service: Service) -> Router {
    Router::new()
        .route("/api/channels", get(list_channels).post(create_channel))
        .route(
            "/api/channels/{id}",
            get(get_channel).delete(delete_channel),
        )
        .route("/api/sessions", get(list_sessions))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(service.clone())
        .merge(personalized::routes(service.clone()))
        .merge(feedback::routes(service))
}

/// An [`Error`] as a JSON HTTP answer.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (
            status,
            Json(serde_json::json!({ "error": self.0.to_string() })),
        )
            .into_response();
        if let Error::Overloaded { retry_after } = self.0 {
            if let Ok(v) = retry_after.to_string().parse() {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

async fn list_channels(State(s): State<Service>) -> Result<Json<Vec<ChannelEntry>>, ApiError> {
    Ok(Json(s.list_channels().await?))
}

async fn get_channel(
    State(s): State<Service>,
    Path(id): Path<String>,
) -> Result<Json<ChannelEntry>, ApiError> {
    s.get_channel(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError(Error::NotFound(format!("channel {id}"))))
}

async fn create_channel(
    State(s): State<Service>,
    body: Result<Json<CreateChannel>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| ApiError(Error::Invalid(e.body_text())))?;
    if req.kind.as_deref() == Some("personalized") || req.schedule.is_some() || req.rule.is_some() {
        if req.test_pattern {
            return Err(ApiError(Error::Invalid(
                "a personalized channel has no test pattern".into(),
            )));
        }
        let def = crate::service::personalized::Definition {
            id: req.id,
            name: req.name,
            kind: req.kind,
            schedule: req.schedule,
            rule: req.rule,
        };
        let created = s.create_personalized(def, None).await?;
        return Ok((StatusCode::CREATED, Json(created)).into_response());
    }
    let (channel, ingest) = s
        .create_channel(NewChannel {
            id: req.id,
            name: req.name,
            kind: req.kind.unwrap_or_else(|| "producer".into()),
            owner: None,
            test_pattern: req.test_pattern,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            channel,
            ingest: IngestAddr {
                rtp: ingest.rtp_addr,
                rtcp: ingest.rtcp_addr,
            },
        }),
    )
        .into_response())
}

async fn delete_channel(
    State(s): State<Service>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.delete_channel(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_sessions(State(s): State<Service>) -> Json<Vec<crate::service::SessionView>> {
    Json(s.sessions())
}

async fn metrics(State(s): State<Service>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics_text().await,
    )
}
