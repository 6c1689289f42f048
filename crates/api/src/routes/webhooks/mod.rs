//! `/api/v1/webhooks`: the workspace's webhook endpoints (Standard Webhooks), and
//! `POST /api/v1/webhooks/{id}/rotate-secret`; their deliveries in [`deliveries`]. Sending
//! is the webhooks service's: the API only records what is to be sent.
//!
//! **Invariant:** a signing secret (`whsec_...`) is generated here, stored encrypted
//! ([`secrets`]), and shown only in the answers of the creation and of a rotation; never in
//! a view, a list or a log.
//!
//! `PUT` is a partial update: omitted fields keep their values, `description: null` removes
//! the description.

mod deliveries;
mod delivery_model;
mod model;
mod secrets;
mod validation;

use chrono::{Duration, Utc};
use diesel_async::AsyncConnection;
use domain::db::webhook_endpoints::{self as db, previous_secret_context, secret_context};
use domain::webhooks::WebhookSecret;
use paperclip::actix::{CreatedJson, NoContent, api_v2_operation, web};
use secrecy::ExposeSecret;
use uuid::Uuid;

pub(crate) use self::model::MAX_DESCRIPTION_LEN;
use self::model::{
    CreateWebhook, CreatedWebhook, ListQuery, ROTATION_OVERLAP_HOURS, RotatedSecret, UpdateWebhook,
    Webhook,
};
use self::validation::accepted_url;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Body;
use crate::pagination::{Page, PageRequest};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/webhooks")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        web::resource("/webhooks/{id}")
            .route(web::get().to(get))
            .route(web::put().to(update))
            .route(web::delete().to(delete)),
    )
    .service(web::resource("/webhooks/{id}/rotate-secret").route(web::post().to(rotate_secret)));
    deliveries::configure(cfg);
}

/// Create a webhook endpoint
///
/// Registers a URL to receive the workspace's events, signed to the Standard Webhooks
/// specification (`webhook-id`, `webhook-timestamp`, `webhook-signature` headers). The answer
/// holds the signing secret (`whsec_...`), shown only this once. The URL must be `https://`;
/// `http://` only to an IP address in a network the operator allows, and a host given as an
/// IP address that is not public is refused (422 naming `url`). 503
/// `encryption_not_configured` on a server without `security.encryption_keys`, where
/// secrets cannot be stored.
#[api_v2_operation(tags(Webhooks))]
async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: Body<CreateWebhook>,
) -> Result<CreatedJson<CreatedWebhook>, ApiError> {
    let body = body.into_inner();
    let url = accepted_url(&state.outbound, &body.url)?;
    let cipher = secrets::cipher(state.cipher.as_ref())?;
    let id = Uuid::now_v7();
    let secret = WebhookSecret::generate().text();
    let secret_encrypted = secrets::encrypt(cipher, &secret, &secret_context(id))?;
    let mut conn = state.pool.get().await?;
    let created = db::insert(
        &mut conn,
        &db::NewEndpoint {
            id,
            workspace_id: caller.workspace_id,
            values: db::EndpointValues {
                url,
                description: body.description,
                event_types: body.event_types,
                enabled: body.enabled.unwrap_or(true),
                disabled_reason: None,
            },
            secret_encrypted,
        },
    )
    .await?;
    tracing::info!(workspace.id = %caller.workspace_id, webhook.id = %id, "webhook endpoint created");
    let view = Webhook::of(created, Utc::now());
    Ok(CreatedJson(
        view.with_secret(secret.expose_secret().to_owned()),
    ))
}

/// List webhook endpoints
///
/// The workspace's endpoints in creation order, a page at a time (`limit`, `cursor`). No
/// signing secret is shown.
#[api_v2_operation(tags(Webhooks))]
async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    query: crate::extract::Query<ListQuery>,
) -> Result<web::Json<Page<Webhook>>, ApiError> {
    let page = PageRequest::new(query.limit, query.cursor.as_deref())?;
    let mut conn = state.pool.get().await?;
    let rows = db::list(&mut conn, caller.workspace_id, page.after, page.fetch()).await?;
    let (rows, next_cursor) = page.finish(rows, |e| e.id);
    let now = Utc::now();
    Ok(web::Json(Page {
        data: rows.into_iter().map(|row| Webhook::of(row, now)).collect(),
        next_cursor,
    }))
}

/// Get a webhook endpoint
#[api_v2_operation(tags(Webhooks))]
async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<Webhook>, ApiError> {
    let mut conn = state.pool.get().await?;
    let row = db::find(&mut conn, caller.workspace_id, id.into_inner())
        .await?
        .ok_or(ApiError::NotFound("webhook"))?;
    Ok(web::Json(Webhook::of(row, Utc::now())))
}

/// Update a webhook endpoint
///
/// Partial update: omitted fields keep their values; `description: null` removes it.
/// Setting `enabled` clears `disabled_reason`; `{"enabled": true}` turns an endpoint the
/// platform disabled (410 Gone, failing for days) back on, its failing period counted
/// afresh. Events that occur while an endpoint is disabled are not sent to it.
#[api_v2_operation(tags(Webhooks))]
async fn update(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: Body<UpdateWebhook>,
) -> Result<web::Json<Webhook>, ApiError> {
    let body = body.into_inner();
    let url = body
        .url
        .as_deref()
        .map(|url| accepted_url(&state.outbound, url))
        .transpose()?;
    let id = id.into_inner();
    let workspace_id = caller.workspace_id;
    let mut conn = state.pool.get().await?;
    let updated = conn
        .transaction(async |tx| -> Result<db::WebhookEndpoint, ApiError> {
            let current = db::find_for_update(tx, workspace_id, id)
                .await?
                .ok_or(ApiError::NotFound("webhook"))?;
            let was_enabled = current.enabled;
            let mut values = db::EndpointValues {
                url: current.url,
                description: current.description,
                event_types: current.event_types,
                enabled: current.enabled,
                disabled_reason: current.disabled_reason,
            };
            if let Some(url) = url {
                values.url = url;
            }
            if let Some(names) = body.event_types {
                values.event_types = names;
            }
            if let Some(description) = body.description {
                values.description = description;
            }
            if let Some(enabled) = body.enabled {
                values.enabled = enabled;
                values.disabled_reason = None;
            }
            let mut updated = db::update(tx, workspace_id, id, &values)
                .await?
                .ok_or(ApiError::NotFound("webhook"))?;
            if values.enabled && !was_enabled {
                db::clear_failing_since(tx, id).await?;
                updated.failing_since = None;
                domain::db::webhook_deliveries::unpark_pending(tx, id).await?;
            } else if !values.enabled && was_enabled {
                domain::db::webhook_deliveries::park_pending(tx, id).await?;
            }
            Ok(updated)
        })
        .await?;
    tracing::info!(workspace.id = %workspace_id, webhook.id = %id, "webhook endpoint updated");
    Ok(web::Json(Webhook::of(updated, Utc::now())))
}

/// Delete a webhook endpoint
///
/// Removes the endpoint with its deliveries and their attempts; nothing more is sent to it.
#[api_v2_operation(tags(Webhooks))]
async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<NoContent, ApiError> {
    let id = id.into_inner();
    let mut conn = state.pool.get().await?;
    if db::delete(&mut conn, caller.workspace_id, id).await? {
        tracing::info!(workspace.id = %caller.workspace_id, webhook.id = %id, "webhook endpoint deleted");
        Ok(NoContent)
    } else {
        Err(ApiError::NotFound("webhook"))
    }
}

/// Rotate a webhook endpoint's signing secret
///
/// Generates a new signing secret, shown only in this answer. For the next 24 hours the
/// secret it replaces signs too (each request carries both signatures, which Standard
/// Webhooks receivers accept), so receivers switch over without missing an event. Rotating
/// again within that time ends the older secret's overlap at once: only the secret this
/// call replaces keeps signing. 503 `encryption_not_configured` without
/// `security.encryption_keys`.
#[api_v2_operation(tags(Webhooks))]
async fn rotate_secret(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<web::Json<RotatedSecret>, ApiError> {
    let id = id.into_inner();
    let workspace_id = caller.workspace_id;
    let cipher = secrets::cipher(state.cipher.as_ref())?;
    let mut conn = state.pool.get().await?;
    let (secret, expires_at) = conn
        .transaction(async |tx| -> Result<_, ApiError> {
            let current = db::find_for_update(tx, workspace_id, id)
                .await?
                .ok_or(ApiError::NotFound("webhook"))?;
            let previous =
                secrets::decrypt(cipher, &current.secret_encrypted, &secret_context(id))?;
            let secret = WebhookSecret::generate().text();
            let secret_encrypted = secrets::encrypt(cipher, &secret, &secret_context(id))?;
            let previous_encrypted =
                secrets::encrypt(cipher, &previous, &previous_secret_context(id))?;
            let expires_at = Utc::now() + Duration::hours(ROTATION_OVERLAP_HOURS);
            let rotated = db::rotate_secret(
                tx,
                workspace_id,
                id,
                &secret_encrypted,
                &previous_encrypted,
                expires_at,
            )
            .await?
            .ok_or(ApiError::NotFound("webhook"))?;
            // As stored (PostgreSQL keeps microseconds), so that views show the same time.
            Ok((
                secret,
                rotated.previous_secret_expires_at.unwrap_or(expires_at),
            ))
        })
        .await?;
    tracing::info!(workspace.id = %workspace_id, webhook.id = %id, "webhook signing secret rotated");
    Ok(web::Json(RotatedSecret {
        secret: secret.expose_secret().to_owned(),
        previous_secret_expires_at: expires_at,
    }))
}
