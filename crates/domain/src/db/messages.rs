//! Emails: one row per enrollment and step. Listing for the API; the scheduler creates them
//! and the sender worker moves them through their states (a person resolves the `unknown`
//! ones: see [`super::resolutions`]).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{contacts, enrollments, messages, steps};

pub const STATUSES: [&str; 8] = [
    "queued",
    "sending",
    "sent",
    "failed",
    "bounced",
    "unknown",
    "cancelled",
    "retrying",
];

/// A message as the API lists it, with its contact's address (select it from `messages`
/// joined with `contacts`).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messages)]
pub struct MessageView {
    pub id: Uuid,
    pub enrollment_id: Uuid,
    pub contact_id: Uuid,
    #[diesel(select_expression = contacts::email)]
    #[diesel(select_expression_type = contacts::email)]
    pub email: String,
    pub mailbox_id: Uuid,
    pub step_id: Uuid,
    /// The step's ordering key as the client gave it (the API's `step_order`).
    #[diesel(select_expression = steps::order_key)]
    #[diesel(select_expression_type = steps::order_key)]
    pub step_order: i32,
    pub variant_index: Option<i32>,
    pub status: String,
    pub attempts: i32,
    pub subject: Option<String>,
    pub message_id_header: Option<String>,
    pub scheduled_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// A person's answer for it while it was `unknown`: `sent` or `not_sent`.
    pub resolution: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// The values of `messages.resolution`.
pub const RESOLUTIONS: [&str; 2] = ["sent", "not_sent"];

/// Which messages a listing covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One sequence's (the caller checked it is the workspace's).
    Sequence(Uuid),
    /// Every message of a workspace, whatever its sequence: the operator's view, such as the
    /// `unknown` ones waiting for a person.
    Workspace(Uuid),
}

/// A page of messages in id order (creation order: ids are UUIDv7), after the cursor `after`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    scope: Scope,
    status: Option<&str>,
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<MessageView>> {
    let mut query = messages::table
        .inner_join(enrollments::table)
        .inner_join(contacts::table.on(contacts::id.eq(messages::contact_id)))
        .inner_join(steps::table)
        .select(MessageView::as_select())
        .order(messages::id.asc())
        .limit(limit)
        .into_boxed();
    query = match scope {
        Scope::Sequence(id) => query.filter(enrollments::sequence_id.eq(id)),
        Scope::Workspace(id) => query.filter(messages::workspace_id.eq(id)),
    };
    if let Some(status) = status {
        query = query.filter(messages::status.eq(status));
    }
    if let Some(after) = after {
        query = query.filter(messages::id.gt(after));
    }
    query.load(conn).await
}

/// One message of a workspace.
pub async fn find(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
) -> QueryResult<Option<MessageView>> {
    messages::table
        .inner_join(contacts::table.on(contacts::id.eq(messages::contact_id)))
        .inner_join(steps::table)
        .filter(messages::workspace_id.eq(workspace_id))
        .filter(messages::id.eq(id))
        .select(MessageView::as_select())
        .first(conn)
        .await
        .optional()
}
