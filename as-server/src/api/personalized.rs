//! Personalised channels over the operator API: `GET /api/channels/{id}/personalized` shows
//! the splicer of the channel at each relay that has it (`[{"relay", "channel", "current",
//! "wanted", "switches", "forced", "parameter_sets", "forwarded", "skipped"}]`), `404` for
//! a channel that is not personalised. Creation and deletion go through `POST /api/channels`
//! and `DELETE /api/channels/{id}` (see [`crate::service::personalized`]).

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};

use super::ApiError;
use crate::service::personalized::RelayStatus;
use crate::service::Service;

/// The routes, to merge into [`super::router`].
pub fn routes(service: Service) -> Router {
    Router::new()
        .route("/api/channels/{id}/personalized", get(status))
        .with_state(service)
}

async fn status(
    State(s): State<Service>,
    Path(id): Path<String>,
) -> Result<Json<Vec<RelayStatus>>, ApiError> {
    Ok(Json(s.personalized_status(&id).await?))
}
