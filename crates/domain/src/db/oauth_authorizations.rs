//! Authorization requests in flight (`oauth_authorizations`): what the callback needs to
//! finish a connection, found by the SHA-256 of the request's `state` and usable once.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::oauth_authorizations;

/// Associated data binding an encrypted PKCE verifier to its request.
pub fn verifier_context(state_hash: &[u8]) -> String {
    let hex: String = state_hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("oauth_authorizations.verifier:{hex}")
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = oauth_authorizations)]
pub struct NewAuthorization {
    pub state_hash: Vec<u8>,
    pub workspace_id: Uuid,
    pub provider: String,
    pub mailbox_id: Option<Uuid>,
    pub verifier_encrypted: Vec<u8>,
    pub settings: serde_json::Value,
    pub login_hint: Option<String>,
    pub return_url: Option<String>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = oauth_authorizations)]
pub struct Authorization {
    pub state_hash: Vec<u8>,
    pub workspace_id: Uuid,
    pub provider: String,
    pub mailbox_id: Option<Uuid>,
    pub verifier_encrypted: Vec<u8>,
    pub settings: serde_json::Value,
    pub login_hint: Option<String>,
    pub return_url: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

pub async fn insert(conn: &mut AsyncPgConnection, new: &NewAuthorization) -> QueryResult<()> {
    diesel::insert_into(oauth_authorizations::table)
        .values(new)
        .execute(conn)
        .await
        .map(|_| ())
}

/// What [`take`] found for a state.
#[derive(Debug, Clone)]
pub enum Taken {
    /// Unused and unexpired: now marked used.
    Fresh(Authorization),
    /// Past its `expires_at` (now marked used, if it was not).
    Expired(Authorization),
    /// Used before: a replay.
    Used(Authorization),
    /// No such request (or it was cleaned up).
    Unknown,
}

/// Marks the request with `state_hash` used, once: a second callback with the same state
/// (a replay, or a double submit) finds it [`Taken::Used`].
pub async fn take(
    conn: &mut AsyncPgConnection,
    state_hash: &[u8],
    now: DateTime<Utc>,
) -> QueryResult<Taken> {
    let marked = diesel::update(oauth_authorizations::table.find(state_hash))
        .filter(oauth_authorizations::used_at.is_null())
        .set(oauth_authorizations::used_at.eq(Some(now)))
        .returning(Authorization::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    if let Some(authorization) = marked {
        return Ok(if authorization.expires_at <= now {
            Taken::Expired(authorization)
        } else {
            Taken::Fresh(authorization)
        });
    }
    let found = oauth_authorizations::table
        .find(state_hash)
        .select(Authorization::as_select())
        .first(conn)
        .await
        .optional()?;
    Ok(match found {
        Some(authorization) => Taken::Used(authorization),
        None => Taken::Unknown,
    })
}

/// Deletes requests that expired before `before`; returns how many.
pub async fn delete_expired(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::delete(oauth_authorizations::table.filter(oauth_authorizations::expires_at.lt(before)))
        .execute(conn)
        .await
}
