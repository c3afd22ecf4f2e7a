//! HTTP routes of live feedback (see [`crate::service::feedback`]): channel quality merged
//! over relays, and polls with live tallies.
//!
//! | method + path | answer |
//! | --- | --- |
//! | `GET /api/channels/{id}/quality` | `200` `{"relays", "summary": {"channel", "viewers_reporting", "viewers_heard", "loss", "jitter", "rtt_ms", "votes": {poll: {option: n}}, "voters"}}` (each distribution `{"count", "median", "p95", "bin_min", "bin_max", "counts"}`), or `404` for an unknown channel |
//! | `POST /api/polls` `{"channel", "poll", "question", "options": [...]}` | `201` the poll with its (empty) tally; `400` bad body, `404` unknown channel, `409` poll id in use |
//! | `GET /api/polls` | `200` every poll with its live tally |
//! | `GET /api/polls/{poll}` | `200` `{"poll", "channel", "question", "options": [{"option", "label", "votes"}], "undeclared", "total_votes", "relays"}`, or `404` |
//! | `DELETE /api/polls/{poll}` | `204`, or `404` |
//!
//! Creating or deleting a poll declares its channel's polls to the relays carrying the
//! channel before answering ([`Polls::declare`]): from the `201` on, a vote for the poll on
//! another channel is refused there.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use super::ApiError;
use crate::error::Error;
use crate::service::feedback::{channel_feedback, ChannelQuality, NewPoll, PollTally, Polls};
use crate::service::Service;

#[derive(Clone)]
struct FeedbackApi {
    service: Service,
    polls: Polls,
}

/// The feedback routes, with their own poll registry.
pub fn routes(service: Service) -> Router {
    Router::new()
        .route("/api/channels/{id}/quality", get(quality))
        .route("/api/polls", get(list_polls).post(create_poll))
        .route("/api/polls/{poll}", get(get_poll).delete(delete_poll))
        .with_state(FeedbackApi {
            service,
            polls: Polls::new(),
        })
}

async fn quality(
    State(s): State<FeedbackApi>,
    Path(id): Path<String>,
) -> Result<Json<ChannelQuality>, ApiError> {
    if s.service.get_channel(&id).await?.is_none() {
        return Err(ApiError(Error::NotFound(format!("channel {id}"))));
    }
    Ok(Json(channel_feedback(s.service.relays(), &id).await))
}

async fn create_poll(
    State(s): State<FeedbackApi>,
    body: Result<Json<NewPoll>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<PollTally>), ApiError> {
    let Json(req) = body.map_err(|e| ApiError(Error::Invalid(e.body_text())))?;
    if s.service.get_channel(&req.channel).await?.is_none() {
        return Err(ApiError(Error::NotFound(format!(
            "channel {}",
            req.channel
        ))));
    }
    let poll = req.poll;
    let channel = req.channel.clone();
    s.polls.create(req)?;
    s.polls.declare(s.service.relays(), &channel).await;
    Ok((
        StatusCode::CREATED,
        Json(s.polls.tally(s.service.relays(), poll).await?),
    ))
}

async fn get_poll(
    State(s): State<FeedbackApi>,
    Path(poll): Path<u32>,
) -> Result<Json<PollTally>, ApiError> {
    Ok(Json(s.polls.tally(s.service.relays(), poll).await?))
}

async fn delete_poll(
    State(s): State<FeedbackApi>,
    Path(poll): Path<u32>,
) -> Result<StatusCode, ApiError> {
    let p = s.polls.remove(poll)?;
    s.polls.declare(s.service.relays(), &p.channel).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_polls(State(s): State<FeedbackApi>) -> Result<Json<Vec<PollTally>>, ApiError> {
    let mut out = Vec::new();
    for p in s.polls.list() {
        out.push(s.polls.tally(s.service.relays(), p.poll).await?);
    }
    Ok(Json(out))
}
