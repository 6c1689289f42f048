//! IMAP connections of a mailbox (reply detection), through async-imap over tokio, on a TCP
//! connection the outbound guard made.

use std::fmt::Debug;
use std::time::Duration;

use async_imap::imap_proto::{Response, Status};
use secrecy::ExposeSecret;
use tokio::io::{AsyncRead, AsyncWrite};

use super::xoauth2::ImapAuthenticator;
use super::{CheckError, Login, LoginMethod, Security, Server, tls_handshake};
use crate::outbound::{self, OutboundGuard, Purpose};

/// Why [`connect`] gave no session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The outbound guard refused the host (it resolves to a non-public address that is not
    /// allowed): nothing was connected.
    #[error("{}", outbound::REFUSED)]
    Refused,
    /// The server refused the login (with XOAUTH2: perhaps an expired or revoked token).
    #[error("{0}")]
    LoginRejected(String),
    /// Anything else, in words naming the step (never the password, though the server's
    /// words still pass [`super::redact`] before they are stored).
    #[error("{0}")]
    Failed(String),
}

impl From<String> for ConnectError {
    fn from(message: String) -> Self {
        ConnectError::Failed(message)
    }
}

impl From<&str> for ConnectError {
    fn from(message: &str) -> Self {
        ConnectError::Failed(message.to_owned())
    }
}

impl From<outbound::ConnectError> for ConnectError {
    fn from(error: outbound::ConnectError) -> Self {
        match error {
            outbound::ConnectError::Refused => ConnectError::Refused,
            other => ConnectError::Failed(other.to_string()),
        }
    }
}

/// Connects with the configured security, reads the greeting, logs in and logs out: `Ok`
/// when the server accepted the login within `timeout`.
pub async fn check(
    guard: &OutboundGuard,
    server: &Server,
    login: &Login,
    timeout: Duration,
) -> Result<(), CheckError> {
    let at = format!("{}:{} ({})", server.host, server.port, server.security);
    match tokio::time::timeout(timeout, login_and_logout(guard, server, login, timeout)).await {
        Err(_) => Err(CheckError::new(
            format!(
                "IMAP server {at} did not complete the check within {} s",
                timeout.as_secs()
            ),
            None,
        )),
        Ok(Err(message)) => Err(CheckError::new(
            format!("IMAP server {at}: {message}"),
            Some(login),
        )),
        Ok(Ok(())) => Ok(()),
    }
}

/// A byte stream an IMAP session runs over: plain TCP or TLS, chosen at run time.
pub trait ImapStream: AsyncRead + AsyncWrite + Unpin + Debug + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Debug + Send> ImapStream for T {}

/// A logged-in IMAP session over whichever transport the mailbox is configured for.
pub type Session = async_imap::Session<Box<dyn ImapStream>>;

/// Connects through `guard` (the TCP connection within `connect_timeout`; the caller bounds
/// the whole), reads the greeting, secures the connection as configured and logs in. Errors
/// name the step that failed and never contain the password (the caller still passes them
/// through [`super::redact`] before storing them, as servers may echo what they were sent).
pub async fn connect(
    guard: &OutboundGuard,
    server: &Server,
    login: &Login,
    connect_timeout: Duration,
) -> Result<Session, ConnectError> {
    let tcp = guard
        .connect(Purpose::Imap, &server.host, server.port, connect_timeout)
        .await?;
    // Replies are small and interactive; Nagle would only add latency to every command.
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn ImapStream> = match server.security {
        Security::None => {
            let mut client = async_imap::Client::new(tcp);
            greeting(&mut client).await?;
            Box::new(client.into_inner())
        }
        Security::Tls => {
            let tls = tls_handshake(&server.host, tcp).await?;
            let mut client = async_imap::Client::new(tls);
            greeting(&mut client).await?;
            Box::new(client.into_inner())
        }
        Security::Starttls => {
            let mut client = async_imap::Client::new(tcp);
            greeting(&mut client).await?;
            client
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(|e| format!("STARTTLS refused: {e}"))?;
            // No second greeting after STARTTLS (RFC 3501 6.2.1).
            Box::new(tls_handshake(&server.host, client.into_inner()).await?)
        }
    };
    let client = async_imap::Client::new(stream);
    match login.method {
        LoginMethod::Password => client
            .login(&login.username, login.password.expose_secret())
            .await
            .map_err(|(e, _)| ConnectError::LoginRejected(format!("login rejected: {e}"))),
        LoginMethod::Xoauth2 => client
            .authenticate(
                "XOAUTH2",
                ImapAuthenticator::new(&login.username, &login.password),
            )
            .await
            .map_err(|(e, _)| ConnectError::LoginRejected(format!("XOAUTH2 login rejected: {e}"))),
    }
}

async fn login_and_logout(
    guard: &OutboundGuard,
    server: &Server,
    login: &Login,
    timeout: Duration,
) -> Result<(), ConnectError> {
    let mut session = connect(guard, server, login, timeout).await?;
    // The login succeeded, which is what the check is about; a failing LOGOUT is not news.
    let _ = session.logout().await;
    Ok(())
}

async fn greeting<S>(client: &mut async_imap::Client<S>) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Debug + Send,
{
    let response = client
        .read_response()
        .await
        .map_err(|e| {
            // async-imap's parse errors end with what the server sent; that part is the news.
            let text = e.to_string();
            match text.split_once(" during parsing of ") {
                Some((_, sent)) => format!("not an IMAP server? It greeted with {sent}"),
                None => format!("unreadable greeting (not an IMAP server?): {text}"),
            }
        })?
        .ok_or("the server closed the connection before greeting")?;
    match response.parsed() {
        Response::Data {
            status: Status::Ok | Status::PreAuth,
            ..
        } => Ok(()),
        other => Err(format!(
            "unexpected greeting (not an IMAP server?): {other:?}"
        )),
    }
}
