//! The scheduler's statements: claiming due enrollments and due retries, reserving mailbox
//! capacity, and the set-based writes of one dispatch round. Every write takes whole batches
//! (`UNNEST` of arrays), never a statement per enrollment.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{
    Array, Bool, Date, Int2, Int4, Nullable, Text, Time, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::prepared::PreparedExt as _;

/// The columns that decide when an enrollment may be emailed: the sequence's sending window
/// and the contact's zone. Selected (with these names) by every query that schedules.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct WindowColumns {
    #[diesel(sql_type = Nullable<Text>)]
    pub contact_timezone: Option<String>,
    #[diesel(sql_type = Array<Int2>)]
    pub send_days: Vec<i16>,
    #[diesel(sql_type = Time)]
    pub window_start: NaiveTime,
    #[diesel(sql_type = Time)]
    pub window_end: NaiveTime,
    #[diesel(sql_type = Text)]
    pub sequence_timezone: String,
    #[diesel(sql_type = Bool)]
    pub use_contact_timezone: bool,
    #[diesel(sql_type = Bool)]
    pub business_days_only: bool,
}

/// A due enrollment, locked by the claiming transaction, with everything deciding its next
/// step: the contact's state and zone, and the sequence's sending window.
#[derive(Debug, Clone, QueryableByName)]
pub struct DueEnrollment {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub workspace_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub sequence_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub contact_id: Uuid,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub mailbox_id: Option<Uuid>,
    #[diesel(sql_type = Int4)]
    pub current_step: i32,
    #[diesel(sql_type = Text)]
    pub email: String,
    #[diesel(sql_type = Text)]
    pub contact_status: String,
    #[diesel(embed)]
    pub window: WindowColumns,
}

/// Claims up to `limit` enrollments whose next send time has come, oldest first, from the
/// narrow due queue (`due_enrollments`, kept by triggers from `enrollments`), skipping rows
/// another dispatcher or any writer of the enrollment holds. In the same statement the queue
/// rows are deleted and the enrollments' `next_send_at` cleared (in flight; a HOT update, no
/// index covers it). Must run inside the transaction that then writes their outcome; a
/// claimed enrollment that is not sent gets its `next_send_at` back through [`defer`] or
/// [`finish`], which queues it again.
///
/// A queue row whose enrollment is no longer active, has no send time, or whose sequence is
/// not active is removed without being returned (activating the sequence queues its
/// enrollments again). The scan is a range of `due_enrollments_due_idx`, never all
/// enrollments; the enrollments are found by primary key and updated by tuple id.
pub async fn claim_due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<DueEnrollment>> {
    diesel::sql_query(CLAIM_DUE_SQL)
        .bind::<Timestamptz, _>(now)
        .bind::<diesel::sql_types::BigInt, _>(limit)
        .prepared()
        .load(conn)
        .await
}

/// Public so the benchmark can show its plan. The enrollment rows are locked with SKIP
/// LOCKED too: a writer holding one (a pause, an unsubscribe) may be about to touch its queue
/// row, and waiting for it while holding that queue row could deadlock; its queue row stays
/// for a later round. A queue row is deleted only with its enrollment claimed (or found not
/// live): an enrollment whose locked version is newer than the statement's snapshot is not
/// updated by it, and keeps its queue row for the next round rather than being lost. The
/// sequence is share-locked too, so `live` reads its latest committed status: read from the
/// statement's snapshot, an activation committed after the snapshot (which re-queued these
/// rows) looked like a paused sequence, and the rows it had just queued were deleted as not
/// live and never sent (found by the pipeline bench: 500 enrollments, one claim, left due). A
/// sequence whose status is changing right now is skipped for this round.
pub const CLAIM_DUE_SQL: &str = "\
WITH due AS ( \
    SELECT enrollment_id FROM due_enrollments WHERE due_at <= $1 \
     ORDER BY due_at \
     LIMIT $2 \
       FOR UPDATE SKIP LOCKED), \
locked AS ( \
    SELECT e.ctid AS row_id, e.id, \
           (e.status = 'active' AND e.next_send_at IS NOT NULL AND s.status = 'active') AS live \
      FROM enrollments e JOIN sequences s ON s.id = e.sequence_id \
     WHERE e.id = ANY(ARRAY(SELECT enrollment_id FROM due)) \
       FOR UPDATE OF e SKIP LOCKED FOR SHARE OF s SKIP LOCKED), \
claimed AS ( \
    UPDATE enrollments e SET next_send_at = NULL \
      FROM sequences s, contacts c \
     WHERE e.ctid = ANY(ARRAY(SELECT row_id FROM locked WHERE live)) \
       AND s.id = e.sequence_id AND c.id = e.contact_id \
    RETURNING e.id, e.workspace_id, e.sequence_id, e.contact_id, e.mailbox_id, e.current_step, \
              c.email, c.status AS contact_status, c.timezone AS contact_timezone, \
              s.send_days, s.window_start, s.window_end, s.timezone AS sequence_timezone, \
              s.use_contact_timezone, s.business_days_only), \
gone AS ( \
    DELETE FROM due_enrollments \
     WHERE enrollment_id = ANY(ARRAY(SELECT id FROM claimed \
                                     UNION ALL SELECT id FROM locked WHERE NOT live))) \
SELECT * FROM claimed";

/// The plan PostgreSQL chooses for [`claim_due`] with these values, as `EXPLAIN` prints it.
pub async fn explain_claim(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> QueryResult<String> {
    let lines: Vec<PlanLine> = diesel::sql_query(format!("EXPLAIN {CLAIM_DUE_SQL}"))
        .bind::<Timestamptz, _>(now)
        .bind::<diesel::sql_types::BigInt, _>(limit)
        .load(conn)
        .await?;
    Ok(plan_text(lines))
}

/// A line of what `EXPLAIN` prints.
#[derive(QueryableByName)]
pub(super) struct PlanLine {
    #[diesel(sql_type = Text)]
    #[diesel(column_name = "QUERY PLAN")]
    line: String,
}

/// A plan as `EXPLAIN` prints it.
pub(super) fn plan_text(lines: Vec<PlanLine>) -> String {
    lines
        .into_iter()
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A mailbox as rotation, capacity and spacing see it.
#[derive(Debug, Clone, QueryableByName)]
pub struct MailboxForDispatch {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub email: String,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Int4)]
    pub daily_limit: i32,
    #[diesel(sql_type = Bool)]
    pub warmup_enabled: bool,
    #[diesel(sql_type = Int4)]
    pub warmup_start_limit: i32,
    #[diesel(sql_type = Int4)]
    pub warmup_daily_increase: i32,
    #[diesel(sql_type = Nullable<Date>)]
    pub warmup_started_on: Option<NaiveDate>,
    #[diesel(sql_type = Int4)]
    pub min_interval_seconds: i32,
    #[diesel(sql_type = Int4)]
    pub max_jitter_seconds: i32,
    #[diesel(sql_type = Text)]
    pub timezone: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub next_send_slot_at: Option<DateTime<Utc>>,
}

pub async fn mailboxes(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> QueryResult<Vec<MailboxForDispatch>> {
    diesel::sql_query(
        "SELECT id, email, status, daily_limit, warmup_enabled, warmup_start_limit, \
                warmup_daily_increase, warmup_started_on, min_interval_seconds, \
                max_jitter_seconds, timezone, next_send_slot_at \
           FROM mailboxes WHERE id = ANY($1)",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .prepared()
    .load(conn)
    .await
}

#[derive(Debug, Clone, Copy, QueryableByName)]
pub struct PoolMember {
    #[diesel(sql_type = SqlUuid)]
    pub sequence_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub mailbox_id: Uuid,
}

/// The rotation pools (sequence_mailboxes) of the given sequences.
pub async fn pools(
    conn: &mut AsyncPgConnection,
    sequence_ids: &[Uuid],
) -> QueryResult<Vec<PoolMember>> {
    diesel::sql_query(
        "SELECT sequence_id, mailbox_id FROM sequence_mailboxes WHERE sequence_id = ANY($1)",
    )
    .bind::<Array<SqlUuid>, _>(sequence_ids)
    .prepared()
    .load(conn)
    .await
}

#[derive(Debug, Clone, Copy, QueryableByName)]
pub struct Usage {
    #[diesel(sql_type = SqlUuid)]
    pub mailbox_id: Uuid,
    #[diesel(sql_type = Int4)]
    pub reserved: i32,
}

/// Units already reserved, for each (mailbox, local day) pair given; absent pairs have none.
pub async fn usage(
    conn: &mut AsyncPgConnection,
    mailbox_ids: &[Uuid],
    days: &[NaiveDate],
) -> QueryResult<Vec<Usage>> {
    diesel::sql_query(
        "SELECT u.mailbox_id, u.reserved FROM mailbox_daily_usage u \
           JOIN UNNEST($1::uuid[], $2::date[]) AS k(mailbox_id, day) \
             ON u.mailbox_id = k.mailbox_id AND u.day = k.day",
    )
    .bind::<Array<SqlUuid>, _>(mailbox_ids)
    .bind::<Array<Date>, _>(days)
    .prepared()
    .load(conn)
    .await
}

/// One mailbox's request in [`reserve`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reservation {
    pub mailbox_id: Uuid,
    /// The mailbox's local date the units count against.
    pub day: NaiveDate,
    pub want: i32,
    /// The day's limit (warmup applied).
    pub limit: i32,
    /// For a mailbox that spaces its sends: where its slot moves when this takes it.
    pub next_slot: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, QueryableByName)]
pub struct Granted {
    #[diesel(sql_type = SqlUuid)]
    #[diesel(column_name = out_mailbox_id)]
    pub mailbox_id: Uuid,
    #[diesel(sql_type = Int4)]
    #[diesel(column_name = out_granted)]
    pub granted: i32,
}

/// Reserves capacity (and spacing slots) for several mailboxes in one atomic call; see the
/// `reserve_mailbox_capacity` function in the migrations. Run it outside the dispatch
/// transaction (autocommit) so concurrent dispatchers hold the usage rows only for the call;
/// give back what a failed dispatch did not use with [`release`].
pub async fn reserve(
    conn: &mut AsyncPgConnection,
    requests: &[Reservation],
    now: DateTime<Utc>,
) -> QueryResult<Vec<Granted>> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    diesel::sql_query("SELECT * FROM reserve_mailbox_capacity($1, $2, $3, $4, $5, $6)")
        .bind::<Array<SqlUuid>, _>(requests.iter().map(|r| r.mailbox_id).collect::<Vec<_>>())
        .bind::<Array<Date>, _>(requests.iter().map(|r| r.day).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(requests.iter().map(|r| r.want).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(requests.iter().map(|r| r.limit).collect::<Vec<_>>())
        .bind::<Array<Nullable<Timestamptz>>, _>(
            requests.iter().map(|r| r.next_slot).collect::<Vec<_>>(),
        )
        .bind::<Timestamptz, _>(now)
        .prepared()
        .load(conn)
        .await
}

/// Gives back reserved units that were not used (a dispatch that failed or found its message
/// already created).
pub async fn release(
    conn: &mut AsyncPgConnection,
    mailbox_ids: &[Uuid],
    days: &[NaiveDate],
    units: &[i32],
) -> QueryResult<usize> {
    if mailbox_ids.is_empty() {
        return Ok(0);
    }
    diesel::sql_query(
        "UPDATE mailbox_daily_usage u SET reserved = greatest(0, u.reserved - k.n) \
           FROM UNNEST($1::uuid[], $2::date[], $3::int4[]) AS k(mailbox_id, day, n) \
          WHERE u.mailbox_id = k.mailbox_id AND u.day = k.day",
    )
    .bind::<Array<SqlUuid>, _>(mailbox_ids)
    .bind::<Array<Date>, _>(days)
    .bind::<Array<Int4>, _>(units)
    .prepared()
    .execute(conn)
    .await
}

/// A message to create for a dispatched step.
#[derive(Debug, Clone)]
pub struct NewDispatch {
    pub message_id: Uuid,
    pub workspace_id: Uuid,
    pub enrollment_id: Uuid,
    pub step_id: Uuid,
    pub step_order: i32,
    pub contact_id: Uuid,
    pub mailbox_id: Uuid,
    pub variant_index: Option<i32>,
    pub message_id_header: String,
}

/// A message queued by a dispatch: a new one, or a cancelled one queued again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub struct Queued {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub enrollment_id: Uuid,
    /// The attempt this dispatch is: 1 for a new message.
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
}

/// Key-share-locks the steps and mailboxes the round's messages refer to, once each, and
/// returns how many of them exist. `messages` has no foreign keys (each message's checks
/// locked the same few rows again, most of the insert's cost); this is their guarantee: a
/// row locked here cannot be deleted before the round commits, and a delete that waited for
/// it then takes the new messages with it (the delete triggers of migration 000081). Run
/// just before [`insert_messages`], where the checks ran, not before capacity is reserved
/// on the side connection. The enrollments are locked by the claim already.
pub async fn lock_references(
    conn: &mut AsyncPgConnection,
    step_ids: &[Uuid],
    mailbox_ids: &[Uuid],
) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query(
        "WITH s AS (SELECT 1 FROM steps WHERE id = ANY($1) FOR KEY SHARE), \
              m AS (SELECT 1 FROM mailboxes WHERE id = ANY($2) FOR KEY SHARE) \
         SELECT (SELECT count(*) FROM s) + (SELECT count(*) FROM m) AS n",
    )
    .bind::<Array<SqlUuid>, _>(step_ids)
    .bind::<Array<SqlUuid>, _>(mailbox_ids)
    .prepared()
    .get_result(conn)
    .await?;
    Ok(count.n)
}

/// Creates the messages (status queued, first attempt). A step that already has its message
/// (UNIQUE enrollment and step) creates nothing, unless that message was cancelled without
/// being sent (its enrollment paused while the job waited, or it was held for a missing
/// variable): then it is queued again as its next attempt, from the mailbox and with the
/// variant of this dispatch, keeping its id. Returns the messages queued.
pub async fn insert_messages(
    conn: &mut AsyncPgConnection,
    rows: &[NewDispatch],
    now: DateTime<Utc>,
) -> QueryResult<Vec<Queued>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    diesel::sql_query(
        "INSERT INTO messages (id, workspace_id, enrollment_id, step_id, step_order, contact_id, \
                               mailbox_id, variant_index, status, attempts, message_id_header, \
                               scheduled_at) \
         SELECT t.id, t.workspace_id, t.enrollment_id, t.step_id, t.step_order, t.contact_id, \
                t.mailbox_id, t.variant_index, 'queued', 1, t.header, $10 \
           FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::int4[], $6::uuid[], \
                       $7::uuid[], $8::int4[], $9::text[]) \
                AS t(id, workspace_id, enrollment_id, step_id, step_order, contact_id, \
                     mailbox_id, variant_index, header) \
         ON CONFLICT (enrollment_id, step_id) DO UPDATE \
            SET status = 'queued', attempts = messages.attempts + 1, \
                mailbox_id = EXCLUDED.mailbox_id, variant_index = EXCLUDED.variant_index, \
                message_id_header = regexp_replace(EXCLUDED.message_id_header, '^<[^@]*@', \
                                                   '<' || messages.id || '@'), \
                scheduled_at = EXCLUDED.scheduled_at, retry_at = NULL, worker_id = NULL, \
                lease_expires_at = NULL, last_error = NULL \
          WHERE messages.status = 'cancelled' \
         RETURNING id, enrollment_id, attempts",
    )
    .bind::<Array<SqlUuid>, _>(rows.iter().map(|r| r.message_id).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(rows.iter().map(|r| r.workspace_id).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(rows.iter().map(|r| r.enrollment_id).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(rows.iter().map(|r| r.step_id).collect::<Vec<_>>())
    .bind::<Array<Int4>, _>(rows.iter().map(|r| r.step_order).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(rows.iter().map(|r| r.contact_id).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(rows.iter().map(|r| r.mailbox_id).collect::<Vec<_>>())
    .bind::<Array<Nullable<Int4>>, _>(rows.iter().map(|r| r.variant_index).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(
        rows.iter()
            .map(|r| r.message_id_header.as_str())
            .collect::<Vec<_>>(),
    )
    .bind::<Timestamptz, _>(now)
    .prepared()
    .load(conn)
    .await
}

/// Moves enrollments whose step in flight is past deleted steps to that step's position
/// (the claim already took them out of the due index). The thread's mailbox is recorded when
/// the first step is reported sent, not here, so the common case writes nothing more.
pub async fn set_positions(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
    step_orders: &[i32],
) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::sql_query(
        "UPDATE enrollments e SET current_step = t.step_order \
           FROM UNNEST($1::uuid[], $2::int4[]) AS t(id, step_order) \
          WHERE e.id = t.id AND e.current_step <> t.step_order",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<Array<Int4>, _>(step_orders)
    .prepared()
    .execute(conn)
    .await
}

/// Gives claimed enrollments their next send time back (outside their window, no capacity,
/// spacing, or a concurrent dispatcher took the units: then `until` is now).
pub async fn defer(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
    until: &[DateTime<Utc>],
) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::sql_query(
        "UPDATE enrollments e SET next_send_at = t.at \
           FROM UNNEST($1::uuid[], $2::timestamptz[]) AS t(id, at) WHERE e.id = t.id",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<Array<Timestamptz>, _>(until)
    .prepared()
    .execute(conn)
    .await
}

/// Ends enrollments: `completed` (no step left) or a stop status with its reason.
pub async fn finish(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
    statuses: &[&str],
    reasons: &[Option<&str>],
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::sql_query(
        "UPDATE enrollments e \
            SET status = t.status, stop_reason = t.reason, next_send_at = NULL, \
                completed_at = CASE WHEN t.status = 'completed' THEN $4 END \
           FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS t(id, status, reason) \
          WHERE e.id = t.id",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<Array<Text>, _>(statuses)
    .bind::<Array<Nullable<Text>>, _>(reasons)
    .bind::<Timestamptz, _>(now)
    .prepared()
    .execute(conn)
    .await
}

/// A message whose retry is due, claimed for re-dispatch.
#[derive(Debug, Clone, QueryableByName)]
pub struct DueRetry {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub workspace_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub enrollment_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub mailbox_id: Uuid,
    /// The attempt this dispatch is (already counted).
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
}

/// Claims retries whose time has come and puts them back in the queue as their next attempt,
/// in one statement. The row keeps its Message-ID and its unit of the daily limit.
pub async fn requeue_due_retries(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<DueRetry>> {
    diesel::sql_query(
        "UPDATE messages m SET status = 'queued', attempts = m.attempts + 1, retry_at = NULL, \
                               scheduled_at = $1 \
           FROM (SELECT id FROM messages \
                  WHERE status = 'retrying' AND retry_at <= $1 \
                  ORDER BY retry_at LIMIT $2 FOR UPDATE SKIP LOCKED) due \
          WHERE m.id = due.id \
         RETURNING m.id, m.workspace_id, m.enrollment_id, m.mailbox_id, m.attempts",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .prepared()
    .load(conn)
    .await
}
