//! The access tokens of mailboxes connected with OAuth, shared by every sender worker, inbox
//! watcher and the API through PostgreSQL (`db::mailbox_oauth`).
//!
//! A token is refreshed shortly before it expires (`oauth.refresh_before_expiry_seconds`),
//! once across all replicas: the refresh runs under the grant row's lock, and whoever waited
//! on the lock finds the new token and uses it instead of refreshing again (with Microsoft and
//! Hydra a second refresh with the old refresh token would even revoke the grant). A rotated
//! refresh token is stored in the same transaction as the access token it came with.
//!
//! `invalid_grant` puts the mailbox in `reconnect_required` (in that transaction too, with a
//! `MailboxEvent::ReconnectRequired` on `mailbox-events` through the outbox): its messages
//! wait, the watcher stops reading it, `oauth_reconnect_required_total` counts it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use diesel_async::AsyncConnection as _;
use secrecy::SecretString;
use uuid::Uuid;

use super::tokens::{TokenClient, TokenError};
use crate::clock::Clock;
use crate::config::OAuthConfig;
use crate::crypto::{CryptoError, SecretCipher};
use crate::db::mailbox_oauth::{
    self, GrantState, MailboxOAuth, Refreshed, access_token_context, refresh_token_context,
};
use crate::db::mailboxes::status;
use crate::db::outbox::{self, NewOutboxRecord};
use crate::db::{DbError, PgPool};
use crate::events::MailboxEvent;
use crate::kafka::Envelope;
use crate::mail::Login;

/// How long a token endpoint call may take, connection included.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(15);

/// A mailbox's usable access token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The connected account's address: the XOAUTH2 user.
    pub username: String,
    pub token: SecretString,
    /// The grant's generation the token belongs to; give it back to
    /// [`AccessTokens::after_rejection`] when a server refuses the token.
    pub generation: i64,
}

impl AccessToken {
    /// The XOAUTH2 login for SMTP and IMAP.
    pub fn login(&self) -> Login {
        Login::xoauth2(self.username.clone(), self.token.clone())
    }
}

/// Why no access token is available. No variant's text holds a token or secret.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The provider no longer accepts the grant; the mailbox is (now) `reconnect_required`.
    #[error("the mailbox must be connected again: {reason}")]
    ReconnectRequired { reason: String },
    /// The mailbox has no OAuth grant (it logs in with a password, or was deleted).
    #[error("the mailbox is not connected with OAuth")]
    NotConnected,
    /// The mailbox's provider is not enabled in `oauth.providers` (any more).
    #[error("OAuth provider `{0}` is not configured (oauth.providers.{0}.client_id)")]
    ProviderNotConfigured(String),
    /// A stored token does not decrypt with `security.encryption_keys`.
    #[error("the mailbox's OAuth tokens cannot be decrypted with security.encryption_keys")]
    Undecryptable,
    /// The refresh failed for now (provider unreachable or erring): worth retrying later.
    #[error("refreshing the access token failed: {0}")]
    Refresh(TokenError),
    #[error(transparent)]
    Db(#[from] DbError),
    /// The mailbox event could not be serialized (a bug, not an input).
    #[error("could not write the mailbox event: {0}")]
    Event(#[from] serde_json::Error),
}

impl AccessError {
    /// Whether it is the mailbox's own, lasting problem (as opposed to ours or a passing one).
    pub fn is_reconnect_required(&self) -> bool {
        matches!(self, AccessError::ReconnectRequired { .. })
    }
}

/// Hands out fresh access tokens. Cheap to clone.
#[derive(Clone)]
pub struct AccessTokens {
    pool: PgPool,
    cipher: Arc<SecretCipher>,
    client: TokenClient,
    config: Arc<OAuthConfig>,
    clock: Arc<dyn Clock>,
    /// Where `MailboxEvent::ReconnectRequired` goes (`mailbox-events`).
    mailbox_events_topic: String,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens").finish_non_exhaustive()
    }
}

impl AccessTokens {
    pub fn new(
        pool: PgPool,
        cipher: Arc<SecretCipher>,
        client: TokenClient,
        config: OAuthConfig,
        clock: Arc<dyn Clock>,
        mailbox_events_topic: String,
    ) -> Self {
        AccessTokens {
            pool,
            cipher,
            client,
            config: Arc::new(config),
            clock,
            mailbox_events_topic,
        }
    }

    pub fn client(&self) -> &TokenClient {
        &self.client
    }

    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// The mailbox's access token, refreshed first when it expires within
    /// `oauth.refresh_before_expiry_seconds`.
    pub async fn current(&self, mailbox_id: Uuid) -> Result<AccessToken, AccessError> {
        let now = self.clock.now();
        let state = {
            let mut conn = self.pool.get().await.map_err(DbError::from)?;
            mailbox_oauth::state(&mut conn, mailbox_id, false)
                .await
                .map_err(DbError::from)?
        };
        let state = usable(state)?;
        if let Some(token) = self.fresh(&state.grant, now)? {
            return Ok(token);
        }
        self.refresh(mailbox_id, None).await
    }

    /// A token to retry with after a server refused the one of `generation`: the newer one
    /// another replica stored meanwhile, or a refreshed one. One refresh per rejected
    /// generation, whoever asks.
    pub async fn after_rejection(
        &self,
        mailbox_id: Uuid,
        generation: i64,
    ) -> Result<AccessToken, AccessError> {
        self.refresh(mailbox_id, Some(generation)).await
    }

    /// Refreshes under the grant's lock, unless someone else did while this waited for it.
    async fn refresh(
        &self,
        mailbox_id: Uuid,
        rejected: Option<i64>,
    ) -> Result<AccessToken, AccessError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        conn.transaction(
            async |tx| -> Result<Result<AccessToken, AccessError>, DbError> {
                let state = match usable(mailbox_oauth::state(tx, mailbox_id, true).await?) {
                    Ok(state) => state,
                    Err(error) => return Ok(Err(error)),
                };
                let now = self.clock.now();
                let reuse = match rejected {
                    Some(generation) => state.grant.generation != generation,
                    None => true,
                };
                if reuse {
                    match self.fresh(&state.grant, now) {
                        Ok(Some(token)) => return Ok(Ok(token)),
                        Ok(None) => {}
                        Err(error) => return Ok(Err(error)),
                    }
                }
                Ok(self.refresh_locked(tx, &state.grant).await)
            },
        )
        .await?
    }

    async fn refresh_locked(
        &self,
        tx: &mut diesel_async::AsyncPgConnection,
        grant: &MailboxOAuth,
    ) -> Result<AccessToken, AccessError> {
        let provider = self
            .config
            .provider(&grant.provider)
            .ok_or_else(|| AccessError::ProviderNotConfigured(grant.provider.clone()))?;
        let refresh_token = self
            .cipher
            .decrypt(
                &grant.refresh_token_encrypted,
                &refresh_token_context(grant.mailbox_id),
            )
            .map_err(undecryptable)?;
        let outcome = self.client.refresh(provider, &refresh_token).await;
        let label = |outcome: &'static str| {
            metrics::counter!(
                "oauth_token_refreshes_total",
                "provider" => grant.provider.clone(),
                "outcome" => outcome,
            )
            .increment(1);
        };
        let tokens = match outcome {
            Ok(tokens) => tokens,
            Err(error) if error.is_invalid_grant() => {
                label("invalid_grant");
                let reason = format!("the OAuth provider refused the grant: {error}");
                if let Some(workspace_id) =
                    mailbox_oauth::require_reconnect(tx, grant.mailbox_id, &reason)
                        .await
                        .map_err(DbError::from)?
                {
                    self.announce_reconnect_required(tx, workspace_id, grant, &reason)
                        .await?;
                    metrics::counter!(
                        "oauth_reconnect_required_total",
                        "provider" => grant.provider.clone(),
                    )
                    .increment(1);
                    tracing::warn!(
                        mailbox_id = %grant.mailbox_id,
                        provider = grant.provider,
                        error = %error,
                        "mailbox needs to be connected again"
                    );
                }
                return Err(AccessError::ReconnectRequired { reason });
            }
            Err(error) => {
                label("failed");
                return Err(AccessError::Refresh(error));
            }
        };
        label("refreshed");
        let context = access_token_context(grant.mailbox_id);
        let access_token_encrypted = self
            .cipher
            .encrypt(&tokens.access_token, &context)
            .map_err(undecryptable)?;
        let refresh_token_encrypted = match &tokens.refresh_token {
            Some(rotated) => Some(
                self.cipher
                    .encrypt(rotated, &refresh_token_context(grant.mailbox_id))
                    .map_err(undecryptable)?,
            ),
            None => None,
        };
        let stored = mailbox_oauth::store_refreshed(
            tx,
            grant.mailbox_id,
            &Refreshed {
                access_token_encrypted,
                access_token_expires_at: tokens.expires_at,
                refresh_token_encrypted,
                at: self.clock.now(),
            },
        )
        .await
        .map_err(DbError::from)?;
        Ok(AccessToken {
            username: stored.connected_email,
            token: tokens.access_token,
            generation: stored.generation,
        })
    }

    /// `MailboxEvent::ReconnectRequired` into the outbox, in the caller's transaction.
    async fn announce_reconnect_required(
        &self,
        tx: &mut diesel_async::AsyncPgConnection,
        workspace_id: Uuid,
        grant: &MailboxOAuth,
        reason: &str,
    ) -> Result<(), AccessError> {
        let mut envelope = Envelope::new(
            workspace_id,
            MailboxEvent::ReconnectRequired {
                mailbox_id: grant.mailbox_id,
                provider: grant.provider.clone(),
                reason: reason.to_owned(),
            },
        );
        envelope.occurred_at = self.clock.now();
        let record = NewOutboxRecord::from_envelope(
            &self.mailbox_events_topic,
            grant.mailbox_id.to_string(),
            &envelope,
        )?;
        outbox::insert_many(tx, std::slice::from_ref(&record))
            .await
            .map_err(DbError::from)?;
        Ok(())
    }

    /// The grant's access token if it does not expire within the refresh margin.
    fn fresh(
        &self,
        grant: &MailboxOAuth,
        now: DateTime<Utc>,
    ) -> Result<Option<AccessToken>, AccessError> {
        let Some(stored) = &grant.access_token_encrypted else {
            return Ok(None);
        };
        if !is_fresh(
            grant.access_token_expires_at,
            now,
            self.config.refresh_before_expiry_seconds,
        ) {
            return Ok(None);
        }
        let token = self
            .cipher
            .decrypt(stored, &access_token_context(grant.mailbox_id))
            .map_err(undecryptable)?;
        Ok(Some(AccessToken {
            username: grant.connected_email.clone(),
            token,
            generation: grant.generation,
        }))
    }
}

/// The grant, unless there is none or its mailbox already waits for a reconnect.
fn usable(state: Option<GrantState>) -> Result<GrantState, AccessError> {
    let state = state.ok_or(AccessError::NotConnected)?;
    if state.mailbox_status == status::RECONNECT_REQUIRED {
        return Err(AccessError::ReconnectRequired {
            reason: state
                .status_reason
                .unwrap_or_else(|| "the OAuth provider refused the grant".to_owned()),
        });
    }
    Ok(state)
}

/// Whether a token expiring at `expires_at` is still good `margin_seconds` from `now`. A
/// token whose lifetime the provider did not say is used until a server refuses it.
pub fn is_fresh(
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    margin_seconds: u64,
) -> bool {
    let margin = TimeDelta::try_seconds(i64::try_from(margin_seconds).unwrap_or(i64::MAX))
        .unwrap_or(TimeDelta::MAX);
    match expires_at {
        None => true,
        Some(at) => now
            .checked_add_signed(margin)
            .is_some_and(|limit| at > limit),
    }
}

fn undecryptable(_: CryptoError) -> AccessError {
    AccessError::Undecryptable
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_token_is_fresh_until_the_margin_before_its_expiry() {
        let now = Utc
            .with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
            .single()
            .unwrap_or_default();
        let at = |seconds: i64| Some(now + TimeDelta::seconds(seconds));
        assert!(is_fresh(at(301), now, 300));
        assert!(!is_fresh(at(300), now, 300));
        assert!(!is_fresh(at(-5), now, 0));
        assert!(is_fresh(None, now, 300));
        assert!(!is_fresh(at(10), now, u64::MAX));
    }
}
