//! The token client: code exchange, refresh and revocation at a provider's endpoints, with
//! the client's credentials as form parameters (`client_secret_post`, which Google and
//! Microsoft both accept).
//!
//! HTTP/1.1 with hyper over a connection [`OutboundGuard::connect`] made (so a name is
//! resolved once, through the guard, and an address in the URL is judged the same way), TLS
//! with the mail checks' rustls configuration (ring, Mozilla's roots). Not reqwest: its
//! rustls support wants either aws-lc-rs or a process-wide crypto provider, without which
//! every other reqwest client of the process (the OTLP exporter's too) would panic.
//! One request per connection, no redirects followed, no proxy, one deadline for all of it.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use super::answer;
pub use super::answer::Tokens;
use super::endpoint::{self, InvalidEndpoint};
pub use super::error::TokenError;
use crate::clock::Clock;
use crate::config::OAuthProviderConfig;
use crate::outbound::{ConnectError, OutboundGuard, Purpose};

/// Token answers are a few kilobytes; reading stops past this.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Calls providers' token and revocation endpoints. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TokenClient {
    guard: OutboundGuard,
    clock: Arc<dyn Clock>,
    tls: Arc<ClientConfig>,
    timeout: Duration,
}

impl TokenClient {
    /// A client whose every request goes through `guard` and ends within `timeout`
    /// (connection, TLS and answer included); expiries are computed from `clock`.
    pub fn new(
        guard: OutboundGuard,
        clock: Arc<dyn Clock>,
        timeout: Duration,
    ) -> Result<Self, TokenError> {
        let tls = crate::mail::tls_config().map_err(TokenError::Transport)?;
        Ok(TokenClient {
            guard,
            clock,
            tls,
            timeout,
        })
    }

    /// Exchanges an authorization code (with the PKCE verifier of its request) for tokens;
    /// `redirect_url` must be the one the authorization URL carried.
    pub async fn exchange_code(
        &self,
        provider: &OAuthProviderConfig,
        code: &SecretString,
        verifier: &SecretString,
        redirect_url: &str,
    ) -> Result<Tokens, TokenError> {
        self.token(
            provider,
            &[
                ("grant_type", "authorization_code"),
                ("code", code.expose_secret()),
                ("redirect_uri", redirect_url),
                ("code_verifier", verifier.expose_secret()),
            ],
        )
        .await
    }

    /// A new access token for `refresh_token`. [`Tokens::refresh_token`] is the one to keep
    /// from now on when present (rotation); when absent the old one stays valid.
    pub async fn refresh(
        &self,
        provider: &OAuthProviderConfig,
        refresh_token: &SecretString,
    ) -> Result<Tokens, TokenError> {
        self.token(
            provider,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.expose_secret()),
            ],
        )
        .await
    }

    /// Revokes `token` (RFC 7009; a refresh token takes its access tokens with it). `Ok`
    /// without a request when the provider has no revocation endpoint (Microsoft), and when
    /// the provider says the token is already invalid.
    pub async fn revoke(
        &self,
        provider: &OAuthProviderConfig,
        token: &SecretString,
    ) -> Result<(), TokenError> {
        let Some(url) = provider.revoke_url() else {
            return Ok(());
        };
        let (status, body) = self
            .post(
                provider,
                "revoke_url",
                &url,
                &[("token", token.expose_secret())],
            )
            .await?;
        answer::revoked(status, &body)
    }

    async fn token(
        &self,
        provider: &OAuthProviderConfig,
        grant: &[(&str, &str)],
    ) -> Result<Tokens, TokenError> {
        let requested_at = self.clock.now();
        let (status, body) = self
            .post(provider, "token_url", &provider.token_url(), grant)
            .await?;
        answer::tokens(status, &body, requested_at)
    }

    /// `POST`s `fields` and the client's credentials to `url`: the status and the body.
    async fn post(
        &self,
        provider: &OAuthProviderConfig,
        endpoint: &'static str,
        url: &str,
        fields: &[(&str, &str)],
    ) -> Result<(u16, Vec<u8>), TokenError> {
        let url = endpoint::parse(endpoint, url)?;
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .append_pair("client_id", provider.client_id())
            .append_pair("client_secret", provider.client_secret().expose_secret())
            .finish();
        tokio::time::timeout(self.timeout, self.send(endpoint, &url, form))
            .await
            .unwrap_or_else(|_| {
                Err(TokenError::Transport(format!(
                    "no answer within {} ms",
                    self.timeout.as_millis()
                )))
            })
    }

    async fn send(
        &self,
        endpoint: &'static str,
        url: &Url,
        form: String,
    ) -> Result<(u16, Vec<u8>), TokenError> {
        let invalid = |reason: &str| InvalidEndpoint {
            endpoint,
            reason: reason.to_owned(),
        };
        let host = url.host_str().ok_or_else(|| invalid("no host"))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| invalid("not an http:// or https:// URL"))?;
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let target = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(target)
            .header(HOST, authority)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(Full::new(Bytes::from(form)))
            .map_err(|_| invalid("not a valid request target"))?;
        let tcp = self
            .guard
            .connect(Purpose::OAuth, host, port, self.timeout)
            .await
            .map_err(|error| match error {
                ConnectError::Refused => TokenError::Refused,
                other => TokenError::Transport(other.to_string()),
            })?;
        match url.scheme() {
            "https" => {
                // A literal IPv6 host comes bracketed from the URL; a certificate names it bare.
                let name = host.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(name.to_owned())
                    .map_err(|_| invalid("the host is not a valid TLS server name"))?;
                let tls = TlsConnector::from(self.tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|error| {
                        TokenError::Transport(format!("TLS handshake failed: {}", chain(&error)))
                    })?;
                exchange(tls, request).await
            }
            "http" => exchange(tcp, request).await,
            _ => Err(invalid("not an http:// or https:// URL").into()),
        }
    }
}

/// Sends `request` over `io` as HTTP/1.1: the answer's status and (bounded) body.
async fn exchange<Io>(io: Io, request: Request<Full<Bytes>>) -> Result<(u16, Vec<u8>), TokenError>
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let transport = |error: hyper::Error| TokenError::Transport(chain(&error));
    let (mut sender, connection) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(transport)?;
    // Drives the connection; it ends once `sender` and the answer are dropped (also when the
    // deadline drops them), closing the socket.
    tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(transport)?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|error| {
            if error.downcast_ref::<LengthLimitError>().is_some() {
                TokenError::Malformed("the answer is too large")
            } else {
                TokenError::Transport(chain(error.as_ref()))
            }
        })?;
    Ok((status, body.to_bytes().to_vec()))
}

/// An error and its causes, `: `-separated (hyper's own text is only the outermost).
fn chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        text.push_str(": ");
        text.push_str(&current.to_string());
        cause = current.source();
    }
    text
}
