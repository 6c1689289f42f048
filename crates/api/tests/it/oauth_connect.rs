//! Connecting mailboxes with OAuth through the API, against the real authorization server
//! (ORY Hydra) playing Google, and Dovecot checking the tokens: the authorize request, the
//! browser's trip through Hydra, the callback creating (or reconnecting) the mailbox, what
//! the mailbox views show, verify and delete with the grant, and every way a callback fails.

use std::net::TcpListener;

use domain::config::{Config, OAuthProviderConfig};
use domain::crypto::SecretCipher;
use domain::db::mailbox_oauth::{self, access_token_context, refresh_token_context};
use domain::mail::Security;
use domain::testing::oauth::{
    AccessTokenLifespans, AuthorizationServer, DenyAt, OAuthClient, SCOPE, dovecot_submission_addr,
};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{
    ENCRYPTION_KEYS, Tenant, TestApi, assert_conflicting_field, assert_error, assert_field_error,
};

const AUTHORIZE: &str = "/api/v1/mailboxes/oauth/google/authorize";
/// Where the tests' users come back to; never fetched (redirects are not followed).
const RETURN_URL: &str = "http://127.0.0.1:9/mailboxes?tab=connected";

fn unique_address(name: &str) -> String {
    format!("{name}-{}@example.com", Uuid::new_v4().simple())
}

/// An api whose `google` provider is a client of Hydra registered with the api's callback
/// as its redirect URI.
struct Connector {
    api: TestApi,
    server: AuthorizationServer,
    client: OAuthClient,
}

impl Connector {
    async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// `adjust` changes the configuration after the provider is set.
    async fn start_with(adjust: impl FnOnce(&mut Config)) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let redirect = format!(
            "http://127.0.0.1:{}/api/v1/oauth/callback",
            listener.local_addr()?.port()
        );
        let server = AuthorizationServer::from_env()?;
        let client = server
            .create_client(&redirect, AccessTokenLifespans::default())
            .await?;
        let submission = dovecot_submission_addr()?;
        let google = OAuthProviderConfig {
            client_id: client.id.clone(),
            client_secret: SecretString::from(client.secret.clone()),
            tenant: String::new(),
            authorize_url: server.authorization_endpoint(),
            token_url: server.token_endpoint(),
            revoke_url: server.revocation_endpoint(),
            scopes: SCOPE.split(' ').map(str::to_owned).collect(),
            authorize_params: [("access_type", "offline"), ("prompt", "consent")]
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            smtp_host: submission.ip().to_string(),
            smtp_port: submission.port(),
            smtp_security: Security::None,
            imap_host: domain::testing::oauth::dovecot_imap_addr()?
                .ip()
                .to_string(),
            imap_port: domain::testing::oauth::dovecot_imap_addr()?.port(),
            // Dovecot's IMAP here is plain text, where the providers' is TLS.
            imap_security: Security::None,
        };
        let api = TestApi::start_on(listener, |config| {
            config.oauth.redirect_url = redirect.clone();
            config.oauth.providers.google = google;
            adjust(config);
        })
        .await?;
        Ok(Self {
            api,
            server,
            client,
        })
    }

    /// Starts a connection: the authorization URL the api answered.
    async fn authorize(&self, tenant: &Tenant, body: Value) -> anyhow::Result<Url> {
        let (status, started) = self.api.post(AUTHORIZE, &tenant.key, body).await?;
        anyhow::ensure!(status == 200, "authorize answered {status}: {started}");
        Ok(Url::parse(
            started["authorization_url"].as_str().unwrap_or_default(),
        )?)
    }

    /// The browser's trip through Hydra as `address`: the callback URL it is sent to.
    async fn consent(&self, url: &Url, address: &str) -> anyhow::Result<String> {
        Ok(self
            .server
            .authorize_url_as(&self.client, url, address)
            .await?
            .to_string())
    }

    /// Connects `address` to `tenant`'s workspace: the mailbox's id.
    async fn connect(&self, tenant: &Tenant, address: &str) -> anyhow::Result<String> {
        let url = self
            .authorize(tenant, json!({"return_url": RETURN_URL}))
            .await?;
        let callback = self.consent(&url, address).await?;
        let outcome = self.callback(&callback).await?;
        outcome.mailbox_id()
    }

    /// Calls the callback as the browser would.
    async fn callback(&self, url: &str) -> anyhow::Result<Outcome> {
        let (status, headers, body) = self.api.browse(url).await?;
        let location = headers
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(Url::parse)
            .transpose()?;
        Ok(Outcome {
            status,
            location,
            body,
        })
    }

    /// The grant stored for a mailbox, with its refresh token decrypted.
    async fn refresh_token(&self, mailbox_id: &str) -> anyhow::Result<(i64, String)> {
        let id: Uuid = mailbox_id.parse()?;
        let mut conn = self.api.db().await?;
        let grant = mailbox_oauth::find(&mut conn, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no grant stored"))?;
        let cipher = SecretCipher::from_spec(&SecretString::from(ENCRYPTION_KEYS))?;
        let token = cipher.decrypt(&grant.refresh_token_encrypted, &refresh_token_context(id))?;
        Ok((grant.generation, token.expose_secret().to_owned()))
    }
}

impl Connector {
    /// The access token stored for a mailbox, decrypted.
    async fn access_token(&self, mailbox_id: &str) -> anyhow::Result<String> {
        let id: Uuid = mailbox_id.parse()?;
        let mut conn = self.api.db().await?;
        let stored = mailbox_oauth::find(&mut conn, id)
            .await?
            .and_then(|grant| grant.access_token_encrypted)
            .ok_or_else(|| anyhow::anyhow!("no access token stored"))?;
        let cipher = SecretCipher::from_spec(&SecretString::from(ENCRYPTION_KEYS))?;
        let token = cipher.decrypt(&stored, &access_token_context(id))?;
        Ok(token.expose_secret().to_owned())
    }
}

/// What the callback answered.
struct Outcome {
    status: u16,
    location: Option<Url>,
    body: String,
}

impl Outcome {
    fn param(&self, name: &str) -> Option<String> {
        self.location.as_ref().and_then(|url| {
            url.query_pairs()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
        })
    }

    /// A redirect to the return URL with `error`: that error.
    fn error(&self) -> anyhow::Result<String> {
        anyhow::ensure!(
            self.status == 303,
            "answered {}: {}",
            self.status,
            self.body
        );
        self.param("error")
            .ok_or_else(|| anyhow::anyhow!("no error in {:?}", self.location))
    }

    fn mailbox_id(&self) -> anyhow::Result<String> {
        anyhow::ensure!(
            self.status == 303,
            "answered {}: {}",
            self.status,
            self.body
        );
        anyhow::ensure!(
            self.param("status").as_deref() == Some("connected"),
            "not connected: {:?}",
            self.location
        );
        self.param("mailbox_id")
            .ok_or_else(|| anyhow::anyhow!("no mailbox_id in {:?}", self.location))
    }
}

fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

#[tokio::test]
async fn connects_a_mailbox_verifies_it_and_revokes_the_grant_when_deleted() -> anyhow::Result<()> {
    let connector = Connector::start().await?;
    let api = &connector.api;
    let tenant = api.tenant("acme").await?;
    let address = unique_address("jane");

    let url = connector
        .authorize(
            &tenant,
            json!({"from_name": "Jane Doe", "daily_limit": 40, "timezone": "Europe/Paris",
                   "login_hint": address.to_uppercase(), "return_url": RETURN_URL}),
        )
        .await?;
    assert_eq!(param(&url, "login_hint"), Some(address.clone()));
    assert_eq!(
        param(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(param(&url, "state").is_some_and(|s| s.len() >= 32), "{url}");

    let callback = connector.consent(&url, &address).await?;
    let outcome = connector.callback(&callback).await?;
    let id = outcome.mailbox_id()?;
    let location = outcome
        .location
        .as_ref()
        .map(Url::to_string)
        .unwrap_or_default();
    assert!(location.starts_with(RETURN_URL), "{location}");
    assert!(!location.contains("code="), "{location}");

    let (status, mailbox) = api
        .get(&format!("/api/v1/mailboxes/{id}"), &tenant.key)
        .await?;
    assert_eq!(status, 200, "{mailbox}");
    assert_eq!(
        mailbox["auth"],
        json!({"type": "oauth2", "provider": "google", "connected_email": address,
               "status": "connected"})
    );
    assert_eq!(mailbox["email"], address.as_str());
    assert_eq!(mailbox["from_name"], "Jane Doe");
    assert_eq!(mailbox["daily_limit"], 40);
    assert_eq!(mailbox["timezone"], "Europe/Paris");
    assert_eq!(mailbox["status"], "active");
    assert_eq!(mailbox["smtp"]["username"], address.as_str());
    assert_eq!(mailbox["smtp"]["password_set"], false);
    assert_eq!(mailbox["imap"]["security"], "none", "the provider's");
    assert_eq!(mailbox["imap"]["password_set"], false);

    let (generation, refresh_token) = connector.refresh_token(&id).await?;
    assert_eq!(generation, 0);
    assert!(connector.server.is_active(&refresh_token).await?);
    let access_token = connector.access_token(&id).await?;
    assert!(connector.server.is_active(&access_token).await?);
    let (_, list) = api.get("/api/v1/mailboxes", &tenant.key).await?;
    assert_eq!(list["data"][0]["auth"]["type"], "oauth2");
    for body in [&mailbox, &list] {
        for token in [&refresh_token, &access_token] {
            assert!(!body.to_string().contains(token.as_str()), "{body}");
        }
    }

    // The same callback again is a replay: refused, nothing created.
    let replay = connector.callback(&callback).await?;
    assert_eq!(replay.error()?, "state_replayed");
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));

    // Verify logs in to Dovecot with the access token (Dovecot asks Hydra about it).
    let (status, verified) = api
        .post(
            &format!("/api/v1/mailboxes/{id}/verify"),
            &tenant.key,
            json!({}),
        )
        .await?;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["smtp"]["ok"], true, "{verified}");
    assert_eq!(verified["imap"]["ok"], true, "{verified}");
    assert_eq!(verified["status"], "active");

    // Deleting the mailbox revokes its grant at the provider.
    let (status, _) = api
        .delete(&format!("/api/v1/mailboxes/{id}"), &tenant.key)
        .await?;
    assert_eq!(status, 204);
    assert!(!connector.server.is_active(&refresh_token).await?);
    Ok(())
}

#[tokio::test]
async fn reconnect_keeps_the_mailbox_and_resumes_it() -> anyhow::Result<()> {
    let connector = Connector::start().await?;
    let api = &connector.api;
    let tenant = api.tenant("acme").await?;
    let address = unique_address("ops");
    let id = connector.connect(&tenant, &address).await?;
    let path = format!("/api/v1/mailboxes/{id}");
    let (_, old_token) = connector.refresh_token(&id).await?;

    // The provider refused the grant (as a worker records it).
    api.database()
        .exec(&format!(
            "UPDATE mailboxes SET status = 'reconnect_required', \
             status_reason = 'invalid_grant' WHERE id = '{id}'"
        ))
        .await?;
    let (_, mailbox) = api.get(&path, &tenant.key).await?;
    assert_eq!(mailbox["status"], "reconnect_required");
    assert_eq!(mailbox["auth"]["status"], "reconnect_required");

    // Only a reconnect makes it active; its credentials are not the client's to set.
    let (status, body) = api
        .put(&path, &tenant.key, json!({"status": "active"}))
        .await?;
    assert_conflicting_field(status, &body, "status");
    let (status, body) = api
        .put(
            &path,
            &tenant.key,
            json!({"smtp": {"password": "app-password"}}),
        )
        .await?;
    assert_conflicting_field(status, &body, "smtp.password");
    let (status, body) = api
        .put(
            &path,
            &tenant.key,
            json!({"email": unique_address("other")}),
        )
        .await?;
    assert_conflicting_field(status, &body, "email");
    let (status, body) = api
        .put(&path, &tenant.key, json!({"daily_limit": 12}))
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "reconnect_required");
    // Verify says why it cannot log in, and the status stays.
    let (status, verified) = api
        .post(&format!("{path}/verify"), &tenant.key, json!({}))
        .await?;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["smtp"]["ok"], false);
    assert!(
        verified["smtp"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("connected again")),
        "{verified}"
    );
    assert_eq!(verified["status"], "reconnect_required");

    // Reconnecting as another account is refused and changes nothing.
    let reconnect = format!("{path}/oauth/reconnect");
    let (status, started) = api
        .post(&reconnect, &tenant.key, json!({"return_url": RETURN_URL}))
        .await?;
    assert_eq!(status, 200, "{started}");
    let url = Url::parse(started["authorization_url"].as_str().unwrap_or_default())?;
    assert_eq!(param(&url, "login_hint"), Some(address.clone()));
    let callback = connector.consent(&url, &unique_address("intruder")).await?;
    assert_eq!(
        connector.callback(&callback).await?.error()?,
        "wrong_account"
    );

    // No body at all: every field is optional.
    let (status, started) = api
        .request(reqwest::Method::POST, &reconnect, Some(&tenant.key), None)
        .await?;
    assert_eq!(status, 200, "{started}");
    let url = Url::parse(started["authorization_url"].as_str().unwrap_or_default())?;
    let callback = connector.consent(&url, &address).await?;
    // Without a return_url: a page saying so.
    let outcome = connector.callback(&callback).await?;
    assert_eq!(outcome.status, 200, "{}", outcome.body);
    assert!(outcome.body.contains(&id), "{}", outcome.body);

    let (_, mailbox) = api.get(&path, &tenant.key).await?;
    assert_eq!(mailbox["status"], "active");
    assert!(mailbox["status_reason"].is_null());
    assert_eq!(mailbox["daily_limit"], 12, "settings are kept");
    assert_eq!(mailbox["auth"]["status"], "connected");
    let (generation, new_token) = connector.refresh_token(&id).await?;
    assert_eq!(generation, 1);
    assert_ne!(new_token, old_token);

    // A password mailbox is not reconnected (its address is connected with authorize).
    let (status, password) = api
        .post(
            "/api/v1/mailboxes",
            &tenant.key,
            json!({"email": unique_address("pw"),
                   "smtp": {"host": "127.0.0.1", "port": 25, "security": "none"}}),
        )
        .await?;
    assert_eq!(status, 201, "{password}");
    assert_eq!(password["auth"]["type"], "password");
    assert!(password["auth"]["provider"].is_null());
    let pid = password["id"].as_str().unwrap_or_default();
    let (status, body) = api
        .post(
            &format!("/api/v1/mailboxes/{pid}/oauth/reconnect"),
            &tenant.key,
            json!({}),
        )
        .await?;
    assert_error(status, &body, 409, "conflict");
    // Another workspace cannot reconnect it either.
    let other = api.tenant("other").await?;
    let (status, body) = api.post(&reconnect, &other.key, json!({})).await?;
    assert_error(status, &body, 404, "not_found");
    Ok(())
}

#[tokio::test]
async fn connecting_an_address_of_a_password_mailbox_converts_it() -> anyhow::Result<()> {
    let connector = Connector::start().await?;
    let api = &connector.api;
    let tenant = api.tenant("acme").await?;
    let address = unique_address("sales");
    let (status, created) = api
        .post(
            "/api/v1/mailboxes",
            &tenant.key,
            json!({"email": address, "daily_limit": 7,
                   "smtp": {"host": "127.0.0.1", "port": 25, "security": "none",
                            "username": address, "password": "old-password"}}),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    let id = connector.connect(&tenant, &address).await?;
    assert_eq!(created["id"], id.as_str(), "the mailbox keeps its id");
    let (_, mailbox) = api
        .get(&format!("/api/v1/mailboxes/{id}"), &tenant.key)
        .await?;
    assert_eq!(mailbox["auth"]["type"], "oauth2");
    assert_eq!(mailbox["smtp"]["password_set"], false);
    assert_eq!(mailbox["daily_limit"], 7, "settings not given are kept");
    Ok(())
}

#[tokio::test]
async fn callbacks_that_cannot_connect_say_why() -> anyhow::Result<()> {
    let connector = Connector::start().await?;
    let api = &connector.api;
    let tenant = api.tenant("acme").await?;
    let base = &api.base_url;

    // Unknown or missing state: no return_url is known, so a page.
    for query in ["?code=abc&state=not-a-state", "?code=abc", ""] {
        let outcome = connector
            .callback(&format!("{base}/api/v1/oauth/callback{query}"))
            .await?;
        assert_eq!(outcome.status, 400, "{query}");
        assert!(outcome.body.contains("invalid_state"), "{}", outcome.body);
    }

    // Denied consent.
    let url = connector
        .authorize(&tenant, json!({"return_url": RETURN_URL}))
        .await?;
    let denied = connector
        .server
        .deny_url_as(&connector.client, &url, DenyAt::Consent)
        .await?;
    let outcome = connector.callback(denied.as_str()).await?;
    assert_eq!(outcome.error()?, "access_denied");

    // Expired state.
    let url = connector
        .authorize(&tenant, json!({"return_url": RETURN_URL}))
        .await?;
    let callback = connector.consent(&url, &unique_address("late")).await?;
    api.database()
        .exec(
            "UPDATE oauth_authorizations SET expires_at = now() - interval '1 second' \
               WHERE used_at IS NULL",
        )
        .await?;
    assert_eq!(
        connector.callback(&callback).await?.error()?,
        "state_expired"
    );

    // An address another workspace's mailbox has.
    let other = api.tenant("other").await?;
    let taken = unique_address("taken");
    let (status, body) = api
        .post(
            "/api/v1/mailboxes",
            &other.key,
            json!({"email": taken, "smtp": {"host": "127.0.0.1", "port": 25, "security": "none"}}),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    let url = connector
        .authorize(&tenant, json!({"return_url": RETURN_URL}))
        .await?;
    let callback = connector.consent(&url, &taken).await?;
    assert_eq!(
        connector.callback(&callback).await?.error()?,
        "address_in_use"
    );
    // ... and an account connected to another workspace's mailbox.
    let shared = unique_address("shared");
    connector.connect(&other, &shared).await?;
    let url = connector
        .authorize(&tenant, json!({"return_url": RETURN_URL}))
        .await?;
    let callback = connector.consent(&url, &shared).await?;
    assert_eq!(
        connector.callback(&callback).await?.error()?,
        "address_in_use"
    );
    let (_, list) = api.get("/api/v1/mailboxes", &tenant.key).await?;
    assert_eq!(
        list["data"],
        json!([]),
        "nothing connected to the workspace"
    );
    Ok(())
}

#[tokio::test]
async fn a_provider_refusing_the_exchange_is_a_provider_error() -> anyhow::Result<()> {
    let connector = Connector::start_with(|config| {
        config.oauth.providers.google.client_secret = SecretString::from("wrong-secret");
    })
    .await?;
    let tenant = connector.api.tenant("acme").await?;
    let url = connector
        .authorize(&tenant, json!({"return_url": RETURN_URL}))
        .await?;
    let callback = connector.consent(&url, &unique_address("jane")).await?;
    let outcome = connector.callback(&callback).await?;
    assert_eq!(outcome.error()?, "provider_error");
    Ok(())
}

#[tokio::test]
async fn authorize_requests_name_what_is_wrong() -> anyhow::Result<()> {
    let connector = Connector::start().await?;
    let api = &connector.api;
    let tenant = api.tenant("acme").await?;
    for provider in ["yahoo", "microsoft"] {
        let (status, body) = api
            .post(
                &format!("/api/v1/mailboxes/oauth/{provider}/authorize"),
                &tenant.key,
                json!({}),
            )
            .await?;
        assert_field_error(status, &body, "provider");
    }
    for (field, body) in [
        (
            "return_url",
            json!({"return_url": "http://app.example.com/done"}),
        ),
        ("return_url", json!({"return_url": "/relative"})),
        ("login_hint", json!({"login_hint": "not an address"})),
        ("daily_limit", json!({"daily_limit": 0})),
        ("timezone", json!({"timezone": "Mars/Olympus"})),
    ] {
        let (status, answer) = api.post(AUTHORIZE, &tenant.key, body).await?;
        assert_field_error(status, &answer, field);
    }
    let (status, body) = api.post(AUTHORIZE, "not-a-key", json!({})).await?;
    assert_error(status, &body, 401, "unauthorized");

    // Without encryption keys the verifier (and later the tokens) could not be stored.
    let keyless = Connector::start_with(|config| {
        config.security.encryption_keys = SecretString::from(String::new());
    })
    .await?;
    let tenant = keyless.api.tenant("acme").await?;
    let (status, body) = keyless.api.post(AUTHORIZE, &tenant.key, json!({})).await?;
    assert_error(status, &body, 503, "encryption_not_configured");

    // OAuth connections disabled (no redirect URL): no provider is enabled.
    let disabled = TestApi::start().await?;
    let tenant = disabled.tenant("acme").await?;
    let (status, body) = disabled.post(AUTHORIZE, &tenant.key, json!({})).await?;
    assert_field_error(status, &body, "provider");
    Ok(())
}
