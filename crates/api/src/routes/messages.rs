//! Emails and their delivery state: `GET /sequences/{id}/messages`, the workspace-wide
//! `GET /messages` (e.g. `?status=unknown`), and `POST /messages/{id}/resolve`, a person's
//! answer for a message whose delivery is unknown.

use chrono::{DateTime, Utc};
use domain::db::PgConn;
use domain::db::messages::{MessageView, RESOLUTIONS, Scope};
use domain::db::resolutions::{self, Outcome, Resolve, Resolved};
use paperclip::actix::{Apiv2Schema, api_v2_operation, web};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::extract::{Body, Validate};
use crate::pagination::PageRequest;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/sequences/{id}/messages").route(web::get().to(list)))
        .service(web::resource("/messages").route(web::get().to(list_all)))
        .service(web::resource("/messages/{id}/resolve").route(web::post().to(resolve)));
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct Message {
    pub id: Uuid,
    pub enrollment_id: Uuid,
    pub contact_id: Uuid,
    pub email: String,
    pub mailbox_id: Uuid,
    pub step_id: Uuid,
    pub step_order: i32,
    pub variant_index: Option<i32>,
    /// queued (waiting for a sender), sending (a sender has it), sent, failed, bounced,
    /// unknown (its data went out and no reply came, or its sender died mid-send: it may
    /// have been delivered, so it is never retried automatically and its enrollment waits
    /// until a person resolves it), cancelled (not sent: its enrollment stopped or paused,
    /// or a template variable had no value) or retrying (waiting for its next attempt).
    pub status: String,
    pub attempts: i32,
    pub subject: Option<String>,
    /// The RFC 5322 Message-ID; every attempt of the message uses the same one.
    pub message_id_header: Option<String>,
    pub scheduled_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// A person's answer while it was `unknown` (`POST /messages/{id}/resolve`): `sent` or
    /// `not_sent`; null when never resolved.
    pub resolution: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
}

impl From<MessageView> for Message {
    fn from(m: MessageView) -> Self {
        Self {
            id: m.id,
            enrollment_id: m.enrollment_id,
            contact_id: m.contact_id,
            email: m.email,
            mailbox_id: m.mailbox_id,
            step_id: m.step_id,
            step_order: m.step_order,
            variant_index: m.variant_index,
            status: m.status,
            attempts: m.attempts,
            subject: m.subject,
            message_id_header: m.message_id_header,
            scheduled_at: m.scheduled_at,
            sent_at: m.sent_at,
            last_error: m.last_error,
            created_at: m.created_at,
            resolution: m.resolution,
            resolved_at: m.resolved_at,
        }
    }
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct MessagePage {
    pub data: Vec<Message>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, Apiv2Schema)]
pub struct ListMessages {
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// What became of an `unknown` message.
#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct ResolveMessage {
    /// `sent`: it was delivered, and the enrollment moves on as if the sender had reported
    /// it. `not_sent`: it was not, and it is sent again as a retry of the same message.
    pub outcome: String,
}

impl Validate for ResolveMessage {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        match Outcome::parse(&self.outcome) {
            Some(_) => Ok(()),
            None => Err(vec![FieldError::new(
                "outcome",
                format!("must be one of {}", RESOLUTIONS.join(", ")),
            )]),
        }
    }
}

/// List a sequence's messages
///
/// In creation order with cursor pagination and an optional `status` filter.
#[api_v2_operation(tags(Messages))]
async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    query: crate::extract::Query<ListMessages>,
) -> Result<web::Json<MessagePage>, ApiError> {
    let sequence_id = id.into_inner();
    page(&state, &query, async |conn| {
        super::sequences::owned(conn, caller.workspace_id, sequence_id).await?;
        Ok(Scope::Sequence(sequence_id))
    })
    .await
}

/// List the workspace's messages
///
/// Every sequence's, in creation order with cursor pagination and an optional `status`
/// filter: `?status=unknown` lists the messages waiting for a person to resolve them.
#[api_v2_operation(tags(Messages))]
async fn list_all(
    caller: Caller,
    state: web::Data<AppState>,
    query: crate::extract::Query<ListMessages>,
) -> Result<web::Json<MessagePage>, ApiError> {
    page(&state, &query, async |_| {
        Ok(Scope::Workspace(caller.workspace_id))
    })
    .await
}

/// One page of a listing, once the query is valid and `scope` (which may check that the
/// caller owns what it names) has said which messages.
async fn page(
    state: &AppState,
    query: &ListMessages,
    scope: impl AsyncFnOnce(&mut PgConn) -> Result<Scope, ApiError>,
) -> Result<web::Json<MessagePage>, ApiError> {
    crate::pagination::check_status_filter(
        query.status.as_deref(),
        &domain::db::messages::STATUSES,
    )?;
    let page = PageRequest::new(query.limit, query.cursor.as_deref())?;
    let mut conn = state.pool.get().await?;
    let scope = scope(&mut conn).await?;
    let rows = domain::db::messages::list(
        &mut conn,
        scope,
        query.status.as_deref(),
        page.after,
        page.fetch(),
    )
    .await?;
    let (rows, next_cursor) = page.finish(rows, |m| m.id);
    let data = rows.into_iter().map(Message::from).collect();
    Ok(web::Json(MessagePage { data, next_cursor }))
}

/// Resolve an unknown message
///
/// Says what became of a message whose delivery is `unknown`, which nothing retries on its
/// own and whose enrollment waits until then. `{"outcome": "sent"}`: it was delivered; it
/// becomes `sent` and the enrollment moves on as if the sender had reported it (the next
/// step is due after its wait from when the message went out, or the enrollment completes).
/// `{"outcome": "not_sent"}`: it becomes `retrying` and is sent again soon as its next
/// attempt, with the same Message-ID and without using another unit of the mailbox's daily
/// limit. The answer shows in `resolution` and as a `resolved` event in the enrollment's
/// timeline. Idempotent: the same answer again is a 200 that changes nothing; a message that
/// is not `unknown` otherwise is a 409. A retry that becomes `unknown` again can be resolved
/// again.
#[api_v2_operation(tags(Messages))]
async fn resolve(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: Body<ResolveMessage>,
) -> Result<web::Json<Message>, ApiError> {
    let outcome = Outcome::parse(&body.into_inner().outcome).ok_or_else(|| {
        ApiError::invalid(
            "outcome",
            format!("must be one of {}", RESOLUTIONS.join(", ")),
        )
    })?;
    let message_id = id.into_inner();
    let resolved_by = format!("api_key:{}", caller.key_id);
    let mut conn = state.pool.get().await?;
    let resolved = resolutions::resolve(
        &mut conn,
        &Resolve {
            workspace_id: caller.workspace_id,
            message_id,
            outcome,
            resolved_by: &resolved_by,
            now: Utc::now(),
            email_events_topic: &state.topics.email_events,
        },
    )
    .await?;
    match resolved {
        Resolved::Applied => {
            tracing::info!(
                workspace.id = %caller.workspace_id,
                message.id = %message_id,
                outcome = outcome.as_str(),
                "unknown message resolved"
            );
        }
        Resolved::Repeated => {}
        Resolved::NotFound => return Err(ApiError::NotFound("message")),
        Resolved::Refused {
            status,
            resolution: Some(resolution),
        } => {
            return Err(ApiError::Conflict(format!(
                "the message was resolved as `{resolution}` and is now `{status}`; only \
                 `unknown` messages can be resolved"
            )));
        }
        Resolved::Refused {
            status,
            resolution: None,
        } => {
            return Err(ApiError::Conflict(format!(
                "the message is `{status}`; only `unknown` messages can be resolved"
            )));
        }
    }
    let message = domain::db::messages::find(&mut conn, caller.workspace_id, message_id)
        .await?
        .ok_or(ApiError::NotFound("message"))?;
    Ok(web::Json(message.into()))
}
