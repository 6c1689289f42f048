//! What the API reads and changes of webhook deliveries (`webhook_deliveries`) and their
//! attempts (`webhook_attempts`): listings, a test event, retries and replays. The webhooks
//! service sends every row that is `pending` and due; so a retry or a replay here is only
//! "pending, due now", never a request of its own.
//!
//! Every function is scoped by workspace and endpoint: an id of another workspace's endpoint
//! or delivery finds nothing.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{webhook_attempts, webhook_deliveries};

/// Every value of `webhook_deliveries.status`.
pub const STATUSES: [&str; 3] = ["pending", "delivered", "failed"];

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries)]
pub struct Delivery {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub workspace_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub occurred_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_attempts)]
pub struct Attempt {
    pub id: Uuid,
    pub delivery_id: Uuid,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

/// A delivery to record: it starts `pending`, due at the database's `now()`.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = webhook_deliveries)]
pub struct NewDelivery {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub workspace_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
}

/// A listing's filters; `None` lets everything through.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    /// One of [`STATUSES`].
    pub status: Option<&'a str>,
    pub event_type: Option<&'a str>,
}

/// Records a delivery, pending and due now. The database's clock decides "now", as it does
/// for the service that picks due deliveries up.
pub async fn insert(conn: &mut AsyncPgConnection, new: &NewDelivery) -> QueryResult<Delivery> {
    diesel::insert_into(webhook_deliveries::table)
        .values((
            new,
            webhook_deliveries::status.eq("pending"),
            webhook_deliveries::next_attempt_at.eq(diesel::dsl::now),
        ))
        .returning(Delivery::as_returning())
        .get_result(conn)
        .await
}

/// A page of an endpoint's deliveries, newest first (ids are UUIDv7), before `before` when
/// given.
pub async fn list(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    endpoint_id: Uuid,
    filter: Filter<'_>,
    before: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<Delivery>> {
    let mut query = webhook_deliveries::table
        .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
        .filter(webhook_deliveries::workspace_id.eq(workspace_id))
        .select(Delivery::as_select())
        .order(webhook_deliveries::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(webhook_deliveries::id.lt(before));
    }
    if let Some(status) = filter.status {
        query = query.filter(webhook_deliveries::status.eq(status));
    }
    if let Some(event_type) = filter.event_type {
        query = query.filter(webhook_deliveries::event_type.eq(event_type));
    }
    query.load(conn).await
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    endpoint_id: Uuid,
    id: Uuid,
) -> QueryResult<Option<Delivery>> {
    webhook_deliveries::table
        .find(id)
        .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
        .filter(webhook_deliveries::workspace_id.eq(workspace_id))
        .select(Delivery::as_select())
        .first(conn)
        .await
        .optional()
}

/// The attempts of `delivery_ids`, oldest first per delivery, in one query.
pub async fn attempts_of(
    conn: &mut AsyncPgConnection,
    delivery_ids: &[Uuid],
) -> QueryResult<HashMap<Uuid, Vec<Attempt>>> {
    if delivery_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<Attempt> = webhook_attempts::table
        .filter(webhook_attempts::delivery_id.eq_any(delivery_ids))
        .select(Attempt::as_select())
        .order((
            webhook_attempts::delivery_id,
            webhook_attempts::attempted_at.asc(),
            webhook_attempts::id.asc(),
        ))
        .load(conn)
        .await?;
    let mut by_delivery: HashMap<Uuid, Vec<Attempt>> = HashMap::new();
    for row in rows {
        by_delivery.entry(row.delivery_id).or_default().push(row);
    }
    Ok(by_delivery)
}

/// Makes a delivery pending and due now, whatever its status; `attempts` keeps counting.
pub async fn retry(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    endpoint_id: Uuid,
    id: Uuid,
) -> QueryResult<Option<Delivery>> {
    diesel::update(webhook_deliveries::table.find(id))
        .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
        .filter(webhook_deliveries::workspace_id.eq(workspace_id))
        .set((
            webhook_deliveries::status.eq("pending"),
            webhook_deliveries::next_attempt_at.eq(diesel::dsl::now),
        ))
        .returning(Delivery::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Makes every delivery of the endpoint whose event occurred at or after `since` pending
/// and due now. Returns how many.
pub async fn replay(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    endpoint_id: Uuid,
    since: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(webhook_deliveries::table)
        .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
        .filter(webhook_deliveries::workspace_id.eq(workspace_id))
        .filter(webhook_deliveries::occurred_at.ge(since))
        .set((
            webhook_deliveries::status.eq("pending"),
            webhook_deliveries::next_attempt_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
}

/// Parks the pending deliveries of an endpoint that was disabled (`next_attempt_at` NULL):
/// the webhooks service's polls then skip them by the due index instead of reading past
/// them on every look, however many wait.
pub async fn park_pending(conn: &mut AsyncPgConnection, endpoint_id: Uuid) -> QueryResult<usize> {
    diesel::update(webhook_deliveries::table)
        .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
        .filter(webhook_deliveries::status.eq("pending"))
        .set(webhook_deliveries::next_attempt_at.eq(None::<DateTime<Utc>>))
        .execute(conn)
        .await
}

/// Makes the parked deliveries of an endpoint enabled again due now.
pub async fn unpark_pending(conn: &mut AsyncPgConnection, endpoint_id: Uuid) -> QueryResult<usize> {
    diesel::update(webhook_deliveries::table)
        .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
        .filter(webhook_deliveries::status.eq("pending"))
        .filter(webhook_deliveries::next_attempt_at.is_null())
        .set(webhook_deliveries::next_attempt_at.eq(diesel::dsl::now))
        .execute(conn)
        .await
}
