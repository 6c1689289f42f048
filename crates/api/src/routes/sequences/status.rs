//! `POST /sequences/{id}/activate|pause|archive`: the sequence's lifecycle.

use diesel_async::AsyncConnection as _;
use paperclip::actix::{api_v2_operation, web};
use uuid::Uuid;

use super::load;
use super::model::Sequence;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/sequences/{id}/activate").route(web::post().to(activate)))
        .service(web::resource("/sequences/{id}/pause").route(web::post().to(pause)))
        .service(web::resource("/sequences/{id}/archive").route(web::post().to(archive)));
}

/// Activate a sequence
///
/// From draft or paused. Needs at least one step and one mailbox in the rotation pool (409
/// otherwise). Enrolled contacts start or resume on the scheduler's next pass.
#[api_v2_operation(tags(Sequences))]
async fn activate(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Sequence>, ApiError> {
    transition(
        &state,
        caller,
        id.into_inner(),
        "active",
        &["draft", "paused"],
    )
    .await
}

/// Pause a sequence
///
/// Nothing more is sent until it is activated again; contacts keep their place.
#[api_v2_operation(tags(Sequences))]
async fn pause(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Sequence>, ApiError> {
    transition(&state, caller, id.into_inner(), "paused", &["active"]).await
}

/// Archive a sequence
///
/// Stops it for good and makes it read-only; its messages and statistics stay.
#[api_v2_operation(tags(Sequences))]
async fn archive(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Sequence>, ApiError> {
    transition(
        &state,
        caller,
        id.into_inner(),
        "archived",
        &["draft", "active", "paused"],
    )
    .await
}

/// Moves to `to` from one of `from`; asking for the current state again is a no-op.
async fn transition(
    state: &AppState,
    caller: Caller,
    id: Uuid,
    to: &'static str,
    from: &'static [&'static str],
) -> Result<web::Json<Sequence>, ApiError> {
    let mut conn = state.pool.get().await?;
    let sequence = conn
        .transaction(async |tx| -> Result<Sequence, ApiError> {
            let current = domain::db::sequences::lock(tx, caller.workspace_id, id)
                .await?
                .ok_or(ApiError::NotFound("sequence"))?;
            if current.status == to {
                return load::one(tx, current).await;
            }
            if !from.contains(&current.status.as_str()) {
                return Err(ApiError::Conflict(format!(
                    "a sequence that is {} cannot become {to}",
                    current.status
                )));
            }
            let loaded = load::one(tx, current).await?;
            if to == "active" {
                if loaded.steps.is_empty() {
                    return Err(ApiError::Conflict(
                        "add a step before activating".to_owned(),
                    ));
                }
                if loaded.mailbox_ids.is_empty() {
                    return Err(ApiError::Conflict(
                        "add a mailbox to mailbox_ids before activating".to_owned(),
                    ));
                }
            }
            let updated = domain::db::sequences::set_status(tx, id, to).await?;
            load::one(tx, updated).await
        })
        .await?;
    tracing::info!(sequence.id = %id, status = to, "sequence status changed");
    Ok(web::Json(sequence))
}
