//! Contacts in sequences: `GET /sequences/{id}/contacts`,
//! `POST /enrollments/{id}/pause|resume|stop`, `GET /enrollments/{id}/events`.

use chrono::{DateTime, Utc};
use paperclip::actix::{Apiv2Schema, api_v2_operation, web};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::pagination::PageRequest;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/sequences/{id}/contacts")
            .route(web::post().to(super::enroll::enroll))
            .route(web::get().to(list)),
    )
    .service(web::resource("/enrollments/{id}").route(web::get().to(get)))
    .service(web::resource("/enrollments/{id}/pause").route(web::post().to(pause)))
    .service(web::resource("/enrollments/{id}/resume").route(web::post().to(resume)))
    .service(web::resource("/enrollments/{id}/stop").route(web::post().to(stop)))
    .service(web::resource("/enrollments/{id}/events").route(web::get().to(events)));
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct Enrollment {
    pub id: Uuid,
    pub sequence_id: Uuid,
    pub contact_id: Uuid,
    pub email: String,
    /// active, paused, completed, replied, bounced, unsubscribed, stopped or failed.
    pub status: String,
    /// Why it stopped, or why the platform paused it: `missing_variable: <name>` when an
    /// email would have had a hole in it (fix the contact or the template, then resume).
    pub stop_reason: Option<String>,
    /// Position of the next step to send, from 1 (the first step in `step_order`).
    pub current_step: i32,
    pub next_send_at: Option<DateTime<Utc>>,
    /// The mailbox the thread is sent from, once the first step went out.
    pub mailbox_id: Option<Uuid>,
    pub last_sent_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<domain::db::enrollments::EnrollmentView> for Enrollment {
    fn from(e: domain::db::enrollments::EnrollmentView) -> Self {
        Self {
            id: e.id,
            sequence_id: e.sequence_id,
            contact_id: e.contact_id,
            email: e.email,
            status: e.status,
            stop_reason: e.stop_reason,
            current_step: e.current_step,
            next_send_at: e.next_send_at,
            mailbox_id: e.mailbox_id,
            last_sent_at: e.last_sent_at,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct EnrollmentPage {
    pub data: Vec<Enrollment>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, Apiv2Schema)]
pub struct ListEnrollments {
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct TimelineEvent {
    pub id: Uuid,
    /// sent, opened, clicked, replied, auto_replied, bounced, soft_bounced, unsubscribed,
    /// complained, failed, held (not sent: a variable had no value), resolved (a person
    /// said what became of an `unknown` message: see `outcome` and `resolved_by`).
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub message_id: Option<Uuid>,
    /// The `step_order` of the message's step.
    pub step_order: Option<i32>,
    pub is_bot: Option<bool>,
    pub bot_reason: Option<String>,
    pub url: Option<String>,
    /// For `resolved`: the answer, `sent` or `not_sent`.
    pub outcome: Option<String>,
    /// For `resolved`: who answered, `api_key:<id>` (the API key used).
    pub resolved_by: Option<String>,
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct Timeline {
    pub enrollment: Enrollment,
    pub events: Vec<TimelineEvent>,
}

/// List a sequence's contacts
///
/// Enrollments with status, position of the next step, next send time and mailbox; cursor
/// pagination and an optional `status` filter.
#[api_v2_operation(tags(Enrollments))]
async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    query: crate::extract::Query<ListEnrollments>,
) -> Result<web::Json<EnrollmentPage>, ApiError> {
    let query = query.into_inner();
    crate::pagination::check_status_filter(
        query.status.as_deref(),
        &domain::db::enrollments::STATUSES,
    )?;
    let page = PageRequest::new(query.limit, query.cursor.as_deref())?;
    let mut conn = state.pool.get().await?;
    let sequence_id = id.into_inner();
    super::sequences::owned(&mut conn, caller.workspace_id, sequence_id).await?;
    let rows = domain::db::enrollments::list_for_sequence(
        &mut conn,
        sequence_id,
        query.status.as_deref(),
        page.after,
        page.fetch(),
    )
    .await?;
    let (rows, next_cursor) = page.finish(rows, |e| e.id);
    Ok(web::Json(EnrollmentPage {
        data: rows.into_iter().map(Enrollment::from).collect(),
        next_cursor,
    }))
}

/// Get an enrollment
#[api_v2_operation(tags(Enrollments))]
async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Enrollment>, ApiError> {
    let mut conn = state.pool.get().await?;
    let enrollment = domain::db::enrollments::find(&mut conn, caller.workspace_id, id.into_inner())
        .await?
        .ok_or(ApiError::NotFound("enrollment"))?;
    Ok(web::Json(enrollment.into()))
}

/// Pause an enrollment
///
/// Nothing more is sent to this contact until it is resumed; it keeps its place.
#[api_v2_operation(tags(Enrollments))]
async fn pause(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Enrollment>, ApiError> {
    transition(&state, caller, id.into_inner(), &["active"], "paused", None).await
}

/// Resume an enrollment
///
/// Picks up at the step it was waiting for, due now if its time has passed; a step already
/// sent is never sent again. Clears `stop_reason` (such as `missing_variable: <name>`).
#[api_v2_operation(tags(Enrollments))]
async fn resume(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Enrollment>, ApiError> {
    transition(&state, caller, id.into_inner(), &["paused"], "active", None).await
}

/// Stop an enrollment
///
/// Ends the sequence for this contact for good.
#[api_v2_operation(tags(Enrollments))]
async fn stop(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Enrollment>, ApiError> {
    transition(
        &state,
        caller,
        id.into_inner(),
        &["active", "paused"],
        "stopped",
        Some("stopped through the API"),
    )
    .await
}

/// An enrollment's timeline
///
/// Its events (sent, opened, clicked, replied, bounced, ...) oldest first, up to 1,000.
#[api_v2_operation(tags(Enrollments))]
async fn events(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Timeline>, ApiError> {
    let mut conn = state.pool.get().await?;
    let enrollment = domain::db::enrollments::find(&mut conn, caller.workspace_id, id.into_inner())
        .await?
        .ok_or(ApiError::NotFound("enrollment"))?;
    let events = domain::db::events::timeline(&mut conn, enrollment.id, 1000)
        .await?
        .into_iter()
        .map(|e| TimelineEvent {
            outcome: resolution_detail(&e, "outcome"),
            resolved_by: resolution_detail(&e, "resolved_by"),
            id: e.id,
            event_type: e.event_type,
            occurred_at: e.occurred_at,
            message_id: e.message_id,
            step_order: e.step_order,
            is_bot: e.is_bot,
            bot_reason: e.bot_reason,
            url: e.url,
        })
        .collect();
    Ok(web::Json(Timeline {
        enrollment: enrollment.into(),
        events,
    }))
}

/// A field of a `resolved` event's payload.
fn resolution_detail(event: &domain::db::events::TimelineEntry, field: &str) -> Option<String> {
    (event.event_type == "resolved")
        .then(|| event.payload[field].as_str().map(str::to_owned))
        .flatten()
}

async fn transition(
    state: &AppState,
    caller: Caller,
    id: Uuid,
    from: &[&str],
    to: &str,
    reason: Option<&str>,
) -> Result<web::Json<Enrollment>, ApiError> {
    let mut conn = state.pool.get().await?;
    let current = domain::db::enrollments::find(&mut conn, caller.workspace_id, id)
        .await?
        .ok_or(ApiError::NotFound("enrollment"))?;
    if current.status != to
        && !domain::db::enrollments::transition(
            &mut conn,
            caller.workspace_id,
            id,
            from,
            to,
            reason,
        )
        .await?
    {
        return Err(ApiError::Conflict(format!(
            "an enrollment that is {} cannot become {to}",
            current.status
        )));
    }
    let updated = domain::db::enrollments::find(&mut conn, caller.workspace_id, id)
        .await?
        .ok_or(ApiError::NotFound("enrollment"))?;
    Ok(web::Json(updated.into()))
}
