//! The send jobs' outbox (`send_jobs`): one narrow row per job, written in the transaction
//! that queues its message, claimed and deleted by the job relay
//! ([`crate::outbox::JobRelay`]) once Kafka acknowledged its record.
//!
//! Cheaper than a generic outbox row per job: no jsonb envelope is written (the relay builds
//! it from these columns), the primary key is the only index, and every row is pending, so
//! the relay claims a batch by deleting it in one statement. As with the outbox, rows are
//! claimed by what is there, never by "id above the last one published", so a transaction
//! that commits late is not skipped.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Int4, Jsonb, Nullable, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::prepared::PreparedExt as _;
use crate::events::{EmailJob, SendJob};
use crate::kafka::{Envelope, Payload as _, trace_headers};

/// A job to queue: the message to send and which attempt this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewSendJob {
    pub message_id: Uuid,
    pub workspace_id: Uuid,
    pub enrollment_id: Uuid,
    pub mailbox_id: Uuid,
    pub attempt: i32,
}

/// A claimed job, as the relay publishes it.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct SendJobRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = SqlUuid)]
    pub message_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub workspace_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub enrollment_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub mailbox_id: Uuid,
    #[diesel(sql_type = Int4)]
    pub attempt: i32,
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub headers: Option<serde_json::Value>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
}

impl SendJobRow {
    /// The envelope consumers of `email-jobs` read. Its id is derived from the message and
    /// the attempt, so a job published twice (a relay's commit lost after Kafka acknowledged
    /// it) carries the same envelope id both times.
    pub fn envelope(&self) -> Envelope<EmailJob> {
        Envelope {
            id: envelope_id(self.message_id, self.attempt),
            version: EmailJob::VERSION,
            occurred_at: self.created_at,
            workspace_id: self.workspace_id,
            body: EmailJob::Send(SendJob {
                message_id: self.message_id,
                enrollment_id: self.enrollment_id,
                mailbox_id: self.mailbox_id,
                attempt: u32::try_from(self.attempt).unwrap_or(1),
            }),
        }
    }

    /// The Kafka key: jobs of one mailbox go to one partition, in order.
    pub fn key(&self) -> String {
        self.mailbox_id.to_string()
    }

    /// The stored trace headers as name and value pairs (only strings are written).
    pub fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers
            .as_ref()
            .and_then(|h| h.as_object())
            .map(|headers| {
                headers
                    .iter()
                    .filter_map(|(name, value)| Some((name.as_str(), value.as_str()?)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One envelope id per (message, attempt): a name-based UUID in the message's namespace.
pub fn envelope_id(message_id: Uuid, attempt: i32) -> Uuid {
    Uuid::new_v5(&message_id, &attempt.to_be_bytes())
}

/// The current trace context as stored with the jobs (`None` when tracing export is off,
/// which stores nothing).
fn current_headers() -> Option<serde_json::Value> {
    let pairs = trace_headers::current_context_pairs();
    (!pairs.is_empty()).then(|| {
        serde_json::Value::Object(
            pairs
                .into_iter()
                .map(|(name, value)| (name, serde_json::Value::String(value)))
                .collect(),
        )
    })
}

/// Queues the jobs in one statement, in slice order, with the current trace context. Call
/// in the transaction that queues their messages. Their time (`created_at`, the envelope's
/// `occurred_at`) is the transaction's, as an outbox row's, not the caller's clock.
pub async fn insert_many(conn: &mut AsyncPgConnection, jobs: &[NewSendJob]) -> QueryResult<usize> {
    if jobs.is_empty() {
        return Ok(0);
    }
    diesel::sql_query(
        "INSERT INTO send_jobs (message_id, workspace_id, enrollment_id, mailbox_id, attempt, \
                                headers) \
         SELECT t.message_id, t.workspace_id, t.enrollment_id, t.mailbox_id, t.attempt, $6 \
           FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::int4[]) \
                WITH ORDINALITY AS t(message_id, workspace_id, enrollment_id, mailbox_id, \
                                     attempt, n) \
          ORDER BY t.n",
    )
    .bind::<Array<SqlUuid>, _>(jobs.iter().map(|j| j.message_id).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(jobs.iter().map(|j| j.workspace_id).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(jobs.iter().map(|j| j.enrollment_id).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(jobs.iter().map(|j| j.mailbox_id).collect::<Vec<_>>())
    .bind::<Array<Int4>, _>(jobs.iter().map(|j| j.attempt).collect::<Vec<_>>())
    .bind::<Nullable<Jsonb>, _>(current_headers())
    .prepared()
    .execute(conn)
    .await
}

/// Claims up to `limit` jobs, oldest first, skipping rows another relay holds, by deleting
/// them; returns them in id order. Call inside a transaction and commit only after Kafka
/// acknowledged them: a rollback puts them all back, and [`put_back`] those that failed.
pub async fn take(conn: &mut AsyncPgConnection, limit: i64) -> QueryResult<Vec<SendJobRow>> {
    let mut rows: Vec<SendJobRow> = diesel::sql_query(
        "DELETE FROM send_jobs \
          WHERE id = ANY(ARRAY(SELECT id FROM send_jobs ORDER BY id LIMIT $1 \
                                  FOR UPDATE SKIP LOCKED)) \
         RETURNING id, message_id, workspace_id, enrollment_id, mailbox_id, attempt, headers, \
                   created_at",
    )
    .bind::<BigInt, _>(limit)
    .prepared()
    .load(conn)
    .await?;
    // RETURNING does not promise an order; jobs of one mailbox are sent in id order.
    rows.sort_unstable_by_key(|row| row.id);
    Ok(rows)
}

/// Puts taken jobs back as they were (same ids, so they keep their place), for those Kafka
/// did not acknowledge.
pub async fn put_back(conn: &mut AsyncPgConnection, rows: &[&SendJobRow]) -> QueryResult<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    diesel::sql_query(
        "INSERT INTO send_jobs (id, message_id, workspace_id, enrollment_id, mailbox_id, \
                                attempt, headers, created_at) OVERRIDING SYSTEM VALUE \
         SELECT * FROM UNNEST($1::int8[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], \
                              $6::int4[], $7::jsonb[], $8::timestamptz[])",
    )
    .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(rows.iter().map(|r| r.message_id).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(rows.iter().map(|r| r.workspace_id).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(rows.iter().map(|r| r.enrollment_id).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(rows.iter().map(|r| r.mailbox_id).collect::<Vec<_>>())
    .bind::<Array<Int4>, _>(rows.iter().map(|r| r.attempt).collect::<Vec<_>>())
    .bind::<Array<Nullable<Jsonb>>, _>(rows.iter().map(|r| r.headers.as_ref()).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
    .execute(conn)
    .await
}

/// Jobs waiting to be published.
pub async fn count_pending(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query("SELECT count(*) AS n FROM send_jobs")
        .get_result(conn)
        .await?;
    Ok(count.n)
}

/// Jobs queued so far, for benchmarks' progress checks: the identity's last value, since the
/// relay deletes what it published.
pub const JOBS_WRITTEN: &str =
    "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('send_jobs', 'id')), 0) AS n";
