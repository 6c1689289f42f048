//! Suppressions: addresses, or whole domains, a workspace must never email.
//!
//! An address entry stores the lower-cased address (`jane@example.com`); a domain entry
//! stores `@` followed by the lower-cased domain (`@example.com`), which no address can be,
//! and suppresses every address whose part after the `@` is exactly that domain (subdomains
//! are not included). [`is_suppressed`] and [`suppressed_among`] are what enrollment and
//! sending check: a suppressed address is never enrolled and never sent to.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::prepared::PreparedExt as _;
use uuid::Uuid;

use super::schema::suppressions;

/// Values of `suppressions.reason` (a CHECK constraint holds the column to them).
pub const REASONS: [&str; 4] = ["unsubscribed", "bounced", "complained", "manual"];

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = suppressions)]
pub struct Suppression {
    pub id: Uuid,
    pub workspace_id: Uuid,
    /// An address, or `@domain` for a whole domain (see [`domain_of_entry`]).
    pub email: String,
    pub reason: String,
    pub source: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = suppressions)]
pub struct NewSuppression<'a> {
    pub id: Uuid,
    pub workspace_id: Uuid,
    /// Lower-case address, or [`domain_entry`] of a domain.
    pub email: &'a str,
    pub reason: &'a str,
    pub source: Option<&'a str>,
}

/// The stored form of a domain entry: `@example.com`.
pub fn domain_entry(domain: &str) -> String {
    format!("@{}", domain.trim().trim_start_matches('@').to_lowercase())
}

/// The domain of a domain entry (`@example.com` gives `example.com`); `None` for an address.
pub fn domain_of_entry(entry: &str) -> Option<&str> {
    entry.strip_prefix('@')
}

/// The two entries that suppress an address: itself and its domain's entry.
fn entries_for(email: &str) -> Vec<String> {
    let email = email.trim().to_lowercase();
    let domain = email.rsplit_once('@').map(|(_, d)| format!("@{d}"));
    let mut entries = vec![email];
    entries.extend(domain);
    entries
}

/// Inserts the entry unless this workspace already has it. Returns the stored row and
/// whether it was created now (false: the existing row, unchanged).
pub async fn insert_or_get(
    conn: &mut AsyncPgConnection,
    new: &NewSuppression<'_>,
) -> QueryResult<(Suppression, bool)> {
    // Two rounds: a concurrent delete between the insert and the read is answered by
    // inserting again.
    for _ in 0..2 {
        let inserted = diesel::insert_into(suppressions::table)
            .values(new)
            .on_conflict((suppressions::workspace_id, suppressions::email))
            .do_nothing()
            .returning(Suppression::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        if let Some(row) = inserted {
            return Ok((row, true));
        }
        let existing = suppressions::table
            .filter(suppressions::workspace_id.eq(new.workspace_id))
            .filter(suppressions::email.eq(new.email))
            .select(Suppression::as_select())
            .first(conn)
            .await
            .optional()?;
        if let Some(row) = existing {
            return Ok((row, false));
        }
    }
    Err(diesel::result::Error::NotFound)
}

/// Listing filters; `None` means any.
#[derive(Debug, Clone, Copy, Default)]
pub struct SuppressionFilter<'a> {
    /// Entries that suppress this address: the address itself and its domain's entry.
    pub matching: Option<&'a str>,
    /// The entry of exactly this domain.
    pub domain: Option<&'a str>,
}

/// Entries in id order (creation order) after `after`, at most `limit`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    filter: SuppressionFilter<'_>,
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<Suppression>> {
    let mut query = suppressions::table
        .filter(suppressions::workspace_id.eq(workspace_id))
        .select(Suppression::as_select())
        .order(suppressions::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(email) = filter.matching {
        query = query.filter(suppressions::email.eq_any(entries_for(email)));
    }
    if let Some(domain) = filter.domain {
        query = query.filter(suppressions::email.eq(domain_entry(domain)));
    }
    if let Some(after) = after {
        query = query.filter(suppressions::id.gt(after));
    }
    query.load(conn).await
}

/// Deletes an entry of this workspace; false when there is no such entry.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
) -> QueryResult<bool> {
    diesel::delete(suppressions::table.find(id))
        .filter(suppressions::workspace_id.eq(workspace_id))
        .execute(conn)
        .await
        .map(|n| n == 1)
}

/// True when the workspace must not email `email`: the address or its domain is suppressed.
/// Case and surrounding spaces of `email` do not matter.
pub async fn is_suppressed(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    email: &str,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        suppressions::table
            .filter(suppressions::workspace_id.eq(workspace_id))
            .filter(suppressions::email.eq_any(entries_for(email))),
    ))
    .get_result(conn)
    .await
}

#[derive(QueryableByName)]
struct Email {
    #[diesel(sql_type = Text)]
    email: String,
}

/// The members of `emails` (as given) that [`is_suppressed`] would answer true for, in one
/// query whatever their number.
pub async fn suppressed_among(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    emails: &[String],
) -> QueryResult<HashSet<String>> {
    if emails.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<Email> = diesel::sql_query(
        "SELECT u.e AS email FROM UNNEST($2::text[]) AS u(e) \
          WHERE EXISTS (SELECT 1 FROM suppressions s \
                         WHERE s.workspace_id = $1 \
                           AND s.email IN (lower(btrim(u.e)), \
                                           substring(lower(btrim(u.e)) FROM '@[^@]*$')))",
    )
    .bind::<diesel::sql_types::Uuid, _>(workspace_id)
    .bind::<Array<Text>, _>(emails)
    .prepared()
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.email).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_an_address_and_a_domain() {
        assert_eq!(
            entries_for(" Jane@Example.COM "),
            ["jane@example.com", "@example.com"]
        );
        assert_eq!(domain_entry("Example.com"), "@example.com");
        assert_eq!(domain_entry("@example.com"), "@example.com");
        assert_eq!(domain_of_entry("@example.com"), Some("example.com"));
        assert_eq!(domain_of_entry("jane@example.com"), None);
    }
}
