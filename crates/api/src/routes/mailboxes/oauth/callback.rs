//! `GET /oauth/callback`: where the provider sends the user's browser back. Public: the
//! single-use `state` authenticates the request (it names the workspace and what to connect).

use actix_web::HttpResponse;
use domain::db::oauth_authorizations::{self, Authorization, Taken, verifier_context};
use domain::oauth::Tokens;
use paperclip::actix::{Apiv2Schema, api_v2_operation, web};
use secrecy::SecretString;
use serde::Deserialize;

use super::answer;
use super::connect::{self, Connection};
use super::model::AuthorizeMailbox;
use super::state_hash;
use crate::extract::Query;
use crate::state::AppState;

/// The provider's redirect (RFC 6749 4.1.2): `code` and `state`, or `error` and `state`.
/// Other parameters providers add (`scope`, `session_state`, ...) are ignored.
#[derive(Debug, Deserialize, Apiv2Schema)]
pub struct CallbackQuery {
    /// The authorization code, when the user consented.
    pub code: Option<String>,
    /// The `state` of the authorization URL.
    pub state: Option<String>,
    /// The provider's error code (`access_denied` when the user refused).
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Why a connection failed: `code()` is what `return_url` gets as `error`.
#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    #[error("this link is not a valid connection request; start again")]
    InvalidState,
    #[error("the connection request expired; start again")]
    StateExpired,
    #[error("this connection request was already used; start again")]
    StateReplayed,
    #[error("access was not granted at the provider")]
    AccessDenied,
    #[error("the provider refused the request")]
    ProviderError,
    #[error("the provider no longer accepts the authorization; start again")]
    InvalidGrant,
    #[error("the provider gave no refresh token, so the mailbox could not stay connected")]
    NoRefreshToken,
    #[error("the provider did not say which address the account has")]
    NoEmail,
    #[error("this address is already connected to a mailbox of another workspace")]
    AddressInUse,
    #[error("the account signed in is not the mailbox's address; sign in as that address")]
    WrongAccount,
    #[error("connections with this provider are not enabled any more")]
    ProviderUnavailable,
    #[error("the connection failed on our side; try again later")]
    Server(#[source] anyhow::Error),
}

impl Failure {
    pub(super) fn code(&self) -> &'static str {
        match self {
            Failure::InvalidState => "invalid_state",
            Failure::StateExpired => "state_expired",
            Failure::StateReplayed => "state_replayed",
            Failure::AccessDenied => "access_denied",
            Failure::ProviderError => "provider_error",
            Failure::InvalidGrant => "invalid_grant",
            Failure::NoRefreshToken => "no_refresh_token",
            Failure::NoEmail => "no_email",
            Failure::AddressInUse => "address_in_use",
            Failure::WrongAccount => "wrong_account",
            Failure::ProviderUnavailable => "provider_unavailable",
            Failure::Server(_) => "server_error",
        }
    }

    pub(super) fn server(error: impl Into<anyhow::Error>) -> Self {
        Failure::Server(error.into())
    }
}

impl From<diesel::result::Error> for Failure {
    fn from(error: diesel::result::Error) -> Self {
        Failure::server(error)
    }
}

impl From<domain::db::PoolError> for Failure {
    fn from(error: domain::db::PoolError) -> Self {
        Failure::server(error)
    }
}

/// OAuth callback
///
/// The redirect URI (`oauth.redirect_url`) of the providers' OAuth clients; no API key (the
/// single-use `state` authenticates). Exchanges the code, learns the account's address from
/// the provider's ID token, and creates the mailbox (or updates the workspace's mailbox with
/// that address, or the reconnected one), storing the refresh token encrypted. With the
/// request's `return_url`: 303 to it with `mailbox_id` and `status=connected`, or `error`
/// (`invalid_state`, `state_expired`, `state_replayed`, `access_denied`, `provider_error`,
/// `invalid_grant`, `no_refresh_token`, `no_email`, `address_in_use` (another workspace's
/// mailbox has it), `wrong_account` (a reconnect signed in as another address),
/// `provider_unavailable`, `server_error`). Without one (or when the state is unknown): a
/// small HTML page saying what happened, 200 or 400.
#[api_v2_operation(tags(Mailboxes))]
pub(super) async fn callback(
    state: web::Data<AppState>,
    query: Query<CallbackQuery>,
) -> HttpResponse {
    let (return_url, result) = finish(&state, query.into_inner()).await;
    match &result {
        Ok(connection) => tracing::info!(
            workspace.id = %connection.workspace_id,
            mailbox.id = %connection.mailbox_id,
            "mailbox connected with OAuth"
        ),
        Err(Failure::Server(cause)) => {
            tracing::error!(error = format!("{cause:#}"), "OAuth callback failed")
        }
        Err(failure) => tracing::info!(error = failure.code(), "OAuth callback refused"),
    }
    answer::respond(
        return_url.as_deref(),
        result.map(|connection| connection.mailbox_id),
    )
}

/// The request's `return_url` (once the state is known) and what happened.
async fn finish(
    state: &AppState,
    query: CallbackQuery,
) -> (Option<String>, Result<Connection, Failure>) {
    let Some(random) = query.state.as_deref().filter(|s| !s.is_empty()) else {
        return (None, Err(Failure::InvalidState));
    };
    let hash = state_hash(random);
    let taken = match take(state, &hash).await {
        Ok(taken) => taken,
        Err(failure) => return (None, Err(failure)),
    };
    let authorization = match taken {
        Taken::Fresh(authorization) => authorization,
        Taken::Expired(authorization) => {
            return (authorization.return_url, Err(Failure::StateExpired));
        }
        Taken::Used(authorization) => {
            return (authorization.return_url, Err(Failure::StateReplayed));
        }
        Taken::Unknown => return (None, Err(Failure::InvalidState)),
    };
    let return_url = authorization.return_url.clone();
    let result = connect_with(state, authorization, &hash, query).await;
    (return_url, result)
}

async fn take(state: &AppState, hash: &[u8]) -> Result<Taken, Failure> {
    let mut conn = state.pool.get().await?;
    let now = state.oauth.clock.now();
    Ok(oauth_authorizations::take(&mut conn, hash, now).await?)
}

async fn connect_with(
    state: &AppState,
    authorization: Authorization,
    hash: &[u8],
    query: CallbackQuery,
) -> Result<Connection, Failure> {
    if let Some(error) = query.error.as_deref() {
        tracing::info!(
            workspace.id = %authorization.workspace_id,
            oauth.provider = %authorization.provider,
            oauth.error = %error,
            oauth.error_description = query
                .error_description
                .as_deref()
                .map(|d| d.chars().take(300).collect::<String>()),
            "the provider redirected back with an error"
        );
        return Err(if error == "access_denied" {
            Failure::AccessDenied
        } else {
            Failure::ProviderError
        });
    }
    let code = query
        .code
        .filter(|code| !code.is_empty())
        .ok_or(Failure::ProviderError)?;
    let tokens = exchange(state, &authorization, hash, SecretString::from(code)).await?;
    let refresh_token = tokens
        .refresh_token
        .clone()
        .ok_or(Failure::NoRefreshToken)?;
    let address = tokens
        .email
        .as_deref()
        .map(|email| email.trim().to_lowercase())
        .filter(|email| !email.is_empty())
        .ok_or(Failure::NoEmail)?;
    let settings: AuthorizeMailbox =
        serde_json::from_value(authorization.settings.clone()).map_err(Failure::server)?;
    let result = connect::store(
        state,
        &authorization,
        settings,
        &tokens,
        &refresh_token,
        &address,
    )
    .await;
    if let Err(Failure::AddressInUse | Failure::WrongAccount) = &result {
        // The grant will never be used: give it back rather than leave it at the provider.
        if let Some(provider) = state.oauth.config.provider(&authorization.provider)
            && let Err(error) = state.oauth.client.revoke(provider, &refresh_token).await
        {
            tracing::warn!(error = %error, "revoking an unused OAuth grant failed");
        }
    }
    result
}

/// Exchanges the code with the request's PKCE verifier.
async fn exchange(
    state: &AppState,
    authorization: &Authorization,
    hash: &[u8],
    code: SecretString,
) -> Result<Tokens, Failure> {
    let config = &state.oauth.config;
    let provider = config
        .provider(&authorization.provider)
        .ok_or(Failure::ProviderUnavailable)?;
    let redirect_url = config.redirect_url().ok_or(Failure::ProviderUnavailable)?;
    let cipher = state.cipher.as_ref().ok_or_else(|| {
        Failure::server(anyhow::anyhow!(
            "security.encryption_keys is empty: the PKCE verifier cannot be decrypted"
        ))
    })?;
    let verifier = cipher
        .decrypt(&authorization.verifier_encrypted, &verifier_context(hash))
        .map_err(Failure::server)?;
    state
        .oauth
        .client
        .exchange_code(provider, &code, &verifier, redirect_url)
        .await
        .map_err(|error| {
            tracing::warn!(
                workspace.id = %authorization.workspace_id,
                oauth.provider = %authorization.provider,
                error = %error,
                "exchanging the OAuth code failed"
            );
            if error.is_invalid_grant() {
                Failure::InvalidGrant
            } else {
                Failure::ProviderError
            }
        })
}
