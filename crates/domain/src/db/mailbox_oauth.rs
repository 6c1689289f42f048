//! The OAuth grants of mailboxes connected with Google or Microsoft (`mailbox_oauth`): the
//! refresh token, the current access token and its expiry, all encrypted (see
//! `crate::crypto`; the columns `*_encrypted` never hold plaintext). A row is what makes a
//! mailbox log in with XOAUTH2; `crate::oauth::access` keeps its access token fresh.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::mailboxes::status;
use super::schema::{mailbox_oauth, mailboxes};

/// Associated data binding an encrypted refresh token to its mailbox.
pub fn refresh_token_context(mailbox_id: Uuid) -> String {
    format!("mailbox_oauth.refresh_token:{mailbox_id}")
}

/// Associated data binding an encrypted access token to its mailbox.
pub fn access_token_context(mailbox_id: Uuid) -> String {
    format!("mailbox_oauth.access_token:{mailbox_id}")
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = mailbox_oauth)]
pub struct MailboxOAuth {
    pub mailbox_id: Uuid,
    /// `google` or `microsoft` (`OAuthConfig::PROVIDER_NAMES`).
    pub provider: String,
    pub connected_email: String,
    pub scopes: Vec<String>,
    pub refresh_token_encrypted: Vec<u8>,
    pub access_token_encrypted: Option<Vec<u8>>,
    pub access_token_expires_at: Option<DateTime<Utc>>,
    /// Incremented by every refresh and reconnect.
    pub generation: i64,
    pub refreshed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A grant as a connection (or reconnection) stores it.
#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = mailbox_oauth, treat_none_as_null = true)]
pub struct NewGrant {
    pub mailbox_id: Uuid,
    pub provider: String,
    pub connected_email: String,
    pub scopes: Vec<String>,
    pub refresh_token_encrypted: Vec<u8>,
    pub access_token_encrypted: Option<Vec<u8>>,
    pub access_token_expires_at: Option<DateTime<Utc>>,
    pub refreshed_at: Option<DateTime<Utc>>,
}

/// A grant with its mailbox's status, as the token users need them.
#[derive(Debug, Clone)]
pub struct GrantState {
    pub grant: MailboxOAuth,
    pub mailbox_status: String,
    pub status_reason: Option<String>,
}

/// The grant of `mailbox_id`, `None` when the mailbox logs in with a password.
pub async fn find(
    conn: &mut AsyncPgConnection,
    mailbox_id: Uuid,
) -> QueryResult<Option<MailboxOAuth>> {
    mailbox_oauth::table
        .find(mailbox_id)
        .select(MailboxOAuth::as_select())
        .first(conn)
        .await
        .optional()
}

/// The grants of those of `mailbox_ids` that have one.
pub async fn find_many(
    conn: &mut AsyncPgConnection,
    mailbox_ids: &[Uuid],
) -> QueryResult<Vec<MailboxOAuth>> {
    mailbox_oauth::table
        .filter(mailbox_oauth::mailbox_id.eq_any(mailbox_ids))
        .select(MailboxOAuth::as_select())
        .load(conn)
        .await
}

/// The grant and its mailbox's status; with `lock`, the grant row (not the mailbox's) stays
/// locked until the caller's transaction ends: the refresh lock, under which one replica
/// refreshes while the others wait for its result.
pub async fn state(
    conn: &mut AsyncPgConnection,
    mailbox_id: Uuid,
    lock: bool,
) -> QueryResult<Option<GrantState>> {
    let query = mailbox_oauth::table
        .find(mailbox_id)
        .select(MailboxOAuth::as_select());
    let grant = if lock {
        query.for_update().first(conn).await
    } else {
        query.first(conn).await
    };
    let Some(grant) = grant.optional()? else {
        return Ok(None);
    };
    let (mailbox_status, status_reason) = mailboxes::table
        .find(mailbox_id)
        .select((mailboxes::status, mailboxes::status_reason))
        .first::<(String, Option<String>)>(conn)
        .await?;
    Ok(Some(GrantState {
        grant,
        mailbox_status,
        status_reason,
    }))
}

/// The mailbox (and its workspace) connected to `provider`'s account `email`, if any.
pub async fn find_account(
    conn: &mut AsyncPgConnection,
    provider: &str,
    email: &str,
) -> QueryResult<Option<(Uuid, Uuid)>> {
    mailbox_oauth::table
        .inner_join(mailboxes::table)
        .filter(mailbox_oauth::provider.eq(provider))
        .filter(mailbox_oauth::connected_email.eq(email))
        .select((mailboxes::id, mailboxes::workspace_id))
        .first(conn)
        .await
        .optional()
}

/// Stores the grant of a new connection or a reconnection (which replaces every token and
/// counts as a new generation).
pub async fn upsert(conn: &mut AsyncPgConnection, grant: &NewGrant) -> QueryResult<MailboxOAuth> {
    diesel::insert_into(mailbox_oauth::table)
        .values(grant)
        .on_conflict(mailbox_oauth::mailbox_id)
        .do_update()
        .set((
            grant,
            mailbox_oauth::generation.eq(mailbox_oauth::generation + 1),
        ))
        .returning(MailboxOAuth::as_returning())
        .get_result(conn)
        .await
}

/// A refresh's result. `refresh_token_encrypted` is `Some` when the provider rotated it.
#[derive(Debug, Clone)]
pub struct Refreshed {
    pub access_token_encrypted: Vec<u8>,
    pub access_token_expires_at: Option<DateTime<Utc>>,
    pub refresh_token_encrypted: Option<Vec<u8>>,
    pub at: DateTime<Utc>,
}

/// Stores a refresh's tokens (the rotated refresh token with them, in the caller's
/// transaction) as the next generation; returns the row.
pub async fn store_refreshed(
    conn: &mut AsyncPgConnection,
    mailbox_id: Uuid,
    refreshed: &Refreshed,
) -> QueryResult<MailboxOAuth> {
    let row = mailbox_oauth::table.find(mailbox_id);
    let access = (
        mailbox_oauth::access_token_encrypted.eq(Some(&refreshed.access_token_encrypted)),
        mailbox_oauth::access_token_expires_at.eq(refreshed.access_token_expires_at),
        mailbox_oauth::generation.eq(mailbox_oauth::generation + 1),
        mailbox_oauth::refreshed_at.eq(Some(refreshed.at)),
    );
    match &refreshed.refresh_token_encrypted {
        Some(rotated) => {
            diesel::update(row)
                .set((access, mailbox_oauth::refresh_token_encrypted.eq(rotated)))
                .returning(MailboxOAuth::as_returning())
                .get_result(conn)
                .await
        }
        None => {
            diesel::update(row)
                .set(access)
                .returning(MailboxOAuth::as_returning())
                .get_result(conn)
                .await
        }
    }
}

/// Puts the mailbox in `reconnect_required` with `reason`, from `active` or `error`
/// (`paused` and `disabled`, the client's choices, stay). Its workspace when the status
/// changed.
pub async fn require_reconnect(
    conn: &mut AsyncPgConnection,
    mailbox_id: Uuid,
    reason: &str,
) -> QueryResult<Option<Uuid>> {
    diesel::update(mailboxes::table.find(mailbox_id))
        .filter(mailboxes::status.eq_any([status::ACTIVE, status::ERROR]))
        .set((
            mailboxes::status.eq(status::RECONNECT_REQUIRED),
            mailboxes::status_reason.eq(Some(reason)),
        ))
        .returning(mailboxes::workspace_id)
        .get_result(conn)
        .await
        .optional()
}
