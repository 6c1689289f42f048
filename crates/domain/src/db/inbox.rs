//! The inbox watcher's statements: leases on mailboxes (exactly one replica reads each), the
//! read position per folder of a mailbox, the watch's status as the API shows it, and
//! finding the sent message an inbound email is about.
//!
//! Every write of a replica is fenced by its lease: progress is saved only while the row
//! still names this replica as owner with an unexpired lease, so a replica that stalled past
//! its lease (and was replaced) cannot move the position the new owner reads from.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Uuid as SqlUuid;
use diesel::sql_types::{Array, BigInt, Bytea, Int4, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// Where mailboxes that can be watched are: IMAP configured with a password or an OAuth
/// grant, and neither disabled nor waiting for a reconnect (its grant is gone). Paused
/// mailboxes and mailboxes whose sending failed are still read, since answers to what they
/// sent before still matter.
const WATCHABLE: &str = "m.imap_host IS NOT NULL AND m.imap_username IS NOT NULL \
                         AND (m.imap_password_encrypted IS NOT NULL \
                              OR EXISTS (SELECT 1 FROM mailbox_oauth o WHERE o.mailbox_id = m.id)) \
                         AND m.status NOT IN ('disabled', 'reconnect_required')";

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[derive(Debug, QueryableByName)]
struct MailboxIdRow {
    #[diesel(sql_type = SqlUuid)]
    mailbox_id: Uuid,
}

/// Creates the watch rows of watchable mailboxes that have none yet.
pub async fn add_missing(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    diesel::sql_query(format!(
        "INSERT INTO inbox_watches (mailbox_id) \
         SELECT m.id FROM mailboxes m \
          WHERE {WATCHABLE} \
            AND NOT EXISTS (SELECT 1 FROM inbox_watches w WHERE w.mailbox_id = m.id) \
         ON CONFLICT DO NOTHING"
    ))
    .execute(conn)
    .await
}

/// Extends `owner`'s unexpired leases on mailboxes that are still watchable and returns
/// them; leases on mailboxes no longer watchable (IMAP removed, disabled) are released.
/// A mailbox missing from the result is no longer this replica's to read.
pub async fn renew(
    conn: &mut AsyncPgConnection,
    owner: &str,
    lease: Duration,
) -> QueryResult<Vec<Uuid>> {
    diesel::sql_query(format!(
        "UPDATE inbox_watches w SET owner = NULL, lease_expires_at = NULL \
          WHERE w.owner = $1 \
            AND NOT EXISTS (SELECT 1 FROM mailboxes m WHERE m.id = w.mailbox_id AND {WATCHABLE})"
    ))
    .bind::<Text, _>(owner)
    .execute(conn)
    .await?;
    let rows: Vec<MailboxIdRow> = diesel::sql_query(
        "UPDATE inbox_watches \
            SET lease_expires_at = now() + $2 * interval '1 millisecond' \
          WHERE owner = $1 AND lease_expires_at > now() \
         RETURNING mailbox_id",
    )
    .bind::<Text, _>(owner)
    .bind::<BigInt, _>(millis(lease))
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.mailbox_id).collect())
}

/// Takes up to `limit` watchable mailboxes nobody holds (never held, released, or whose
/// holder's lease expired). Concurrent claimers skip each other's rows, so no mailbox is
/// handed to two replicas.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    owner: &str,
    lease: Duration,
    limit: u32,
) -> QueryResult<Vec<Uuid>> {
    let rows: Vec<MailboxIdRow> = diesel::sql_query(format!(
        "UPDATE inbox_watches w \
            SET owner = $1, lease_expires_at = now() + $2 * interval '1 millisecond' \
          WHERE w.mailbox_id IN ( \
                SELECT c.mailbox_id FROM inbox_watches c \
                  JOIN mailboxes m ON m.id = c.mailbox_id \
                 WHERE (c.lease_expires_at IS NULL OR c.lease_expires_at <= now()) \
                   AND {WATCHABLE} \
                 ORDER BY c.lease_expires_at NULLS FIRST, c.mailbox_id \
                 LIMIT $3 \
                   FOR UPDATE OF c SKIP LOCKED) \
         RETURNING w.mailbox_id"
    ))
    .bind::<Text, _>(owner)
    .bind::<BigInt, _>(millis(lease))
    .bind::<BigInt, _>(i64::from(limit))
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.mailbox_id).collect())
}

/// Drops a mailbox's watch (its IMAP settings changed): the replica reading it stops at its
/// next renewal, and the mailbox is claimed afresh and read from the start.
pub async fn forget(conn: &mut AsyncPgConnection, mailbox_id: Uuid) -> QueryResult<usize> {
    diesel::delete(
        super::schema::inbox_watches::table
            .filter(super::schema::inbox_watches::mailbox_id.eq(mailbox_id)),
    )
    .execute(conn)
    .await
}

/// Gives leases up (at shutdown), so another replica takes the mailboxes over at once.
pub async fn release(
    conn: &mut AsyncPgConnection,
    owner: &str,
    mailbox_ids: &[Uuid],
) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE inbox_watches SET owner = NULL, lease_expires_at = NULL \
          WHERE owner = $1 AND mailbox_id = ANY($2)",
    )
    .bind::<Text, _>(owner)
    .bind::<Array<SqlUuid>, _>(mailbox_ids)
    .execute(conn)
    .await
}

/// A mailbox to read, with its IMAP settings (password still encrypted); its read positions
/// are per folder ([`positions`]).
#[derive(Debug, Clone, QueryableByName)]
pub struct WatchedMailbox {
    #[diesel(sql_type = SqlUuid)]
    pub mailbox_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub workspace_id: Uuid,
    #[diesel(sql_type = Text)]
    pub email: String,
    #[diesel(sql_type = Text)]
    pub imap_host: String,
    #[diesel(sql_type = Int4)]
    pub imap_port: i32,
    #[diesel(sql_type = Text)]
    pub imap_security: String,
    #[diesel(sql_type = Text)]
    pub imap_username: String,
    /// `None` for a mailbox connected with OAuth.
    #[diesel(sql_type = Nullable<Bytea>)]
    pub imap_password_encrypted: Option<Vec<u8>>,
    /// Connected with OAuth: logs in with an access token (XOAUTH2).
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub oauth: bool,
    /// When this mailbox first sent an email (nothing before it can answer us).
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub first_sent_at: Option<DateTime<Utc>>,
}

/// The mailbox, if `owner` holds its lease and it is still watchable.
pub async fn load(
    conn: &mut AsyncPgConnection,
    mailbox_id: Uuid,
    owner: &str,
) -> QueryResult<Option<WatchedMailbox>> {
    diesel::sql_query(format!(
        "SELECT m.id AS mailbox_id, m.workspace_id, m.email, m.imap_host, m.imap_port, \
                COALESCE(m.imap_security, 'tls') AS imap_security, m.imap_username, \
                m.imap_password_encrypted, \
                EXISTS (SELECT 1 FROM mailbox_oauth o WHERE o.mailbox_id = m.id) AS oauth, \
                (SELECT f.first_sent_at FROM mailbox_first_sends f WHERE f.mailbox_id = m.id) \
                  AS first_sent_at \
           FROM inbox_watches w JOIN mailboxes m ON m.id = w.mailbox_id \
          WHERE w.mailbox_id = $1 AND w.owner = $2 AND w.lease_expires_at > now() AND {WATCHABLE}"
    ))
    .bind::<SqlUuid, _>(mailbox_id)
    .bind::<Text, _>(owner)
    .get_result(conn)
    .await
    .optional()
}

/// How far one folder of a mailbox has been read.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct FolderPosition {
    #[diesel(sql_type = Text)]
    pub folder: String,
    #[diesel(sql_type = BigInt)]
    pub uid_validity: i64,
    #[diesel(sql_type = BigInt)]
    pub last_uid: i64,
}

/// The read positions of the mailbox's folders (none for a folder never read).
pub async fn positions(
    conn: &mut AsyncPgConnection,
    mailbox_id: Uuid,
) -> QueryResult<Vec<FolderPosition>> {
    diesel::sql_query(
        "SELECT folder, uid_validity, last_uid FROM inbox_folder_positions \
          WHERE mailbox_id = $1 ORDER BY folder",
    )
    .bind::<SqlUuid, _>(mailbox_id)
    .load(conn)
    .await
}

/// Moves the read position of one folder, if `owner` still holds the mailbox's lease: false
/// when it does not (the caller's transaction must then roll back what it wrote with it).
/// The lease check locks the watch row, so a takeover waits for this transaction.
pub async fn advance(
    conn: &mut AsyncPgConnection,
    mailbox_id: Uuid,
    owner: &str,
    folder: &str,
    uid_validity: i64,
    last_uid: i64,
) -> QueryResult<bool> {
    let ours = diesel::sql_query(
        "UPDATE inbox_watches SET last_checked_at = now() \
          WHERE mailbox_id = $1 AND owner = $2 AND lease_expires_at > now()",
    )
    .bind::<SqlUuid, _>(mailbox_id)
    .bind::<Text, _>(owner)
    .execute(conn)
    .await?
        == 1;
    if !ours {
        return Ok(false);
    }
    diesel::sql_query(
        "INSERT INTO inbox_folder_positions (mailbox_id, folder, uid_validity, last_uid) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (mailbox_id, folder) DO UPDATE \
            SET uid_validity = EXCLUDED.uid_validity, last_uid = EXCLUDED.last_uid",
    )
    .bind::<SqlUuid, _>(mailbox_id)
    .bind::<Text, _>(folder)
    .bind::<BigInt, _>(uid_validity)
    .bind::<BigInt, _>(last_uid)
    .execute(conn)
    .await?;
    Ok(true)
}

/// The watch's state: `connecting` (kept as `error` while a failing mailbox is retried, so
/// the API goes on showing the failure), or a healthy `idle` / `polling`, which clears the
/// last error.
pub async fn set_status(
    conn: &mut AsyncPgConnection,
    mailbox_id: Uuid,
    owner: &str,
    status: &str,
) -> QueryResult<bool> {
    let sql = if status == "connecting" {
        "UPDATE inbox_watches \
            SET status = CASE WHEN status = 'error' THEN status ELSE $3 END \
          WHERE mailbox_id = $1 AND owner = $2"
    } else {
        "UPDATE inbox_watches \
            SET status = $3, last_error = NULL, consecutive_failures = 0, \
                last_checked_at = now() \
          WHERE mailbox_id = $1 AND owner = $2"
    };
    diesel::sql_query(sql)
        .bind::<SqlUuid, _>(mailbox_id)
        .bind::<Text, _>(owner)
        .bind::<Text, _>(status)
        .execute(conn)
        .await
        .map(|n| n == 1)
}

/// A failed connection or command: `error` with what went wrong (already redacted);
/// returns the number of failures in a row.
pub async fn record_failure(
    conn: &mut AsyncPgConnection,
    mailbox_id: Uuid,
    owner: &str,
    error: &str,
) -> QueryResult<Option<i32>> {
    #[derive(QueryableByName)]
    struct Failures {
        #[diesel(sql_type = Int4)]
        consecutive_failures: i32,
    }
    let row: Option<Failures> = diesel::sql_query(
        "UPDATE inbox_watches \
            SET status = 'error', last_error = $3, \
                consecutive_failures = consecutive_failures + 1 \
          WHERE mailbox_id = $1 AND owner = $2 \
         RETURNING consecutive_failures",
    )
    .bind::<SqlUuid, _>(mailbox_id)
    .bind::<Text, _>(owner)
    .bind::<Text, _>(error)
    .get_result(conn)
    .await
    .optional()?;
    Ok(row.map(|r| r.consecutive_failures))
}

/// Puts the mailbox in `error` with `reason` while `owner` holds its lease, when it is
/// `active` (`paused` and `disabled` are the owner's choice): for what the owner must fix,
/// such as an IMAP host the outbound guard refuses. Like any mailbox in `error`, the
/// scheduler stops choosing it until its settings change or a verify succeeds; it is still
/// watched. The mailbox's workspace when the status changed (for its announcement), `None`
/// when it did not (already in `error`, say, from the previous failure).
pub async fn mark_mailbox_failing(
    conn: &mut AsyncPgConnection,
    mailbox_id: Uuid,
    owner: &str,
    reason: &str,
) -> QueryResult<Option<Uuid>> {
    #[derive(QueryableByName)]
    struct Workspace {
        #[diesel(sql_type = SqlUuid)]
        workspace_id: Uuid,
    }
    let changed: Option<Workspace> = diesel::sql_query(
        "UPDATE mailboxes m SET status = 'error', status_reason = $3 \
           FROM inbox_watches w \
          WHERE m.id = $1 AND w.mailbox_id = m.id AND w.owner = $2 \
            AND w.lease_expires_at > now() AND m.status = 'active' \
         RETURNING m.workspace_id",
    )
    .bind::<SqlUuid, _>(mailbox_id)
    .bind::<Text, _>(owner)
    .bind::<Text, _>(reason)
    .get_result(conn)
    .await
    .optional()?;
    Ok(changed.map(|c| c.workspace_id))
}

/// What the API shows of a mailbox's watch.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = super::schema::inbox_watches)]
pub struct WatchState {
    pub mailbox_id: Uuid,
    pub status: String,
    pub last_error: Option<String>,
    pub consecutive_failures: i32,
    pub last_checked_at: Option<DateTime<Utc>>,
}

pub async fn states(
    conn: &mut AsyncPgConnection,
    mailbox_ids: &[Uuid],
) -> QueryResult<Vec<WatchState>> {
    use super::schema::inbox_watches::dsl;
    dsl::inbox_watches
        .filter(dsl::mailbox_id.eq_any(mailbox_ids))
        .select(WatchState::as_select())
        .load(conn)
        .await
}

/// A sent message an inbound email may be about.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct SentMessage {
    #[diesel(sql_type = SqlUuid)]
    pub message_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub enrollment_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub mailbox_id: Uuid,
    #[diesel(sql_type = Nullable<Text>)]
    pub message_id_header: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub subject: Option<String>,
    #[diesel(sql_type = Text)]
    pub contact_email: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub sent_at: Option<DateTime<Utc>>,
}

const SENT_COLUMNS: &str = "m.id AS message_id, m.enrollment_id, m.mailbox_id, \
                            m.message_id_header, m.subject, c.email AS contact_email, m.sent_at";

/// The workspace's messages whose id is one of `ids`: the ids read out of the references of
/// an inbound email (our Message-IDs are `<message id@domain>`, a database check keeps them
/// so, which also makes a match survive a client that changed the domain's case).
pub async fn sent_by_id(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    ids: &[Uuid],
) -> QueryResult<Vec<SentMessage>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    diesel::sql_query(format!(
        "SELECT {SENT_COLUMNS} FROM messages m JOIN contacts c ON c.id = m.contact_id \
          WHERE m.workspace_id = $1 AND m.id = ANY($2)"
    ))
    .bind::<SqlUuid, _>(workspace_id)
    .bind::<Array<SqlUuid>, _>(ids)
    .load(conn)
    .await
}

/// The messages this mailbox sent to `email` (in its workspace), newest first.
pub async fn sent_to(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    mailbox_id: Uuid,
    email: &str,
    limit: i64,
) -> QueryResult<Vec<SentMessage>> {
    diesel::sql_query(format!(
        "SELECT {SENT_COLUMNS} FROM contacts c \
           JOIN enrollments e ON e.contact_id = c.id \
           JOIN messages m ON m.enrollment_id = e.id \
          WHERE c.workspace_id = $1 AND c.email = $3 AND m.mailbox_id = $2 \
            AND m.sent_at IS NOT NULL \
          ORDER BY m.sent_at DESC \
          LIMIT $4"
    ))
    .bind::<SqlUuid, _>(workspace_id)
    .bind::<SqlUuid, _>(mailbox_id)
    .bind::<Text, _>(email)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}
