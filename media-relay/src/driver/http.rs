//! The relay's control API as JSON over HTTP (axum), plus `/metrics` and `/healthz`.
//!
//! How it fits: a thin layer over [`RelayHandle`]: each route calls one handle method and maps
//! [`Error`] to a status code. The `media-relay` binary serves [`router`]; the AS can use the
//! in-process handle directly instead.
//!
//! | method | path | body | answer |
//! | --- | --- | --- | --- |
//! | POST | `/channels` | [`ChannelSpec`] | 201 [`crate::control::IngestInfo`] |
//! | DELETE | `/channels/{id}` | | 204 |
//! | POST | `/channels/{id}/test-pattern` | | 204 |
//! | GET | `/channels/{id}/feedback` | | [`crate::control::FeedbackSummary`] |
//! | POST | `/channels/{id}/upstream` | [`UpstreamBody`] | 204 (pull the channel, [`crate::tree`]) |
//! | DELETE | `/channels/{id}/upstream` | | 204 (stop pulling) |
//! | POST | `/channels/{id}/feedback/children` | `{"addr": "<ip:port>"}` | 204 (register a child FT: its RSI summaries are merged; [`RelayHandle::set_feedback_child`]) |
//! | DELETE | `/channels/{id}/feedback/children` | `{"addr": "<ip:port>"}` | 204 (unregister it) |
//! | PUT | `/channels/{id}/polls` | `{"polls": [<u32>...]}` | 204 (the channel's polls: votes for them on other channels do not count; [`RelayHandle::set_channel_polls`]) |
//! | POST | `/personalized` | [`crate::personalized::PersonalizedSpec`] | 201 [`crate::personalized::PersonalizedInfo`] |
//! | GET | `/personalized` | | `[`[`crate::personalized::PersonalizedStats`]`]` |
//! | POST | `/viewers` | [`AddViewer`] | 201 [`crate::control::ViewerInfo`] |
//! | DELETE | `/viewers/{id}` | | 204 |
//! | POST | `/viewers/{id}/switch` | `{"channel": "<id>"}` | 204 |
//! | GET | `/stats` | | [`crate::control::RelayStats`] |
//! | GET | `/metrics` | | Prometheus text format 0.0.4 |
//! | GET | `/healthz` | | `ok` |
//!
//! Errors: 404 unknown channel/viewer, 409 already exists, 400 invalid, 503 overloaded, 501 not
//! supported, 500 otherwise; the body is `{"error": "<message>"}`.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;

use crate::control::{AddViewer, ChannelId, ChannelSpec, Error, RelayHandle, ViewerId};

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Error::UnknownChannel(_) | Error::UnknownViewer(_) => StatusCode::NOT_FOUND,
            Error::ChannelExists(_) | Error::ViewerExists(_) => StatusCode::CONFLICT,
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            Error::Io(_) | Error::Stopped => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

/// Body of `POST /viewers/{id}/switch`.
#[derive(Debug, Deserialize)]
pub struct SwitchBody {
    /// The channel to switch to.
    pub channel: ChannelId,
}

/// Body of `POST /channels/{id}/upstream`: the HTTP control addresses of the relays that
/// carry the channel, in order of preference.
#[derive(Debug, Deserialize, serde::Serialize)]
pub struct UpstreamBody {
    /// `"ip:port"` of each candidate's control API.
    pub candidates: Vec<std::net::SocketAddr>,
}

async fn set_upstream(
    State(h): State<RelayHandle>,
    Path(id): Path<String>,
    Json(body): Json<UpstreamBody>,
) -> Result<StatusCode, Error> {
    let candidates = body
        .candidates
        .into_iter()
        .map(|control| crate::tree::Upstream::Http { control })
        .collect();
    h.set_upstream(ChannelId(id), candidates).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_upstream(
    State(h): State<RelayHandle>,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    h.clear_upstream(&ChannelId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The HTTP routes over a relay handle.
pub fn router(handle: RelayHandle) -> Router {
    Router::new()
        .route("/channels", post(create_channel))
        .route("/channels/{id}", delete(delete_channel))
        .route("/channels/{id}/test-pattern", post(test_pattern))
        .route("/channels/{id}/feedback", get(feedback))
        .route(
            "/channels/{id}/upstream",
            post(set_upstream).delete(clear_upstream),
        )
        .route(
            "/channels/{id}/feedback/children",
            post(add_feedback_child).delete(remove_feedback_child),
        )
        .route("/channels/{id}/polls", put(set_channel_polls))
        .route(
            "/personalized",
            post(create_personalized).get(personalized_stats),
        )
        .route("/viewers", post(add_viewer))
        .route("/viewers/{id}", delete(remove_viewer))
        .route("/viewers/{id}/switch", post(switch_channel))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(handle)
}

async fn create_channel(
    State(h): State<RelayHandle>,
    Json(spec): Json<ChannelSpec>,
) -> Result<impl IntoResponse, Error> {
    Ok((StatusCode::CREATED, Json(h.create_ingest(spec).await?)))
}

async fn delete_channel(
    State(h): State<RelayHandle>,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    h.delete_ingest(&ChannelId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn test_pattern(
    State(h): State<RelayHandle>,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    h.start_test_pattern(&ChannelId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn add_viewer(
    State(h): State<RelayHandle>,
    Json(req): Json<AddViewer>,
) -> Result<impl IntoResponse, Error> {
    Ok((StatusCode::CREATED, Json(h.add_viewer(req).await?)))
}

async fn remove_viewer(
    State(h): State<RelayHandle>,
    Path(id): Path<u64>,
) -> Result<StatusCode, Error> {
    h.remove_viewer(ViewerId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn switch_channel(
    State(h): State<RelayHandle>,
    Path(id): Path<u64>,
    Json(body): Json<SwitchBody>,
) -> Result<StatusCode, Error> {
    h.switch_channel(ViewerId(id), body.channel).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn stats(State(h): State<RelayHandle>) -> Result<impl IntoResponse, Error> {
    Ok(Json(h.stats().await?))
}

async fn metrics(State(h): State<RelayHandle>) -> Result<impl IntoResponse, Error> {
    let text = h.stats().await?.to_prometheus();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

async fn feedback(
    State(h): State<RelayHandle>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Error> {
    Ok(Json(h.feedback(&ChannelId(id)).await?))
}

/// `POST`/`DELETE /channels/{id}/feedback/children` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackChildBody {
    /// The RTCP address the child FT sends its summaries from.
    addr: std::net::SocketAddr,
}

async fn add_feedback_child(
    State(h): State<RelayHandle>,
    Path(id): Path<String>,
    Json(body): Json<FeedbackChildBody>,
) -> Result<StatusCode, Error> {
    h.set_feedback_child(&ChannelId(id), body.addr, true)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_feedback_child(
    State(h): State<RelayHandle>,
    Path(id): Path<String>,
    Json(body): Json<FeedbackChildBody>,
) -> Result<StatusCode, Error> {
    h.set_feedback_child(&ChannelId(id), body.addr, false)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /channels/{id}/polls` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelPollsBody {
    /// The channel's poll ids.
    polls: Vec<u32>,
}

async fn set_channel_polls(
    State(h): State<RelayHandle>,
    Path(id): Path<String>,
    Json(body): Json<ChannelPollsBody>,
) -> Result<StatusCode, Error> {
    if body.polls.len() > crate::feedback::live::MAX_DECLARED_POLLS {
        return Err(Error::Invalid("too many polls"));
    }
    h.set_channel_polls(&ChannelId(id), body.polls).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_personalized(
    State(h): State<RelayHandle>,
    Json(spec): Json<crate::personalized::PersonalizedSpec>,
) -> Result<impl IntoResponse, Error> {
    Ok((
        StatusCode::CREATED,
        Json(h.create_personalized(spec).await?),
    ))
}

async fn personalized_stats(State(h): State<RelayHandle>) -> Result<impl IntoResponse, Error> {
    Ok(Json(h.personalized_stats().await?))
}
