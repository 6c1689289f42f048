//! How events move enrollments, messages and contacts: the scheduler's consumer of
//! `email-events` (a batch of events per transaction) and `email-retries` (one request per
//! transaction) applies them with these.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Int4, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::dispatch::{PlanLine, WindowColumns, plan_text};
use super::prepared::PreparedExt as _;
use super::schema::events;

/// An enrollment, locked, with what computing its next send time needs.
#[derive(Debug, Clone, QueryableByName)]
pub struct EnrollmentContext {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub workspace_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub sequence_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub contact_id: Uuid,
    #[diesel(sql_type = Int4)]
    pub current_step: i32,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Text)]
    pub email: String,
    #[diesel(embed)]
    pub window: WindowColumns,
    #[diesel(sql_type = Bool)]
    pub stop_on_reply: bool,
    #[diesel(sql_type = Bool)]
    pub stop_on_auto_reply: bool,
}

/// Locks the enrollment row (events of one enrollment apply one after the other).
pub async fn lock_enrollment(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<EnrollmentContext>> {
    Ok(lock_enrollments(conn, &[id]).await?.pop())
}

/// Locks the enrollment rows of `ids` that exist (a batch of events applies under these
/// locks), in id order so two transactions locking overlapping sets wait rather than
/// deadlock. Only the enrollments are locked, not their contacts or sequences.
pub async fn lock_enrollments(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> QueryResult<Vec<EnrollmentContext>> {
    diesel::sql_query(LOCK_ENROLLMENTS_SQL)
        .bind::<Array<SqlUuid>, _>(ids)
        .prepared()
        .load(conn)
        .await
}

/// The contact and sequence of each enrollment are looked up by key (`OFFSET 0` keeps the
/// lateral subqueries from being flattened into joins): as plain joins, the planner hashed
/// the whole contacts table for a batch of a few hundred enrollments once
/// `random_page_cost` made that many index probes look dearer than a sequential scan. A
/// batch names few sequences, so their lookups are memoized. Prepared once per connection.
const LOCK_ENROLLMENTS_SQL: &str = "\
    SELECT e.id, e.workspace_id, e.sequence_id, e.contact_id, e.current_step, e.status, \
           c.email, c.contact_timezone, s.send_days, s.window_start, s.window_end, \
           s.sequence_timezone, s.use_contact_timezone, s.business_days_only, \
           s.stop_on_reply, s.stop_on_auto_reply \
      FROM enrollments e \
     CROSS JOIN LATERAL ( \
           SELECT c.email, c.timezone AS contact_timezone FROM contacts c \
            WHERE c.id = e.contact_id OFFSET 0) c \
     CROSS JOIN LATERAL ( \
           SELECT s.send_days, s.window_start, s.window_end, \
                  s.timezone AS sequence_timezone, s.use_contact_timezone, \
                  s.business_days_only, s.stop_on_reply, s.stop_on_auto_reply \
             FROM sequences s WHERE s.id = e.sequence_id OFFSET 0) s \
     WHERE e.id = ANY($1) \
     ORDER BY e.id \
       FOR UPDATE OF e";

/// The plan PostgreSQL chooses for [`lock_enrollments`] of `ids`, as `EXPLAIN` prints it.
pub async fn explain_lock_enrollments(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> QueryResult<String> {
    let lines: Vec<PlanLine> = diesel::sql_query(format!("EXPLAIN {LOCK_ENROLLMENTS_SQL}"))
        .bind::<Array<SqlUuid>, _>(ids)
        .load(conn)
        .await?;
    Ok(plan_text(lines))
}

/// A message an event names: its enrollment, step and mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Queryable)]
pub struct MessageOwner {
    pub id: Uuid,
    pub enrollment_id: Uuid,
    pub step_order: i32,
    pub mailbox_id: Uuid,
}

impl MessageOwner {
    /// This message's mailbox when the message is provably its enrollment's first by
    /// `step_order` (what fixes the thread's mailbox, see [`advance_many`]): live steps are
    /// numbered from 1 and messages keep their step's number, so none comes before one at 1.
    /// `None` when another message might (the statement then looks it up).
    pub fn thread_mailbox(&self) -> Option<Uuid> {
        (self.step_order == FIRST_STEP).then_some(self.mailbox_id)
    }
}

/// The position of a sequence's first live step (`steps.step_order` counts from it).
const FIRST_STEP: i32 = 1;

/// The messages of `ids` that still exist (events may outlive a deleted contact, whose
/// messages cascade away).
pub async fn message_owners(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> QueryResult<Vec<MessageOwner>> {
    use super::schema::messages;
    messages::table
        .filter(messages::id.eq_any(ids))
        .select((
            messages::id,
            messages::enrollment_id,
            messages::step_order,
            messages::mailbox_id,
        ))
        .load(conn)
        .await
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = events)]
pub struct NewEvent<'a> {
    /// The Kafka envelope id: a replayed event inserts nothing.
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub message_id: Option<Uuid>,
    pub enrollment_id: Option<Uuid>,
    pub contact_id: Option<Uuid>,
    pub event_type: &'a str,
    pub occurred_at: DateTime<Utc>,
    pub is_bot: Option<bool>,
    pub bot_reason: Option<&'a str>,
    pub url: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    pub payload: serde_json::Value,
}

/// Stores the event once; false when this id was stored before (a redelivery), in which case
/// the caller must change nothing else either.
///
/// `events` has no foreign keys (migration 000082): the caller holds the event's enrollment
/// locked ([`lock_enrollments`], or `FOR KEY SHARE` at least) and names only its workspace
/// and contact, and a message of that enrollment found under the lock or row-locked by the
/// caller; the delete triggers that unlink or delete events then wait for it.
pub async fn record_event(conn: &mut AsyncPgConnection, event: &NewEvent<'_>) -> QueryResult<bool> {
    diesel::insert_into(events::table)
        .values(event)
        .on_conflict(events::id)
        .do_nothing()
        .execute(conn)
        .await
        .map(|n| n == 1)
}

/// Stores `events`, none stored before (the caller looked them up under its locks), in one
/// statement; returns how many it stored. What they name is held as for [`record_event`]. `events` must not repeat an id. A plain insert, not
/// `ON CONFLICT DO NOTHING` (a speculative insertion: one more index probe and WAL record per
/// row): an id stored meanwhile by another transaction (the same records applied twice at
/// once, as in a rebalance) is a unique violation that fails the caller's transaction, which
/// is what its caller would do anyway. The rows go as one array per column (`unnest`), which
/// PostgreSQL parses and plans as one small statement however many rows there are.
pub async fn record_events(
    conn: &mut AsyncPgConnection,
    events: &[NewEvent<'_>],
) -> QueryResult<usize> {
    if events.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let workspaces: Vec<Uuid> = events.iter().map(|e| e.workspace_id).collect();
    let messages: Vec<Option<Uuid>> = events.iter().map(|e| e.message_id).collect();
    let enrollments: Vec<Option<Uuid>> = events.iter().map(|e| e.enrollment_id).collect();
    let contacts: Vec<Option<Uuid>> = events.iter().map(|e| e.contact_id).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type).collect();
    let occurred: Vec<DateTime<Utc>> = events.iter().map(|e| e.occurred_at).collect();
    let bots: Vec<Option<bool>> = events.iter().map(|e| e.is_bot).collect();
    let bot_reasons: Vec<Option<&str>> = events.iter().map(|e| e.bot_reason).collect();
    let urls: Vec<Option<&str>> = events.iter().map(|e| e.url).collect();
    let user_agents: Vec<Option<&str>> = events.iter().map(|e| e.user_agent).collect();
    let client_ips: Vec<Option<&str>> = events.iter().map(|e| e.client_ip).collect();
    let payloads: Vec<&serde_json::Value> = events.iter().map(|e| &e.payload).collect();
    diesel::sql_query(
        "INSERT INTO events (id, workspace_id, message_id, enrollment_id, contact_id, \
                             event_type, occurred_at, is_bot, bot_reason, url, user_agent, \
                             client_ip, payload) \
         SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Array<SqlUuid>, _>(&workspaces)
    .bind::<Array<Nullable<SqlUuid>>, _>(&messages)
    .bind::<Array<Nullable<SqlUuid>>, _>(&enrollments)
    .bind::<Array<Nullable<SqlUuid>>, _>(&contacts)
    .bind::<Array<Text>, _>(&types)
    .bind::<Array<Timestamptz>, _>(&occurred)
    .bind::<Array<Nullable<Bool>>, _>(&bots)
    .bind::<Array<Nullable<Text>>, _>(&bot_reasons)
    .bind::<Array<Nullable<Text>>, _>(&urls)
    .bind::<Array<Nullable<Text>>, _>(&user_agents)
    .bind::<Array<Nullable<Text>>, _>(&client_ips)
    .bind::<Array<Jsonb>, _>(&payloads)
    .execute(conn)
    .await
}

/// Which of `ids` are stored already (redeliveries).
pub async fn stored_events(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<Uuid>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    events::table
        .filter(events::id.eq_any(ids))
        .select(events::id)
        .load(conn)
        .await
}

/// Whether the message exists and belongs to the enrollment (events may outlive a deleted
/// contact, whose messages cascade away).
pub async fn message_of_enrollment(
    conn: &mut AsyncPgConnection,
    message_id: Uuid,
    enrollment_id: Uuid,
) -> QueryResult<bool> {
    use super::schema::messages;
    messages::table
        .filter(messages::id.eq(message_id))
        .filter(messages::enrollment_id.eq(enrollment_id))
        .count()
        .get_result::<i64>(conn)
        .await
        .map(|n| n == 1)
}

/// Where a `sent` moves its enrollment: on to `next_step` due at `next_send_at`, or, without a
/// next step, to `completed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    pub id: Uuid,
    pub sent_step: i32,
    pub next_step: Option<i32>,
    pub next_send_at: Option<DateTime<Utc>>,
    pub sent_at: DateTime<Utc>,
    /// The mailbox of the enrollment's first message by `step_order`, when the caller knows
    /// it ([`MessageOwner::thread_mailbox`] of the sent message); `None` to have the
    /// statement look it up.
    pub thread_mailbox: Option<Uuid>,
}

/// Moves enrollments from the step just sent on to their next step (due at `next_send_at`) or
/// to `completed`, in one statement (no enrollment twice); returns the ids of those it moved.
/// Only those still running at their `sent_step` move, so a replayed `sent` moves nothing. The
/// first send fixes the thread's mailbox: follow-ups go from the mailbox of the first message
/// by `step_order`, which the caller passes when it knows it (most first sends), sparing a
/// lookup of the enrollment's messages per row.
pub async fn advance_many(
    conn: &mut AsyncPgConnection,
    moves: &[Advance],
) -> QueryResult<Vec<Uuid>> {
    if moves.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = moves.iter().map(|m| m.id).collect();
    let sent_steps: Vec<i32> = moves.iter().map(|m| m.sent_step).collect();
    let next_steps: Vec<Option<i32>> = moves.iter().map(|m| m.next_step).collect();
    let due: Vec<Option<DateTime<Utc>>> = moves.iter().map(|m| m.next_send_at).collect();
    let sent_at: Vec<DateTime<Utc>> = moves.iter().map(|m| m.sent_at).collect();
    let thread_mailboxes: Vec<Option<Uuid>> = moves.iter().map(|m| m.thread_mailbox).collect();
    #[derive(QueryableByName)]
    struct Moved {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let moved: Vec<Moved> = diesel::sql_query(
        "UPDATE enrollments e \
            SET current_step = coalesce(v.next_step, e.current_step), \
                next_send_at = v.due, last_sent_at = v.sent_at, \
                status = CASE WHEN v.next_step IS NULL THEN 'completed' ELSE e.status END, \
                completed_at = CASE WHEN v.next_step IS NULL THEN v.sent_at \
                                    ELSE e.completed_at END, \
                mailbox_id = CASE WHEN v.next_step IS NULL THEN e.mailbox_id \
                                  ELSE coalesce(e.mailbox_id, v.thread_mailbox, \
                    (SELECT m.mailbox_id FROM messages m WHERE m.enrollment_id = e.id \
                      ORDER BY m.step_order LIMIT 1)) END \
           FROM unnest($1, $2, $3, $4, $5, $6) \
                AS v(id, sent_step, next_step, due, sent_at, thread_mailbox) \
          WHERE e.id = v.id AND e.current_step = v.sent_step \
            AND e.status IN ('active', 'paused') \
         RETURNING e.id",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Array<Int4>, _>(&sent_steps)
    .bind::<Array<Nullable<Int4>>, _>(&next_steps)
    .bind::<Array<Nullable<Timestamptz>>, _>(&due)
    .bind::<Array<Timestamptz>, _>(&sent_at)
    .bind::<Array<Nullable<SqlUuid>>, _>(&thread_mailboxes)
    .load(conn)
    .await?;
    Ok(moved.into_iter().map(|m| m.id).collect())
}

/// Stops one enrollment that is still running.
pub async fn stop(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: &str,
    reason: &str,
) -> QueryResult<bool> {
    diesel::sql_query(
        "UPDATE enrollments SET status = $2, stop_reason = $3, next_send_at = NULL \
          WHERE id = $1 AND status IN ('active', 'paused')",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(status)
    .bind::<Text, _>(reason)
    .execute(conn)
    .await
    .map(|n| n == 1)
}

/// Pauses an active enrollment still at `step` with `reason` until a person resumes it (a
/// held message). `next_send_at` is cleared: resuming makes it due again.
pub async fn hold(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    step: i32,
    reason: &str,
) -> QueryResult<bool> {
    diesel::sql_query(
        "UPDATE enrollments SET status = 'paused', stop_reason = $3, next_send_at = NULL \
          WHERE id = $1 AND current_step = $2 AND status = 'active'",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Int4, _>(step)
    .bind::<Text, _>(reason)
    .execute(conn)
    .await
    .map(|n| n == 1)
}

/// An enrollment [`stop_contact`] stopped.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct StoppedEnrollment {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub sequence_id: Uuid,
    #[diesel(sql_type = Int4)]
    pub current_step: i32,
}

/// Stops every running enrollment of a contact in its workspace (unsubscribe, complaint);
/// returns those it stopped, in id order.
pub async fn stop_contact(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    contact_id: Uuid,
    status: &str,
    reason: &str,
) -> QueryResult<Vec<StoppedEnrollment>> {
    let mut stopped: Vec<StoppedEnrollment> = diesel::sql_query(
        "UPDATE enrollments SET status = $3, stop_reason = $4, next_send_at = NULL \
          WHERE workspace_id = $1 AND contact_id = $2 AND status IN ('active', 'paused') \
         RETURNING id, sequence_id, current_step",
    )
    .bind::<SqlUuid, _>(workspace_id)
    .bind::<SqlUuid, _>(contact_id)
    .bind::<Text, _>(status)
    .bind::<Text, _>(reason)
    .load(conn)
    .await?;
    stopped.sort_by_key(|e| e.id);
    Ok(stopped)
}

/// Sets a contact's status (unsubscribed, bounced, complained); an unsubscribed or complained
/// contact is not turned back into a merely bounced one.
pub async fn set_contact_status(
    conn: &mut AsyncPgConnection,
    contact_id: Uuid,
    status: &str,
) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE contacts SET status = $2 \
          WHERE id = $1 AND status <> $2 \
            AND NOT ($2 = 'bounced' AND status IN ('unsubscribed', 'complained'))",
    )
    .bind::<SqlUuid, _>(contact_id)
    .bind::<Text, _>(status)
    .execute(conn)
    .await
}

/// Records a message's outcome. `sent` keeps the earliest send time if set twice, and never
/// overwrites `bounced` or `failed`: a bounce report read from the inbox can be applied
/// before the `sent` event of the same message, which comes through another producer.
pub async fn set_message_outcome(
    conn: &mut AsyncPgConnection,
    message_id: Uuid,
    status: &str,
    at: DateTime<Utc>,
    error: Option<&str>,
) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE messages SET status = $2, \
                sent_at = CASE WHEN $2 = 'sent' THEN coalesce(sent_at, $3) ELSE sent_at END, \
                last_error = coalesce($4, last_error), retry_at = NULL \
          WHERE id = $1 AND NOT ($2 = 'sent' AND status IN ('bounced', 'failed'))",
    )
    .bind::<SqlUuid, _>(message_id)
    .bind::<Text, _>(status)
    .bind::<Timestamptz, _>(at)
    .bind::<Nullable<Text>, _>(error)
    .execute(conn)
    .await
}

/// Puts a message whose attempt `attempt` failed transiently in the retry queue until
/// `retry_at`. Only the attempt the message is at, and only while not finished: a replayed
/// request changes nothing.
pub async fn schedule_retry(
    conn: &mut AsyncPgConnection,
    message_id: Uuid,
    attempt: i32,
    retry_at: DateTime<Utc>,
    error: &str,
) -> QueryResult<bool> {
    diesel::sql_query(
        "UPDATE messages SET status = 'retrying', retry_at = $3, last_error = $4 \
          WHERE id = $1 AND attempts = $2 AND status IN ('queued', 'sending')",
    )
    .bind::<SqlUuid, _>(message_id)
    .bind::<Int4, _>(attempt)
    .bind::<Timestamptz, _>(retry_at)
    .bind::<Text, _>(error)
    .execute(conn)
    .await
    .map(|n| n == 1)
}

/// Parks a message whose attempt `attempt` found its mailbox unable to send: `retrying`
/// without a time, and the attempt not counted (the next dispatch is the same attempt
/// again). It becomes due when the mailbox is `active` again (the trigger
/// `mailboxes_release_waiting_messages`). Same guard as [`schedule_retry`].
pub async fn wait_for_mailbox(
    conn: &mut AsyncPgConnection,
    message_id: Uuid,
    attempt: i32,
    error: &str,
) -> QueryResult<bool> {
    diesel::sql_query(
        "UPDATE messages SET status = 'retrying', retry_at = NULL, last_error = $3, \
                attempts = greatest(attempts - 1, 0) \
          WHERE id = $1 AND attempts = $2 AND status IN ('queued', 'sending')",
    )
    .bind::<SqlUuid, _>(message_id)
    .bind::<Int4, _>(attempt)
    .bind::<Text, _>(error)
    .execute(conn)
    .await
    .map(|n| n == 1)
}

/// Fails a message whose retries are used up (same guard as [`schedule_retry`]).
pub async fn fail_attempt(
    conn: &mut AsyncPgConnection,
    message_id: Uuid,
    attempt: i32,
    error: &str,
) -> QueryResult<bool> {
    diesel::sql_query(
        "UPDATE messages SET status = 'failed', retry_at = NULL, last_error = $3 \
          WHERE id = $1 AND attempts = $2 AND status IN ('queued', 'sending')",
    )
    .bind::<SqlUuid, _>(message_id)
    .bind::<Int4, _>(attempt)
    .bind::<Text, _>(error)
    .execute(conn)
    .await
    .map(|n| n == 1)
}
