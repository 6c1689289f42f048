//! Sequences and their mailbox rotation pools.

use chrono::{DateTime, NaiveTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{enrollments, mailboxes, sequence_mailboxes, sequences};

pub const STATUSES: [&str; 4] = ["draft", "active", "paused", "archived"];

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sequences)]
pub struct Sequence {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub status: String,
    pub open_tracking_enabled: bool,
    pub click_tracking_enabled: bool,
    /// Click tracking also rewrites links whose visible text is a URL or a domain.
    pub track_url_text_links: bool,
    pub stop_on_reply: bool,
    pub stop_on_auto_reply: bool,
    pub unsubscribe_link: bool,
    pub tracking_domain: Option<String>,
    pub send_days: Vec<i16>,
    pub window_start: NaiveTime,
    pub window_end: NaiveTime,
    pub timezone: String,
    pub use_contact_timezone: bool,
    pub business_days_only: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = sequences)]
pub struct NewSequence<'a> {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: &'a str,
    pub open_tracking_enabled: bool,
    pub click_tracking_enabled: bool,
    /// Click tracking also rewrites links whose visible text is a URL or a domain.
    pub track_url_text_links: bool,
    pub stop_on_reply: bool,
    pub stop_on_auto_reply: bool,
    pub unsubscribe_link: bool,
    pub tracking_domain: Option<&'a str>,
    pub send_days: Vec<i16>,
    pub window_start: NaiveTime,
    pub window_end: NaiveTime,
    pub timezone: &'a str,
    pub use_contact_timezone: bool,
    pub business_days_only: bool,
}

/// Settings a client may change; `None` leaves a column as it is.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = sequences)]
pub struct SequenceChanges<'a> {
    pub name: Option<&'a str>,
    pub open_tracking_enabled: Option<bool>,
    pub click_tracking_enabled: Option<bool>,
    pub track_url_text_links: Option<bool>,
    pub stop_on_reply: Option<bool>,
    pub stop_on_auto_reply: Option<bool>,
    pub unsubscribe_link: Option<bool>,
    pub tracking_domain: Option<Option<&'a str>>,
    pub send_days: Option<Vec<i16>>,
    pub window_start: Option<NaiveTime>,
    pub window_end: Option<NaiveTime>,
    pub timezone: Option<&'a str>,
    pub use_contact_timezone: Option<bool>,
    pub business_days_only: Option<bool>,
}

pub async fn insert(conn: &mut AsyncPgConnection, new: &NewSequence<'_>) -> QueryResult<Sequence> {
    diesel::insert_into(sequences::table)
        .values(new)
        .returning(Sequence::as_returning())
        .get_result(conn)
        .await
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
) -> QueryResult<Option<Sequence>> {
    sequences::table
        .filter(sequences::workspace_id.eq(workspace_id))
        .filter(sequences::id.eq(id))
        .select(Sequence::as_select())
        .first(conn)
        .await
        .optional()
}

/// The sequence row locked for the rest of the transaction, so concurrent edits of its steps
/// and status serialise.
pub async fn lock(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
) -> QueryResult<Option<Sequence>> {
    sequences::table
        .filter(sequences::workspace_id.eq(workspace_id))
        .filter(sequences::id.eq(id))
        .select(Sequence::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// A page of the workspace's sequences in id (creation) order.
pub async fn list(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    status: Option<&str>,
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<Sequence>> {
    let mut query = sequences::table
        .filter(sequences::workspace_id.eq(workspace_id))
        .select(Sequence::as_select())
        .order(sequences::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(sequences::status.eq(status));
    }
    if let Some(after) = after {
        query = query.filter(sequences::id.gt(after));
    }
    query.load(conn).await
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: &SequenceChanges<'_>,
) -> QueryResult<Sequence> {
    diesel::update(sequences::table.find(id))
        .set(changes)
        .returning(Sequence::as_returning())
        .get_result(conn)
        .await
}

pub async fn set_status(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: &str,
) -> QueryResult<Sequence> {
    diesel::update(sequences::table.find(id))
        .set(sequences::status.eq(status))
        .returning(Sequence::as_returning())
        .get_result(conn)
        .await
}

pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    diesel::delete(sequences::table.find(id))
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn has_enrollments(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        enrollments::table.filter(enrollments::sequence_id.eq(id)),
    ))
    .get_result(conn)
    .await
}

/// Mailbox ids of each sequence's rotation pool, in the order they were added.
pub async fn mailbox_ids(
    conn: &mut AsyncPgConnection,
    sequence_ids: &[Uuid],
) -> QueryResult<Vec<(Uuid, Uuid)>> {
    sequence_mailboxes::table
        .filter(sequence_mailboxes::sequence_id.eq_any(sequence_ids))
        .order((
            sequence_mailboxes::created_at.asc(),
            sequence_mailboxes::mailbox_id.asc(),
        ))
        .select((
            sequence_mailboxes::sequence_id,
            sequence_mailboxes::mailbox_id,
        ))
        .load(conn)
        .await
}

/// Of `ids`, those that are mailboxes of this workspace.
pub async fn workspace_mailboxes(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    ids: &[Uuid],
) -> QueryResult<Vec<Uuid>> {
    mailboxes::table
        .filter(mailboxes::workspace_id.eq(workspace_id))
        .filter(mailboxes::id.eq_any(ids))
        .select(mailboxes::id)
        .load(conn)
        .await
}

/// Replaces the rotation pool.
pub async fn set_mailboxes(
    conn: &mut AsyncPgConnection,
    sequence_id: Uuid,
    mailbox_ids: &[Uuid],
) -> QueryResult<()> {
    diesel::delete(
        sequence_mailboxes::table.filter(sequence_mailboxes::sequence_id.eq(sequence_id)),
    )
    .execute(conn)
    .await?;
    let rows: Vec<_> = mailbox_ids
        .iter()
        .map(|mailbox_id| {
            (
                sequence_mailboxes::sequence_id.eq(sequence_id),
                sequence_mailboxes::mailbox_id.eq(*mailbox_id),
            )
        })
        .collect();
    diesel::insert_into(sequence_mailboxes::table)
        .values(rows)
        .execute(conn)
        .await
        .map(|_| ())
}
