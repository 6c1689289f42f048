//! `domain::oauth::AccessTokens` against PostgreSQL and the real authorization server
//! (ORY Hydra, which rotates refresh tokens and revokes the whole grant when a rotated-out
//! one is used again): racing users refresh once, a rejected token is refreshed once per
//! generation, and a revoked grant puts the mailbox in `reconnect_required`.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use domain::clock::SystemClock;
use domain::config::{OAuthConfig, OAuthProviderConfig, OAuthProvidersConfig};
use domain::crypto::SecretCipher;
use domain::db::mailbox_oauth::{self, NewGrant, access_token_context, refresh_token_context};
use domain::mail::Security;
use domain::oauth::{AccessError, AccessTokens, TokenClient, Tokens};
use domain::testing::oauth::{AuthorizationServer, OAuthClient};
use domain::testing::{TEST_ENCRYPTION_KEYS, TestDatabase, test_outbound_guard};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::oauth_tokens::{REDIRECT_URI, connected, some, token_client, unique_address};
use crate::suppressions::workspace;

/// The outbox topic of `MailboxEvent`s in these tests (nothing relays it).
const MAILBOX_EVENTS: &str = "test.mailbox-events";

fn disabled() -> OAuthProviderConfig {
    OAuthProviderConfig {
        client_id: String::new(),
        client_secret: SecretString::from(String::new()),
        tenant: String::new(),
        authorize_url: String::new(),
        token_url: String::new(),
        revoke_url: String::new(),
        scopes: Vec::new(),
        authorize_params: BTreeMap::new(),
        smtp_host: String::new(),
        smtp_port: 587,
        smtp_security: Security::Starttls,
        imap_host: String::new(),
        imap_port: 993,
        imap_security: Security::Tls,
    }
}

fn oauth_config(google: OAuthProviderConfig) -> OAuthConfig {
    OAuthConfig {
        redirect_url: REDIRECT_URI.into(),
        state_ttl_seconds: 600,
        refresh_before_expiry_seconds: 60,
        providers: OAuthProvidersConfig {
            google,
            microsoft: disabled(),
        },
    }
}

struct Connected {
    db: TestDatabase,
    tokens: AccessTokens,
    mailbox_id: Uuid,
    issued: Tokens,
    client: OAuthClient,
}

/// A mailbox connected as a fresh account through Hydra, whose stored access token has
/// expired (so the next use refreshes).
async fn connected_mailbox(name: &str) -> anyhow::Result<Connected> {
    let server = AuthorizationServer::from_env()?;
    let client_tokens = token_client(test_outbound_guard())?;
    let address = unique_address(name);
    let (client, provider, issued) = connected(&server, &client_tokens, &address).await?;
    let db = TestDatabase::create().await?;
    let mut conn = db.connect().await?;
    let workspace_id = workspace(&mut conn, name).await?;
    let mailbox_id = Uuid::now_v7();
    db.exec(&format!(
        "INSERT INTO mailboxes (id, workspace_id, email, smtp_host, smtp_port, smtp_security, \
                                smtp_username) \
         VALUES ('{mailbox_id}', '{workspace_id}', '{address}', '127.0.0.1', 587, 'none', \
                 '{address}')"
    ))
    .await?;
    let cipher = SecretCipher::from_spec(&SecretString::from(TEST_ENCRYPTION_KEYS))?;
    let refresh = some(issued.refresh_token.as_ref(), "a refresh token")?;
    mailbox_oauth::upsert(
        &mut conn,
        &NewGrant {
            mailbox_id,
            provider: "google".into(),
            connected_email: address.clone(),
            scopes: Vec::new(),
            refresh_token_encrypted: cipher.encrypt(refresh, &refresh_token_context(mailbox_id))?,
            access_token_encrypted: Some(
                cipher.encrypt(&issued.access_token, &access_token_context(mailbox_id))?,
            ),
            access_token_expires_at: Some(Utc::now() - TimeDelta::seconds(1)),
            refreshed_at: None,
        },
    )
    .await?;
    let tokens = AccessTokens::new(
        db.pool()?,
        Arc::new(cipher),
        // Real time: the stored expiries are compared with it.
        TokenClient::new(
            test_outbound_guard(),
            Arc::new(SystemClock),
            domain::oauth::access::TOKEN_TIMEOUT,
        )?,
        oauth_config(provider),
        Arc::new(SystemClock),
        MAILBOX_EVENTS.to_owned(),
    );
    Ok(Connected {
        db,
        tokens,
        mailbox_id,
        issued,
        client,
    })
}

#[tokio::test]
async fn racing_users_of_an_expired_token_refresh_it_once_and_share_the_new_one()
-> anyhow::Result<()> {
    let server = AuthorizationServer::from_env()?;
    let connected = connected_mailbox("race").await?;
    let id = connected.mailbox_id;

    let (first, second, third) = tokio::join!(
        connected.tokens.current(id),
        connected.tokens.current(id),
        connected.tokens.current(id),
    );
    let (first, second, third) = (first?, second?, third?);

    // One refresh: one new generation and one token for all. A second refresh would have
    // used the rotated-out refresh token, which makes Hydra revoke the grant.
    assert_eq!(
        [first.generation, second.generation, third.generation],
        [1, 1, 1]
    );
    assert_eq!(first.token.expose_secret(), second.token.expose_secret());
    assert_eq!(first.token.expose_secret(), third.token.expose_secret());
    assert_ne!(
        first.token.expose_secret(),
        connected.issued.access_token.expose_secret()
    );
    assert!(server.is_active(first.token.expose_secret()).await?);
    assert_eq!(
        connected
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM mailboxes WHERE id = '{id}' AND status = 'active'"
            ))
            .await?,
        1
    );

    // The rotated refresh token was stored with it: the next refresh works.
    let after_rejection = connected.tokens.after_rejection(id, 1).await?;
    assert_eq!(after_rejection.generation, 2);
    assert!(
        server
            .is_active(after_rejection.token.expose_secret())
            .await?
    );

    // A rejection of an older generation gets the current token, without a refresh.
    let stale = connected.tokens.after_rejection(id, 1).await?;
    assert_eq!(stale.generation, 2);
    assert_eq!(
        stale.token.expose_secret(),
        after_rejection.token.expose_secret()
    );
    // A fresh token is used as it is.
    assert_eq!(connected.tokens.current(id).await?.generation, 2);
    Ok(())
}

#[tokio::test]
async fn a_revoked_grant_makes_the_mailbox_reconnect_required_with_the_reason() -> anyhow::Result<()>
{
    let server = AuthorizationServer::from_env()?;
    let connected = connected_mailbox("revoked").await?;
    let id = connected.mailbox_id;
    let refresh = some(connected.issued.refresh_token.as_ref(), "a refresh token")?;
    server
        .revoke(&connected.client, refresh.expose_secret())
        .await?;

    let Err(error) = connected.tokens.current(id).await else {
        anyhow::bail!("a revoked grant gave a token");
    };
    assert!(error.is_reconnect_required(), "{error:?}");
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(refresh.expose_secret()), "{shown}");
    assert_eq!(
        connected
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM mailboxes WHERE id = '{id}' \
                    AND status = 'reconnect_required' AND status_reason LIKE '%invalid_grant%'"
            ))
            .await?,
        1
    );
    // One `reconnect_required` record on mailbox-events, in the outbox with the status.
    assert_eq!(
        connected
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM outbox WHERE topic = '{MAILBOX_EVENTS}' \
                    AND message_key = '{id}' AND payload ->> 'type' = 'reconnect_required' \
                    AND payload -> 'payload' ->> 'provider' = 'google'"
            ))
            .await?,
        1
    );
    // Later users learn it from the mailbox, without asking the provider again.
    let again = connected.tokens.current(id).await;
    assert!(
        matches!(again, Err(AccessError::ReconnectRequired { .. })),
        "{again:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_password_mailbox_has_no_access_token() -> anyhow::Result<()> {
    let connected = connected_mailbox("password").await?;
    let other = connected.tokens.current(Uuid::now_v7()).await;
    assert!(matches!(other, Err(AccessError::NotConnected)), "{other:?}");
    Ok(())
}
