//! Connected sending mailboxes. Passwords arrive here already encrypted (see
//! `crate::crypto`); the columns `*_password_encrypted` never hold plaintext.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{mailboxes, messages};

/// Values of `mailboxes.status`. `error` (a failed check or send) and `reconnect_required`
/// (the OAuth provider no longer accepts the grant) are set by the system only.
pub mod status {
    pub const ACTIVE: &str = "active";
    pub const PAUSED: &str = "paused";
    pub const ERROR: &str = "error";
    pub const DISABLED: &str = "disabled";
    pub const RECONNECT_REQUIRED: &str = "reconnect_required";
}

/// Associated data binding an encrypted SMTP password to its mailbox.
pub fn smtp_password_context(id: Uuid) -> String {
    format!("mailboxes.smtp_password:{id}")
}

/// Associated data binding an encrypted IMAP password to its mailbox.
pub fn imap_password_context(id: Uuid) -> String {
    format!("mailboxes.imap_password:{id}")
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = mailboxes)]
pub struct Mailbox {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub email: String,
    pub display_name: Option<String>,
    pub smtp_host: String,
    pub smtp_port: i32,
    pub smtp_security: String,
    pub smtp_username: Option<String>,
    pub smtp_password_encrypted: Option<Vec<u8>>,
    pub imap_host: Option<String>,
    pub imap_port: Option<i32>,
    pub imap_security: Option<String>,
    pub imap_username: Option<String>,
    pub imap_password_encrypted: Option<Vec<u8>>,
    pub daily_limit: i32,
    pub warmup_enabled: bool,
    pub warmup_start_limit: i32,
    pub warmup_daily_increase: i32,
    pub warmup_started_on: Option<NaiveDate>,
    pub min_interval_seconds: i32,
    pub max_jitter_seconds: i32,
    pub timezone: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub last_sent_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the sender worker next re-checks a mailbox in `error` (see `db::mailbox_health`).
    pub next_check_at: Option<DateTime<Utc>>,
    /// Automatic re-checks that failed since the mailbox entered `error`.
    pub check_failures: i32,
    pub max_bounce_rate: f64,
    pub max_complaint_rate: f64,
}

/// Every column a client's settings determine: written whole on insert and on update
/// (`None` writes NULL), so an update is "read, merge, write back".
#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = mailboxes, treat_none_as_null = true)]
pub struct MailboxValues {
    pub email: String,
    pub display_name: Option<String>,
    pub smtp_host: String,
    pub smtp_port: i32,
    pub smtp_security: String,
    pub smtp_username: Option<String>,
    pub smtp_password_encrypted: Option<Vec<u8>>,
    pub imap_host: Option<String>,
    pub imap_port: Option<i32>,
    pub imap_security: Option<String>,
    pub imap_username: Option<String>,
    pub imap_password_encrypted: Option<Vec<u8>>,
    pub daily_limit: i32,
    pub warmup_enabled: bool,
    pub warmup_start_limit: i32,
    pub warmup_daily_increase: i32,
    pub warmup_started_on: Option<NaiveDate>,
    pub min_interval_seconds: i32,
    pub max_jitter_seconds: i32,
    pub timezone: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub max_bounce_rate: f64,
    pub max_complaint_rate: f64,
}

impl From<Mailbox> for MailboxValues {
    fn from(m: Mailbox) -> Self {
        Self {
            email: m.email,
            display_name: m.display_name,
            smtp_host: m.smtp_host,
            smtp_port: m.smtp_port,
            smtp_security: m.smtp_security,
            smtp_username: m.smtp_username,
            smtp_password_encrypted: m.smtp_password_encrypted,
            imap_host: m.imap_host,
            imap_port: m.imap_port,
            imap_security: m.imap_security,
            imap_username: m.imap_username,
            imap_password_encrypted: m.imap_password_encrypted,
            daily_limit: m.daily_limit,
            warmup_enabled: m.warmup_enabled,
            warmup_start_limit: m.warmup_start_limit,
            warmup_daily_increase: m.warmup_daily_increase,
            warmup_started_on: m.warmup_started_on,
            min_interval_seconds: m.min_interval_seconds,
            max_jitter_seconds: m.max_jitter_seconds,
            timezone: m.timezone,
            status: m.status,
            status_reason: m.status_reason,
            max_bounce_rate: m.max_bounce_rate,
            max_complaint_rate: m.max_complaint_rate,
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = mailboxes)]
pub struct NewMailbox {
    pub id: Uuid,
    pub workspace_id: Uuid,
    #[diesel(embed)]
    pub values: MailboxValues,
}

/// The name of the constraint that makes an address unique in a workspace.
pub const UNIQUE_EMAIL_CONSTRAINT: &str = "mailboxes_workspace_id_email_key";

pub async fn insert(conn: &mut AsyncPgConnection, new: &NewMailbox) -> QueryResult<Mailbox> {
    diesel::insert_into(mailboxes::table)
        .values(new)
        .returning(Mailbox::as_returning())
        .get_result(conn)
        .await
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
) -> QueryResult<Option<Mailbox>> {
    mailboxes::table
        .find(id)
        .filter(mailboxes::workspace_id.eq(workspace_id))
        .select(Mailbox::as_select())
        .first(conn)
        .await
        .optional()
}

/// Like [`find`], locking the row until the caller's transaction ends.
pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
) -> QueryResult<Option<Mailbox>> {
    mailboxes::table
        .find(id)
        .filter(mailboxes::workspace_id.eq(workspace_id))
        .select(Mailbox::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// A page of the workspace's mailboxes in id (creation) order, after `after` when given.
pub async fn list(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<Mailbox>> {
    let mut query = mailboxes::table
        .filter(mailboxes::workspace_id.eq(workspace_id))
        .select(Mailbox::as_select())
        .order(mailboxes::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(mailboxes::id.gt(after));
    }
    query.load(conn).await
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
    values: &MailboxValues,
) -> QueryResult<Option<Mailbox>> {
    diesel::update(mailboxes::table.find(id))
        .filter(mailboxes::workspace_id.eq(workspace_id))
        .set(values)
        .returning(Mailbox::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// What [`delete`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Yes,
    NotFound,
    /// Messages were sent (or queued) from it; deleting would erase their history.
    HasMessages,
}

/// Deletes a mailbox that no message refers to (messages would cascade with it).
pub async fn delete(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
) -> QueryResult<Deleted> {
    let used = diesel::dsl::exists(messages::table.filter(messages::mailbox_id.eq(id)));
    let deleted = diesel::delete(mailboxes::table.find(id))
        .filter(mailboxes::workspace_id.eq(workspace_id))
        .filter(diesel::dsl::not(used))
        .execute(conn)
        .await?;
    if deleted == 1 {
        return Ok(Deleted::Yes);
    }
    Ok(match find(conn, workspace_id, id).await? {
        Some(_) => Deleted::HasMessages,
        None => Deleted::NotFound,
    })
}

/// Records the outcome of a check of the mailbox's servers, unless its settings changed
/// since `seen_at` (the check was then about settings that no longer exist):
/// a failure moves `active` (or `error`) to `error` with `reason`; a success moves `error`
/// back to `active`. `paused` and `disabled`, the client's choices, stay. A person's check
/// starts the automatic re-checks over (`next_check_at`, `check_failures`). Returns the row.
pub async fn record_check(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
    seen_at: DateTime<Utc>,
    failure: Option<&str>,
) -> QueryResult<Option<Mailbox>> {
    let row = mailboxes::table
        .find(id)
        .filter(mailboxes::workspace_id.eq(workspace_id))
        .filter(mailboxes::updated_at.eq(seen_at));
    match failure {
        Some(reason) => {
            diesel::update(row.filter(mailboxes::status.eq_any([status::ACTIVE, status::ERROR])))
                .set((
                    mailboxes::status.eq(status::ERROR),
                    mailboxes::status_reason.eq(reason),
                    mailboxes::next_check_at.eq(None::<DateTime<Utc>>),
                    mailboxes::check_failures.eq(0),
                ))
                .execute(conn)
                .await?
        }
        None => {
            diesel::update(row.filter(mailboxes::status.eq(status::ERROR)))
                .set((
                    mailboxes::status.eq(status::ACTIVE),
                    mailboxes::status_reason.eq(None::<String>),
                ))
                .execute(conn)
                .await?
        }
    };
    find(conn, workspace_id, id).await
}
