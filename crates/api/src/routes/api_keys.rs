//! `POST/GET /api/v1/api-keys`, `DELETE /api/v1/api-keys/{id}`: further keys of the caller's
//! workspace. The full key appears once, in the creation response.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use paperclip::actix::{Apiv2Schema, CreatedJson, NoContent, api_v2_operation, web};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::extract::{Body, Validate};
use crate::state::AppState;
use crate::validation::Checks;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api-keys")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(web::resource("/api-keys/{id}").route(web::delete().to(revoke)));
}

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// What the key is for, e.g. "CRM sync".
    pub name: String,
}

impl Validate for CreateApiKey {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut checks = Checks::default();
        checks.name("name", &self.name);
        checks.finish()
    }
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the key, to tell keys apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct CreatedApiKey {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    /// The key itself. Shown only here: store it now, it cannot be retrieved later.
    pub key: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct ApiKeyList {
    pub data: Vec<ApiKey>,
}

impl From<domain::db::api_keys::ApiKey> for ApiKey {
    fn from(key: domain::db::api_keys::ApiKey) -> Self {
        Self {
            id: key.id,
            name: key.name,
            prefix: key.prefix,
            created_at: key.created_at,
            last_used_at: key.last_used_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// Generates and stores a key; shared with workspace creation.
pub async fn issue_key(
    conn: &mut AsyncPgConnection,
    workspace_id: Uuid,
    name: &str,
) -> Result<CreatedApiKey, ApiError> {
    let generated = domain::api_keys::generate();
    let stored = domain::db::api_keys::insert(
        conn,
        &domain::db::api_keys::NewApiKey {
            id: Uuid::now_v7(),
            workspace_id,
            name,
            prefix: &generated.prefix,
            key_hash: &generated.hash,
        },
    )
    .await?;
    Ok(CreatedApiKey {
        id: stored.id,
        name: stored.name,
        prefix: stored.prefix,
        key: generated.key.expose_secret().to_owned(),
        created_at: stored.created_at,
    })
}

/// Create an API key
///
/// The response carries the full key once; only its hash is stored.
#[api_v2_operation(tags(ApiKeys))]
async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: Body<CreateApiKey>,
) -> Result<CreatedJson<CreatedApiKey>, ApiError> {
    let mut conn = state.pool.get().await?;
    let created = issue_key(&mut conn, caller.workspace_id, body.0.name.trim()).await?;
    tracing::info!(workspace.id = %caller.workspace_id, key.prefix = %created.prefix, "api key created");
    Ok(CreatedJson(created))
}

/// List API keys
///
/// Every key of the workspace, revoked ones included, without the key material.
#[api_v2_operation(tags(ApiKeys))]
async fn list(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<web::Json<ApiKeyList>, ApiError> {
    let mut conn = state.pool.get().await?;
    let keys = domain::db::api_keys::list(&mut conn, caller.workspace_id).await?;
    Ok(web::Json(ApiKeyList {
        data: keys.into_iter().map(ApiKey::from).collect(),
    }))
}

/// Revoke an API key
///
/// The key stops working at once. Revoking the key of the request itself is allowed.
#[api_v2_operation(tags(ApiKeys))]
async fn revoke(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<NoContent, ApiError> {
    let mut conn = state.pool.get().await?;
    if domain::db::api_keys::revoke(&mut conn, caller.workspace_id, id.into_inner()).await? {
        Ok(NoContent)
    } else {
        Err(ApiError::NotFound("api key"))
    }
}
