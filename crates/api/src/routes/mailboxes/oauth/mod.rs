//! Mailboxes connected with OAuth 2.0 (Google Workspace/Gmail, Microsoft 365): starting a
//! connection (`POST /mailboxes/oauth/{provider}/authorize`) or a reconnection
//! (`POST /mailboxes/{id}/oauth/reconnect`), the provider's redirect back
//! (`GET /oauth/callback`, in [`callback`]), and revoking a grant when its mailbox is deleted.
//!
//! **Invariants:** the `state` a request hands out is only stored as its SHA-256 and works
//! once (`db::oauth_authorizations::take`); the PKCE verifier is stored encrypted. No
//! token, code, verifier or client secret is logged, answered or put in a URL we build.
//! A reconnection is for mailboxes that already have a grant (409 otherwise): a password
//! mailbox is converted by connecting its address with `authorize`, which updates the
//! workspace's mailbox with that address.

mod answer;
mod callback;
mod connect;
mod model;

use chrono::TimeDelta;
use domain::config::{OAuthConfig, OAuthProviderConfig};
use domain::crypto::CryptoError;
use domain::db::mailbox_oauth::{self, MailboxOAuth, refresh_token_context};
use domain::db::mailboxes as db;
use domain::db::oauth_authorizations::{self, NewAuthorization, verifier_context};
use domain::oauth::{AuthorizationRequest, Pkce, authorization_url, random_state};
use paperclip::actix::{api_v2_operation, web};
use secrecy::SecretString;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

pub use self::model::{AuthorizationStarted, AuthorizeMailbox, ReconnectMailbox};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Body;
use crate::state::AppState;

/// Expired authorization requests are deleted once they are this old.
const KEEP_EXPIRED: TimeDelta = TimeDelta::days(1);

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/mailboxes/oauth/{provider}/authorize").route(web::post().to(authorize)),
    )
    .service(web::resource("/mailboxes/{id}/oauth/reconnect").route(web::post().to(reconnect)))
    .service(web::resource("/oauth/callback").route(web::get().to(callback::callback)));
}

/// What is stored under `state`'s hash.
fn state_hash(state: &str) -> Vec<u8> {
    Sha256::digest(state.as_bytes()).to_vec()
}

/// The enabled provider called `name`, or a 422 naming `provider`.
fn provider<'a>(config: &'a OAuthConfig, name: &str) -> Result<&'a OAuthProviderConfig, ApiError> {
    if !OAuthConfig::PROVIDER_NAMES.contains(&name) {
        return Err(ApiError::invalid(
            "provider",
            format!(
                "unknown OAuth provider; one of {}",
                OAuthConfig::PROVIDER_NAMES.join(", ")
            ),
        ));
    }
    config.provider(name).ok_or_else(|| {
        ApiError::invalid(
            "provider",
            format!(
                "OAuth connections with `{name}` are not enabled on this server (its operator \
                 has not configured oauth.redirect_url and oauth.providers.{name})"
            ),
        )
    })
}

/// What an authorization request is for, besides its workspace.
struct Request {
    provider: String,
    mailbox_id: Option<Uuid>,
    settings: serde_json::Value,
    login_hint: Option<String>,
    return_url: Option<String>,
}

/// Stores a new authorization request and builds the URL that starts it.
async fn start(
    state: &AppState,
    workspace_id: Uuid,
    request: Request,
) -> Result<AuthorizationStarted, ApiError> {
    let config = &state.oauth.config;
    let provider = provider(config, &request.provider)?;
    let redirect_url = config.redirect_url().ok_or_else(|| {
        ApiError::internal(anyhow::anyhow!(
            "an enabled provider without oauth.redirect_url"
        ))
    })?;
    let cipher = state
        .cipher
        .as_ref()
        .ok_or(ApiError::EncryptionUnavailable)?;
    let pkce = Pkce::generate();
    let random = random_state();
    let hash = state_hash(&random);
    let url = authorization_url(
        provider,
        &AuthorizationRequest {
            redirect_url,
            state: &random,
            pkce: &pkce,
            login_hint: request.login_hint.as_deref(),
        },
    )
    .map_err(ApiError::internal)?;
    let verifier_encrypted = cipher
        .encrypt(pkce.verifier(), &verifier_context(&hash))
        .map_err(|error| match error {
            CryptoError::NotConfigured => ApiError::EncryptionUnavailable,
            other => ApiError::internal(other),
        })?;
    let now = state.oauth.clock.now();
    let ttl = TimeDelta::seconds(i64::try_from(config.state_ttl_seconds).unwrap_or(i64::MAX));
    let expires_at = now + ttl;
    let mut conn = state.pool.get().await?;
    oauth_authorizations::insert(
        &mut conn,
        &NewAuthorization {
            state_hash: hash,
            workspace_id,
            provider: request.provider.clone(),
            mailbox_id: request.mailbox_id,
            verifier_encrypted,
            settings: request.settings,
            login_hint: request.login_hint,
            return_url: request.return_url,
            expires_at,
        },
    )
    .await?;
    // Housekeeping where requests are made: no job of its own for a table this small.
    let cleaned = oauth_authorizations::delete_expired(&mut conn, now - KEEP_EXPIRED).await;
    if let Err(error) = cleaned {
        tracing::warn!(error = %error, "deleting expired OAuth authorization requests failed");
    }
    tracing::info!(
        workspace.id = %workspace_id,
        mailbox.id = request.mailbox_id.map(|id| id.to_string()),
        oauth.provider = %request.provider,
        "OAuth authorization started"
    );
    Ok(AuthorizationStarted {
        authorization_url: url.into(),
        expires_at,
    })
}

/// Connect a mailbox with OAuth
///
/// Starts connecting a Google (`google`) or Microsoft (`microsoft`) mailbox: send the user's
/// browser to `authorization_url`, where they sign in and consent; the provider sends them
/// back to `GET /oauth/callback`, which creates the mailbox with the provider's SMTP and IMAP
/// servers (XOAUTH2, no password) and these settings. If the workspace already has a mailbox
/// with the account's address, that mailbox is updated instead (keeping its id and history;
/// a password mailbox is converted). The URL carries PKCE (S256) and a single-use `state`
/// that expires after `oauth.state_ttl_seconds` (10 minutes by default). 422 naming
/// `provider` when it is unknown or not enabled on this server; 503
/// `encryption_not_configured` without `security.encryption_keys`.
#[api_v2_operation(tags(Mailboxes))]
async fn authorize(
    caller: Caller,
    state: web::Data<AppState>,
    provider: web::Path<String>,
    body: Body<AuthorizeMailbox>,
) -> Result<web::Json<AuthorizationStarted>, ApiError> {
    let mut body = body.into_inner();
    let login_hint = body
        .login_hint
        .take()
        .map(|hint| hint.trim().to_lowercase());
    let return_url = body.return_url.take();
    let settings = serde_json::to_value(&body).map_err(ApiError::internal)?;
    let started = start(
        &state,
        caller.workspace_id,
        Request {
            provider: provider.into_inner(),
            mailbox_id: None,
            settings,
            login_hint,
            return_url,
        },
    )
    .await?;
    Ok(web::Json(started))
}

/// Reconnect an OAuth mailbox
///
/// Starts the same flow as `POST /mailboxes/oauth/{provider}/authorize` for a mailbox
/// connected with OAuth, with its provider and its address as the login hint (no body, or
/// `{"return_url": ...}`). The callback requires the same account, replaces the grant,
/// keeps the mailbox's id, settings and history, and makes a `reconnect_required` (or
/// `error`) mailbox `active`. 409 for a mailbox that logs in with a password.
#[api_v2_operation(tags(Mailboxes))]
async fn reconnect(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: Body<ReconnectMailbox>,
) -> Result<web::Json<AuthorizationStarted>, ApiError> {
    let id = id.into_inner();
    let grant = {
        let mut conn = state.pool.get().await?;
        db::find(&mut conn, caller.workspace_id, id)
            .await?
            .ok_or(ApiError::NotFound("mailbox"))?;
        mailbox_oauth::find(&mut conn, id).await?.ok_or_else(|| {
            ApiError::Conflict(
                "the mailbox logs in with a password; connect its address with \
                 POST /mailboxes/oauth/{provider}/authorize instead"
                    .into(),
            )
        })?
    };
    let started = start(
        &state,
        caller.workspace_id,
        Request {
            provider: grant.provider,
            mailbox_id: Some(id),
            settings: serde_json::json!({}),
            login_hint: Some(grant.connected_email),
            return_url: body.into_inner().return_url,
        },
    )
    .await?;
    Ok(web::Json(started))
}

/// Revokes a deleted mailbox's grant at its provider, best effort: the mailbox is gone
/// either way, and what failed is logged (never the token).
pub(super) async fn revoke_grant(state: &AppState, grant: &MailboxOAuth) {
    let outcome = revoke(state, grant).await;
    match outcome {
        Ok(()) => tracing::info!(
            mailbox.id = %grant.mailbox_id,
            oauth.provider = %grant.provider,
            "OAuth grant revoked"
        ),
        Err(reason) => tracing::warn!(
            mailbox.id = %grant.mailbox_id,
            oauth.provider = %grant.provider,
            reason = %reason,
            "revoking the deleted mailbox's OAuth grant failed"
        ),
    }
}

async fn revoke(state: &AppState, grant: &MailboxOAuth) -> Result<(), String> {
    let provider = state
        .oauth
        .config
        .provider(&grant.provider)
        .ok_or("the provider is not enabled any more")?;
    let cipher = state
        .cipher
        .as_ref()
        .ok_or("no encryption keys to decrypt the refresh token")?;
    let token: SecretString = cipher
        .decrypt(
            &grant.refresh_token_encrypted,
            &refresh_token_context(grant.mailbox_id),
        )
        .map_err(|error| error.to_string())?;
    state
        .oauth
        .client
        .revoke(provider, &token)
        .await
        .map_err(|error| error.to_string())
}
