//! The webhooks service's side of `webhook_deliveries` (issue 18): fanning an event out to
//! the endpoints that want it, claiming due deliveries, and recording attempts in batches.
//!
//! A pending delivery's `next_attempt_at` doubles as its lease: whoever is about to send it
//! moves it `lease` ahead (the fan-out on insert, a poll on claim), so no other replica takes
//! it until the lease runs out. A replica that dies leaves its deliveries due again after
//! their lease: at least once, never lost.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Int4, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::webhook_endpoints;
use super::webhook_endpoints::WebhookEndpoint;

/// The enabled endpoints of `workspace_ids`.
pub async fn enabled_endpoints(
    conn: &mut AsyncPgConnection,
    workspace_ids: &[Uuid],
) -> QueryResult<Vec<WebhookEndpoint>> {
    webhook_endpoints::table
        .filter(webhook_endpoints::workspace_id.eq_any(workspace_ids))
        .filter(webhook_endpoints::enabled.eq(true))
        .select(WebhookEndpoint::as_select())
        .load(conn)
        .await
}

/// The enabled endpoints among `ids`.
pub async fn enabled_endpoints_by_id(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> QueryResult<Vec<WebhookEndpoint>> {
    webhook_endpoints::table
        .filter(webhook_endpoints::id.eq_any(ids))
        .filter(webhook_endpoints::enabled.eq(true))
        .select(WebhookEndpoint::as_select())
        .load(conn)
        .await
}

/// One event for one endpoint, about to be inserted.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub workspace_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    /// The request body, JSON.
    pub payload: String,
    pub occurred_at: DateTime<Utc>,
    /// When it is due; its lease when the inserter sends it itself.
    pub next_attempt_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// Inserts `deliveries`, skipping each whose (endpoint, event) already has one: the ids of
/// those inserted, so an event fanned out again (a record read twice) is sent once.
pub async fn insert_deliveries(
    conn: &mut AsyncPgConnection,
    deliveries: &[NewDelivery],
) -> QueryResult<Vec<Uuid>> {
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: fn(&NewDelivery) -> Uuid| deliveries.iter().map(f).collect::<Vec<_>>();
    let inserted: Vec<Id> = diesel::sql_query(
        "INSERT INTO webhook_deliveries \
             (id, endpoint_id, workspace_id, event_id, event_type, payload, occurred_at, \
              next_attempt_at) \
         SELECT t.id, t.endpoint_id, t.workspace_id, t.event_id, t.event_type, \
                t.payload::jsonb, t.occurred_at, t.next_attempt_at \
           FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], \
                       $6::text[], $7::timestamptz[], $8::timestamptz[]) \
                AS t(id, endpoint_id, workspace_id, event_id, event_type, payload, \
                     occurred_at, next_attempt_at) \
         ON CONFLICT (endpoint_id, event_id) DO NOTHING \
         RETURNING id",
    )
    .bind::<Array<SqlUuid>, _>(column(|d| d.id))
    .bind::<Array<SqlUuid>, _>(column(|d| d.endpoint_id))
    .bind::<Array<SqlUuid>, _>(column(|d| d.workspace_id))
    .bind::<Array<SqlUuid>, _>(column(|d| d.event_id))
    .bind::<Array<Text>, _>(
        deliveries
            .iter()
            .map(|d| d.event_type.as_str())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Text>, _>(
        deliveries
            .iter()
            .map(|d| d.payload.as_str())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Timestamptz>, _>(deliveries.iter().map(|d| d.occurred_at).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(
        deliveries
            .iter()
            .map(|d| d.next_attempt_at)
            .collect::<Vec<_>>(),
    )
    .load(conn)
    .await?;
    Ok(inserted.into_iter().map(|row| row.id).collect())
}

/// A delivery claimed for sending.
#[derive(Debug, Clone, QueryableByName)]
pub struct DueDelivery {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub endpoint_id: Uuid,
    #[diesel(sql_type = Text)]
    pub event_type: String,
    #[diesel(sql_type = Text)]
    pub payload: String,
    #[diesel(sql_type = Timestamptz)]
    pub occurred_at: DateTime<Utc>,
}

/// Claims up to `limit` pending deliveries due at `now` whose endpoint is enabled and not
/// one of `busy`, oldest due first, moving each one's `next_attempt_at` to `lease_until`.
pub async fn claim_due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
    busy: &[Uuid],
) -> QueryResult<Vec<DueDelivery>> {
    diesel::sql_query(
        "UPDATE webhook_deliveries d SET next_attempt_at = $2 \
           FROM (SELECT d.id FROM webhook_deliveries d \
                   JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.enabled \
                  WHERE d.status = 'pending' AND d.next_attempt_at <= $1 \
                    AND d.endpoint_id <> ALL($4) \
                  ORDER BY d.next_attempt_at LIMIT $3 \
                    FOR UPDATE OF d SKIP LOCKED) due \
          WHERE d.id = due.id \
         RETURNING d.id, d.endpoint_id, d.event_type, d.payload::text AS payload, d.occurred_at",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<Timestamptz, _>(lease_until)
    .bind::<BigInt, _>(limit)
    .bind::<Array<SqlUuid>, _>(busy)
    .load(conn)
    .await
}

/// How long the oldest pending delivery of an enabled endpoint has been due at `now`, in
/// seconds (0 when none is).
pub async fn oldest_due_age_seconds(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> QueryResult<f64> {
    #[derive(QueryableByName)]
    struct Age {
        #[diesel(sql_type = Nullable<diesel::sql_types::Double>)]
        seconds: Option<f64>,
    }
    let age: Age = diesel::sql_query(
        "SELECT EXTRACT(EPOCH FROM $1 - min(d.next_attempt_at))::float8 AS seconds \
           FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
          WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND e.enabled",
    )
    .bind::<Timestamptz, _>(now)
    .get_result(conn)
    .await?;
    Ok(age.seconds.unwrap_or(0.0).max(0.0))
}

/// One attempt's result, for [`record_attempts`].
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub id: Uuid,
    pub delivery_id: Uuid,
    pub attempted_at: DateTime<Utc>,
    /// `None` when no answer came.
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
    /// The first kilobyte of the answer's body.
    pub response_body: Option<String>,
    pub succeeded: bool,
}

/// Records `attempts` and their deliveries' new state at `now`: a success makes its delivery
/// `delivered`; a failure makes a pending delivery due again after the wait of
/// `retry_schedule_seconds` for its number of attempts, or `failed` after the last.
pub async fn record_attempts(
    conn: &mut AsyncPgConnection,
    attempts: &[AttemptRecord],
    retry_schedule_seconds: &[i64],
    now: DateTime<Utc>,
) -> QueryResult<()> {
    if attempts.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "INSERT INTO webhook_attempts \
             (id, delivery_id, attempted_at, status_code, latency_ms, error, response_body) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::int4[], \
                              $5::int4[], $6::text[], $7::text[])",
    )
    .bind::<Array<SqlUuid>, _>(attempts.iter().map(|a| a.id).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(attempts.iter().map(|a| a.delivery_id).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(attempts.iter().map(|a| a.attempted_at).collect::<Vec<_>>())
    .bind::<Array<Nullable<Int4>>, _>(attempts.iter().map(|a| a.status_code).collect::<Vec<_>>())
    .bind::<Array<Int4>, _>(attempts.iter().map(|a| a.latency_ms).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(
        attempts
            .iter()
            .map(|a| a.error.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<Text>>, _>(
        attempts
            .iter()
            .map(|a| a.response_body.as_deref())
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    // A delivery attempted twice in one batch (a duplicate after a lost lease) is updated
    // by its successes first, so a later failure does not undo one.
    let (succeeded, failed): (Vec<&AttemptRecord>, Vec<&AttemptRecord>) =
        attempts.iter().partition(|a| a.succeeded);
    if !succeeded.is_empty() {
        diesel::sql_query(
            "UPDATE webhook_deliveries d \
                SET status = 'delivered', attempts = d.attempts + t.n, \
                    delivered_at = COALESCE(d.delivered_at, $2), next_attempt_at = NULL \
               FROM (SELECT id, count(*)::int4 AS n FROM UNNEST($1::uuid[]) AS u(id) \
                      GROUP BY id) t \
              WHERE d.id = t.id",
        )
        .bind::<Array<SqlUuid>, _>(succeeded.iter().map(|a| a.delivery_id).collect::<Vec<_>>())
        .bind::<Timestamptz, _>(now)
        .execute(conn)
        .await?;
    }
    if !failed.is_empty() {
        diesel::sql_query(
            "UPDATE webhook_deliveries d \
                SET attempts = d.attempts + t.n, \
                    status = CASE WHEN d.status <> 'pending' THEN d.status \
                                  WHEN d.attempts + t.n > cardinality($2::int8[]) \
                                      THEN 'failed' ELSE 'pending' END, \
                    next_attempt_at = CASE \
                        WHEN d.status <> 'pending' THEN d.next_attempt_at \
                        WHEN d.attempts + t.n > cardinality($2::int8[]) THEN NULL \
                        ELSE $3 + make_interval(secs => ($2::int8[])[d.attempts + t.n]) END \
               FROM (SELECT id, count(*)::int4 AS n FROM UNNEST($1::uuid[]) AS u(id) \
                      GROUP BY id) t \
              WHERE d.id = t.id",
        )
        .bind::<Array<SqlUuid>, _>(failed.iter().map(|a| a.delivery_id).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(retry_schedule_seconds.to_vec())
        .bind::<Timestamptz, _>(now)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// Endpoints whose deliveries succeeded are no longer failing.
pub async fn clear_failing(conn: &mut AsyncPgConnection, endpoint_ids: &[Uuid]) -> QueryResult<()> {
    if endpoint_ids.is_empty() {
        return Ok(());
    }
    diesel::update(
        webhook_endpoints::table
            .filter(webhook_endpoints::id.eq_any(endpoint_ids))
            .filter(webhook_endpoints::failing_since.is_not_null()),
    )
    .set(webhook_endpoints::failing_since.eq(None::<DateTime<Utc>>))
    .execute(conn)
    .await
    .map(|_| ())
}

/// Endpoints whose deliveries failed are failing since `now` unless they already were:
/// returns the enabled ones failing since `disable_before` or earlier, to be disabled.
pub async fn mark_failing(
    conn: &mut AsyncPgConnection,
    endpoint_ids: &[Uuid],
    now: DateTime<Utc>,
    disable_before: DateTime<Utc>,
) -> QueryResult<Vec<Uuid>> {
    if endpoint_ids.is_empty() {
        return Ok(Vec::new());
    }
    diesel::update(
        webhook_endpoints::table
            .filter(webhook_endpoints::id.eq_any(endpoint_ids))
            .filter(webhook_endpoints::failing_since.is_null()),
    )
    .set(webhook_endpoints::failing_since.eq(now))
    .execute(conn)
    .await?;
    webhook_endpoints::table
        .filter(webhook_endpoints::id.eq_any(endpoint_ids))
        .filter(webhook_endpoints::enabled.eq(true))
        .filter(webhook_endpoints::failing_since.le(disable_before))
        .select(webhook_endpoints::id)
        .load(conn)
        .await
}

/// Disables the endpoint `id` with `reason` when it is enabled: the endpoint as it is now,
/// `None` when it was not enabled (someone else disabled it first).
pub async fn disable(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    reason: &str,
) -> QueryResult<Option<WebhookEndpoint>> {
    diesel::update(
        webhook_endpoints::table
            .find(id)
            .filter(webhook_endpoints::enabled.eq(true)),
    )
    .set((
        webhook_endpoints::enabled.eq(false),
        webhook_endpoints::disabled_reason.eq(Some(reason)),
    ))
    .returning(WebhookEndpoint::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// The addresses of mailboxes, for the events about them.
pub async fn mailbox_addresses(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> QueryResult<Vec<(Uuid, String)>> {
    use super::schema::mailboxes;
    mailboxes::table
        .filter(mailboxes::id.eq_any(ids))
        .select((mailboxes::id, mailboxes::email))
        .load(conn)
        .await
}

/// Deliveries claimed but not attempted (a replica stopping) are due again at `now`
/// instead of after their lease.
pub async fn release(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> QueryResult<()> {
    use super::schema::webhook_deliveries;
    if ids.is_empty() {
        return Ok(());
    }
    diesel::update(
        webhook_deliveries::table
            .filter(webhook_deliveries::id.eq_any(ids))
            .filter(webhook_deliveries::status.eq("pending")),
    )
    .set(webhook_deliveries::next_attempt_at.eq(Some(now)))
    .execute(conn)
    .await
    .map(|_| ())
}
