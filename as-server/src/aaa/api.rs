//! The AAA's operator HTTP API (axum).
//!
//! | method + path | answer |
//! | --- | --- |
//! | `GET /api/subscribers` | `200` `[{"identity", "username", "realm", "profile": {...}}]` (no HA1) |
//! | `GET /api/subscribers/{identity}` | `200` one subscriber, `404` |
//! | `POST /api/subscribers/{identity}/profile` `{"packages"?, "max_streams"?, "parental_level"?}` | `200` `{"profile": {...}, "pushed": [{"peer", "ok", "detail"}]}`: the new profile and the PNR sent to each AS peer; `404`, `400` |
//! | `GET /api/cdrs?session_id=...` | `200` the records of a session, or the 100 latest |
//! | `GET /metrics` | Prometheus text: UDR/ACR/PNR counters, CDRs by type, open peers |
//! | `GET /healthz` | `200 ok` |
//!
//! `{identity}` is percent-encoded in the path (`sip%3Aalice%40iptv.example`; axum decodes
//! it).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use media_relay::prometheus::{escape_label, write_family, write_metric};
use serde::{Deserialize, Serialize};

use super::server::{AaaError, PushResult, Shared};
use crate::store::{Cdr, Error as StoreError, Profile, ProfileUpdate};

type St = State<Arc<Shared>>;

/// The router over the AAA's shared state.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/subscribers", get(list))
        .route("/api/subscribers/{id}", get(one))
        .route("/api/subscribers/{id}/profile", post(update))
        .route("/api/cdrs", get(cdrs))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(shared)
}

#[derive(Debug, Serialize)]
struct ProfileJson {
    packages: Vec<String>,
    max_streams: u32,
    parental_level: u8,
    version: i64,
    sequence_number: u16,
    updated_ms: i64,
}

impl From<&Profile> for ProfileJson {
    fn from(p: &Profile) -> Self {
        Self {
            packages: p.packages.clone(),
            max_streams: p.max_streams,
            parental_level: p.parental_level,
            version: p.version,
            sequence_number: p.sequence_number(),
            updated_ms: p.updated_ms,
        }
    }
}

#[derive(Debug, Serialize)]
struct SubscriberJson {
    identity: String,
    username: String,
    realm: String,
    profile: Option<ProfileJson>,
}

#[derive(Debug, Serialize)]
struct CdrJson {
    session_id: String,
    record_number: u32,
    record_type: String,
    origin_host: String,
    subscriber: Option<String>,
    channel: Option<String>,
    user_session_id: Option<String>,
    event_ms: Option<i64>,
    received_ms: i64,
    duration_secs: Option<i64>,
    retransmitted: bool,
}

impl From<Cdr> for CdrJson {
    fn from(c: Cdr) -> Self {
        Self {
            session_id: c.session_id,
            record_number: c.record_number,
            record_type: c.record_type,
            origin_host: c.origin_host,
            subscriber: c.subscriber,
            channel: c.channel,
            user_session_id: c.user_session_id,
            event_ms: c.event_ms,
            received_ms: c.received_ms,
            duration_secs: c.duration_secs,
            retransmitted: c.retransmitted,
        }
    }
}

fn error(e: &AaaError) -> Response {
    let status = match e {
        AaaError::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
        AaaError::Store(StoreError::InvalidData(_)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Json(serde_json::json!({ "error": e.to_string() }))).into_response()
}

async fn subscriber_json(s: &Shared, sub: crate::store::Subscriber) -> SubscriberJson {
    let profile = s.store.get_profile(&sub.identity).await.ok();
    SubscriberJson {
        identity: sub.identity,
        username: sub.username,
        realm: sub.realm,
        profile: profile.as_ref().map(ProfileJson::from),
    }
}

async fn list(State(s): St) -> Response {
    match s.store.list_subscribers().await {
        Ok(subs) => {
            let mut out = Vec::with_capacity(subs.len());
            for sub in subs {
                out.push(subscriber_json(&s, sub).await);
            }
            Json(out).into_response()
        }
        Err(e) => error(&e.into()),
    }
}

async fn one(State(s): St, Path(id): Path<String>) -> Response {
    match s.store.get_subscriber(&id).await {
        Ok(sub) => Json(subscriber_json(&s, sub).await).into_response(),
        Err(e) => error(&e.into()),
    }
}

#[derive(Debug, Serialize)]
struct Changed {
    profile: ProfileJson,
    pushed: Vec<PushResult>,
}

async fn update(State(s): St, Path(id): Path<String>, Json(u): Json<ProfileUpdate>) -> Response {
    match s.update_profile(&id, &u).await {
        Ok(c) => Json(Changed {
            profile: ProfileJson::from(&c.profile),
            pushed: c.pushed,
        })
        .into_response(),
        Err(e) => error(&e),
    }
}

#[derive(Debug, Deserialize)]
struct CdrQuery {
    session_id: Option<String>,
}

async fn cdrs(State(s): St, Query(q): Query<CdrQuery>) -> Response {
    let r = match &q.session_id {
        Some(sid) => s.store.cdrs_of_session(sid).await,
        None => s.store.recent_cdrs(100).await,
    };
    match r {
        Ok(v) => Json(v.into_iter().map(CdrJson::from).collect::<Vec<_>>()).into_response(),
        Err(e) => error(&e.into()),
    }
}

async fn metrics(State(s): St) -> Response {
    let st = s.stats();
    let mut out = String::new();
    let mut counter =
        |name: &str, help: &str, v: u64| write_metric(&mut out, name, "counter", help, v);
    counter(
        "aaa_udr_profiles_total",
        "UDRs answered with a profile.",
        st.udr_profiles,
    );
    counter(
        "aaa_udr_unknown_total",
        "UDRs for unknown users (5001).",
        st.udr_unknown,
    );
    counter(
        "aaa_acr_stored_total",
        "ACRs stored as new CDRs.",
        st.acr_stored,
    );
    counter(
        "aaa_acr_duplicates_total",
        "Repeated ACRs answered but not stored again.",
        st.acr_duplicates,
    );
    counter(
        "aaa_acr_failed_total",
        "ACRs not stored (answered 4002).",
        st.acr_failed,
    );
    counter("aaa_refused_total", "Requests refused at once.", st.refused);
    counter("aaa_pnr_sent_total", "PNRs sent.", st.pnr_sent);
    counter("aaa_pna_success_total", "PNAs with 2001.", st.pna_success);
    counter(
        "aaa_pna_failed_total",
        "PNRs without a successful PNA.",
        st.pna_failed,
    );
    write_metric(
        &mut out,
        "aaa_peers_open",
        "gauge",
        "AS peers connected.",
        s.open_peers() as u64,
    );
    if let Ok(counts) = s.store.cdr_counts().await {
        write_family(&mut out, "aaa_cdrs", "gauge", "Stored CDRs by record type.");
        for (t, n) in counts {
            let _ = writeln!(out, "aaa_cdrs{{type=\"{}\"}} {n}", escape_label(&t));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
