//! The webhook endpoints a workspace registered (`webhook_endpoints`). Signing secrets
//! arrive here encrypted (see `crate::crypto`); `*_secret_encrypted` never holds plaintext.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::webhook_endpoints;

/// Associated data binding an encrypted signing secret to its endpoint.
pub fn secret_context(endpoint_id: Uuid) -> String {
    format!("webhook_endpoints.secret:{endpoint_id}")
}

/// Associated data binding an encrypted previous signing secret to its endpoint.
pub fn previous_secret_context(endpoint_id: Uuid) -> String {
    format!("webhook_endpoints.previous_secret:{endpoint_id}")
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_endpoints)]
pub struct WebhookEndpoint {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub secret_encrypted: Vec<u8>,
    pub previous_secret_encrypted: Option<Vec<u8>>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a client's settings determine: written whole on insert and update.
#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = webhook_endpoints, treat_none_as_null = true)]
pub struct EndpointValues {
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = webhook_endpoints)]
pub struct NewEndpoint {
    pub id: Uuid,
    pub workspace_id: Uuid,
    #[diesel(embed)]
    pub values: EndpointValues,
    pub secret_encrypted: Vec<u8>,
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    new: &NewEndpoint,
) -> QueryResult<WebhookEndpoint> {
    diesel::insert_into(webhook_endpoints::table)
        .values(new)
        .returning(WebhookEndpoint::as_returning())
        .get_result(conn)
        .await
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
) -> QueryResult<Option<WebhookEndpoint>> {
    webhook_endpoints::table
        .find(id)
        .filter(webhook_endpoints::workspace_id.eq(workspace_id))
        .select(WebhookEndpoint::as_select())
        .first(conn)
        .await
        .optional()
}

/// [`find`], locking the row until the transaction ends: a partial update or a secret
/// rotation reads and writes it without another one in between.
pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
) -> QueryResult<Option<WebhookEndpoint>> {
    webhook_endpoints::table
        .find(id)
        .filter(webhook_endpoints::workspace_id.eq(workspace_id))
        .select(WebhookEndpoint::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// A page of the workspace's endpoints in id (creation) order, after `after` when given.
pub async fn list(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<WebhookEndpoint>> {
    let mut query = webhook_endpoints::table
        .filter(webhook_endpoints::workspace_id.eq(workspace_id))
        .select(WebhookEndpoint::as_select())
        .order(webhook_endpoints::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(webhook_endpoints::id.gt(after));
    }
    query.load(conn).await
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
    values: &EndpointValues,
) -> QueryResult<Option<WebhookEndpoint>> {
    diesel::update(webhook_endpoints::table.find(id))
        .filter(webhook_endpoints::workspace_id.eq(workspace_id))
        .set(values)
        .returning(WebhookEndpoint::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Forgets since when deliveries have been failing: an endpoint a person enabled again
/// starts its failure period afresh instead of being disabled by its next failure.
pub async fn clear_failing_since(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    diesel::update(webhook_endpoints::table.find(id))
        .set(webhook_endpoints::failing_since.eq(None::<DateTime<Utc>>))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Replaces the signing secret; the one it replaces keeps signing until `previous_until`.
pub async fn rotate_secret(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
    secret_encrypted: &[u8],
    previous_secret_encrypted: &[u8],
    previous_until: DateTime<Utc>,
) -> QueryResult<Option<WebhookEndpoint>> {
    diesel::update(webhook_endpoints::table.find(id))
        .filter(webhook_endpoints::workspace_id.eq(workspace_id))
        .set((
            webhook_endpoints::secret_encrypted.eq(secret_encrypted),
            webhook_endpoints::previous_secret_encrypted.eq(Some(previous_secret_encrypted)),
            webhook_endpoints::previous_secret_expires_at.eq(Some(previous_until)),
        ))
        .returning(WebhookEndpoint::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Deletes the endpoint with its deliveries and attempts. True when it existed.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    id: Uuid,
) -> QueryResult<bool> {
    diesel::delete(webhook_endpoints::table.find(id))
        .filter(webhook_endpoints::workspace_id.eq(workspace_id))
        .execute(conn)
        .await
        .map(|n| n == 1)
}
