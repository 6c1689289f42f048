//! Contacts of a workspace: set-based upserts (one statement per batch, never one per row),
//! cursor listing, reads, partial updates and deletes. Every function is scoped to a workspace.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Jsonb, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::contacts;

/// Values of `contacts.status` (a CHECK constraint holds the column to them).
pub const STATUSES: [&str; 4] = ["active", "unsubscribed", "bounced", "complained"];

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = contacts)]
pub struct Contact {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    pub title: Option<String>,
    pub timezone: Option<String>,
    pub attributes: serde_json::Value,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One contact to insert or update, already validated and normalised by the caller: `email`
/// lower-cased, empty strings as `None`, `attributes` a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactUpsert {
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    pub title: Option<String>,
    pub timezone: Option<String>,
    pub attributes: serde_json::Value,
}

/// What an upsert did to one email.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct UpsertOutcome {
    #[diesel(sql_type = Text)]
    pub email: String,
    /// True for a new contact, false for an update of an existing one.
    #[diesel(sql_type = Bool)]
    pub inserted: bool,
}

/// The upsert shared by [`upsert_many`] and [`upsert_one`]; `{returning}` is filled in.
///
/// Merge rules for an existing contact: a field given as NULL keeps the stored value (an
/// upsert never clears anything); `attributes` are merged key by key, given keys overwriting.
/// The `WHERE` makes a row this very transaction already wrote (an earlier statement of the
/// same import) stay as it is and not come back in `RETURNING`: first write wins, and the
/// caller learns which emails were duplicates.
const UPSERT_SQL: &str = "\
INSERT INTO contacts AS c \
    (id, workspace_id, email, first_name, last_name, company, title, timezone, attributes) \
SELECT t.id, $1, t.email, t.first_name, t.last_name, t.company, t.title, t.timezone, t.attributes \
  FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
              $8::text[], $9::jsonb[]) \
       AS t(id, email, first_name, last_name, company, title, timezone, attributes) \
ON CONFLICT (workspace_id, email) DO UPDATE SET \
    first_name = COALESCE(EXCLUDED.first_name, c.first_name), \
    last_name = COALESCE(EXCLUDED.last_name, c.last_name), \
    company = COALESCE(EXCLUDED.company, c.company), \
    title = COALESCE(EXCLUDED.title, c.title), \
    timezone = COALESCE(EXCLUDED.timezone, c.timezone), \
    attributes = c.attributes || EXCLUDED.attributes \
 WHERE c.updated_at <> now() \
RETURNING ";

macro_rules! upsert_query {
    ($workspace_id:expr, $rows:expr, $returning:expr) => {{
        let rows = $rows;
        let ids: Vec<Uuid> = rows.iter().map(|_| Uuid::now_v7()).collect();
        diesel::sql_query(format!("{UPSERT_SQL}{}", $returning))
            .bind::<diesel::sql_types::Uuid, _>($workspace_id)
            .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
            .bind::<Array<Text>, _>(rows.iter().map(|r| r.email.as_str()).collect::<Vec<_>>())
            .bind::<Array<Nullable<Text>>, _>(column(rows, |r| &r.first_name))
            .bind::<Array<Nullable<Text>>, _>(column(rows, |r| &r.last_name))
            .bind::<Array<Nullable<Text>>, _>(column(rows, |r| &r.company))
            .bind::<Array<Nullable<Text>>, _>(column(rows, |r| &r.title))
            .bind::<Array<Nullable<Text>>, _>(column(rows, |r| &r.timezone))
            .bind::<Array<Jsonb>, _>(rows.iter().map(|r| &r.attributes).collect::<Vec<_>>())
    }};
}

fn column<'a>(
    rows: &'a [ContactUpsert],
    field: impl Fn(&'a ContactUpsert) -> &'a Option<String>,
) -> Vec<Option<&'a str>> {
    rows.iter().map(|r| field(r).as_deref()).collect()
}

/// Inserts or updates many contacts in one statement. `rows` must not repeat an email (the
/// database cannot touch one row twice in a statement). Returns one outcome per email
/// written; an email missing from the result was already written earlier in the caller's
/// transaction and was left as that write made it.
pub async fn upsert_many(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    rows: &[ContactUpsert],
) -> QueryResult<Vec<UpsertOutcome>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    upsert_query!(workspace_id, rows, "c.email, (c.xmax = 0) AS inserted")
        .load(conn)
        .await
}

/// Like [`upsert_many`], but returns what enrolling needs of each contact written (id, email,
/// status) instead of whether it is new, so no second lookup by email is needed.
pub async fn upsert_many_keys(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    rows: &[ContactUpsert],
) -> QueryResult<Vec<ContactKey>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    upsert_query!(workspace_id, rows, "c.id, c.email, c.status")
        .load(conn)
        .await
}

#[derive(QueryableByName)]
struct UpsertedContact {
    #[diesel(embed)]
    contact: Contact,
    #[diesel(sql_type = Bool)]
    inserted: bool,
}

/// Inserts or updates one contact (same rules as [`upsert_many`]); the stored contact and
/// whether it is new. `None` only when this transaction already wrote that email.
pub async fn upsert_one(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    row: &ContactUpsert,
) -> QueryResult<Option<(Contact, bool)>> {
    let rows = std::slice::from_ref(row);
    let found: Option<UpsertedContact> =
        upsert_query!(workspace_id, rows, "c.*, (c.xmax = 0) AS inserted")
            .get_result(conn)
            .await
            .optional()?;
    Ok(found.map(|u| (u.contact, u.inserted)))
}

/// Listing filters; `None` means any.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContactFilter<'a> {
    /// Exact, already normalised (lower-case) address.
    pub email: Option<&'a str>,
    pub status: Option<&'a str>,
}

/// Contacts in id order (creation order) after `after`, at most `limit`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    filter: ContactFilter<'_>,
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<Contact>> {
    let mut query = contacts::table
        .filter(contacts::workspace_id.eq(workspace_id))
        .select(Contact::as_select())
        .order(contacts::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(email) = filter.email {
        query = query.filter(contacts::email.eq(email));
    }
    if let Some(status) = filter.status {
        query = query.filter(contacts::status.eq(status));
    }
    if let Some(after) = after {
        query = query.filter(contacts::id.gt(after));
    }
    query.load(conn).await
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
) -> QueryResult<Option<Contact>> {
    contacts::table
        .find(id)
        .filter(contacts::workspace_id.eq(workspace_id))
        .select(Contact::as_select())
        .first(conn)
        .await
        .optional()
}

/// A partial update: `None` leaves a column alone, `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = contacts)]
pub struct ContactChanges<'a> {
    pub email: Option<&'a str>,
    pub first_name: Option<Option<&'a str>>,
    pub last_name: Option<Option<&'a str>>,
    pub company: Option<Option<&'a str>>,
    pub title: Option<Option<&'a str>>,
    pub timezone: Option<Option<&'a str>>,
    pub attributes: Option<&'a serde_json::Value>,
}

impl ContactChanges<'_> {
    pub fn is_empty(&self) -> bool {
        self.email.is_none()
            && self.first_name.is_none()
            && self.last_name.is_none()
            && self.company.is_none()
            && self.title.is_none()
            && self.timezone.is_none()
            && self.attributes.is_none()
    }
}

/// Applies `changes` to a contact of this workspace; `None` when there is no such contact.
/// A new email already used by another contact fails with a unique violation.
pub async fn update(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
    changes: &ContactChanges<'_>,
) -> QueryResult<Option<Contact>> {
    if changes.is_empty() {
        return find(conn, workspace_id, id).await;
    }
    diesel::update(contacts::table.find(id))
        .filter(contacts::workspace_id.eq(workspace_id))
        .set(changes)
        .returning(Contact::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Deletes a contact of this workspace (its enrollments and messages cascade); false when
/// there is no such contact.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
) -> QueryResult<bool> {
    diesel::delete(contacts::table.find(id))
        .filter(contacts::workspace_id.eq(workspace_id))
        .execute(conn)
        .await
        .map(|n| n == 1)
}

/// Id, email and status of contacts, for enrolling them.
#[derive(Debug, Clone, QueryableByName)]
pub struct ContactKey {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub email: String,
    #[diesel(sql_type = Text)]
    pub status: String,
}

/// The workspace's contacts among `emails` (normalised) and `ids`, in one query.
pub async fn keys(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    emails: &[String],
    ids: &[Uuid],
) -> QueryResult<Vec<ContactKey>> {
    diesel::sql_query(
        "SELECT id, email, status FROM contacts \
          WHERE workspace_id = $1 AND (email = ANY($2) OR id = ANY($3))",
    )
    .bind::<diesel::sql_types::Uuid, _>(workspace_id)
    .bind::<Array<Text>, _>(emails)
    .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
    .load(conn)
    .await
}

/// Which of `names` some contact of the workspace has (or had) as an attribute.
pub async fn known_attribute_keys(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    names: &[String],
) -> QueryResult<Vec<String>> {
    use super::schema::contact_attribute_keys as keys;
    if names.is_empty() {
        return Ok(Vec::new());
    }
    keys::table
        .filter(keys::workspace_id.eq(workspace_id))
        .filter(keys::key.eq_any(names))
        .select(keys::key)
        .load(conn)
        .await
}
