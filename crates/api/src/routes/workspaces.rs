//! `POST /api/v1/workspaces`: create a tenant and its first API key (admin token required).

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use paperclip::actix::{Apiv2Schema, CreatedJson, api_v2_operation, web};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::api_keys::{CreatedApiKey, issue_key};
use crate::auth::Admin;
use crate::error::{ApiError, FieldError};
use crate::extract::{Body, Validate};
use crate::state::AppState;
use crate::validation::Checks;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/workspaces").route(web::post().to(create)));
}

#[derive(Debug, Deserialize, Apiv2Schema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    pub name: String,
    /// Base URL of the tracker for this workspace's links (custom tracking domain).
    pub tracking_base_url: Option<String>,
}

impl Validate for CreateWorkspace {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut checks = Checks::default();
        checks.name("name", &self.name);
        if let Some(url) = &self.tracking_base_url {
            checks.http_url("tracking_base_url", url);
        }
        checks.finish()
    }
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct Workspace {
    pub id: Uuid,
    pub name: String,
    pub tracking_base_url: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Apiv2Schema)]
pub struct CreatedWorkspace {
    pub workspace: Workspace,
    /// The workspace's first key; `key` is shown only in this response.
    pub api_key: CreatedApiKey,
}

/// Create a workspace
///
/// Creates a tenant and its first API key. Requires `Authorization: Bearer <api.admin_token>`.
#[api_v2_operation(tags(Workspaces))]
async fn create(
    _admin: Admin,
    state: web::Data<AppState>,
    body: Body<CreateWorkspace>,
) -> Result<CreatedJson<CreatedWorkspace>, ApiError> {
    let body = body.into_inner();
    let mut conn = state.pool.get().await?;
    let created = conn
        .transaction(async |tx| -> Result<CreatedWorkspace, ApiError> {
            {
                let workspace = domain::db::workspaces::insert(
                    tx,
                    &domain::db::workspaces::NewWorkspace {
                        id: Uuid::now_v7(),
                        name: body.name.trim(),
                        tracking_base_url: body.tracking_base_url.as_deref(),
                    },
                )
                .await?;
                let api_key = issue_key(tx, workspace.id, "default").await?;
                Ok(CreatedWorkspace {
                    workspace: Workspace {
                        id: workspace.id,
                        name: workspace.name,
                        tracking_base_url: workspace.tracking_base_url,
                        created_at: workspace.created_at,
                    },
                    api_key,
                })
            }
        })
        .await?;
    tracing::info!(workspace.id = %created.workspace.id, key.prefix = %created.api_key.prefix, "workspace created");
    Ok(CreatedJson(created))
}
