//! `domain::oauth` against the real authorization server (ORY Hydra): the authorization URL
//! it builds is one Hydra accepts, and the token client exchanges, refreshes and revokes
//! through the outbound guard, classifying Hydra's refusals as the API and workers need.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use domain::clock::ManualClock;
use domain::config::OAuthProviderConfig;
use domain::mail::Security;
use domain::oauth::{
    AuthorizationRequest, Pkce, TokenClient, TokenError, Tokens, authorization_url, random_state,
};
use domain::outbound::OutboundGuard;
use domain::testing::oauth::{AccessTokenLifespans, AuthorizationServer, OAuthClient, SCOPE};
use domain::testing::test_outbound_guard;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

/// Where Hydra sends the browser back; nothing listens there, the test reads the redirect.
pub(crate) const REDIRECT_URI: &str = "http://127.0.0.1:54450/oauth/callback";

const LIFESPAN: Duration = Duration::from_secs(600);

pub(crate) fn unique_address(name: &str) -> String {
    format!("{name}-{}@example.com", Uuid::new_v4().simple())
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

/// The error of a call that must fail.
fn error_of<T>(result: Result<T, TokenError>) -> anyhow::Result<TokenError> {
    result
        .err()
        .ok_or_else(|| anyhow::anyhow!("the call succeeded"))
}

pub(crate) fn some<T>(value: Option<T>, what: &str) -> anyhow::Result<T> {
    value.ok_or_else(|| anyhow::anyhow!("no {what}"))
}

/// Hydra as a provider of the configuration, with `client`'s credentials.
fn provider(server: &AuthorizationServer, client: &OAuthClient) -> OAuthProviderConfig {
    OAuthProviderConfig {
        client_id: client.id.clone(),
        client_secret: SecretString::from(client.secret.clone()),
        tenant: String::new(),
        authorize_url: server.authorization_endpoint(),
        token_url: server.token_endpoint(),
        revoke_url: server.revocation_endpoint(),
        scopes: SCOPE.split(' ').map(str::to_owned).collect(),
        // As Google's defaults: Hydra must take (and ignore or honour) a provider's extras.
        authorize_params: BTreeMap::from([
            ("access_type".to_owned(), "offline".to_owned()),
            ("prompt".to_owned(), "consent".to_owned()),
        ]),
        smtp_host: "127.0.0.1".into(),
        smtp_port: 587,
        smtp_security: Security::None,
        imap_host: "127.0.0.1".into(),
        imap_port: 143,
        imap_security: Security::None,
    }
}

/// A provider whose client Hydra does not know (its secret is `client-SECRET`), for tests
/// that point its endpoints elsewhere.
fn unregistered_provider() -> anyhow::Result<OAuthProviderConfig> {
    let client = OAuthClient {
        id: "client".into(),
        secret: "client-SECRET".into(),
        redirect_uri: REDIRECT_URI.into(),
    };
    Ok(provider(&AuthorizationServer::from_env()?, &client))
}

pub(crate) fn token_client(guard: OutboundGuard) -> Result<TokenClient, TokenError> {
    TokenClient::new(
        guard,
        Arc::new(ManualClock::new(now())),
        Duration::from_secs(30),
    )
}

/// A fresh client at Hydra, its provider configuration, and what the redirect URI got when
/// `address` went through the authorization URL `domain::oauth` built: the code, with the
/// PKCE pair of that URL.
async fn authorized(
    server: &AuthorizationServer,
    address: &str,
) -> anyhow::Result<(OAuthClient, OAuthProviderConfig, SecretString, Pkce)> {
    let lifespans = AccessTokenLifespans {
        from_code: Some(LIFESPAN),
        from_refresh: Some(LIFESPAN),
    };
    let client = server.create_client(REDIRECT_URI, lifespans).await?;
    let provider = provider(server, &client);
    let pkce = Pkce::generate();
    let state = random_state();
    let url = authorization_url(
        &provider,
        &AuthorizationRequest {
            redirect_url: REDIRECT_URI,
            state: &state,
            pkce: &pkce,
            login_hint: Some(address),
        },
    )?;
    let callback = server.authorize_url_as(&client, &url, address).await?;
    let param = |name: &str| {
        callback
            .query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
            .ok_or_else(|| anyhow::anyhow!("no {name} in {callback}"))
    };
    assert_eq!(param("state")?, state, "Hydra echoes the state");
    let code = SecretString::from(param("code")?);
    Ok((client, provider, code, pkce))
}

/// The tokens of `address` who connected through a fresh client.
pub(crate) async fn connected(
    server: &AuthorizationServer,
    tokens: &TokenClient,
    address: &str,
) -> anyhow::Result<(OAuthClient, OAuthProviderConfig, Tokens)> {
    let (client, provider, code, pkce) = authorized(server, address).await?;
    let issued = tokens
        .exchange_code(&provider, &code, pkce.verifier(), REDIRECT_URI)
        .await?;
    Ok((client, provider, issued))
}

/// Neither `Display` nor `Debug` of `error` shows any of `secrets`.
fn assert_no_secret(error: &TokenError, secrets: &[&str]) {
    let shown = format!("{error} / {error:?}");
    for secret in secrets {
        assert!(!shown.contains(secret), "{shown}");
    }
}

#[tokio::test]
async fn the_authorization_url_leads_to_a_code_whose_exchange_gives_tokens_and_the_email()
-> anyhow::Result<()> {
    let server = AuthorizationServer::from_env()?;
    let tokens = token_client(test_outbound_guard())?;
    let address = unique_address("exchange");
    let (_, _, issued) = connected(&server, &tokens, &address).await?;

    assert!(
        server
            .is_active(issued.access_token.expose_secret())
            .await?
    );
    assert!(issued.refresh_token.is_some(), "offline_access gives one");
    assert_eq!(issued.email.as_deref(), Some(address.as_str()));
    let expires_at = some(issued.expires_at, "Hydra sends expires_in")?;
    let lifespan = TimeDelta::from_std(LIFESPAN)?;
    assert!(
        expires_at <= now() + lifespan && expires_at >= now() + lifespan - TimeDelta::seconds(5),
        "{expires_at} is not the clock's now plus about {LIFESPAN:?}"
    );
    let scopes = issued.scopes.unwrap_or_default();
    for scope in SCOPE.split(' ').filter(|scope| *scope != "offline_access") {
        assert!(
            scopes.iter().any(|granted| granted == scope),
            "{scope} in {scopes:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token_through_a_resolved_name() -> anyhow::Result<()> {
    let server = AuthorizationServer::from_env()?;
    let tokens = token_client(test_outbound_guard())?;
    let (_, mut provider, issued) = connected(&server, &tokens, &unique_address("refresh")).await?;
    // A name, not an address: the request goes through the guard's resolver.
    provider.token_url = provider.token_url.replace("127.0.0.1", "localhost");
    let first = some(issued.refresh_token, "offline_access gives one")?;

    let refreshed = tokens.refresh(&provider, &first).await?;

    let next = some(refreshed.refresh_token, "Hydra rotates refresh tokens")?;
    assert_ne!(next.expose_secret(), first.expose_secret());
    assert_ne!(
        refreshed.access_token.expose_secret(),
        issued.access_token.expose_secret()
    );
    assert!(
        server
            .is_active(refreshed.access_token.expose_secret())
            .await?
    );
    assert!(refreshed.expires_at.is_some());
    Ok(())
}

#[tokio::test]
async fn after_revocation_a_refresh_is_invalid_grant() -> anyhow::Result<()> {
    let server = AuthorizationServer::from_env()?;
    let tokens = token_client(test_outbound_guard())?;
    let (client, provider, issued) = connected(&server, &tokens, &unique_address("revoke")).await?;
    let refresh_token = some(issued.refresh_token, "offline_access gives one")?;

    tokens.revoke(&provider, &refresh_token).await?;

    assert!(
        !server
            .is_active(issued.access_token.expose_secret())
            .await?
    );
    let error = error_of(tokens.refresh(&provider, &refresh_token).await)?;
    assert!(error.is_invalid_grant(), "{error:?}");
    assert_no_secret(&error, &[refresh_token.expose_secret(), &client.secret]);
    // Revoking what is already revoked is no failure (RFC 7009 2.2).
    tokens.revoke(&provider, &refresh_token).await?;
    Ok(())
}

/// Hydra answers an unknown code, and a real code with the wrong PKCE verifier, with
/// `invalid_grant`: both are `InvalidGrant` (the connection attempt must start over). A wrong
/// client secret is `invalid_client`, a `Provider` error.
#[tokio::test]
async fn a_bad_code_or_verifier_is_invalid_grant_and_a_bad_secret_invalid_client()
-> anyhow::Result<()> {
    let server = AuthorizationServer::from_env()?;
    let tokens = token_client(test_outbound_guard())?;
    let (client, mut provider, code, pkce) =
        authorized(&server, &unique_address("bad-code")).await?;

    let made_up = SecretString::from(format!("ory_ac_{}", Uuid::new_v4().simple()));
    let other = Pkce::generate();
    for (code, verifier) in [(&made_up, pkce.verifier()), (&code, other.verifier())] {
        let error = error_of(
            tokens
                .exchange_code(&provider, code, verifier, REDIRECT_URI)
                .await,
        )?;
        assert!(error.is_invalid_grant(), "{error:?}");
        assert_no_secret(
            &error,
            &[
                code.expose_secret(),
                verifier.expose_secret(),
                &client.secret,
            ],
        );
    }

    let wrong_secret = format!("wrong-{}", Uuid::new_v4().simple());
    provider.client_secret = SecretString::from(wrong_secret.clone());
    let (_, _, code, pkce) = authorized(&server, &unique_address("bad-secret")).await?;
    let error = error_of(
        tokens
            .exchange_code(&provider, &code, pkce.verifier(), REDIRECT_URI)
            .await,
    )?;
    assert!(
        matches!(&error, TokenError::Provider { status: 401, error, .. } if error == "invalid_client"),
        "{error:?}"
    );
    assert_no_secret(
        &error,
        &[
            &wrong_secret,
            code.expose_secret(),
            pkce.verifier().expose_secret(),
        ],
    );
    Ok(())
}

/// With a guard that does not allow loopback, neither an address nor a name resolving to
/// one is connected to: the listener standing there never sees a connection.
#[tokio::test]
async fn a_guard_without_loopback_refuses_before_connecting() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let tokens = token_client(OutboundGuard::default())?;
    let refresh_token = SecretString::from("refresh-SECRET".to_owned());
    let mut provider = unregistered_provider()?;
    for host in ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"] {
        provider.token_url = format!("http://{host}:{port}/oauth2/token");
        provider.revoke_url = format!("http://{host}:{port}/oauth2/revoke");
        let error = error_of(tokens.refresh(&provider, &refresh_token).await)?;
        assert!(matches!(error, TokenError::Refused), "{host}: {error:?}");
        assert_no_secret(&error, &["refresh-SECRET", "client-SECRET"]);
        let error = error_of(tokens.revoke(&provider, &refresh_token).await)?;
        assert!(matches!(error, TokenError::Refused), "{host}: {error:?}");
    }
    match listener.accept() {
        Err(error) if error.kind() == ErrorKind::WouldBlock => {}
        other => panic!("something connected: {other:?}"),
    }
    // Without a revocation endpoint (Microsoft) revoking sends nothing, so nothing is refused.
    provider.revoke_url = String::new();
    tokens.revoke(&provider, &refresh_token).await?;
    Ok(())
}

/// Nothing listening, and a server that never answers: `Transport`, within the timeout.
#[tokio::test]
async fn unreachable_and_silent_endpoints_are_transport_errors() -> anyhow::Result<()> {
    let tokens = TokenClient::new(
        test_outbound_guard(),
        Arc::new(ManualClock::new(now())),
        Duration::from_secs(2),
    )?;
    let mut provider = unregistered_provider()?;
    let closed_port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    // Bound and listening (the kernel completes the handshake) but never read from.
    let silent = TcpListener::bind("127.0.0.1:0")?;
    let silent_port = silent.local_addr()?.port();
    let code = SecretString::from("code-SECRET".to_owned());
    let verifier = SecretString::from("verifier-SECRET".to_owned());
    for port in [closed_port, silent_port] {
        provider.token_url = format!("http://127.0.0.1:{port}/oauth2/token");
        let started = std::time::Instant::now();
        let error = error_of(
            tokens
                .exchange_code(&provider, &code, &verifier, REDIRECT_URI)
                .await,
        )?;
        assert!(matches!(error, TokenError::Transport(_)), "{error:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the timeout holds"
        );
        assert_no_secret(&error, &["client-SECRET", "code-SECRET", "verifier-SECRET"]);
    }
    drop(silent);
    Ok(())
}
