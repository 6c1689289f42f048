//! What happened to messages, as recorded from `email-events` (and, for a person's answer
//! about an `unknown` message, by [`super::resolutions`]).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{events, messages, steps};

#[derive(Debug, Clone, Queryable)]
pub struct TimelineEntry {
    pub id: Uuid,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub message_id: Option<Uuid>,
    /// The ordering key of the message's step, as the client gave it.
    pub step_order: Option<i32>,
    pub is_bot: Option<bool>,
    pub bot_reason: Option<String>,
    pub url: Option<String>,
    /// What the row keeps beyond its columns (e.g. a resolution's outcome and author).
    pub payload: serde_json::Value,
}

/// An enrollment's events, oldest first, with the step each concerns.
pub async fn timeline(
    conn: &mut AsyncPgConnection,
    enrollment_id: Uuid,
    limit: i64,
) -> QueryResult<Vec<TimelineEntry>> {
    events::table
        .left_join(messages::table.left_join(steps::table))
        .filter(events::enrollment_id.eq(enrollment_id))
        .select((
            events::id,
            events::event_type,
            events::occurred_at,
            events::message_id,
            steps::order_key.nullable(),
            events::is_bot,
            events::bot_reason,
            events::url,
            events::payload,
        ))
        .order((events::occurred_at.asc(), events::id.asc()))
        .limit(limit)
        .load(conn)
        .await
}
