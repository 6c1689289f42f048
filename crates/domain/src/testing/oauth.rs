//! The OAuth 2.0 test servers `cargo xtask test` runs for mailboxes connected with OAuth: ORY
//! Hydra as the authorization server (Google's and Microsoft's stand-in) and Dovecot, whose
//! IMAP and SMTP submission accept only XOAUTH2/OAUTHBEARER and check each bearer token
//! through Hydra's introspection (active, and its subject equal to the user name). Submission
//! relays to GreenMail, so what is sent there can be read with [`super::greenmail::received`].
//!
//! Hydra's login and consent pages do not exist: [`AuthorizationServer::authorize_as`] plays
//! the user and the login/consent app through Hydra's admin API, as a browser would follow
//! the redirects (cookies carried by hand: Hydra checks its CSRF cookies on each step).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The scopes test clients are registered with and ask for.
pub const SCOPE: &str = "openid email offline_access mail";

fn env(var: &str) -> anyhow::Result<String> {
    std::env::var(var).map_err(|_| anyhow::anyhow!("{var} is not set; run `cargo xtask test`"))
}

fn addr(var: &str) -> anyhow::Result<SocketAddr> {
    Ok(env(var)?.parse()?)
}

/// Dovecot's IMAP address (`SEQ_TEST_DOVECOT_IMAP_ADDR`; plain text, XOAUTH2 only).
pub fn dovecot_imap_addr() -> anyhow::Result<SocketAddr> {
    addr("SEQ_TEST_DOVECOT_IMAP_ADDR")
}

/// Dovecot's SMTP submission address (`SEQ_TEST_DOVECOT_SUBMISSION_ADDR`; plain text,
/// XOAUTH2 only, relaying to GreenMail).
pub fn dovecot_submission_addr() -> anyhow::Result<SocketAddr> {
    addr("SEQ_TEST_DOVECOT_SUBMISSION_ADDR")
}

/// Puts `message` (a whole RFC 5322 email) into `address`'s Dovecot INBOX, logged in with
/// XOAUTH2 as the user: how a reply reaches an OAuth mailbox in the tests.
pub async fn append_to_dovecot_inbox(
    address: &str,
    access_token: &str,
    message: &str,
) -> anyhow::Result<()> {
    let tcp = tokio::net::TcpStream::connect(dovecot_imap_addr()?).await?;
    let mut client = async_imap::Client::new(tcp);
    client
        .read_response()
        .await?
        .ok_or_else(|| anyhow::anyhow!("Dovecot closed the connection before greeting"))?;
    let mut session = client
        .authenticate("XOAUTH2", Xoauth2::new(address, access_token))
        .await
        .map_err(|(error, _)| anyhow::anyhow!("XOAUTH2 login refused: {error}"))?;
    session
        .append("INBOX", None, None, message.as_bytes())
        .await?;
    session.logout().await?;
    Ok(())
}

/// The XOAUTH2 initial client response (before base64), as Google and Microsoft define it.
pub fn xoauth2_response(user: &str, access_token: &str) -> String {
    crate::mail::xoauth2::initial_response(user, access_token)
}

/// XOAUTH2 for async-imap's `Client::authenticate("XOAUTH2", ...)`.
pub struct Xoauth2;

impl Xoauth2 {
    #[allow(clippy::new_ret_no_self)]
    pub fn new(user: &str, access_token: &str) -> crate::mail::xoauth2::ImapAuthenticator {
        crate::mail::xoauth2::ImapAuthenticator::new(
            user,
            &secrecy::SecretString::from(access_token.to_owned()),
        )
    }
}

/// How long a client's access tokens live; `None` keeps the server's configured default.
/// Short ones let a test see tokens expire and be refreshed.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccessTokenLifespans {
    /// Of tokens the authorization code gives.
    pub from_code: Option<Duration>,
    /// Of tokens a refresh gives.
    pub from_refresh: Option<Duration>,
}

/// A client registered at the authorization server (as a tenant's app is at Google).
#[derive(Debug, Clone)]
pub struct OAuthClient {
    pub id: String,
    pub secret: String,
    pub redirect_uri: String,
}

/// What the client's redirect URI received after the user agreed, with the PKCE verifier
/// the code must be exchanged with.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub code: String,
    /// The `state` the client sent, as echoed back.
    pub state: String,
    pub code_verifier: String,
}

/// Where in the flow [`AuthorizationServer::deny`] refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyAt {
    /// The user does not log in.
    Login,
    /// The user logs in but refuses consent.
    Consent,
}

/// What the client's redirect URI received after a refusal.
#[derive(Debug, Clone)]
pub struct Denial {
    /// The OAuth error code (`access_denied`).
    pub error: String,
    /// The `state` the client sent, as echoed back.
    pub state: String,
}

/// A successful answer of the token endpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub expires_in: u64,
    pub token_type: String,
    pub scope: Option<String>,
}

/// An OAuth error answer of the token or revocation endpoint (RFC 6749 5.2); tests match on
/// it with `anyhow::Error::downcast_ref`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the authorization server answered {status}: {error} ({description})")]
pub struct OAuthError {
    pub status: u16,
    /// `invalid_grant` for a used, revoked or expired code or refresh token.
    pub error: String,
    pub description: String,
}

/// ORY Hydra, through its public (`SEQ_TEST_OAUTH_PUBLIC_URL`) and admin
/// (`SEQ_TEST_OAUTH_ADMIN_URL`) APIs.
pub struct AuthorizationServer {
    public_url: String,
    admin_url: String,
    http: reqwest::Client,
}

impl AuthorizationServer {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(AuthorizationServer {
            public_url: env("SEQ_TEST_OAUTH_PUBLIC_URL")?
                .trim_end_matches('/')
                .to_owned(),
            admin_url: env("SEQ_TEST_OAUTH_ADMIN_URL")?
                .trim_end_matches('/')
                .to_owned(),
            // Every redirect is a step the test looks at (and the last one goes nowhere).
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    /// The authorization endpoint (`{public}/oauth2/auth`).
    pub fn authorization_endpoint(&self) -> String {
        format!("{}/oauth2/auth", self.public_url)
    }

    /// The token endpoint (`{public}/oauth2/token`).
    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth2/token", self.public_url)
    }

    /// The revocation endpoint (`{public}/oauth2/revoke`).
    pub fn revocation_endpoint(&self) -> String {
        format!("{}/oauth2/revoke", self.public_url)
    }

    /// Registers a client of its own (authorization code with PKCE, refresh tokens,
    /// `client_secret_post`) whose access tokens live as `lifespans` says.
    pub async fn create_client(
        &self,
        redirect_uri: &str,
        lifespans: AccessTokenLifespans,
    ) -> anyhow::Result<OAuthClient> {
        let client = OAuthClient {
            id: format!("seq-test-{}", Uuid::new_v4().simple()),
            secret: random_token(),
            redirect_uri: redirect_uri.to_owned(),
        };
        let mut body = json!({
            "client_id": client.id,
            "client_secret": client.secret,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "scope": SCOPE,
            "redirect_uris": [redirect_uri],
            "token_endpoint_auth_method": "client_secret_post",
        });
        if let Some(lifespan) = lifespans.from_code {
            body["authorization_code_grant_access_token_lifespan"] =
                json!(format!("{}ms", lifespan.as_millis()));
        }
        if let Some(lifespan) = lifespans.from_refresh {
            body["refresh_token_grant_access_token_lifespan"] =
                json!(format!("{}ms", lifespan.as_millis()));
        }
        let response = self
            .http
            .post(format!("{}/admin/clients", self.admin_url))
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        anyhow::ensure!(
            status.is_success(),
            "creating an OAuth client answered {status}: {}",
            response.text().await?
        );
        Ok(client)
    }

    /// Runs the authorization code flow as the user `email` (its subject and the id token's
    /// `email`) who logs in and grants every scope: the code and state the redirect URI got.
    pub async fn authorize_as(
        &self,
        client: &OAuthClient,
        email: &str,
    ) -> anyhow::Result<Authorization> {
        let (callback, state, code_verifier) = self.flow(client, email, None).await?;
        let echoed = query_param(&callback, "state")?;
        anyhow::ensure!(echoed == state, "state {echoed} echoed for {state}");
        Ok(Authorization {
            code: query_param(&callback, "code")?,
            state: echoed,
            code_verifier,
        })
    }

    /// Runs the flow for a user who refuses at `at`: the error the redirect URI got.
    pub async fn deny(&self, client: &OAuthClient, at: DenyAt) -> anyhow::Result<Denial> {
        let email = format!("denied-{}@example.com", Uuid::new_v4().simple());
        let (callback, state, _) = self.flow(client, &email, Some(at)).await?;
        let echoed = query_param(&callback, "state")?;
        anyhow::ensure!(echoed == state, "state {echoed} echoed for {state}");
        Ok(Denial {
            error: query_param(&callback, "error")?,
            state: echoed,
        })
    }

    /// Exchanges the code for tokens.
    pub async fn exchange_code(
        &self,
        client: &OAuthClient,
        authorization: &Authorization,
    ) -> anyhow::Result<TokenResponse> {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", &authorization.code),
            ("redirect_uri", &client.redirect_uri),
            ("client_id", &client.id),
            ("client_secret", &client.secret),
            ("code_verifier", &authorization.code_verifier),
        ])
        .await
    }

    /// Refreshes; Hydra rotates refresh tokens, so the answer holds the next one.
    pub async fn refresh(
        &self,
        client: &OAuthClient,
        refresh_token: &str,
    ) -> anyhow::Result<TokenResponse> {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", &client.id),
            ("client_secret", &client.secret),
        ])
        .await
    }

    /// Revokes `token`; revoking a refresh token also revokes its grant's access tokens (as
    /// when a user disconnects the app in their Google account).
    pub async fn revoke(&self, client: &OAuthClient, token: &str) -> anyhow::Result<()> {
        self.post_form(
            &self.revocation_endpoint(),
            &[
                ("token", token),
                ("client_id", &client.id),
                ("client_secret", &client.secret),
            ],
        )
        .await?;
        Ok(())
    }

    /// Whether the authorization server still considers `token` active (introspection, as
    /// Dovecot does on each login).
    pub async fn is_active(&self, token: &str) -> anyhow::Result<bool> {
        let response = self
            .http
            .post(format!("{}/admin/oauth2/introspect", self.admin_url))
            .form(&[("token", token)])
            .send()
            .await?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await?;
        anyhow::ensure!(
            status.is_success(),
            "introspection answered {status}: {answer}"
        );
        Ok(answer["active"] == true)
    }

    /// Steps 2 to 4 of the flow: the redirect to the client's redirect URI, the state sent
    /// and the PKCE verifier.
    async fn flow(
        &self,
        client: &OAuthClient,
        email: &str,
        deny_at: Option<DenyAt>,
    ) -> anyhow::Result<(Url, String, String)> {
        let state = Uuid::new_v4().simple().to_string();
        let code_verifier = random_token();
        let code_challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(code_verifier.as_bytes()));
        let start = Url::parse_with_params(
            &self.authorization_endpoint(),
            [
                ("client_id", client.id.as_str()),
                ("response_type", "code"),
                ("scope", SCOPE),
                ("redirect_uri", &client.redirect_uri),
                ("state", &state),
                ("code_challenge", &code_challenge),
                ("code_challenge_method", "S256"),
            ],
        )?;
        let callback = self.flow_from(client, &start, email, deny_at).await?;
        Ok((callback, state, code_verifier))
    }

    /// Runs the flow from an authorization URL the client built itself (with its own state
    /// and PKCE challenge), as the user `email` who logs in and grants every scope: the URL
    /// the redirect URI got.
    pub async fn authorize_url_as(
        &self,
        client: &OAuthClient,
        start: &Url,
        email: &str,
    ) -> anyhow::Result<Url> {
        self.flow_from(client, start, email, None).await
    }

    /// Runs the flow from an authorization URL the client built itself, as a user who
    /// refuses at `at`: the URL the redirect URI got (with `error` and the client's `state`).
    pub async fn deny_url_as(
        &self,
        client: &OAuthClient,
        start: &Url,
        at: DenyAt,
    ) -> anyhow::Result<Url> {
        let email = format!("denied-{}@example.com", Uuid::new_v4().simple());
        self.flow_from(client, start, &email, Some(at)).await
    }

    /// Steps 2 to 4 of the flow from `start`: the redirect to the client's redirect URI.
    async fn flow_from(
        &self,
        client: &OAuthClient,
        start: &Url,
        email: &str,
        deny_at: Option<DenyAt>,
    ) -> anyhow::Result<Url> {
        let mut cookies = BTreeMap::new();
        let to_login = self.follow(start, &mut cookies).await?;
        let login_challenge = query_param(&to_login, "login_challenge")?;
        let verified = if deny_at == Some(DenyAt::Login) {
            self.decide("login", "reject", &login_challenge, rejection())
                .await?
        } else {
            let subject = json!({ "subject": email });
            self.decide("login", "accept", &login_challenge, subject)
                .await?
        };
        let next = self.follow(&verified, &mut cookies).await?;
        if deny_at == Some(DenyAt::Login) {
            return Ok(next);
        }
        let consent_challenge = query_param(&next, "consent_challenge")?;
        let verified = if deny_at == Some(DenyAt::Consent) {
            self.decide("consent", "reject", &consent_challenge, rejection())
                .await?
        } else {
            let grant = json!({
                "grant_scope": SCOPE.split(' ').collect::<Vec<_>>(),
                "session": { "id_token": { "email": email } },
            });
            self.decide("consent", "accept", &consent_challenge, grant)
                .await?
        };
        let callback = self.follow(&verified, &mut cookies).await?;
        anyhow::ensure!(
            callback.as_str().starts_with(&client.redirect_uri),
            "the flow ended at {callback}, not at the redirect URI"
        );
        Ok(callback)
    }

    /// `GET url` of the public API with the flow's cookies, keeping those it sets: where it
    /// redirects to.
    async fn follow(
        &self,
        url: &Url,
        cookies: &mut BTreeMap<String, String>,
    ) -> anyhow::Result<Url> {
        let cookie = cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let response = self
            .http
            .get(url.clone())
            .header(COOKIE, cookie)
            .send()
            .await?;
        for set in response.headers().get_all(SET_COOKIE) {
            let pair = set.to_str()?.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                cookies.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        match location {
            Some(location) if status.is_redirection() => Ok(url.join(&location)?),
            _ => anyhow::bail!(
                "{} answered {status} without a redirect: {}",
                url.path(),
                response.text().await?
            ),
        }
    }

    /// The login/consent app's decision (`kind` login or consent, `verdict` accept or
    /// reject): where Hydra sends the browser next.
    async fn decide(
        &self,
        kind: &str,
        verdict: &str,
        challenge: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<Url> {
        let url = Url::parse_with_params(
            &format!(
                "{}/admin/oauth2/auth/requests/{kind}/{verdict}",
                self.admin_url
            ),
            [(format!("{kind}_challenge"), challenge)],
        )?;
        let response = self.http.put(url).json(&body).send().await?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await?;
        let redirect_to = answer["redirect_to"].as_str().ok_or_else(|| {
            anyhow::anyhow!("{verdict}ing the {kind} answered {status}: {answer}")
        })?;
        Ok(Url::parse(redirect_to)?)
    }

    /// A request to the token endpoint.
    async fn token(&self, fields: &[(&str, &str)]) -> anyhow::Result<TokenResponse> {
        let answer = self.post_form(&self.token_endpoint(), fields).await?;
        Ok(serde_json::from_str(&answer)?)
    }

    /// `POST` of a form to the public API: the body of a 2xx answer, else an [`OAuthError`].
    async fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> anyhow::Result<String> {
        let response = self.http.post(url).form(fields).send().await?;
        let status = response.status();
        let body = response.text().await?;
        if status.is_success() {
            return Ok(body);
        }
        let error: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        Err(OAuthError {
            status: status.as_u16(),
            error: error["error"].as_str().unwrap_or(&body).to_owned(),
            description: error["error_description"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        }
        .into())
    }
}

fn rejection() -> serde_json::Value {
    json!({ "error": "access_denied", "error_description": "the user said no" })
}

/// 256 random bits, base64url: a PKCE verifier (RFC 7636 wants 43 to 128 characters) or a
/// client secret.
fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The value of `name` in `url`'s query.
fn query_param(url: &Url, name: &str) -> anyhow::Result<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| anyhow::anyhow!("no {name} in {url}"))
}
