//! The sender worker's statements: claiming queued messages (and reading, once per batch,
//! what their emails share), the earlier emails of their threads, recording outcomes, and
//! declaring messages whose worker died mid-send `unknown`.
//!
//! A claimed message's lease is a row of `message_leases`, inserted by the claim and deleted
//! by the statement that records its outcome, so that neither of the worker's two updates of
//! the message changes a column an index of `messages` refers to: both are heap-only (HOT)
//! updates, which add no index entry (migration 000085). Locks are taken in one order, the
//! message then its lease (the reaper skips what is locked), so the reaper and a worker
//! recording a late outcome never wait on each other in a cycle.
//!
//! A message is sent at most once because only the claim moves it out of `queued`, and it
//! does so conditionally: of two workers handed the same job, one claim changes the row and
//! the other finds it `sending` and skips it. Every write takes whole batches. Every
//! statement's text is a constant, so each connection prepares it once
//! ([`super::prepared`]) rather than planning it per batch.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Uuid as SqlUuid;
use diesel::sql_types::{Array, Bool, Bytea, Int4, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::prepared::PreparedExt as _;

/// A claimed message: its own row, its contact and the facts that decide, per message,
/// whether it still goes out. What it shares with the other messages of its batch (the step's
/// templates, the mailbox, the sequence's and workspace's settings) is read once per batch by
/// [`claim_context`].
#[derive(Debug, Clone, QueryableByName)]
pub struct ClaimedMessage {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub workspace_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub enrollment_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub sequence_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub step_id: Uuid,
    /// The A/B variant of the step this message sends, if any.
    #[diesel(sql_type = Nullable<Int4>)]
    pub variant_index: Option<i32>,
    #[diesel(sql_type = Int4)]
    pub step_order: i32,
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub message_id_header: Option<String>,
    #[diesel(sql_type = Text)]
    pub enrollment_status: String,
    #[diesel(sql_type = SqlUuid)]
    pub mailbox_id: Uuid,

    #[diesel(sql_type = Text)]
    pub contact_email: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub first_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub company: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub title: Option<String>,
    #[diesel(sql_type = Jsonb)]
    pub attributes: serde_json::Value,
    #[diesel(sql_type = Text)]
    pub contact_status: String,
    /// The address or its domain is on the workspace's suppression list.
    #[diesel(sql_type = Bool)]
    pub suppressed: bool,
}

/// Claims the `queued` messages among `ids` for `worker_id` until `lease_until`, in one
/// statement that also inserts their leases, and returns them with their contact (see
/// [`ClaimedMessage`]).
///
/// A mailbox that spaces its sends (`min_interval_seconds` > 0) has at most one message
/// claimed per call, and only when its previous claim is at least that long ago (its
/// `last_sent_at` moves in the same statement, under the row lock, so workers racing for the
/// same mailbox claim one message between them). Its other messages stay `queued`: see
/// [`unclaimed`].
pub async fn claim(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
    worker_id: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> QueryResult<Vec<ClaimedMessage>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    diesel::sql_query(CLAIM_SQL)
        .bind::<Array<SqlUuid>, _>(ids)
        .bind::<Timestamptz, _>(now)
        .bind::<Text, _>(worker_id)
        .bind::<Timestamptz, _>(lease_until)
        .prepared()
        .load(conn)
        .await
}

/// The claim returns only what differs between the messages of a batch: the 1 KB of step
/// content, the mailbox's SMTP settings and the sequence's were the same for most rows, and
/// joining and returning them per row made this the most expensive statement of the
/// pipeline.
const CLAIM_SQL: &str = "\
WITH cand AS ( \
   SELECT DISTINCT ON (CASE WHEN mb.min_interval_seconds > 0 THEN m.mailbox_id \
                            ELSE m.id END) \
          m.id, m.mailbox_id, mb.min_interval_seconds AS spacing \
     FROM messages m JOIN mailboxes mb ON mb.id = m.mailbox_id \
    WHERE m.id = ANY($1) AND m.status = 'queued' \
    ORDER BY CASE WHEN mb.min_interval_seconds > 0 THEN m.mailbox_id ELSE m.id END, \
             m.scheduled_at, m.id \
 ), spaced AS ( \
   UPDATE mailboxes mb SET last_sent_at = $2 \
    WHERE mb.id IN (SELECT mailbox_id FROM cand WHERE spacing > 0) \
      AND (mb.last_sent_at IS NULL \
           OR mb.last_sent_at <= $2 - make_interval(secs => mb.min_interval_seconds)) \
   RETURNING mb.id \
 ), claimed AS ( \
   UPDATE messages m SET status = 'sending', worker_id = $3, lease_expires_at = $4, \
                         updated_at = $2 \
     FROM cand \
    WHERE m.id = cand.id AND m.status = 'queued' \
      AND (cand.spacing = 0 OR cand.mailbox_id IN (SELECT id FROM spaced)) \
   RETURNING m.id, m.workspace_id, m.enrollment_id, m.step_id, m.variant_index, \
             m.step_order, m.attempts, m.message_id_header, m.mailbox_id, m.contact_id \
 ), leased AS ( \
   INSERT INTO message_leases (message_id, lease_expires_at) \
   SELECT id, $4 FROM claimed \
   ON CONFLICT (message_id) DO UPDATE SET lease_expires_at = EXCLUDED.lease_expires_at \
 ) \
 SELECT m.id, m.workspace_id, m.enrollment_id, e.sequence_id, m.step_id, m.variant_index, \
        m.step_order, m.attempts, m.message_id_header, e.status AS enrollment_status, \
        m.mailbox_id, \
        c.email AS contact_email, c.first_name, c.last_name, c.company, c.title, \
        c.attributes, c.status AS contact_status, \
        EXISTS (SELECT 1 FROM suppressions x \
                 WHERE x.workspace_id = m.workspace_id \
                   AND x.email IN (lower(btrim(c.email)), \
                                   substring(lower(btrim(c.email)) FROM '@[^@]*$'))) \
          AS suppressed \
   FROM claimed m \
   JOIN enrollments e ON e.id = m.enrollment_id \
   JOIN contacts c ON c.id = m.contact_id";

/// What the messages of a claimed batch share, each read once: their steps' templates (by
/// step and variant), their mailboxes, and their sequences' and workspaces' settings.
///
/// Read right after the claim, on the same connection, so it is at least as recent as the
/// claim: a pause or a mailbox change committed before the claim is seen.
#[derive(Debug, Clone, Default)]
pub struct ClaimContext {
    pub steps: Vec<ClaimStep>,
    pub mailboxes: Vec<ClaimMailbox>,
    pub sequences: Vec<ClaimSequence>,
}

/// A step's templates as one variant (or none) of it sends them.
#[derive(Debug, Clone, QueryableByName)]
pub struct ClaimStep {
    #[diesel(sql_type = SqlUuid)]
    pub step_id: Uuid,
    #[diesel(sql_type = Nullable<Int4>)]
    pub variant_index: Option<i32>,
    /// Subject and content of the step, or of the variant.
    #[diesel(sql_type = Text)]
    pub subject_source: String,
    #[diesel(sql_type = Text)]
    pub content_source: String,
    #[diesel(sql_type = Bool)]
    pub thread_with_previous: bool,
}

/// The sending side of a mailbox.
#[derive(Debug, Clone, QueryableByName)]
pub struct ClaimMailbox {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub email: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub name: Option<String>,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Text)]
    pub smtp_host: String,
    #[diesel(sql_type = Int4)]
    pub smtp_port: i32,
    #[diesel(sql_type = Text)]
    pub smtp_security: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub smtp_username: Option<String>,
    #[diesel(sql_type = Nullable<Bytea>)]
    pub smtp_password_encrypted: Option<Vec<u8>>,
    /// The mailbox is connected with OAuth: it logs in with an access token (XOAUTH2).
    #[diesel(sql_type = Bool)]
    pub oauth: bool,
}

/// A sequence's status and tracking settings, with its messages' workspace's.
#[derive(Debug, Clone, QueryableByName)]
pub struct ClaimSequence {
    #[diesel(sql_type = SqlUuid)]
    pub sequence_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub workspace_id: Uuid,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Bool)]
    pub open_tracking: bool,
    #[diesel(sql_type = Bool)]
    pub click_tracking: bool,
    /// Click tracking also rewrites links whose visible text is a URL (spam filters score
    /// those as spoofed links, so by default they are left as they are).
    #[diesel(sql_type = Bool)]
    pub track_url_text_links: bool,
    #[diesel(sql_type = Bool)]
    pub unsubscribe_link: bool,
    #[diesel(sql_type = Nullable<Text>)]
    pub tracking_domain: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub workspace_tracking_base_url: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub unsubscribe_mailto: Option<String>,
}

/// The [`ClaimContext`] of `messages`, in one small statement per kind.
pub async fn claim_context(
    conn: &mut AsyncPgConnection,
    messages: &[ClaimedMessage],
) -> QueryResult<ClaimContext> {
    if messages.is_empty() {
        return Ok(ClaimContext::default());
    }
    let mut steps: Vec<(Uuid, Option<i32>)> = messages
        .iter()
        .map(|m| (m.step_id, m.variant_index))
        .collect();
    steps.sort_unstable();
    steps.dedup();
    let mut mailboxes: Vec<Uuid> = messages.iter().map(|m| m.mailbox_id).collect();
    mailboxes.sort_unstable();
    mailboxes.dedup();
    let mut sequences: Vec<(Uuid, Uuid)> = messages
        .iter()
        .map(|m| (m.sequence_id, m.workspace_id))
        .collect();
    sequences.sort_unstable();
    sequences.dedup();

    let steps: Vec<ClaimStep> = diesel::sql_query(
        "SELECT t.step_id, t.variant_index, \
                CASE WHEN t.variant_index IS NULL THEN s.subject \
                     ELSE coalesce(s.variants -> t.variant_index ->> 'subject', s.subject) END \
                  AS subject_source, \
                CASE WHEN t.variant_index IS NULL THEN s.content \
                     ELSE coalesce(s.variants -> t.variant_index ->> 'content', s.content) END \
                  AS content_source, \
                s.thread_with_previous \
           FROM UNNEST($1::uuid[], $2::int4[]) AS t(step_id, variant_index) \
           JOIN steps s ON s.id = t.step_id",
    )
    .bind::<Array<SqlUuid>, _>(steps.iter().map(|s| s.0).collect::<Vec<_>>())
    .bind::<Array<Nullable<Int4>>, _>(steps.iter().map(|s| s.1).collect::<Vec<_>>())
    .prepared()
    .load(conn)
    .await?;
    let mailboxes: Vec<ClaimMailbox> = diesel::sql_query(
        "SELECT mb.id, mb.email, mb.display_name AS name, mb.status, mb.smtp_host, \
                mb.smtp_port, mb.smtp_security, mb.smtp_username, mb.smtp_password_encrypted, \
                EXISTS (SELECT 1 FROM mailbox_oauth o WHERE o.mailbox_id = mb.id) AS oauth \
           FROM mailboxes mb WHERE mb.id = ANY($1)",
    )
    .bind::<Array<SqlUuid>, _>(mailboxes)
    .prepared()
    .load(conn)
    .await?;
    let sequences: Vec<ClaimSequence> = diesel::sql_query(
        "SELECT t.sequence_id, t.workspace_id, q.status, \
                q.open_tracking_enabled AS open_tracking, \
                q.click_tracking_enabled AS click_tracking, q.track_url_text_links, \
                q.unsubscribe_link, q.tracking_domain, \
                w.tracking_base_url AS workspace_tracking_base_url, \
                nullif(btrim(w.settings ->> 'unsubscribe_mailto'), '') AS unsubscribe_mailto \
           FROM UNNEST($1::uuid[], $2::uuid[]) AS t(sequence_id, workspace_id) \
           JOIN sequences q ON q.id = t.sequence_id \
           JOIN workspaces w ON w.id = t.workspace_id",
    )
    .bind::<Array<SqlUuid>, _>(sequences.iter().map(|s| s.0).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(sequences.iter().map(|s| s.1).collect::<Vec<_>>())
    .prepared()
    .load(conn)
    .await?;
    Ok(ClaimContext {
        steps,
        mailboxes,
        sequences,
    })
}

/// Where a message that [`claim`] did not return stands, with what its `sent` says should
/// it be `sent` already (a redelivered job announces it again).
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Unclaimed {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub status: String,
    /// For a message still `queued` behind its mailbox's spacing: when the mailbox may send
    /// again.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub next_allowed_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = SqlUuid)]
    pub workspace_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub enrollment_id: Uuid,
    #[diesel(sql_type = Int4)]
    pub step_order: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub message_id_header: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub sent_at: Option<DateTime<Utc>>,
}

/// The state of `ids` (messages that no longer exist are left out).
pub async fn unclaimed(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<Unclaimed>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    diesel::sql_query(
        "SELECT m.id, m.status, \
                CASE WHEN mb.min_interval_seconds > 0 \
                     THEN mb.last_sent_at + make_interval(secs => mb.min_interval_seconds) \
                END AS next_allowed_at, \
                m.workspace_id, m.enrollment_id, m.step_order, m.message_id_header, m.sent_at \
           FROM messages m JOIN mailboxes mb ON mb.id = m.mailbox_id \
          WHERE m.id = ANY($1)",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .prepared()
    .load(conn)
    .await
}

/// An email already sent (or possibly sent) in an enrollment's thread.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct ThreadEmail {
    #[diesel(sql_type = SqlUuid)]
    pub enrollment_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub message_id: Uuid,
    #[diesel(sql_type = Int4)]
    pub step_order: i32,
    #[diesel(sql_type = Text)]
    pub message_id_header: String,
    /// Template source of its subject (its variant's, when it had one).
    #[diesel(sql_type = Text)]
    pub subject_source: String,
}

/// The emails of these enrollments that were sent, or may have been (`unknown`), by
/// enrollment and then step order.
pub async fn thread_emails(
    conn: &mut AsyncPgConnection,
    enrollment_ids: &[Uuid],
) -> QueryResult<Vec<ThreadEmail>> {
    if enrollment_ids.is_empty() {
        return Ok(Vec::new());
    }
    diesel::sql_query(
        "SELECT p.enrollment_id, p.id AS message_id, p.step_order, p.message_id_header, \
                CASE WHEN p.variant_index IS NULL THEN s.subject \
                     ELSE coalesce(s.variants -> p.variant_index ->> 'subject', s.subject) END \
                  AS subject_source \
           FROM messages p JOIN steps s ON s.id = p.step_id \
          WHERE p.enrollment_id = ANY($1) AND p.status IN ('sent', 'unknown') \
            AND p.message_id_header IS NOT NULL \
          ORDER BY p.enrollment_id, p.step_order",
    )
    .bind::<Array<SqlUuid>, _>(enrollment_ids)
    .prepared()
    .load(conn)
    .await
}

/// A message the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRow {
    pub id: Uuid,
    pub mailbox_id: Uuid,
    pub sent_at: DateTime<Utc>,
    pub reply: String,
    /// The subject as sent (rendered), for the API.
    pub subject: String,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// The statement that runs `$update` (an `UPDATE messages m ... RETURNING m.id` of messages a
/// worker holds) and deletes the leases of the messages it changed, after them (the lock
/// order: message, then lease), returning their ids.
macro_rules! ending_leases {
    ($update:literal) => {
        concat!(
            "WITH changed AS (",
            $update,
            "), released AS ( \
               DELETE FROM message_leases l USING changed c WHERE l.message_id = c.id \
             ) \
             SELECT id FROM changed"
        )
    };
}

/// Marks messages sent, those still held by `worker_id` only, and ends their leases; returns
/// the ids that changed. Their mailboxes' `last_sent_at` moves to `now`, and
/// `mailbox_first_sends` keeps each mailbox's earliest send.
pub async fn mark_sent(
    conn: &mut AsyncPgConnection,
    rows: &[SentRow],
    worker_id: &str,
    now: DateTime<Utc>,
) -> QueryResult<Vec<Uuid>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let changed: Vec<Id> = diesel::sql_query(ending_leases!(
        "UPDATE messages m SET status = 'sent', sent_at = t.sent_at, smtp_response = t.reply, \
                                 subject = t.subject, lease_expires_at = NULL, \
                                 last_error = NULL, updated_at = $6 \
             FROM UNNEST($1::uuid[], $2::timestamptz[], $3::text[], $4::text[]) \
                  AS t(id, sent_at, reply, subject) \
            WHERE m.id = t.id AND m.status = 'sending' AND m.worker_id = $5 \
           RETURNING m.id"
    ))
    .bind::<Array<SqlUuid>, _>(rows.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(rows.iter().map(|r| r.sent_at).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.reply.as_str()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.subject.as_str()).collect::<Vec<_>>())
    .bind::<Text, _>(worker_id)
    .bind::<Timestamptz, _>(now)
    .prepared()
    .load(conn)
    .await?;
    // Each mailbox once, with its earliest send of the batch.
    let mut firsts: Vec<(Uuid, DateTime<Utc>)> =
        rows.iter().map(|r| (r.mailbox_id, r.sent_at)).collect();
    firsts.sort_unstable();
    firsts.dedup_by_key(|(mailbox, _)| *mailbox);
    diesel::sql_query(
        "WITH firsts AS ( \
           INSERT INTO mailbox_first_sends (mailbox_id, first_sent_at) \
           SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[]) \
           ON CONFLICT (mailbox_id) DO UPDATE SET first_sent_at = EXCLUDED.first_sent_at \
            WHERE mailbox_first_sends.first_sent_at > EXCLUDED.first_sent_at \
         ) \
         UPDATE mailboxes SET last_sent_at = $3 \
          WHERE id = ANY($1) AND (last_sent_at IS NULL OR last_sent_at < $3)",
    )
    .bind::<Array<SqlUuid>, _>(firsts.iter().map(|f| f.0).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(firsts.iter().map(|f| f.1).collect::<Vec<_>>())
    .bind::<Timestamptz, _>(now)
    .prepared()
    .execute(conn)
    .await?;
    Ok(changed.into_iter().map(|c| c.id).collect())
}

/// A message's end other than sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The server refused it permanently.
    Bounced,
    /// It cannot be sent (its template or an address is invalid).
    Failed,
    /// No reply after its data: it may have been delivered; never resent.
    Unknown,
    /// Not sent because its enrollment or contact no longer wants it.
    Cancelled,
    /// A transient failure: the message stays `sending` with no worker or lease until the
    /// scheduler, told on `email-retries`, schedules the next attempt.
    AwaitingRetry,
}

impl Settled {
    fn status(self) -> &'static str {
        match self {
            Settled::Bounced => "bounced",
            Settled::Failed => "failed",
            Settled::Unknown => "unknown",
            Settled::Cancelled => "cancelled",
            Settled::AwaitingRetry => "sending",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledRow {
    pub id: Uuid,
    pub outcome: Settled,
    pub error: String,
}

/// Records outcomes other than sent, for messages still held by `worker_id`, and ends their
/// leases (a retry awaited too: it stays `sending` with no worker, which the reaper leaves
/// alone); returns the ids that changed.
pub async fn settle(
    conn: &mut AsyncPgConnection,
    rows: &[SettledRow],
    worker_id: &str,
    now: DateTime<Utc>,
) -> QueryResult<Vec<Uuid>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let changed: Vec<Id> = diesel::sql_query(ending_leases!(
        "UPDATE messages m SET status = t.status, last_error = t.error, \
                                 lease_expires_at = NULL, \
                                 worker_id = CASE WHEN t.status = 'sending' THEN NULL \
                                                  ELSE m.worker_id END, \
                                 updated_at = $5 \
             FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS t(id, status, error) \
            WHERE m.id = t.id AND m.status = 'sending' AND m.worker_id = $4 \
           RETURNING m.id"
    ))
    .bind::<Array<SqlUuid>, _>(rows.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.outcome.status()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.error.as_str()).collect::<Vec<_>>())
    .bind::<Text, _>(worker_id)
    .bind::<Timestamptz, _>(now)
    .prepared()
    .load(conn)
    .await?;
    Ok(changed.into_iter().map(|c| c.id).collect())
}

/// A mailbox [`mark_mailboxes_failing`] put in `error`.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct FailedMailbox {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    /// For the event's envelope.
    #[diesel(sql_type = SqlUuid)]
    pub workspace_id: Uuid,
    /// As now stored in its `status_reason`.
    #[diesel(sql_type = Text)]
    pub reason: String,
}

/// Puts mailboxes whose server refused the login or the sender in `error`, with the reason,
/// so the scheduler stops choosing them until someone fixes and re-checks them. Returns the
/// mailboxes whose status changed (each once, even if named twice): those already out of
/// `active`, by an earlier or concurrent failure, are not returned, so a caller announcing
/// them announces each change once.
pub async fn mark_mailboxes_failing(
    conn: &mut AsyncPgConnection,
    failing: &[(Uuid, String)],
    now: DateTime<Utc>,
) -> QueryResult<Vec<FailedMailbox>> {
    if failing.is_empty() {
        return Ok(Vec::new());
    }
    diesel::sql_query(
        "UPDATE mailboxes mb SET status = 'error', status_reason = t.reason, updated_at = $3 \
           FROM UNNEST($1::uuid[], $2::text[]) AS t(id, reason) \
          WHERE mb.id = t.id AND mb.status = 'active' \
         RETURNING mb.id, mb.workspace_id, t.reason AS reason",
    )
    .bind::<Array<SqlUuid>, _>(failing.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(failing.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>())
    .bind::<Timestamptz, _>(now)
    .prepared()
    .load(conn)
    .await
}

/// A message whose lease ran out while it was `sending`.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Abandoned {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Nullable<Text>)]
    pub worker_id: Option<String>,
}

/// Declares `unknown` the messages whose worker held them past their lease (it died, or
/// lost its database, between claiming and recording): they may have reached the server, so
/// they are never sent again automatically.
///
/// Reads up to `limit` expired leases, skipping those (and messages) locked by a worker
/// recording its outcome right now; deletes them with the messages' change. A lease whose
/// message is gone or no longer `sending` (moved on by a path that holds no lease, or
/// deleted) is deleted without a word, so it cannot stand in the way of later ones.
pub async fn expire_leases(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<Abandoned>> {
    diesel::sql_query(
        "WITH due AS ( \
           SELECT message_id FROM message_leases WHERE lease_expires_at < $1 \
            ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED \
         ), held AS ( \
           SELECT m.id FROM messages m JOIN due ON due.message_id = m.id \
            WHERE m.status = 'sending' FOR UPDATE OF m SKIP LOCKED \
         ), expired AS ( \
           UPDATE messages m SET status = 'unknown', lease_expires_at = NULL, updated_at = $1, \
                  last_error = 'its worker stopped before recording the outcome; it may have \
                                been delivered, so it is not sent again' \
             FROM held WHERE m.id = held.id \
           RETURNING m.id, m.worker_id \
         ), released AS ( \
           DELETE FROM message_leases l USING due \
            WHERE l.message_id = due.message_id \
              AND (l.message_id IN (SELECT id FROM expired) \
                   OR NOT EXISTS (SELECT 1 FROM messages m \
                                   WHERE m.id = l.message_id AND m.status = 'sending')) \
         ) \
         SELECT id, worker_id FROM expired",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .prepared()
    .load(conn)
    .await
}
