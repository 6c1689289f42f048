//! The OAuth test harness against the real servers: tokens Hydra issues through the
//! authorization code flow log in to Dovecot's IMAP and submission with XOAUTH2, and Dovecot
//! really checks them (revoked, foreign and rotated-out credentials are refused).

use std::time::Duration;

use async_imap::error::Error as ImapError;
use domain::testing::oauth::{
    self, AccessTokenLifespans, AuthorizationServer, DenyAt, OAuthClient, OAuthError,
    TokenResponse, Xoauth2,
};
use domain::testing::{greenmail, poll_until};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::net::TcpStream;
use uuid::Uuid;

/// Where the authorization server sends the browser back; nothing listens there, the test
/// reads the code from the redirect itself.
const REDIRECT_URI: &str = "http://127.0.0.1:54449/oauth/callback";

/// Token lifespans of the tests not about expiry: long enough to outlast Dovecot's delays
/// after failed logins (2 s, doubling up to 15 s per client address, and these tests fail
/// logins on purpose from the same address) where the server's default might not.
const LONG_LIVED: AccessTokenLifespans = AccessTokenLifespans {
    from_code: Some(Duration::from_secs(600)),
    from_refresh: Some(Duration::from_secs(600)),
};

fn unique_address(name: &str) -> String {
    format!("{name}-{}@example.com", Uuid::new_v4().simple())
}

/// A fresh client, and the tokens of `address` who connected their mailbox through it.
async fn connected_mailbox(
    server: &AuthorizationServer,
    address: &str,
    lifespans: AccessTokenLifespans,
) -> anyhow::Result<(OAuthClient, TokenResponse)> {
    let client = server.create_client(REDIRECT_URI, lifespans).await?;
    let authorization = server.authorize_as(&client, address).await?;
    let tokens = server.exchange_code(&client, &authorization).await?;
    Ok((client, tokens))
}

/// Authenticates to Dovecot's IMAP with XOAUTH2: the outer error is the test's own trouble,
/// the inner one the server's refusal.
async fn imap_login(
    address: &str,
    access_token: &str,
) -> anyhow::Result<Result<async_imap::Session<TcpStream>, ImapError>> {
    let tcp = TcpStream::connect(oauth::dovecot_imap_addr()?).await?;
    let mut client = async_imap::Client::new(tcp);
    client
        .read_response()
        .await?
        .ok_or_else(|| anyhow::anyhow!("Dovecot closed the connection before greeting"))?;
    Ok(client
        .authenticate("XOAUTH2", Xoauth2::new(address, access_token))
        .await
        .map_err(|(error, _)| error))
}

/// Submits a message from `from` to `to` through Dovecot with XOAUTH2: the outer error is the
/// test's own trouble, the inner one the server's refusal.
async fn submit(
    from: &str,
    access_token: &str,
    to: &str,
    subject: &str,
) -> anyhow::Result<Result<(), lettre::transport::smtp::Error>> {
    let submission = oauth::dovecot_submission_addr()?;
    let message = Message::builder()
        .from(from.parse()?)
        .to(to.parse()?)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(String::from("Sent with an OAuth access token.\r\n"))?;
    let transport =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(submission.ip().to_string())
            .port(submission.port())
            .credentials(Credentials::new(from.to_owned(), access_token.to_owned()))
            .authentication(vec![Mechanism::Xoauth2])
            .timeout(Some(Duration::from_secs(30)))
            .build();
    Ok(transport.send(message).await.map(|_| ()))
}

fn assert_refused_by_imap(outcome: Result<async_imap::Session<TcpStream>, ImapError>) {
    match outcome {
        Err(ImapError::No(_)) => {}
        Err(other) => panic!("expected an authentication failure (NO), got {other:?}"),
        Ok(_) => panic!("Dovecot's IMAP accepted the token"),
    }
}

fn assert_refused_by_submission(outcome: Result<(), lettre::transport::smtp::Error>) {
    match outcome {
        // Dovecot refuses a token with a 334 challenge holding its JSON error, which lettre
        // does not answer (it expects no challenge with XOAUTH2): a client error, where a
        // broken connection or timeout would be another kind.
        Err(error) if error.is_client() => {}
        Err(other) => panic!("expected the XOAUTH2 refusal, got {other:?}"),
        Ok(()) => panic!("Dovecot's submission accepted the token"),
    }
}

/// The OAuth error answer to refreshing with `refresh_token`, which must not refresh.
async fn refresh_refusal(
    server: &AuthorizationServer,
    client: &OAuthClient,
    refresh_token: &str,
) -> anyhow::Result<OAuthError> {
    match server.refresh(client, refresh_token).await {
        Ok(_) => anyhow::bail!("the refresh token still refreshes"),
        Err(error) => error
            .downcast::<OAuthError>()
            .map_err(|e| anyhow::anyhow!("expected an OAuth error answer, got {e:#}")),
    }
}

#[tokio::test]
async fn access_token_of_the_code_flow_logs_in_to_imap_and_sends_through_submission()
-> anyhow::Result<()> {
    let server = AuthorizationServer::from_env()?;
    let address = unique_address("ada");
    let (_, tokens) = connected_mailbox(&server, &address, LONG_LIVED).await?;
    assert_eq!(tokens.token_type.to_lowercase(), "bearer");
    assert!(tokens.refresh_token.is_some(), "offline_access gives one");
    assert!(tokens.id_token.is_some(), "openid gives one");

    let mut session = imap_login(&address, &tokens.access_token)
        .await?
        .map_err(|e| anyhow::anyhow!("IMAP refused a fresh token: {e:?}"))?;
    session.select("INBOX").await?;
    session.logout().await?;

    let recipient = unique_address("grace");
    let subject = format!("XOAUTH2 {}", Uuid::new_v4());
    submit(&address, &tokens.access_token, &recipient, &subject)
        .await?
        .map_err(|e| anyhow::anyhow!("submission refused a fresh token: {e}"))?;
    poll_until(
        Duration::from_secs(20),
        "the submitted message at GreenMail",
        || async {
            let inbox = greenmail::received(&recipient).await.ok()?;
            inbox.iter().any(|raw| raw.contains(&subject)).then_some(())
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn access_token_of_a_revoked_grant_is_refused_by_imap_and_submission() -> anyhow::Result<()> {
    let server = AuthorizationServer::from_env()?;
    let address = unique_address("ada");
    let (client, tokens) = connected_mailbox(&server, &address, LONG_LIVED).await?;
    let session = imap_login(&address, &tokens.access_token).await?;
    assert!(session.is_ok(), "the token works before revocation");

    let refresh_token = tokens
        .refresh_token
        .ok_or_else(|| anyhow::anyhow!("no refresh token"))?;
    server.revoke(&client, &refresh_token).await?;

    assert_refused_by_imap(imap_login(&address, &tokens.access_token).await?);
    let recipient = unique_address("grace");
    let sent = submit(&address, &tokens.access_token, &recipient, "revoked").await?;
    assert_refused_by_submission(sent);
    let refusal = refresh_refusal(&server, &client, &refresh_token).await?;
    assert_eq!(refusal.error, "invalid_grant", "{refusal}");
    Ok(())
}

#[tokio::test]
async fn access_token_is_refused_for_another_user() -> anyhow::Result<()> {
    let server = AuthorizationServer::from_env()?;
    let address = unique_address("ada");
    let (_, tokens) = connected_mailbox(&server, &address, LONG_LIVED).await?;
    let someone_else = unique_address("mallory");

    assert_refused_by_imap(imap_login(&someone_else, &tokens.access_token).await?);
    let recipient = unique_address("grace");
    let sent = submit(&someone_else, &tokens.access_token, &recipient, "foreign").await?;
    assert_refused_by_submission(sent);
    Ok(())
}

#[tokio::test]
async fn refreshed_access_token_logs_in_after_the_first_expired() -> anyhow::Result<()> {
    let server = AuthorizationServer::from_env()?;
    let address = unique_address("ada");
    let lifespans = AccessTokenLifespans {
        from_code: Some(Duration::from_secs(3)),
        ..LONG_LIVED
    };
    let (client, tokens) = connected_mailbox(&server, &address, lifespans).await?;
    assert!(tokens.expires_in <= 3, "lifespan {}", tokens.expires_in);
    // Asking Hydra, as Dovecot does, rather than Dovecot: a 3 s token may expire while Dovecot
    // delays a login after other tests' failures (the first test shows fresh tokens log in).
    assert!(server.is_active(&tokens.access_token).await?, "fresh token");
    poll_until(
        Duration::from_secs(30),
        "the first access token to expire",
        || async {
            let active = server.is_active(&tokens.access_token).await.ok()?;
            (!active).then_some(())
        },
    )
    .await?;
    assert_refused_by_imap(imap_login(&address, &tokens.access_token).await?);

    let first_refresh = tokens
        .refresh_token
        .ok_or_else(|| anyhow::anyhow!("no refresh token"))?;
    let refreshed = server.refresh(&client, &first_refresh).await?;
    let second_refresh = refreshed
        .refresh_token
        .ok_or_else(|| anyhow::anyhow!("the refresh gave no refresh token"))?;
    assert_ne!(
        second_refresh, first_refresh,
        "Hydra rotates refresh tokens"
    );
    let mut session = imap_login(&address, &refreshed.access_token)
        .await?
        .map_err(|e| anyhow::anyhow!("IMAP refused the refreshed token: {e:?}"))?;
    session.select("INBOX").await?;
    session.logout().await?;

    // Last: presenting a rotated-out refresh token again makes Hydra revoke the whole grant.
    let refusal = refresh_refusal(&server, &client, &first_refresh).await?;
    assert_eq!(refusal.error, "invalid_grant", "{refusal}");
    Ok(())
}

#[tokio::test]
async fn refusing_login_or_consent_redirects_with_access_denied() -> anyhow::Result<()> {
    let server = AuthorizationServer::from_env()?;
    let client = server
        .create_client(REDIRECT_URI, AccessTokenLifespans::default())
        .await?;
    for at in [DenyAt::Login, DenyAt::Consent] {
        let denial = server.deny(&client, at).await?;
        assert_eq!(denial.error, "access_denied", "refused at {at:?}");
    }
    Ok(())
}
