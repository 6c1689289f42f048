//! `GET /sequences/{id}/messages`: the emails of a sequence and their delivery state.

use chrono::{DateTime, Utc};
use paperclip::actix::{Apiv2Schema, api_v2_operation, web};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::pagination::PageRequest;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/sequences/{id}/messages").route(web::get().to(list)));
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
    /// queued, sending, sent, failed, bounced, unknown (no reply after the data was sent;
    /// never retried automatically), cancelled or retrying (waiting for its next attempt).
    pub status: String,
    pub attempts: i32,
    pub subject: Option<String>,
    /// The RFC 5322 Message-ID.
    pub message_id_header: Option<String>,
    pub scheduled_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
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
    let query = query.into_inner();
    crate::pagination::check_status_filter(
        query.status.as_deref(),
        &domain::db::messages::STATUSES,
    )?;
    let page = PageRequest::new(query.limit, query.cursor.as_deref())?;
    let mut conn = state.pool.get().await?;
    let sequence_id = id.into_inner();
    super::sequences::owned(&mut conn, caller.workspace_id, sequence_id).await?;
    let rows = domain::db::messages::list_for_sequence(
        &mut conn,
        sequence_id,
        query.status.as_deref(),
        page.after,
        page.fetch(),
    )
    .await?;
    let (rows, next_cursor) = page.finish(rows, |m| m.id);
    let data = rows
        .into_iter()
        .map(|m| Message {
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
        })
        .collect();
    Ok(web::Json(MessagePage { data, next_cursor }))
}
