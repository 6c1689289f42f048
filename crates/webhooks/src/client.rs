//! One attempt of one delivery: an HTTP/1.1 `POST` over a connection the outbound guard made
//! (so a host is resolved once, through the guard, and a private address is refused however
//! the URL names it), TLS with the mail checks' rustls configuration. No redirects followed,
//! no proxy, one deadline for the whole attempt.
//!
//! Each lane keeps its connection to an endpoint open between attempts ([`Connection`]):
//! at a few thousand deliveries a second, a TCP (and TLS) handshake per request would cost
//! more than the request. A connection that failed in any way is dropped, never reused.

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use reqwest::Url;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use domain::outbound::{ConnectError, OutboundGuard, Purpose};
use domain::webhooks::SignatureHeaders;

/// What is kept of an answer's body: the first kilobyte.
pub const KEPT_BODY_BYTES: usize = 1024;
/// An answer's body is read to its end (so the connection can carry the next request) up to
/// this size; a longer one closes the connection.
const READ_BODY_BYTES: usize = 64 * 1024;
/// A kept-open connection unused for this long is closed rather than reused: servers close
/// idle ones (often after 60 s or less), and a request written to a closing one is lost.
const IDLE_REUSE: Duration = Duration::from_secs(30);
const AGENT: &str = concat!("SequenceService-Webhooks/", env!("CARGO_PKG_VERSION"));

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The endpoint answered `status`; `body` is the answer's first kilobyte.
    Status { status: u16, body: String },
    /// No answer: the connection was refused or broke, or the deadline passed.
    NoAnswer { error: String, kind: Failure },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The outbound guard refused the host's address.
    Refused,
    TimedOut,
    /// Connecting, TLS or the exchange failed.
    Connection,
}

/// Sends attempts; cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    guard: OutboundGuard,
    tls: Arc<ClientConfig>,
    timeout: Duration,
}

/// A lane's open connection to one endpoint's origin.
pub struct Connection {
    origin: (String, String, u16),
    sender: http1::SendRequest<Full<Bytes>>,
    last_used: Instant,
}

impl Client {
    pub fn new(guard: OutboundGuard, timeout: Duration) -> anyhow::Result<Self> {
        let tls = domain::mail::tls_config().map_err(|e| anyhow::anyhow!(e))?;
        Ok(Client {
            guard,
            tls,
            timeout,
        })
    }

    /// `POST`s `body` to `url`, signed with `signature`, over `kept` when it is a live
    /// connection to the same origin; leaves in `kept` the connection to reuse, if any.
    pub async fn attempt(
        &self,
        kept: &mut Option<Connection>,
        url: &Url,
        signature: &SignatureHeaders,
        body: Bytes,
    ) -> Answer {
        let taken = kept.take();
        match tokio::time::timeout(self.timeout, self.exchange(taken, url, signature, body)).await {
            Ok(Ok((answer, connection))) => {
                *kept = connection;
                answer
            }
            Ok(Err(answer)) => answer,
            Err(_) => Answer::NoAnswer {
                error: format!("no answer within {} ms", self.timeout.as_millis()),
                kind: Failure::TimedOut,
            },
        }
    }

    async fn exchange(
        &self,
        kept: Option<Connection>,
        url: &Url,
        signature: &SignatureHeaders,
        body: Bytes,
    ) -> Result<(Answer, Option<Connection>), Answer> {
        let broken = |error: String| Answer::NoAnswer {
            error,
            kind: Failure::Connection,
        };
        let host = url
            .host_str()
            .ok_or_else(|| broken("the URL has no host".to_owned()))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| broken("not an http:// or https:// URL".to_owned()))?;
        let origin = (url.scheme().to_owned(), host.to_owned(), port);
        let reusable = match kept {
            Some(mut c) if c.origin == origin && c.last_used.elapsed() < IDLE_REUSE => {
                c.sender.ready().await.is_ok().then_some(c)
            }
            _ => None,
        };
        let mut connection = match reusable {
            Some(c) => c,
            None => self.connect(origin, host, port).await?,
        };
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
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, AGENT)
            .header("webhook-id", &signature.id)
            .header("webhook-timestamp", signature.timestamp.to_string())
            .header("webhook-signature", &signature.signature)
            .body(Full::new(body))
            .map_err(|_| broken("the URL is not a valid request target".to_owned()))?;
        let response = connection
            .sender
            .send_request(request)
            .await
            .map_err(|error| broken(chain(&error)))?;
        let status = response.status().as_u16();
        let reusable = !response
            .headers()
            .get(hyper::header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let (body, complete) = match Limited::new(response.into_body(), READ_BODY_BYTES)
            .collect()
            .await
        {
            Ok(collected) => (kept_text(&collected.to_bytes()), true),
            Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
                ("(the answer's body exceeded 64 KiB)".to_owned(), false)
            }
            // The status came; a body cut short does not change what it said.
            Err(_) => (String::new(), false),
        };
        connection.last_used = Instant::now();
        let kept = (reusable && complete).then_some(connection);
        Ok((Answer::Status { status, body }, kept))
    }

    async fn connect(
        &self,
        origin: (String, String, u16),
        host: &str,
        port: u16,
    ) -> Result<Connection, Answer> {
        let broken = |error: String| Answer::NoAnswer {
            error,
            kind: Failure::Connection,
        };
        let tcp = self
            .guard
            .connect(Purpose::Webhook, host, port, self.timeout)
            .await
            .map_err(|error| match error {
                ConnectError::Refused => Answer::NoAnswer {
                    error: error.to_string(),
                    kind: Failure::Refused,
                },
                ConnectError::TimedOut(_) => Answer::NoAnswer {
                    error: error.to_string(),
                    kind: Failure::TimedOut,
                },
                other => broken(other.to_string()),
            })?;
        let _ = tcp.set_nodelay(true);
        let sender = match origin.0.as_str() {
            "https" => {
                // A literal IPv6 host comes bracketed from the URL; a certificate names it bare.
                let name = host.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(name.to_owned())
                    .map_err(|_| broken("the host is not a valid TLS server name".to_owned()))?;
                let tls = TlsConnector::from(self.tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|error| broken(format!("TLS handshake failed: {}", chain(&error))))?;
                handshake(tls).await?
            }
            "http" => handshake(tcp).await?,
            _ => return Err(broken("not an http:// or https:// URL".to_owned())),
        };
        Ok(Connection {
            origin,
            sender,
            last_used: Instant::now(),
        })
    }
}

async fn handshake<Io>(io: Io) -> Result<http1::SendRequest<Full<Bytes>>, Answer>
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) =
        http1::handshake(TokioIo::new(io))
            .await
            .map_err(|error| Answer::NoAnswer {
                error: chain(&error),
                kind: Failure::Connection,
            })?;
    // Drives the connection; it ends once the lane drops `sender`, closing the socket.
    tokio::spawn(connection);
    Ok(sender)
}

/// The first kilobyte of `body` as text (cut at a character boundary).
pub fn kept_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(KEPT_BODY_BYTES)]);
    let mut text = text.into_owned();
    while text.len() > KEPT_BODY_BYTES {
        text.pop();
    }
    text
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_kilobyte_as_text() {
        assert_eq!(kept_text(b"ok"), "ok");
        let long = "é".repeat(1000);
        let kept = kept_text(long.as_bytes());
        assert!(kept.len() <= KEPT_BODY_BYTES);
        assert!(kept.chars().all(|c| c == 'é' || c == '\u{FFFD}'));
    }
}
